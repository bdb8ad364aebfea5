"""TF-IDF baselines of the multi-label and regression problem types on the real Debian data, and temperature
scaling measured on real classifier scores; writes docs/bench_baseline_types.json and .md.

    PYTHONPATH=. python benchmarks/bench_baseline_types.py [--data ../shared/data] [--out docs] [--plots DIR]
        [--only tags,size,sections,speed] [--platt]

- debian_tags (multi-label): TF-IDF + one-vs-rest LinearSVC(C=0.5) fitted on train, scored on validation (labels
  where the margin is > 0). Per-label thresholds on the Platt probabilities tuned on the even validation rows and
  applied to the odd ones; a shared temperature on the raw margins fitted on the even rows, ECE / Brier on the odd.
- debian_size (regression): TF-IDF + Ridge(alpha=1) fitted on train, scored on validation.
- debian_sections (single-label): TF-IDF + LinearSVC(C=0.5) margins (with --platt also the baseline's Platt
  probabilities); temperature fitted on validation, ECE / Brier before and after on test.
- speed: the calibration functions on 50,000 x 68 synthetic logits.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from llama_factory_ext.safeio import atomic_write, write_json
from llama_factory_ext.stages.cls import baseline as B
from llama_factory_ext.stages.cls import calibration as CAL
from llama_factory_ext.stages.cls import metrics as M

REPO = Path(__file__).resolve().parents[1]

REFERENCE = {"tags": {"micro_f1": 0.676, "macro_f1": 0.456, "samples_f1": 0.688, "exact_match": 0.480},
             "size": {"mae": 0.435, "rmse": 0.579, "pearson": 0.769, "spearman": 0.749, "mean_predictor_mae": 0.733}}
HEADLINE = ("micro_f1", "macro_f1", "samples_f1", "exact_match")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def calibration_of(scores_fit, y_fit, scores_eval, y_eval, kind: str, plot=None, title: str = "") -> dict:
    t0 = time.time()
    T = CAL.fit_temperature(scores_fit, y_fit, kind)
    fit_s = time.time() - t0
    before = CAL.apply_temperature(scores_eval, 1.0, kind)
    after = CAL.apply_temperature(scores_eval, T, kind)
    if plot:
        CAL.plot_reliability(before, after, y_eval, kind, plot, title=title)
    return {"temperature": round(T, 4), "fit_seconds": round(fit_s, 2), "rows_fit": int(len(scores_fit)),
            "rows_eval": int(len(scores_eval)),
            "ece_before": CAL.ece(before, y_eval, kind), "ece_after": CAL.ece(after, y_eval, kind),
            "brier_before": CAL.brier(before, y_eval, kind), "brier_after": CAL.brier(after, y_eval, kind)}


def bench_tags(data: Path, plots) -> dict:
    import numpy as np

    train, val = read(data / "debian_tags" / "train.jsonl"), read(data / "debian_tags" / "validation.jsonl")
    labels = sorted({lab for r in train for lab in r["labels"]})
    t0 = time.time()
    predicted, probs, margins = B.fit_predict_multilabel([r["text"] for r in train], [r["labels"] for r in train],
                                                         [r["text"] for r in val], labels, "svm", 0.5, with_scores=True)
    seconds = time.time() - t0
    y = B.label_matrix([r["labels"] for r in val], labels)
    m = M.multilabel_metrics(y, B.label_matrix(predicted, labels), 0.5, labels)
    platt = M.multilabel_metrics(y, probs, 0.5, labels)
    even, odd = np.arange(len(val)) % 2 == 0, np.arange(len(val)) % 2 == 1
    t = M.tune_thresholds(y[even], probs[even])
    at_half = M.multilabel_metrics(y[odd], probs[odd], 0.5, labels)
    tuned = M.multilabel_metrics(y[odd], probs[odd], t, labels)
    cal = calibration_of(margins[even], y[even], margins[odd], y[odd], "multi",
                         plots and Path(plots) / "reliability_tags_svm_margins.png", "debian_tags: LinearSVC margins")
    cal["platt_ece"] = CAL.ece(probs[odd], y[odd], "multi")
    cal["platt_brier"] = CAL.brier(probs[odd], y[odd], "multi")
    pick = lambda d: {k: d[k] for k in HEADLINE}  # noqa: E731
    return {"rows_train": len(train), "rows_validation": len(val), "labels": len(labels), "seconds": round(seconds, 1),
            "model": "TF-IDF (word 1-2-grams, sublinear tf) + one-vs-rest LinearSVC(C=0.5), label where margin > 0",
            "validation": pick(m), "platt_at_0.5": pick(platt),
            "thresholds_odd_rows": {"at_0.5": pick(at_half), "tuned_on_even_rows": pick(tuned),
                                    "threshold_range": [round(float(t.min()), 3), round(float(t.max()), 3)]},
            "calibration_margins_even_fit_odd_eval": cal, "reference": REFERENCE["tags"]}


def bench_size(data: Path, plots) -> dict:
    import numpy as np

    train, val = read(data / "debian_size" / "train.jsonl"), read(data / "debian_size" / "validation.jsonl")
    t0 = time.time()
    pred = B.fit_predict_regression([r["text"] for r in train], [r["score"] for r in train], [r["text"] for r in val], 1.0)
    seconds = time.time() - t0
    gold = np.array([r["score"] for r in val], dtype=float)
    m = M.regression_metrics(gold, pred)
    mean = float(np.mean([r["score"] for r in train]))
    if plots:
        M.plot_regression(gold, pred, Path(plots) / "regression_size_ridge.png", "debian_size: TF-IDF + Ridge (validation)")
    return {"rows_train": len(train), "rows_validation": len(val), "seconds": round(seconds, 1),
            "model": "TF-IDF (word 1-2-grams, sublinear tf) + Ridge(alpha=1)",
            "validation": {k: m[k] for k in ("mae", "rmse", "pearson", "spearman")},
            "mean_predictor_mae": float(np.abs(gold - mean).mean()), "reference": REFERENCE["size"]}


def bench_sections(data: Path, plots, platt: bool = False) -> dict:
    import numpy as np
    from sklearn.svm import LinearSVC

    rows = {s: read(data / "debian_sections" / f"{s}.jsonl") for s in ("train", "validation", "test")}
    t0 = time.time()
    x_train, x_rest = B._tfidf([r["text"] for r in rows["train"]],
                               [r["text"] for r in rows["validation"] + rows["test"]])
    model = LinearSVC(C=0.5, random_state=0).fit(x_train, [r["label"] for r in rows["train"]])
    scores = model.decision_function(x_rest)
    seconds = time.time() - t0
    classes = list(model.classes_)
    y = np.array([classes.index(r["label"]) for r in rows["validation"] + rows["test"]])
    nv = len(rows["validation"])
    cal = calibration_of(scores[:nv], y[:nv], scores[nv:], y[nv:], "single",
                         plots and Path(plots) / "reliability_sections_svm_margins.png", "debian_sections: LinearSVC margins")
    out = {"rows_train": len(rows["train"]), "rows_validation": nv, "rows_test": len(y) - nv, "labels": len(classes),
           "seconds": round(seconds, 1), "model": "TF-IDF (word 1-2-grams, sublinear tf) + LinearSVC(C=0.5), softmax of margins",
           "test_accuracy": float((scores[nv:].argmax(1) == y[nv:]).mean()),
           "calibration_validation_fit_test_eval": cal}
    if platt:  # the probabilities `llamafactory-ext baseline` writes: temperature on their logarithms
        t0 = time.time()
        probs, platt_classes = B._platt(x_train, [r["label"] for r in rows["train"]], x_rest, 0.5)
        probs = probs[:, [platt_classes.index(c) for c in classes]]
        logp = np.log(np.clip(probs, 1e-12, 1.0))
        out["platt_seconds"] = round(time.time() - t0, 1)
        out["calibration_platt_validation_fit_test_eval"] = calibration_of(
            logp[:nv], y[:nv], logp[nv:], y[nv:], "single",
            plots and Path(plots) / "reliability_sections_svm_platt.png", "debian_sections: LinearSVC + Platt")
    return out


def bench_speed(data: Path, plots) -> dict:
    """Seconds of the calibration functions on 50,000 x 68 synthetic logits (the size of a large eval split)."""
    import numpy as np

    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(50_000, 68))
    y_single = rng.integers(0, 68, 50_000)
    y_multi = rng.random(z.shape) < CAL.apply_temperature(z, 2.0, "multi")
    out = {"rows": 50_000, "labels": 68}
    for kind, y in (("single", y_single), ("multi", y_multi)):
        t0 = time.time()
        T = CAL.fit_temperature(z, y, kind)
        t1 = time.time()
        p = CAL.apply_temperature(z, T, kind)
        CAL.ece(p, y, kind)
        CAL.brier(p, y, kind)
        out[kind] = {"fit_temperature_seconds": round(t1 - t0, 2), "apply_ece_brier_seconds": round(time.time() - t1, 2)}
    t0 = time.time()
    M.tune_thresholds(y_multi, CAL.apply_temperature(z, 2.0, "multi"))
    out["tune_thresholds_seconds"] = round(time.time() - t0, 2)
    return out


def pct(x) -> str:
    return f"{100 * x:.1f}"


def summary(r: dict) -> list[str]:
    """What the numbers say, in a few bullets (from the same numbers as the tables)."""
    out = []
    if "tags" in r:
        t = r["tags"]
        gap = max(abs(t["validation"][k] - t["reference"][k]) for k in HEADLINE)
        h = t["thresholds_odd_rows"]
        a, b = h["at_0.5"], h["tuned_on_even_rows"]
        out.append(f"- Multi-label baseline: within {100 * gap:.1f} points of the data README's numbers. Per-label "
                   f"thresholds tuned on held-out rows move macro-F1 by {100 * (b['macro_f1'] - a['macro_f1']):+.1f} "
                   f"points and exact match by {100 * (b['exact_match'] - a['exact_match']):+.1f} (each label's F1 is "
                   "maximised on its own, while exact match scores whole rows): tune for the metric you report.")
    if "size" in r:
        s = r["size"]
        gap = max(abs(s["validation"][k] - s["reference"][k]) for k in s["validation"])
        out.append(f"- Regression baseline: within {gap:.3f} of the data README's MAE / RMSE / Pearson / Spearman.")
    if "sections" in r:
        c = r["sections"]["calibration_validation_fit_test_eval"]
        p = r["sections"].get("calibration_platt_validation_fit_test_eval")
        out.append(f"- Temperature scaling fitted on validation lowers test ECE from {c['ece_before']:.3f} to "
                   f"{c['ece_after']:.3f} on softmaxed SVM margins"
                   + (f" and from {p['ece_before']:.3f} to {p['ece_after']:.3f} on the baseline's own Platt probabilities"
                      if p else "") + "; Brier falls with it.")
    return out + [""] if out else []


def markdown(r: dict) -> str:
    env = r["environment"]
    lines = ["# TF-IDF baselines per problem type, and temperature scaling (benchmarks/bench_baseline_types.py)", "",
             f"Data: `../shared/data` (README there). {env['machine']}, {env['cpus']} CPUs shared with other jobs "
             "(seconds are upper bounds). Features as `llamafactory-ext baseline`: TfidfVectorizer(ngram_range=(1, 2), "
             "sublinear_tf=True), no min_df (the data README's reference uses min_df 2).", ""]
    lines += summary(r)
    if "tags" in r:
        t = r["tags"]
        lines += [f"## debian_tags (multi-label, {t['labels']} labels): validation, {t['rows_validation']:,} rows", "",
                  f"{t['model']}; fitted on {t['rows_train']:,} train rows in {t['seconds']} s.", "",
                  "| | micro-F1 | macro-F1 | samples-F1 | exact match % |", "|---|---:|---:|---:|---:|"]
        for name, m in (("this baseline (margin > 0)", t["validation"]), ("Platt probabilities >= 0.5", t["platt_at_0.5"]),
                        ("data README reference", t["reference"])):
            lines.append(f"| {name} | {pct(m['micro_f1'])} | {pct(m['macro_f1'])} | {pct(m['samples_f1'])} | {pct(m['exact_match'])} |")
        h = t["thresholds_odd_rows"]
        lines += ["", "Per-label thresholds (`tune_thresholds`) tuned on the even validation rows, scored on the odd ones "
                  f"(range {h['threshold_range'][0]}..{h['threshold_range'][1]}):", "",
                  "| odd rows | micro-F1 | macro-F1 | samples-F1 | exact match % |", "|---|---:|---:|---:|---:|"]
        for name, m in (("Platt >= 0.5", h["at_0.5"]), ("tuned thresholds", h["tuned_on_even_rows"])):
            lines.append(f"| {name} | {pct(m['micro_f1'])} | {pct(m['macro_f1'])} | {pct(m['samples_f1'])} | {pct(m['exact_match'])} |")
        c = t["calibration_margins_even_fit_odd_eval"]
        lines += ["", f"Temperature on the raw margins (one shared T, sigmoid BCE) fitted on the even rows: T = {c['temperature']} "
                  f"({c['fit_seconds']} s); on the odd rows ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}, "
                  f"Brier {c['brier_before']:.4f} -> {c['brier_after']:.4f} (per-label Platt: ECE {c['platt_ece']:.4f}, "
                  f"Brier {c['platt_brier']:.4f}).", ""]
    if "size" in r:
        s = r["size"]
        v, ref = s["validation"], s["reference"]
        lines += [f"## debian_size (regression, log10 installed KiB): validation, {s['rows_validation']:,} rows", "",
                  f"{s['model']}; fitted on {s['rows_train']:,} train rows in {s['seconds']} s.", "",
                  "| | MAE | RMSE | Pearson | Spearman |", "|---|---:|---:|---:|---:|",
                  f"| this baseline | {v['mae']:.3f} | {v['rmse']:.3f} | {v['pearson']:.3f} | {v['spearman']:.3f} |",
                  f"| data README reference | {ref['mae']:.3f} | {ref['rmse']:.3f} | {ref['pearson']:.3f} | {ref['spearman']:.3f} |",
                  "", f"Predicting the train mean: MAE {s['mean_predictor_mae']:.3f} (README: {ref['mean_predictor_mae']}).", ""]
    if "sections" in r:
        s = r["sections"]
        c = s["calibration_validation_fit_test_eval"]
        lines += [f"## debian_sections (single-label, {s['labels']} labels): temperature scaling", "",
                  f"{s['model']}; fitted on {s['rows_train']:,} train rows in {s['seconds']} s; test accuracy "
                  f"{pct(s['test_accuracy'])} %.", "",
                  f"Temperature fitted on validation ({s['rows_validation']:,} rows, softmax NLL): T = {c['temperature']} "
                  f"({c['fit_seconds']} s). On test ({s['rows_test']:,} rows):", "",
                  "| | ECE (15 bins) | Brier |", "|---|---:|---:|",
                  f"| softmax of margins (T = 1) | {c['ece_before']:.4f} | {c['brier_before']:.4f} |",
                  f"| after temperature | {c['ece_after']:.4f} | {c['brier_after']:.4f} |", ""]
        p = s.get("calibration_platt_validation_fit_test_eval")
        if p:
            lines += [f"The baseline's own probabilities (Platt scaling, 3 folds, {s['platt_seconds']} s more): temperature on "
                      f"their logarithms fitted on validation, T = {p['temperature']}; on test:", "",
                      "| | ECE (15 bins) | Brier |", "|---|---:|---:|",
                      f"| Platt probabilities | {p['ece_before']:.4f} | {p['brier_before']:.4f} |",
                      f"| after temperature | {p['ece_after']:.4f} | {p['brier_after']:.4f} |", ""]
    if "speed" in r:
        s = r["speed"]
        lines += [f"## Speed of the calibration functions ({s['rows']:,} x {s['labels']} synthetic logits)", "",
                  f"fit_temperature: single {s['single']['fit_temperature_seconds']} s, multi "
                  f"{s['multi']['fit_temperature_seconds']} s; apply_temperature + ece + brier: single "
                  f"{s['single']['apply_ece_brier_seconds']} s, multi {s['multi']['apply_ece_brier_seconds']} s; "
                  f"tune_thresholds (multi): {s['tune_thresholds_seconds']} s.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "docs"))
    ap.add_argument("--plots", default=None, help="folder for the reliability / regression PNGs (none by default)")
    ap.add_argument("--only", default="tags,size,sections,speed")
    ap.add_argument("--platt", action="store_true", help="sections: also the Platt probabilities (3 more fits)")
    a = ap.parse_args()
    data = Path(a.data)
    if a.plots:
        Path(a.plots).mkdir(parents=True, exist_ok=True)
    import os

    out = Path(a.out)
    previous = out / "bench_baseline_types.json"  # --only updates its parts of an earlier result
    result = json.loads(previous.read_text(encoding="utf-8")) if previous.is_file() else {}
    result["environment"] = {"machine": platform.machine(), "cpus": os.cpu_count()}
    for name, fn in (("tags", bench_tags), ("size", bench_size), ("sections", bench_sections), ("speed", bench_speed)):
        if name in a.only.split(","):
            result[name] = fn(data, a.plots, a.platt) if name == "sections" else fn(data, a.plots)
            print(json.dumps({name: result[name]}, indent=1), flush=True)
    write_json(previous, result)
    with atomic_write(out / "bench_baseline_types.md") as f:
        f.write(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
