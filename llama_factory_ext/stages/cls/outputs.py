"""What a cls run adds per problem type: the temperature (and, multi_label, the per-label thresholds) fitted on the
eval split after training, calibration.json + reliability.png, and the predictions and reports of multi_label and
regression runs (single_label's are in :mod:`.report`)."""

from __future__ import annotations

import json
import os

import numpy as np

from ...safeio import atomic_write, write_json
from .layout import MANIFEST

CALIBRATION = "calibration.json"
RELIABILITY = "reliability.png"


def multi_hot(examples, labels: list[str]) -> np.ndarray:
    """bool [rows, labels]: which labels each row carries."""
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.zeros((len(examples), len(labels)), dtype=bool)
    for r, ex in enumerate(examples):
        for lab in ex.labels or ():
            if lab in index:
                y[r, index[lab]] = True
    return y


def gold_targets(examples, labels: list[str], problem_type: str) -> np.ndarray:
    """Calibration targets: the gold label's index per row (single_label) or the 0/1 rows (multi_label)."""
    if problem_type == "multi_label":
        return multi_hot(examples, labels)
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index[ex.label] for ex in examples], dtype=int)


def _kind(problem_type: str) -> str:
    return "multi" if problem_type == "multi_label" else "single"


def measures(logits: np.ndarray, targets: np.ndarray, temperature: float, kind: str) -> dict:
    """ECE and Brier score of the raw (T = 1) and the temperature-scaled probabilities."""
    from .calibration import apply_temperature, brier, ece

    raw, scaled = apply_temperature(logits, 1.0, kind), apply_temperature(logits, temperature, kind)
    return {"rows": int(len(logits)), "ece_before": ece(raw, targets, kind), "ece_after": ece(scaled, targets, kind),
            "brier_before": brier(raw, targets, kind), "brier_after": brier(scaled, targets, kind)}


def _logits(trainer, ds) -> np.ndarray:
    pred = trainer.predict(ds, metric_key_prefix="calibrate")
    out = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    return np.asarray(out, dtype=np.float64)


def fit_calibration(trainer, eval_ds, data, type_metrics=None) -> dict:
    """Manifest fields fitted on the eval split after training: ``temperature`` (single_label, multi_label) and
    ``thresholds`` (multi_label: per-label F1-optimal on the calibrated probabilities, 0.5 without eval rows); the
    metrics object then scores with them. Regression: nothing."""
    from .calibration import apply_temperature, calibrate
    from .metrics import tune_thresholds

    ptype, labels = data.problem_type, data.labels
    if ptype == "regression":
        return {}
    out: dict = {"temperature": 1.0, "calibrated_on": None}
    if ptype == "multi_label":
        out["thresholds"] = [0.5] * len(labels)
    if eval_ds is None or not data.eval:
        return out
    kind = _kind(ptype)
    logits = _logits(trainer, eval_ds)
    targets = gold_targets(data.eval, labels, ptype)
    measured = calibrate(logits, targets, kind)
    temperature = float(measured.pop("temperature"))
    out.update(temperature=temperature, calibrated_on="eval", calibration_eval=measured)
    if ptype == "multi_label":
        thresholds = tune_thresholds(targets, apply_temperature(logits, temperature, kind))
        out["thresholds"] = [float(t) for t in thresholds]
        if type_metrics is not None:
            type_metrics.thresholds, type_metrics.temperature = thresholds, float(temperature)
    return out


def saved_calibration(adapter_paths, problem_type: str) -> dict:
    """The temperature / thresholds of the trained run an evaluation-only run loads (its adapter folder), or {}."""
    if not adapter_paths or problem_type == "regression":
        return {}
    folder = adapter_paths[-1] if isinstance(adapter_paths, (list, tuple)) else str(adapter_paths).split(",")[-1]
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or saved.get("problem_type", "single_label") != problem_type:
        return {}
    keys = ("temperature", "thresholds", "calibrated_on", "calibration_eval")
    return {k: saved[k] for k in keys if k in saved}


def write_calibration(out: str, manifest: dict, kind: str, logits: np.ndarray, targets: np.ndarray,
                      new_split: bool) -> None:
    """calibration.json (temperature, ECE / Brier before and after on the eval split it was fitted on and on the
    predicted split), reliability.png of the predicted split, and the same numbers under the Markdown report."""
    from .calibration import apply_temperature, plot_reliability

    if not manifest.get("calibrated_on"):
        return
    temperature = float(manifest["temperature"])
    report = {"temperature": temperature, "fitted_on": manifest["calibrated_on"],
              "eval": manifest.get("calibration_eval")}
    split = "test" if new_split else "eval"
    if new_split:
        report["test"] = measures(logits, targets, temperature, kind)
    write_json(os.path.join(out, CALIBRATION), report)
    plot_reliability(apply_temperature(logits, 1.0, kind), apply_temperature(logits, temperature, kind), targets, kind,
                     os.path.join(out, RELIABILITY), title=f"{os.path.basename(os.path.abspath(out))}: {split} split")
    lines = ["", f"**Calibration** (temperature {temperature:.4f}, fitted on the eval split; probabilities in "
                 f"predictions are calibrated, `logits` are raw)", "",
             "| split | rows | ECE before | ECE after | Brier before | Brier after |", "|---|---:|---:|---:|---:|---:|"]
    for name in ("eval", "test"):
        m = report.get(name)
        if m:
            lines.append(f"| {name} | {m['rows']} | {m['ece_before']:.4f} | {m['ece_after']:.4f} | "
                         f"{m['brier_before']:.4f} | {m['brier_after']:.4f} |")
    _append(os.path.join(out, "classification_report.md"), lines)


