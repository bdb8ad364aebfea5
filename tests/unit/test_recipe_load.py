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
    assert r["bf16"] is True and r["eval_steps"] == 1000 and r["model_name_or_path"] == "meta-llama/Meta-Llama-3-8B"


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
