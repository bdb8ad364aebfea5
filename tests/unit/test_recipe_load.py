"""recipe.load: reading a recipe (types, size limits), paths relative to the recipe, command-line keys kept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llama_factory_ext.api import UserError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_llama3_cls_carries_the_improved_recipe():
    from llama_factory_ext.recipe.load import read_recipe as load_yaml

    r = load_yaml(RECIPES / "llama3_cls.yaml")
    assert r["finetuning_type"] == ["rslora", "cls_head"] and r["stage"] == "cls"
    assert (r["lora_rank"], r["lora_alpha"], r["lora_target"]) == (32, 64, "all")
    assert r["learning_rate"] == pytest.approx(2e-4) and r["per_device_train_batch_size"] == 2
    assert r["gradient_accumulation_steps"] > 1 and r["warmup_steps"] == 0.1 and r["weight_decay"] == 0.01
    assert r["bf16"] is True and r["eval_steps"] == 0.1 and r["model_name_or_path"] == "meta-llama/Meta-Llama-3-8B"


def test_resolve_paths_prefers_the_recipe_folder_but_keeps_command_line_values(tmp_path):
    from llama_factory_ext.recipe.load import cli_override_keys, resolve_paths

    (tmp_path / "pack" / "data").mkdir(parents=True)
    recipe = tmp_path / "pack" / "r.yaml"
    raw = {"dataset_dir": "data", "output_dir": "out"}
    assert resolve_paths(raw, recipe) == {"dataset_dir": str(tmp_path / "pack" / "data"), "output_dir": "out"}
    keep = cli_override_keys(["dataset_dir=data", "learning_rate=1e-4"])
    assert keep == ("dataset_dir", "learning_rate")
    assert resolve_paths(raw, recipe, keep=keep)["dataset_dir"] == "data"
    assert resolve_paths({"dataset_dir": "elsewhere"}, recipe)["dataset_dir"] == "elsewhere"  # not next to the recipe


def test_local_model_path_resolves_next_to_the_recipe_when_cwd_lacks_it(tmp_path, monkeypatch):
    from llama_factory_ext.recipe.load import resolve_paths

    recipe = tmp_path / "r" / "x.yaml"
    (tmp_path / "r" / "tiny_llama").mkdir(parents=True)
    recipe.write_text("model_name_or_path: ./tiny_llama\n")
    monkeypatch.chdir(tmp_path)
    raw = {"model_name_or_path": "./tiny_llama"}
    assert resolve_paths(raw, recipe)["model_name_or_path"] == str(tmp_path / "r" / "tiny_llama")
    assert resolve_paths(raw, recipe, keep=("model_name_or_path",))["model_name_or_path"] == "./tiny_llama"
    (tmp_path / "tiny_llama").mkdir()  # the host's reading (the working folder) wins when it exists
    assert resolve_paths(raw, recipe)["model_name_or_path"] == "./tiny_llama"
    hub = {"model_name_or_path": "meta-llama/Meta-Llama-3-8B"}
    assert resolve_paths(hub, recipe) == hub


def test_oversized_recipe_and_keys_are_refused_quickly(tmp_path, host_keys):
    from llama_factory_ext.recipe import prepare
    from llama_factory_ext.recipe.load import read_recipe

    big = tmp_path / "big.yaml"
    big.write_text("".join(f"key_{i}: {i}\n" for i in range(120_000)))  # ~1.6 MB
    start = time.monotonic()
    with pytest.raises(UserError, match="over the limit"):
        read_recipe(big)
    many = {f"key_{i}": i for i in range(20_000)}
    with pytest.raises(UserError) as err:
        prepare(many, data=False, host_keys=host_keys)
    assert time.monotonic() - start < 30
    assert len(err.value.problems) <= 25 and "more unknown keys" in err.value.problems[-1]


# ----------------------------------------------------------------- typed as the host types them (OmegaConf)

@pytest.mark.parametrize("text, value", [("5e-5", 5e-5), ("2.0e-4", 2.0e-4), ("1.0e-4", 1.0e-4), ("3", 3)])
def test_numbers_read_as_the_host_reads_them(tmp_path, text, value):
    from llama_factory_ext.recipe.load import parse_overrides, read_recipe, with_overrides

    path = tmp_path / "r.yaml"
    path.write_text(f"learning_rate: {text}\nfinetuning_type: [rslora, cls_head]\neval_strategy: no\n")
    raw = read_recipe(path)
    assert raw == {"learning_rate": value, "finetuning_type": ["rslora", "cls_head"], "eval_strategy": False}
    assert type(raw["learning_rate"]) is type(value)
    over = parse_overrides([f"learning_rate={text}", "lora_target=[q_proj,v_proj]", "a.b=1"])
    assert over == {"learning_rate": value, "lora_target": ["q_proj", "v_proj"], "a": {"b": 1}}
    assert with_overrides(raw, [f"learning_rate={text}", "finetuning_type=lora"])["finetuning_type"] == "lora"
    assert with_overrides(raw, {"max_steps": 3}) == {**raw, "max_steps": 3}
    assert with_overrides(raw, None) is raw


@pytest.mark.parametrize("name, text, said", [
    ("dup.yaml", "learning_rate: 5e-5\nlearning_rate: 1e-4\n", "found duplicate key learning_rate"),
    ("dup.json", '{"learning_rate": 5e-5, "learning_rate": 1e-4}', "found duplicate key learning_rate"),
    ("list.yaml", "- a\n- b\n", "a recipe must be a mapping"),
    ("broken.yaml", "a: [1, 2\n", "cannot read the YAML"),
])
def test_a_bad_recipe_is_one_message_naming_the_file(tmp_path, name, text, said):
    from llama_factory_ext.recipe.load import read_recipe

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UserError) as err:
        read_recipe(path)
    assert len(err.value.problems) == 1 and said in err.value.problems[0]
    assert str(path) in err.value.render()
    with pytest.raises(UserError, match="recipe file not found"):
        read_recipe(tmp_path / "missing.yaml")


def test_overrides_without_a_value_are_refused_each_named():
    from llama_factory_ext.recipe.load import cli_override_keys, parse_overrides

    with pytest.raises(UserError) as err:
        parse_overrides(["learning_rate", "max_steps=3", "bf16"])
    assert err.value.problems == ["override `learning_rate`: expected key=value", "override `bf16`: expected key=value"]
    assert parse_overrides([]) == {}
    assert cli_override_keys(["--output_dir=o", "max_steps=3", "recipe.yaml"]) == ("output_dir", "max_steps")
