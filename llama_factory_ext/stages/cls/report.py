"""Prediction outputs: predictions.jsonl, classification report (JSON + Markdown), confusion matrix PNG."""

from __future__ import annotations

import json
import os

import numpy as np

from ...safeio import atomic_path, atomic_write, write_json


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def write_predictions(path: str, ids, gold, probs: np.ndarray, labels: list[str], logits=None) -> None:
    """predictions.jsonl of a single_label run: the top label, the (calibrated) probabilities and the raw logits."""
    with atomic_write(path) as f:
        for i, rid in enumerate(ids):
            row = {
                "id": rid,
                "gold": gold[i] if gold is not None else None,
                "predicted": labels[int(probs[i].argmax())],
                "probabilities": {lab: round(float(p), 6) for lab, p in zip(labels, probs[i])},
            }
            if logits is not None:
                row["logits"] = [round(float(z), 6) for z in logits[i]]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_report(output_dir: str, gold_ids: np.ndarray, pred_ids: np.ndarray, labels: list[str], title: str = "") -> dict:
    """Per-class precision/recall/F1/support as JSON and Markdown, plus confusion_matrix.png."""
    from sklearn.metrics import classification_report, confusion_matrix

    idx = list(range(len(labels)))
    report = classification_report(gold_ids, pred_ids, labels=idx, target_names=labels, output_dict=True, zero_division=0)
    write_json(os.path.join(output_dir, "classification_report.json"), report)
    lines = ["| label | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|"]
    for name, row in report.items():
        if isinstance(row, dict):
            lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1-score']:.4f} | {int(row['support'])} |")
        else:
            lines.append(f"| {name} | | | {row:.4f} | {len(gold_ids)} |")
    with atomic_write(os.path.join(output_dir, "classification_report.md")) as f:
        f.write("\n".join(lines) + "\n")
    matrix = confusion_matrix(gold_ids, pred_ids, labels=idx)
    plot_confusion(matrix, labels, os.path.join(output_dir, "confusion_matrix.png"), title=title)
    return report


def plot_confusion(matrix: np.ndarray, labels: list[str], path: str, title: str = "") -> None:
    """Counts (annotated up to 20 labels) with a colour bar, title and accuracy; from 21 labels a second,
    row-normalised panel (recall per gold label) that stays readable at 32-51 labels. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(labels)
    n = int(matrix.sum())
    acc = float(np.trace(matrix)) / n if n else 0.0
    head = f"{title}: " if title else ""
    caption = f"{head}confusion matrix, {n:,} rows, accuracy {acc:.1%}"
    tick = 10 if k <= 10 else 8
    normalised = k > 20
    side = max(4.5, min(22.0, 0.3 * k + 3))
    panels = 2 if normalised else 1
    fig, axes = plt.subplots(1, panels, figsize=(side * panels + 1.2 * panels, side + 0.6), squeeze=False)
    views = [(matrix, "counts", "d")]
    if normalised:
        rows = matrix.sum(1, keepdims=True)
        views.append((np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0),
                      "row-normalised: % of each gold label (diagonal = recall; cells >= 10 % labelled)", ".2f"))
    for ax, (values, name, fmt) in zip(axes[0], views):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1.0 if fmt == ".2f" else None, interpolation="nearest")
        ax.set_xticks(range(k), labels, rotation=90, fontsize=tick)
        ax.set_yticks(range(k), labels, fontsize=tick)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("gold label")
        ax.set_title(name, fontsize=10)
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label("share of gold rows" if fmt == ".2f" else "rows")
        peak = values.max() or 1
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                if fmt == ".2f" and v >= 0.1:  # many labels: percentages of the gold row, 10 % and up
                    ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if v > 0.5 else "black")
                elif fmt == "d" and k <= 20 and v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                            color="white" if v > peak / 2 else "black")
    fig.suptitle(caption, fontsize=16 if normalised else 12)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
