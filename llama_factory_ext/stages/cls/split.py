"""Held-out and sampled parts of cls data, stratified by label."""

from __future__ import annotations

import random

from ...api import UserError
from .records import Example


def stratified_subset(examples: list[Example], n: int, seed: int) -> list[Example]:
    """At most ``n`` examples (at least one per class), class shares kept, original order kept."""
    if n >= len(examples):
        return examples
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.label or "", []).append(i)
    n = max(n, len(groups))
    quota = {k: max(1, len(v) * n // len(examples)) for k, v in groups.items()}
    left = n - sum(quota.values())
    by_rest = sorted(groups, key=lambda k: (-(len(groups[k]) * n / len(examples) - quota[k]), k))
    for k in by_rest:
        if left <= 0:
            break
        if quota[k] < len(groups[k]):
            quota[k] += 1
            left -= 1
    rng = random.Random(seed)
    keep = []
    for k, idx in groups.items():
        keep += rng.sample(idx, min(quota[k], len(idx)))
    return [examples[i] for i in sorted(keep)]

def val_count(val_size: float, n: int) -> int:
    """Rows ``val_size`` holds out of ``n``: a fraction below 1 (at least one row) or a whole count."""
    if val_size >= 1:
        if val_size != int(val_size):
            raise UserError(f"key `val_size`: {val_size} is neither a fraction below 1 nor a whole number of rows")
        return int(val_size)
    return max(1, round(n * val_size))

def stratified_split(examples: list[Example], val_size: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out exactly ``val_size`` (fraction or count) of the examples, stratified by label; every label keeps at
    least one training row. Raises UserError when that is impossible (no training rows, or a label left out)."""
    n = len(examples)
    n_val = val_count(val_size, n)
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.label or "", []).append(i)
    if n_val >= n:
        raise UserError(f"key `val_size`: {val_size} holds out {n_val} of the {n} training rows and leaves none to "
                        f"train on; use a smaller val_size or give `eval_dataset`")
    if n_val > n - len(groups):
        raise UserError(f"key `val_size`: {val_size} holds out {n_val} of {n} training rows, but each of the "
                        f"{len(groups)} labels needs a training row, so at most {n - len(groups)} can be held out; use a "
                        f"smaller val_size or give `eval_dataset`")
    # largest remainder, each label capped at all its rows but one
    share = {k: n_val * len(v) / n for k, v in groups.items()}
    quota = {k: min(int(share[k]), len(v) - 1) for k, v in groups.items()}
    order = sorted(groups, key=lambda k: (-(share[k] - int(share[k])), -len(groups[k]), k))
    left = n_val - sum(quota.values())
    while left > 0:
        for k in order:
            if left and quota[k] < len(groups[k]) - 1:
                quota[k] += 1
                left -= 1
    rng = random.Random(seed)
    held = set()
    for k, idx in groups.items():
        held.update(rng.sample(idx, quota[k]))
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]
