"""Temperature scaling of a classifier's logits and the calibration measures of its probabilities.

``kind`` is ``"single"`` (softmax over the labels; targets: the gold label's index per row) or ``"multi"`` (one
sigmoid per label; targets: 0/1 [rows, labels], one temperature shared by all labels).

- ``fit_temperature`` minimises the mean NLL (single) or binary cross-entropy (multi) of ``logits / T`` over
  T in [0.01, 100] (the loss is convex in 1/T: a bounded one-dimensional search finds its minimum); it returns 1.0
  when no T does better than 1 on the fit rows.
- ``ece``: expected calibration error on ``bins`` equal-width bins. Single: the top label's probability against
  whether it is right. Multi: every row x label probability against its 0/1 target.
- ``brier``: single: mean over rows of the summed squared error against the one-hot target (0 best, 2 worst);
  multi: mean squared error over every row x label.
"""

from __future__ import annotations

import os

T_MIN, T_MAX = 0.01, 100.0
KINDS = ("single", "multi")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")


def _inputs(values, targets, kind: str, what: str):
    """(float [n, k], targets: int [n] for single, bool [n, k] for multi), checked."""
    import numpy as np

    _check_kind(kind)
    z = np.asarray(values, dtype=float)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"{what} must be [rows, labels] with at least one of each; got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{what} has NaN or infinite values")
    y = np.asarray(targets)
    if kind == "single":
        if y.shape != (z.shape[0],):
            raise ValueError(f"targets must be one label index per row ({z.shape[0]}); got shape {y.shape}")
        if y.dtype.kind == "f" and not np.all(y == np.round(y)) or y.dtype.kind not in "iuf":
            raise ValueError("targets must be integer label indices")
        y = y.astype(np.int64)
        if y.min() < 0 or y.max() >= z.shape[1]:
            raise ValueError(f"targets must lie in 0..{z.shape[1] - 1}; got {int(y.min())}..{int(y.max())}")
        return z, y
    if y.shape != z.shape:
        raise ValueError(f"targets must have the shape of {what} {z.shape}; got {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("targets must hold 0/1 (or booleans) only")
    return z, y.astype(bool)


def _loss(z, y, kind: str, beta: float) -> float:
    """Mean NLL (single) or binary cross-entropy (multi) of ``z * beta``; stable for any finite logits."""
    import numpy as np

    with np.errstate(over="ignore", under="ignore"):
        s = z * beta
        if kind == "single":
            top = s.max(1)
            lse = top + np.log(np.exp(s - top[:, None]).sum(1))
            return float((lse - s[np.arange(len(y)), y]).mean())
        return float((np.logaddexp(0.0, s) - np.where(y, s, 0.0)).mean())


def fit_temperature(logits, targets, kind: str) -> float:
    """The temperature T > 0 minimising the loss of ``logits / T`` on these rows (see the module's docstring)."""
    import math

    from scipy.optimize import minimize_scalar

    z, y = _inputs(logits, targets, kind, "logits")
    if kind == "single" and z.shape[1] == 1:
        return 1.0  # one label: its probability is 1 at every temperature
    res = minimize_scalar(lambda u: _loss(z, y, kind, math.exp(-u)), bounds=(math.log(T_MIN), math.log(T_MAX)),
                          method="bounded", options={"xatol": 1e-5})
    t = float(math.exp(res.x))
    return t if _loss(z, y, kind, 1.0 / t) < _loss(z, y, kind, 1.0) else 1.0


def apply_temperature(logits, T: float, kind: str):
    """Probabilities of ``logits / T``: softmax over each row (single) or a sigmoid per entry (multi)."""
    import numpy as np

    _check_kind(kind)
    if not (isinstance(T, (int, float)) and np.isfinite(T) and T > 0):
        raise ValueError(f"temperature must be a positive number; got {T!r}")
    z = np.asarray(logits, dtype=float)
    if z.ndim != 2:
        raise ValueError(f"logits must be [rows, labels]; got shape {z.shape}")
    with np.errstate(over="ignore", under="ignore"):  # logits near the float limit: exp(-inf) is the right 0
        s = z / float(T)
        if kind == "single":
            if s.size == 0:
                return s.copy()
            e = np.exp(s - s.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)
        return np.exp(-np.logaddexp(0.0, -s))  # sigmoid without overflow


def _confidence(probs, targets, kind: str):
    """Flat (probability, outcome 0/1) pairs that calibration is judged on."""
    p, y = _inputs(probs, targets, kind, "probs")
    if p.min() < 0 or p.max() > 1:
        raise ValueError("probs must lie in [0, 1]")
    if kind == "single":
        return p.max(1), (p.argmax(1) == y).astype(float)
    return p.ravel(), y.ravel().astype(float)


def reliability_bins(probs, targets, kind: str, bins: int = 15):
    """(mean confidence, observed frequency, count) per equal-width bin of [0, 1]; empty bins hold 0."""
    import numpy as np

    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins!r}")
    conf, hit = _confidence(probs, targets, kind)
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins).astype(float)
    safe = np.maximum(count, 1)
    return np.bincount(idx, conf, bins) / safe, np.bincount(idx, hit, bins) / safe, count


