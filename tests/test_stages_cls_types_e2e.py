"""End-to-end: the multi-label and score recipes through `llamafactory-cli train`, then predict and export."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import RECIPES, run_cli

pytestmark = pytest.mark.e2e
torch = pytest.importorskip("torch")


def _fail_text(proc) -> str:
    return f"rc={proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}"


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train(tmp_path, tiny_llama, recipe: str) -> tuple[Path, Path]:
    work = tmp_path / "recipes"
    shutil.copytree(RECIPES, work)
    proc = run_cli(["llamafactory-cli", "train", recipe, f"model_name_or_path={tiny_llama}", "max_steps=4",
                    "eval_steps=2", "save_steps=2"], cwd=work)
    assert proc.returncode == 0, _fail_text(proc)
    return work, work / "runs" / recipe.removesuffix(".yaml")


def _export_matches(tmp_path, out: Path, texts: list[str], expected):
    """The exported model's outputs (sigmoid / raw) match the run's predictions, and its config carries the run."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    exp = tmp_path / "exported"
    proc = run_cli(["llamafactory-ext", "export", out, "--out", exp], cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    model = AutoModelForSequenceClassification.from_pretrained(exp).eval()
    tok = AutoTokenizer.from_pretrained(exp)
    with torch.no_grad():
        logits = np.array([model(**tok(t, truncation=True, max_length=128, return_tensors="pt")).logits[0].numpy()
                           for t in texts])  # cutoff_len of the recipes
    return model.config, logits


def _card_outputs(card: Path, texts: list[str]) -> list[dict]:
    """Run the card's Python snippet on each text; the variables it leaves (probs, predicted, score, labels)."""
    code = re.search(r"```python\n(.*?)```", card.read_text(), re.S).group(1)
    assert 'text = "Library for parsing JSON documents"' in code
    out = []
    for text in texts:
        scope: dict = {}
        exec(code.replace('text = "Library for parsing JSON documents"', f"text = {text!r}"), scope)
        out.append(scope)
    return out


def _multilabel_card_matches(card: Path, texts: list[str], preds: list[dict], labels: list[str], atol: float):
    """The card's snippet gives the run's calibrated probabilities and labels over the thresholds."""
    import numpy as np

    card_text = card.read_text()
    assert "| micro-F1 | macro-F1 | samples-F1 | exact match |" in card_text and "## Calibration" in card_text
    for scope, pred in zip(_card_outputs(card, texts), preds):
        assert scope["labels"] == labels
        want = np.array([pred["probabilities"][lab] for lab in labels])
        np.testing.assert_allclose(scope["probs"].numpy(), want, atol=atol)
        assert scope["predicted"] == pred["predicted"]


def _score_card_matches(card: Path, texts: list[str], preds: list[dict], atol: float):
    """The card's snippet gives the run's scores in the data's unit."""
    card_text = card.read_text()
    assert "| MAE | RMSE | Pearson | Spearman |" in card_text and "accuracy" not in card_text
    for scope, pred in zip(_card_outputs(card, texts), preds):
        assert abs(scope["score"] - pred["predicted"]) < atol, (scope["score"], pred["predicted"])


def test_tiny_multilabel_recipe(tmp_path, tiny_llama):
    import numpy as np

    work, out = _train(tmp_path, tiny_llama, "tiny_cls_multilabel.yaml")
    manifest = json.loads((out / "cls_run.json").read_text())
    labels = json.loads((out / "label_map.json").read_text())["labels"]
    assert manifest["problem_type"] == "multi_label" and len(manifest["thresholds"]) == len(labels) == 8
    assert manifest["calibrated_on"] == "eval" and manifest["temperature"] > 0
    ev = json.loads((out / "eval_results.json").read_text())
    assert {"eval_micro_f1", "eval_macro_f1", "eval_samples_f1", "eval_exact_match"} <= set(ev)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] is not None  # metric_for_best_model: micro_f1

    rows = _read_jsonl(work / "data" / "debian_tags_sample_test.jsonl")
    preds = _read_jsonl(out / "predictions.jsonl")
    assert [p["id"] for p in preds] == [r["id"] for r in rows]
    assert [p["gold"] for p in preds] == [r["labels"] for r in rows]
    t = dict(zip(labels, manifest["thresholds"]))
    for p in preds:
        assert p["predicted"] == [lab for lab in labels if p["probabilities"][lab] >= t[lab]]
        z = np.array(p["logits"]) / manifest["temperature"]
        assert np.allclose(1 / (1 + np.exp(-z)), [p["probabilities"][lab] for lab in labels], atol=2e-6)
    report = json.loads((out / "classification_report.json").read_text())
    pr = json.loads((out / "predict_results.json").read_text())
    assert report["micro_f1"] == pytest.approx(pr["predict_micro_f1"])
    assert set(report["per_label"]) == set(labels)
    cal = json.loads((out / "calibration.json").read_text())
    assert {"ece_before", "ece_after", "brier_before", "brier_after"} <= set(cal["test"])
    assert cal["eval"]["brier_after"] <= cal["eval"]["brier_before"] + 1e-9 or cal["temperature"] == 1.0
    assert (out / "reliability.png").stat().st_size > 1000

    inputs = tmp_path / "texts.jsonl"
    inputs.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in rows[:5]))
    proc = run_cli(["llamafactory-ext", "predict", out, "--input", inputs, "--output", tmp_path / "p.jsonl"],
                   cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    again = _read_jsonl(tmp_path / "p.jsonl")
    assert [a["predicted"] for a in again] == [p["predicted"] for p in preds[:5]]

    config, logits = _export_matches(tmp_path, out, [r["text"] for r in rows[:3]], None)
    assert config.problem_type == "multi_label_classification" and config.id2label == dict(enumerate(labels))
    assert config.lfx_thresholds == t
    probs = 1 / (1 + np.exp(-logits))
    saved = np.array([[p["probabilities"][lab] for lab in labels] for p in preds[:3]])
    assert np.abs(probs - saved).max() < 1e-4

    texts = [r["text"] for r in rows[:3]]
    _multilabel_card_matches(out / "README.md", texts, preds[:3], labels, atol=1e-5)  # adapter + head
    _multilabel_card_matches(tmp_path / "exported" / "README.md", texts, preds[:3], labels, atol=1e-4)
    assert json.dumps(manifest["thresholds"][:1])[1:-1] in (out / "README.md").read_text()


def test_tiny_score_recipe(tmp_path, tiny_llama):
    import numpy as np

    work, out = _train(tmp_path, tiny_llama, "tiny_cls_score.yaml")
    manifest = json.loads((out / "cls_run.json").read_text())
    train = [r["score"] for r in _read_jsonl(work / "data" / "debian_size_sample_train.jsonl")]
    assert manifest["problem_type"] == "regression"
    assert manifest["score_mean"] == pytest.approx(np.mean(train)) and manifest["score_std"] == pytest.approx(np.std(train))
    ev = json.loads((out / "eval_results.json").read_text())
    assert {"eval_mae", "eval_rmse", "eval_pearson", "eval_spearman"} <= set(ev)
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] == pytest.approx(min(h["eval_rmse"] for h in state["log_history"] if "eval_rmse" in h))

    rows = _read_jsonl(work / "data" / "debian_size_sample_test.jsonl")
    preds = _read_jsonl(out / "predictions.jsonl")
    assert [p["gold"] for p in preds] == [r["score"] for r in rows]
    got = np.array([p["predicted"] for p in preds])
    mae = float(np.abs(got - np.array([r["score"] for r in rows])).mean())
    assert json.loads((out / "regression_report.json").read_text())["mae"] == pytest.approx(mae, abs=1e-5)
    assert json.loads((out / "predict_results.json").read_text())["predict_mae"] == pytest.approx(mae, abs=1e-4)
    assert abs(got.mean() - manifest["score_mean"]) < 3 * manifest["score_std"]  # the data's unit, not standardised
    assert (out / "predicted_vs_true.png").stat().st_size > 1000
    assert not (out / "calibration.json").exists()

    config, logits = _export_matches(tmp_path, out, [r["text"] for r in rows[:3]], None)
    assert config.problem_type == "regression" and config.num_labels == 1
    scores = logits[:, 0] * config.lfx_score_std + config.lfx_score_mean
    assert np.abs(scores - got[:3]).max() < 1e-4

    texts = [r["text"] for r in rows[:3]]
    _score_card_matches(out / "README.md", texts, preds[:3], atol=1e-5)  # adapter + head
    _score_card_matches(tmp_path / "exported" / "README.md", texts, preds[:3], atol=1e-4)
    assert repr(manifest["score_std"]) in (out / "README.md").read_text()
