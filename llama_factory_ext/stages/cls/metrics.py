"""Metrics of the multi-label and regression problem types (numpy in, plain floats / dicts out) and the
per-label decision thresholds tuned on the eval split.

Conventions (documented in docs/classification.md):
- multi-label: a label is predicted when its probability is ``>= threshold``. A label's precision / recall / F1 is
  0 where undefined (no prediction / no support), as sklearn's ``zero_division=0``; a row with no gold and no
  predicted label has samples-F1 1 (both say "none applies").
- regression: Pearson and Spearman are 0.0 where undefined (fewer than 2 rows, or the truth or the predictions
  constant), never NaN, so they stay usable as ``metric_for_best_model``.
"""

from __future__ import annotations

import math
import os


def _finite(a, name: str):
    import numpy as np

    if a.size == 0:
        raise ValueError(f"{name} is empty: no rows to score")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has NaN or infinite values")
    return a


def _multilabel_inputs(y_true, probs):
    import numpy as np

    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=float)
    if y.ndim != 2 or p.ndim != 2 or y.shape != p.shape:
        raise ValueError(f"y_true and probs must both be [rows, labels]; got shapes {y.shape} and {p.shape}")
    _finite(p, "probs")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 (or booleans) only")
    return y.astype(bool), p


def multilabel_metrics(y_true, probs, thresholds=None, labels=None) -> dict:
    """micro_f1, macro_f1, samples_f1, exact_match, n and per_label {label: {precision, recall, f1, support}} of
    ``probs >= thresholds`` (one threshold per label; a scalar or None means the same for all, default 0.5)."""
    import numpy as np

    y, p = _multilabel_inputs(y_true, probs)
    n, k = y.shape
    t = np.full(k, 0.5) if thresholds is None else np.broadcast_to(np.asarray(thresholds, dtype=float), (k,))
    labels = [str(j) for j in range(k)] if labels is None else list(labels)
    if len(labels) != k:
        raise ValueError(f"{len(labels)} label names for {k} columns")
    pred = p >= t
    tp = (pred & y).sum(0)
    fp = (pred & ~y).sum(0)
    fn = (~pred & y).sum(0)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    row_tp = (pred & y).sum(1)
    row_den = pred.sum(1) + y.sum(1)
    samples = np.where(row_den > 0, 2 * row_tp / np.maximum(row_den, 1), 1.0)
    micro_den = 2 * tp.sum() + fp.sum() + fn.sum()
    per_label = {lab: {"precision": float(pr), "recall": float(rc), "f1": float(f), "support": int(s)}
                 for lab, pr, rc, f, s in zip(labels, _ratio(tp, tp + fp), _ratio(tp, tp + fn), f1, y.sum(0))}
    return {
        "micro_f1": float(2 * tp.sum() / micro_den) if micro_den else 0.0,
        "macro_f1": float(f1.mean()),
        "samples_f1": float(samples.mean()),
        "exact_match": float((pred == y).all(1).mean()),
        "n": int(n),
        "per_label": per_label,
    }


def _ratio(num, den):
    import numpy as np

    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def tune_thresholds(y_true, probs):
    """Per-label thresholds that maximise each label's F1 on these rows (``probs >= t`` predicts the label).

    The threshold sits halfway between the lowest probability kept and the next lower one (so the rule splits
    the eval rows exactly as found); ties in F1 keep the higher threshold (fewer predictions); a label without a
    positive row keeps 0.5.
    """
    import numpy as np

    y, p = _multilabel_inputs(y_true, probs)
    n, k = y.shape
    out = np.full(k, 0.5)
    for j in range(k):
        pos = int(y[:, j].sum())
        if pos == 0:
            continue
        order = np.argsort(-p[:, j], kind="stable")
        ps, ys = p[order, j], y[order, j]
        tp = np.cumsum(ys)
        ends = np.flatnonzero(np.r_[ps[1:] != ps[:-1], True])  # last index of each group of equal probabilities
        f1 = 2 * tp[ends] / (pos + ends + 1)
        best = int(np.argmax(f1))
        i = ends[best]
        lower = ps[i + 1] if i + 1 < n else 0.0
        out[j] = (ps[i] + lower) / 2 if lower < ps[i] else ps[i]
    return out


def regression_metrics(y_true, y_pred) -> dict:
    """mae, rmse, pearson, spearman and n; a correlation is 0.0 where undefined (see the module's docstring)."""
    import numpy as np

    y = np.asarray(y_true, dtype=float)
    f = np.asarray(y_pred, dtype=float)
    if y.ndim != 1 or y.shape != f.shape:
        raise ValueError(f"y_true and y_pred must both be [rows]; got shapes {y.shape} and {f.shape}")
    _finite(y, "y_true")
    _finite(f, "y_pred")
    err = np.abs(f - y)
    top = float(err.max()) or 1.0  # scaled so that squaring cannot overflow
    return {"mae": float(err.mean()), "rmse": top * math.sqrt(float(((err / top) ** 2).mean())),
            "pearson": _pearson(y, f), "spearman": _pearson(_ranks(y), _ranks(f)), "n": int(y.size)}


def _pearson(x, y) -> float:
    import numpy as np

    if x.size < 2:
        return 0.0
    scale_x, scale_y = np.abs(x).max() or 1.0, np.abs(y).max() or 1.0  # no overflow for huge values
    dx, dy = x / scale_x, y / scale_y
    dx, dy = dx - dx.mean(), dy - dy.mean()
    sx, sy = float(np.sqrt((dx * dx).sum())), float(np.sqrt((dy * dy).sum()))
    if sx == 0.0 or sy == 0.0 or sx < 1e-12 * math.sqrt(x.size) or sy < 1e-12 * math.sqrt(y.size):
        return 0.0  # constant (up to rounding): no correlation is measurable
    return float(np.clip((dx * dy).sum() / (sx * sy), -1.0, 1.0))


def _ranks(a):
    """Ranks with ties averaged (as scipy.stats.rankdata)."""
    import numpy as np

    order = np.argsort(a, kind="stable")
    s = a[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each group of ties
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def plot_regression(y_true, y_pred, path, title: str = "") -> None:
    """Predicted vs true (PNG): points (a density map above 5,000 rows), the y = x line and the metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ...safeio import atomic_path

    y = np.asarray(y_true, dtype=float)
    f = np.asarray(y_pred, dtype=float)
    m = regression_metrics(y, f)
    lo, hi = float(min(y.min(), f.min())), float(max(y.max(), f.max()))
    pad = (hi - lo) * 0.03 or 0.5
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    if y.size > 5000:
        hb = ax.hexbin(y, f, gridsize=60, bins="log", cmap="Blues", mincnt=1, extent=(lo - pad, hi + pad, lo - pad, hi + pad))
        fig.colorbar(hb, ax=ax, fraction=0.046, pad=0.03).set_label("rows (log scale)")
    else:
        ax.scatter(y, f, s=8, alpha=max(0.15, min(0.8, 300 / y.size)), color="#2e86c1", edgecolors="none")
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=0.8, label="predicted = true")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("true value")
    ax.set_ylabel("predicted value")
    ax.legend(loc="upper left", fontsize=8)
    head = f"{title}\n" if title else ""
    ax.set_title(f"{head}{m['n']:,} rows: MAE {m['mae']:.3f}, RMSE {m['rmse']:.3f}, "
                 f"Pearson {m['pearson']:.3f}, Spearman {m['spearman']:.3f}", fontsize=9)
    fig.tight_layout()
    with atomic_path(os.fspath(path)) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
