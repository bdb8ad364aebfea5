"""recipe.checks: the one home of the checks train and validate share."""

from __future__ import annotations




def test_validation_has_one_home():
    import llama_factory_ext.cli.validate as cli
    import llama_factory_ext.recipe.checks as validation

    for name in ("_type_problems", "_range_problems", "_combination_problems", "_dataset_problems"):
        assert not hasattr(cli, name) and hasattr(validation, name)


def test_offline_hub_id_not_cached_names_the_model_and_the_fixes(monkeypatch, tmp_path):
    from llama_factory_ext.recipe.checks import model_problems

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    [msg] = model_problems({"model_name_or_path": "meta-llama/Meta-Llama-3-8B"})
    assert msg.startswith("key `model_name_or_path`: 'meta-llama/Meta-Llama-3-8B'") and "HF_HUB_OFFLINE" in msg
    for fix in ("huggingface-cli login", "https://huggingface.co/meta-llama/Meta-Llama-3-8B", "model_name_or_path=/path"):
        assert fix in msg
    assert model_problems({"model_name_or_path": str(tmp_path)}) == []  # a local folder
    assert model_problems({"model_name_or_path": "meta-llama/Meta-Llama-3-8B", "use_modelscope_hub": True}) == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert "TRANSFORMERS_OFFLINE" in model_problems({"model_name_or_path": "org/model"})[0]


def _schedule_recipe(tmp_path, rows: int, **keys) -> dict:
    import json

    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": f"t{i}", "label": "a"}) + "\n" for i in range(rows)))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "train.jsonl"}}))
    return {"do_train": True, "dataset": "d", "dataset_dir": str(tmp_path), "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 8, "num_train_epochs": 1.0, "eval_strategy": "steps",
            "save_strategy": "steps", "load_best_model_at_end": True, **keys}


def test_schedule_that_never_fires_is_named(tmp_path):
    from llama_factory_ext.recipe.checks import schedule_notes

    raw = _schedule_recipe(tmp_path, 240, eval_steps=1000, save_steps=1000)
    notes = schedule_notes(raw, {})
    assert [n.split(":")[0] for n in notes] == ["key `eval_steps`", "key `save_steps`"]
    assert "15 optimizer steps" in notes[0] and "240 training rows" in notes[0] and "evaluation never runs" in notes[0]
    assert "no checkpoint is saved" in notes[1] and "save_strategy: epoch" in notes[1]
    assert schedule_notes(raw, {"eval_steps": 0.1, "save_steps": 0.1}) == []  # a fraction of the run always fires
    assert schedule_notes(raw, {"eval_steps": 15, "save_steps": 15}) == []  # fires once, at the last step
    assert len(schedule_notes(raw, {"eval_steps": 16, "save_steps": 0.5})) == 1
    assert schedule_notes({**raw, "max_steps": 2000}, {}) == []
    assert schedule_notes({**raw, "max_samples": 100, "eval_steps": 10, "save_strategy": "no"}, {})[0].startswith(
        "key `eval_steps`: 10 > the run has 7 optimizer steps (100 training rows")
    assert schedule_notes({**raw, "do_train": False, "eval_steps": 1000}, {}) == []


def test_shipped_gpu_recipes_evaluate_and_save_on_small_data():
    from llama_factory_ext.recipe.checks import schedule_notes
    from llama_factory_ext.recipe.load import read_recipe, resolve_paths
    from llama_factory_ext.resources import builtin_dir

    for path in sorted(builtin_dir().glob("llama3_*.yaml")):  # 58-240 bundled rows: a handful of steps
        raw = resolve_paths(read_recipe(path), path)
        assert schedule_notes(raw, {}) == [], path.name