def _append(path: str, lines: list[str]) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            before = f.read()
    except OSError:
        before = ""
    with atomic_write(path) as f:
        f.write(before + "\n".join(lines) + "\n")


def run_thresholds(manifest: dict) -> list:
    """A multi_label run's per-label decision thresholds (0.5 each when the run has none saved)."""
    return list(manifest.get("thresholds") or [0.5] * len(manifest["labels"]))


def over_thresholds(probs, thresholds) -> list[int]:
    """Indices of the labels whose probability is at or over their threshold (what a multi_label run predicts)."""
    return [j for j, (p, t) in enumerate(zip(probs, thresholds)) if p >= t]


def multilabel_rows(ids, gold, probs: np.ndarray, logits: np.ndarray, labels: list[str], thresholds) -> list[dict]:
    """predictions.jsonl rows of a multi_label run: the labels over their thresholds, calibrated probabilities,
    raw logits."""
    return [{"id": rid, "gold": gold[i] if gold is not None else None,
             "predicted": [labels[j] for j in over_thresholds(probs[i], thresholds)],
             "probabilities": {lab: round(float(p), 6) for lab, p in zip(labels, probs[i])},
             "logits": [round(float(z), 6) for z in logits[i]]} for i, rid in enumerate(ids)]


def regression_rows(ids, gold, scores: np.ndarray) -> list[dict]:
    """predictions.jsonl rows of a regression run: the score in the data's unit."""
    return [{"id": rid, "gold": gold[i] if gold is not None else None, "predicted": round(float(scores[i]), 6)}
            for i, rid in enumerate(ids)]


def prediction_rows(ids, logits: np.ndarray, manifest: dict) -> list[dict]:
    """``llamafactory-ext predict`` rows (no gold): as the run's predictions.jsonl, from raw logits."""
    from .saved_run import from_logits

    labels, ptype = manifest["labels"], manifest.get("problem_type", "single_label")
    values = from_logits(logits, manifest)
    if ptype == "regression":
        return [{k: v for k, v in r.items() if k != "gold"} for r in regression_rows(ids, None, values[:, 0])]
    if ptype == "multi_label":
        rows = multilabel_rows(ids, None, values, logits, labels, run_thresholds(manifest))
        return [{k: v for k, v in r.items() if k != "gold"} for r in rows]
    return [{"id": rid, "predicted": labels[int(p.argmax())],
             "probabilities": {lab: round(float(x), 6) for lab, x in zip(labels, p)},
             "logits": [round(float(z), 6) for z in logits[i]]} for i, (rid, p) in enumerate(zip(ids, values))]


def write_rows(path: str, rows: list[dict]) -> None:
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_type_outputs(out: str, data, logits: np.ndarray, manifest: dict) -> None:
    """predictions.jsonl and the report of the predicted split of a multi_label or regression run."""
    from .calibration import apply_temperature
    from .metrics import multilabel_metrics, plot_regression, regression_metrics

    title = os.path.basename(os.path.abspath(out))
    ids = [e.id for e in data.test]
    if data.problem_type == "regression":
        scores = logits[:, 0] * manifest["score_std"] + manifest["score_mean"]
        gold = [e.score for e in data.test]
        write_rows(os.path.join(out, "predictions.jsonl"), regression_rows(ids, gold, scores))
        metrics = regression_metrics(np.array(gold, dtype=float), scores)
        write_json(os.path.join(out, "regression_report.json"), metrics)
        with atomic_write(os.path.join(out, "regression_report.md")) as f:
            f.write("| rows | MAE | RMSE | Pearson | Spearman |\n|---:|---:|---:|---:|---:|\n"
                    f"| {metrics['n']} | {metrics['mae']:.4f} | {metrics['rmse']:.4f} | {metrics['pearson']:.4f} | "
                    f"{metrics['spearman']:.4f} |\n")
        plot_regression(gold, scores, os.path.join(out, "predicted_vs_true.png"), title=title)
        return
    labels, thresholds = data.labels, np.asarray(manifest["thresholds"], dtype=float)
    probs = apply_temperature(logits, float(manifest.get("temperature", 1.0)), "multi")
    y = multi_hot(data.test, labels)
    write_rows(os.path.join(out, "predictions.jsonl"),
               multilabel_rows(ids, [e.labels for e in data.test], probs, logits, labels, thresholds))
    metrics = multilabel_metrics(y, probs, thresholds, labels)
    metrics["thresholds"] = dict(zip(labels, thresholds.tolist()))
    write_json(os.path.join(out, "classification_report.json"), metrics)
    lines = ["| label | threshold | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|---:|"]
    for lab, t in zip(labels, thresholds):
        m = metrics["per_label"][lab]
        lines.append(f"| {lab} | {t:.4f} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |")
    lines += ["", "| rows | micro-F1 | macro-F1 | samples-F1 | exact match |", "|---:|---:|---:|---:|---:|",
              f"| {metrics['n']} | {metrics['micro_f1']:.4f} | {metrics['macro_f1']:.4f} | {metrics['samples_f1']:.4f} "
              f"| {metrics['exact_match']:.4f} |"]
    with atomic_write(os.path.join(out, "classification_report.md")) as f:
        f.write("\n".join(lines) + "\n")
    write_calibration(out, manifest, "multi", logits, y, data.test is not data.eval)
