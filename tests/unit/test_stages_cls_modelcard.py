"""stages.cls.modelcard without a run: the card of a local base model."""

from __future__ import annotations

import json
from pathlib import Path


def _fake_run(tmp_path: Path, adapter=True, template=None) -> tuple[Path, dict]:
    run = tmp_path / "run"
    run.mkdir()
    manifest = {"base_model": "meta-llama/Meta-Llama-3-8B", "adapter": adapter, "finetuning_type": "lora",
                "strategies": ["rslora", "cls_head"], "head_modules": ["score"], "cutoff_len": 384,
                "cls_template": template, "pad_token_id": 7, "datasets": {"train": ["tr"], "eval": ["va"], "test": []},
                "num_train": 50711, "num_eval": 600, "num_test": 600, "quantization": None}
    (run / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.8, "eval_macro_f1": 0.7, "epoch": 1}))
    (run / "predict_results.json").write_text(json.dumps({"predict_accuracy": 0.81, "predict_macro_f1": 0.72,
                                                          "predict_weighted_f1": 0.8}))
    return run, manifest


def test_model_card_of_a_local_base_leaves_base_model_out_and_says_so(tmp_path):
    import yaml

    from llama_factory_ext.stages.cls.modelcard import render_card

    run, manifest = _fake_run(tmp_path, adapter=False)
    manifest["base_model"] = str(tmp_path)
    text = render_card(str(run), manifest, ["a", "b"])
    head = yaml.safe_load(text.split("---")[1])
    assert "base_model" not in head and head["library_name"] == "transformers"
    assert "set `base_model` in the YAML header" in text and "AutoModelForSequenceClassification" in text
