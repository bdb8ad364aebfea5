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


def write_predictions(path: str, ids, gold, probs: np.ndarray, labels: list[str]) -> None:
    with atomic_write(path) as f:
        for i, rid in enumerate(ids):
            row = {
                "id": rid,
                "gold": gold[i] if gold is not None else None,
                "predicted": labels[int(probs[i].argmax())],
                "probabilities": {lab: round(float(p), 6) for lab, p in zip(labels, probs[i])},
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_report(output_dir: str, gold_ids: np.ndarray, pred_ids: np.ndarray, labels: list[str]) -> dict:
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
    plot_confusion(matrix, labels, os.path.join(output_dir, "confusion_matrix.png"))
    return report


def plot_confusion(matrix: np.ndarray, labels: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(labels)
    size = max(4.0, min(24.0, 0.35 * k + 2))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=90, fontsize=max(4, 10 - k // 10))
    ax.set_yticks(range(k), labels, fontsize=max(4, 10 - k // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
