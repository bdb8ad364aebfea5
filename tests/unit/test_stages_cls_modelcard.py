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


def _typed_run(tmp_path: Path, results: dict, **fields) -> tuple[Path, dict]:
    run, manifest = _fake_run(tmp_path)
    (run / "eval_results.json").write_text(json.dumps({f"eval_{k}": v for k, v in results.items()}))
    (run / "predict_results.json").unlink()
    return run, dict(manifest, **fields)


def test_multi_label_card_shows_its_metrics_thresholds_and_temperature(tmp_path):
    import yaml

    from llama_factory_ext.stages.cls.modelcard import render_card

    run, manifest = _typed_run(tmp_path, {"micro_f1": 0.61, "macro_f1": 0.42, "samples_f1": 0.55, "exact_match": 0.25},
                               problem_type="multi_label", thresholds=[0.3125, 0.75], temperature=1.5,
                               calibrated_on="eval", calibration_eval={"rows": 600, "ece_before": 0.12,
                                                                       "ece_after": 0.03, "brier_before": 0.2,
                                                                       "brier_after": 0.18})
    text = render_card(str(run), manifest, ["devel", "games"])
    head = yaml.safe_load(text.split("---")[1])
    assert "multi-label-classification" in head["tags"] and head["metrics"] == ["f1", "exact_match"]
    assert "multi-label text classification, 2 labels" in text and "accuracy" not in text
    assert "| validation | 0.6100 | 0.4200 | 0.5500 | 0.2500 |" in text
    assert "| 0 | devel | 0.3125 |" in text and "| 1 | games | 0.7500 |" in text
    assert "T = 1.5000" in text and "| validation | 600 | 0.1200 | 0.0300 | 0.2000 | 0.1800 |" in text
    assert "problem_type=\"multi_label_classification\"" in text
    assert "temperature = 1.5" in text and "thresholds = [0.3125, 0.75]" in text and ".sigmoid()" in text
    exported = render_card(str(run), manifest, ["devel", "games"], exported=True)
    assert "model.config.lfx_thresholds" in exported and "div(temperature)" not in exported
    assert "`config.lfx_temperature` keeps T" in exported


def test_regression_card_shows_its_metrics_and_the_score_unit(tmp_path):
    import yaml

    from llama_factory_ext.stages.cls.modelcard import render_card

    run, manifest = _typed_run(tmp_path, {"mae": 0.31, "rmse": 0.42, "pearson": 0.8, "spearman": 0.79},
                               problem_type="regression", score_mean=4.25, score_std=0.625, regression_loss="huber")
    text = render_card(str(run), manifest, ["score"])
    head = yaml.safe_load(text.split("---")[1])
    assert "regression" in head["tags"] and "accuracy" not in head["metrics"]
    assert "text regression (one score per text)" in text and "## Calibration" not in text
    assert "| split | MAE | RMSE | Pearson | Spearman |" in text and "| validation | 0.3100 | 0.4200 | 0.8000 | 0.7900 |" in text
    assert "Huber" in text and "`output * 0.625 + 4.25`" in text
    assert "mean, std = 4.25, 0.625" in text and "score = float(logits[0]) * std + mean" in text
    exported = render_card(str(run), manifest, ["score"], exported=True)
    assert "model.config.lfx_score_mean, model.config.lfx_score_std" in exported