def ece(probs, targets, kind: str, bins: int = 15) -> float:
    """Expected calibration error: the count-weighted mean |confidence - frequency| over the bins."""
    import numpy as np

    conf, freq, count = reliability_bins(probs, targets, kind, bins)
    return float((count * np.abs(conf - freq)).sum() / count.sum())


def brier(probs, targets, kind: str) -> float:
    """Brier score (see the module's docstring)."""
    import numpy as np

    p, y = _inputs(probs, targets, kind, "probs")
    if kind == "single":
        onehot = np.zeros_like(p)
        onehot[np.arange(len(y)), y] = 1.0
        return float(((p - onehot) ** 2).sum(1).mean())
    return float(((p - y) ** 2).mean())


def calibrate(logits, targets, kind: str, bins: int = 15) -> dict:
    """Fit the temperature on these rows and measure it: {temperature, ece_before, ece_after, brier_before,
    brier_after, rows} (before: T = 1)."""
    T = fit_temperature(logits, targets, kind)
    before, after = apply_temperature(logits, 1.0, kind), apply_temperature(logits, T, kind)
    return {"temperature": T, "ece_before": ece(before, targets, kind, bins), "ece_after": ece(after, targets, kind, bins),
            "brier_before": brier(before, targets, kind), "brier_after": brier(after, targets, kind), "rows": len(before)}


def plot_reliability(before_probs, after_probs, targets, kind: str, path, title: str = "", bins: int = 15) -> None:
    """Reliability diagram (PNG): observed frequency against confidence per bin, before and after temperature
    scaling, with the diagonal of perfect calibration, ECE in the legend and the rows per bin below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ...safeio import atomic_path

    curves = [(name, reliability_bins(p, targets, kind, bins), ece(p, targets, kind, bins), colour)
              for name, p, colour in (("before", before_probs, "#c0392b"), ("after (temperature)", after_probs, "#2e86c1"))]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.6, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle="--", label="perfect calibration")
    width = 1.0 / bins
    centres = (np.arange(bins) + 0.5) * width
    for i, (name, (conf, freq, count), e, colour) in enumerate(curves):
        seen = count > 0
        ax.plot(conf[seen], freq[seen], marker="o", markersize=4, color=colour, label=f"{name}: ECE {e:.4f}")
        hist.bar(centres + (i - 0.5) * width / 2, count, width=width / 2, color=colour, alpha=0.8)
    what = "top label" if kind == "single" else "every row x label"
    ax.set_ylabel("observed frequency" if kind == "multi" else "accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="best", fontsize=8)
    ax.set_title((f"{title}\n" if title else "") + f"reliability ({what}, {bins} bins)", fontsize=10)
    hist.set_yscale("log")
    hist.set_ylabel("count (log)")
    hist.set_xlabel("predicted probability" if kind == "multi" else "confidence (top label's probability)")
    fig.tight_layout()
    try:
        with atomic_path(os.fspath(path)) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
