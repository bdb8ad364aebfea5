"""Recipes: registry, list/show/copy, validate (no weights), recipe-relative data paths, shipped in the wheel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import RECIPES, read_log, run_cli, write_yaml

SHIPPED = sorted(p.stem for p in RECIPES.glob("*.yaml"))
LLAMA3 = ["llama3_cls", "llama3_cls_layerwise", "llama3_cls_qlora", "llama3_sft", "llama3_sft_qlora"]


def test_wheel_ships_every_recipe_and_its_data():
    from llama_factory_ext.resources import builtin_dir

    shipped = builtin_dir()
    assert shipped.name == "_recipes", shipped  # the installed wheel, not the source tree
    assert sorted(p.stem for p in shipped.glob("*.yaml")) == SHIPPED
    for f in (RECIPES / "data").iterdir():
        assert (shipped / "data" / f.name).read_bytes() == f.read_bytes(), f.name


def test_list_shows_builtin_and_plugin_pack_recipes(tmp_path):
    r = run_cli(["llamafactory-ext", "recipes", "list"], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "TASK", "MODEL", "METHOD", "PEAK/GPU"]
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    for name in SHIPPED:
        assert name in rows
    cls = rows["llama3_cls"].split()
    assert cls[1:4] == ["cls", "meta-llama/Meta-Llama-3-8B", "rslora+cls_head"]
    assert "(4-bit)" in rows["llama3_cls_qlora"]
    assert "example_tiny_sft_norms" in rows and "lfx-example-plugin" in rows["example_tiny_sft_norms"]


def test_show_prints_the_recipe_and_unknown_name_suggests(tmp_path):
    r = run_cli(["llamafactory-ext", "recipes", "show", "llama3_cls"], tmp_path)
    assert r.returncode == 0
    assert r.stdout == (RECIPES / "llama3_cls.yaml").read_text()
    r = run_cli(["llamafactory-ext", "recipes", "show", "llama3_clss"], tmp_path)
    assert r.returncode == 2 and "did you mean `llama3_cls`" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_validates(name):
    from llama_factory_ext.resources import builtin_dir
    from llama_factory_ext.recipe.validate import validate_file

    problems, _ = validate_file(builtin_dir() / f"{name}.yaml")
    assert problems == []


@pytest.mark.parametrize("name", SHIPPED)
def test_every_recipe_header_says_purpose_command_hardware(name):
    from llama_factory_ext.catalog import read_header

    h = read_header(RECIPES / f"{name}.yaml")
    assert h["lines"][0].startswith(f"# {name}: ")
    run = h["run"].removeprefix("llamafactory-ext tiny-model && ")  # tiny recipes build their model first
    assert run == f"llamafactory-cli train {name}.yaml"
    assert h["hardware"]


def test_validate_reports_every_problem_at_once(workdir):
    bad = write_yaml(workdir / "bad.yaml", {
        "model_name_or_path": "m", "stage": "sft", "do_train": True, "finetuning_type": "rslora",
        "lora_rnak": 8,                      # unknown key
        "learning_rate": "fast",             # type
        "warmup_ratio": 1.5,                 # range
        "lr_scheduler_type": "cosinex",      # host parser
        "dataset": "alpaca_sampel",          # not in dataset_info
        "eval_dataset": "debian_sample_test", "val_size": 0.1,   # combination
        "dataset_dir": "data", "template": "llama3",
    })
    r = run_cli(["llamafactory-ext", "validate", bad], workdir.parent)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert "Traceback" not in out + r.stderr
    assert f"{bad}: " in out
    for expected in ("key `lora_rnak`: unknown", "did you mean `lora_rank`", "key `learning_rate`: expected a number",
                     "key `warmup_ratio`: 1.5 is out of range", "key `lr_scheduler_type`: cosinex is not a valid",
                     "dataset 'alpaca_sampel' is not in", "did you mean `alpaca_sample`",
                     "keys `val_size` and `eval_dataset`"):
        assert expected in out, (expected, out)


def test_validate_checks_files_and_columns(workdir):
    info = json.loads((workdir / "data" / "dataset_info.json").read_text())
    info["wrong_cols"] = {"file_name": "debian_sample_train.jsonl", "columns": {"text": "description", "label": "label"}}
    info["no_file"] = {"file_name": "missing.jsonl"}
    info["script"] = {"script_url": "someone/loader"}
    (workdir / "data" / "dataset_info.json").write_text(json.dumps(info))
    recipe = write_yaml(workdir / "r.yaml", {
        "model_name_or_path": "m", "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "dataset": "wrong_cols,no_file,script", "dataset_dir": "data", "template": "llama3"})
    r = run_cli(["llamafactory-ext", "recipes", "validate", recipe], workdir.parent)
    assert r.returncode == 1
    assert "column `description` (mapped as `text`) is not in the first rows of debian_sample_train.jsonl" in r.stdout
    assert "missing.jsonl does not exist" in r.stdout
    assert "loading scripts (`script_url`) are refused" in r.stdout


def test_validate_json_output_and_overrides(workdir):
    r = run_cli(["llamafactory-ext", "validate", workdir / "tiny_sft.yaml", workdir / "tiny_cls.yaml",
                 "learning_rate=-1", "--json"], workdir.parent)
    assert r.returncode == 1
    result = json.loads(r.stdout)
    assert [Path(x["file"]).name for x in result] == ["tiny_sft.yaml", "tiny_cls.yaml"]
    for x in result:
        assert x["problems"] == ["key `learning_rate`: -1 is out of range (must be > 0)"]


def test_validate_yaml_is_data_only(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("model_name_or_path: !!python/object/apply:os.system ['touch pwned']\n")
    r = run_cli(["llamafactory-ext", "validate", evil], tmp_path)
    assert r.returncode == 1 and "cannot read the YAML" in r.stdout
    assert not (tmp_path / "pwned").exists()


def test_validate_shows_layerwise_table_for_llama3(tmp_path):
    r = run_cli(["llamafactory-ext", "validate", "llama3_cls_layerwise"], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "layer-wise learning rates" in r.stdout
    assert "layer.31" in r.stdout and "layer.0 " in r.stdout and "override[0]" in r.stdout


def test_copy_brings_data_and_refuses_to_overwrite(tmp_path):
    dest = tmp_path / "mine"
    r = run_cli(["llamafactory-ext", "recipes", "copy", "tiny_cls", dest], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (dest / "tiny_cls.yaml").is_file() and (dest / "data" / "debian_sample_train.jsonl").is_file()
    r = run_cli(["llamafactory-ext", "recipes", "copy", "tiny_sft", dest], tmp_path)  # shares identical data
    assert r.returncode == 0, r.stderr
    before = (dest / "tiny_cls.yaml").read_text()
    (dest / "data" / "alpaca_sample.json").write_text("[]")
    r = run_cli(["llamafactory-ext", "recipes", "copy", "tiny_cls", dest], tmp_path)
    assert r.returncode == 2
    assert "tiny_cls.yaml exists; refusing to overwrite" in r.stderr and "alpaca_sample.json exists" in r.stderr
    assert (dest / "tiny_cls.yaml").read_text() == before
    r = run_cli(["llamafactory-ext", "validate", dest / "tiny_cls.yaml"], tmp_path)
    assert r.returncode == 0, r.stdout


def test_plugin_pack_recipes_come_from_the_hook():
    from llama_factory_ext.catalog import all_recipes, recipe_dirs
    from llama_factory_ext.resources import builtin_dir

    dirs = recipe_dirs()
    assert dirs[0] == ("llama-factory-ext", builtin_dir())
    assert any(pack == "lfx-example-plugin" for pack, _ in dirs)
    assert all_recipes()["example_tiny_sft_norms"].pack == "lfx-example-plugin"


@pytest.mark.e2e
def test_tiny_sft_runs_from_another_cwd_with_recipe_relative_data(workdir, tiny_llama, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out_sft"
    r = run_cli(["llamafactory-cli", "train", workdir / "tiny_sft.yaml", f"model_name_or_path={tiny_llama}",
                 f"output_dir={out}"], elsewhere)
    assert r.returncode == 0, r.stderr[-3000:]
    log = read_log(out)
    assert any("loss" in row for row in log) and any("eval_loss" in row for row in log)
    assert (out / "adapter_model.safetensors").is_file()


def test_validate_reports_plugin_key_problems(workdir):
    from llama_factory_ext.recipe.validate import validate_file

    problems, _ = validate_file(workdir / "tiny_cls_layerwise.yaml",
                                ["layerwise_lr_decay=1.5", "cls_template=no placeholder", "lora_rank=0"])
    text = "\n".join(problems)
    assert "key `layerwise_lr_decay`" in text and "(0, 1]" in text
    assert "key `cls_template`" in text and "{text}" in text
    assert text.count("key `lora_rank`") == 1 and "got 0" in text  # one message per key
