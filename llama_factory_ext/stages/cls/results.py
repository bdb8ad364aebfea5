"""A cls run in LLaMA Board: the arguments of its training and evaluation runs, and its results."""

from __future__ import annotations

import json
import os
from typing import Optional

from .layout import MANIFEST


def ui_train_args(args: dict) -> dict:
    args = dict(args)
    args["packing"] = False  # the host UI always writes the key; the cls stage refuses only a true one
    args.pop("neat_packing", None)
    has_eval = bool(args.get("eval_dataset")) or (args.get("val_size") or 0) > 1e-6
    if has_eval:
        args["do_eval"] = True
        args["do_predict"] = True  # predictions, report and confusion matrix on the test (or eval) split
    return args


def ui_eval_args(args: dict, run_dirs: list[str]) -> dict:
    """Stage cls, labels instead of generated text (the label set, in order, from the trained run)."""
    args = dict(args)
    for d in run_dirs:
        labels = (_read_json(os.path.join(d, "label_map.json")) or {}).get("labels")
        ptype = (_read_json(os.path.join(d, MANIFEST)) or {}).get("problem_type", "single_label")
        if labels:
            args["cls_problem_type"] = ptype
            if ptype != "regression":
                args["label_names"] = labels
            break
    args["stage"] = "cls"
    for k in ("predict_with_generate", "max_new_tokens", "top_p", "temperature", "template"):
        args.pop(k, None)
    args["do_eval"] = True
    args["do_predict"] = True
    return args


def _read_json(path: str) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def results_markdown(output_dir: str) -> str:
    """Accuracy / macro-F1 and the confusion matrix of a finished cls run ('' if it is not one)."""
    if not os.path.isfile(os.path.join(output_dir, MANIFEST)):
        return ""
    manifest = _read_json(os.path.join(output_dir, MANIFEST)) or {}
    ptype = manifest.get("problem_type", "single_label")
    if ptype != "single_label":
        return typed_results_markdown(output_dir, manifest, ptype)
    lines = ["### Classification results (llama-factory-ext)", "", "| split | accuracy | macro-F1 | rows |",
             "|---|---:|---:|---:|"]
    found = False
    for split in ("eval", "predict"):
        m = _read_json(os.path.join(output_dir, f"{split}_results.json")) or {}
        acc, f1 = m.get(f"{split}_accuracy"), m.get(f"{split}_macro_f1")
        if acc is None and f1 is None:
            continue
        found = True
        rows = manifest.get("num_eval" if split == "eval" else "num_test") or manifest.get("num_eval", "")
        name = "eval" if split == "eval" else "test (predict)"
        lines.append(f"| {name} | {acc:.4f} | {f1:.4f} | {rows} |" if acc is not None and f1 is not None
                     else f"| {name} | {acc} | {f1} | {rows} |")
    if not found:
        lines.append("| (no evaluation: set eval_dataset in the pack section or a validation size) | | | |")
    lines += _calibration_lines(output_dir)
    matrix = confusion_table(os.path.join(output_dir, "predictions.jsonl"))
    if matrix:
        lines += ["", "**Confusion matrix** (rows: gold, columns: predicted)", "", matrix]
        png = os.path.join(output_dir, "confusion_matrix.png")
        if os.path.isfile(png):
            lines.append(f"\nPlot: `{png}`; predictions: `{os.path.join(output_dir, 'predictions.jsonl')}`")
    lines.append(f"\nClassify new texts: `llamafactory-ext predict {output_dir} --input texts.jsonl`")
    return "\n".join(lines)


def typed_results_markdown(output_dir: str, manifest: dict, ptype: str) -> str:
    """The metrics table of a multi_label or regression run, its plots and report files."""
    from .args import METRICS

    names = METRICS[ptype]
    title = "Multi-label classification" if ptype == "multi_label" else "Score regression"
    lines = [f"### {title} results (llama-factory-ext)", "", "| split | " + " | ".join(names) + " | rows |",
             "|---|" + "---:|" * (len(names) + 1)]
    found = False
    for split, name, count in (("eval", "eval", "num_eval"), ("predict", "test (predict)", "num_test")):
        m = _read_json(os.path.join(output_dir, f"{split}_results.json")) or {}
        values = [m.get(f"{split}_{k}") for k in names]
        if all(v is None for v in values):
            continue
        found = True
        cells = " | ".join(f"{v:.4f}" if isinstance(v, (int, float)) else "" for v in values)
        lines.append(f"| {name} | {cells} | {manifest.get(count, '')} |")
    if not found:
        lines.append("| (no evaluation: set eval_dataset in the pack section or a validation size) |" + " |" * (len(names) + 1))
    if ptype == "multi_label":
        lines += ["", "Per-label thresholds (tuned on eval), precision, recall and F1: "
                  f"`{os.path.join(output_dir, 'classification_report.md')}`"]
        lines += _calibration_lines(output_dir)
    else:
        lines += ["", f"Scores in the data's unit (train mean {manifest.get('score_mean', 0):.4g}, std "
                  f"{manifest.get('score_std', 1):.4g})."]
        png = os.path.join(output_dir, "predicted_vs_true.png")
        if os.path.isfile(png):
            lines.append(f"\nPlot: `{png}`")
    lines.append(f"\nPredict new texts: `llamafactory-ext predict {output_dir} --input texts.jsonl`")
    return "\n".join(lines)


def _calibration_lines(output_dir: str) -> list[str]:
    cal = _read_json(os.path.join(output_dir, "calibration.json"))
    if not cal:
        return []
    lines = ["", f"**Calibration**: temperature {cal.get('temperature', 1):.4f} (fitted on eval)", "",
             "| split | ECE before | ECE after | Brier before | Brier after |", "|---|---:|---:|---:|---:|"]
    for split in ("eval", "test"):
        m = cal.get(split)
        if isinstance(m, dict):
            lines.append(f"| {split} | {m['ece_before']:.4f} | {m['ece_after']:.4f} | {m['brier_before']:.4f} | "
                         f"{m['brier_after']:.4f} |")
    png = os.path.join(output_dir, "reliability.png")
    if os.path.isfile(png):
        lines.append(f"\nReliability diagram: `{png}`")
    return lines


def confusion_table(predictions_path: str, max_labels: int = 30) -> str:
    rows = []
    try:
        with open(predictions_path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    if r.get("gold") is not None:
                        rows.append((str(r["gold"]), str(r["predicted"])))
    except (OSError, ValueError):
        return ""
    if not rows:
        return ""
    labels = sorted({g for g, _ in rows} | {p for _, p in rows})
    if len(labels) > max_labels:
        return f"({len(labels)} labels: see confusion_matrix.png)"
    counts = {(g, p): 0 for g in labels for p in labels}
    for g, p in rows:
        counts[(g, p)] += 1
    out = ["| gold \\ predicted | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for g in labels:
        out.append(f"| **{g}** | " + " | ".join(str(counts[(g, p)]) for p in labels) + " |")
    return "\n".join(out)
