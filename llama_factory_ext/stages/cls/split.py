"""Held-out and sampled parts of cls data, stratified by label."""

from __future__ import annotations

import random

from ...api import UserError
from .records import Example


def stratified_subset(examples: list[Example], n: int, seed: int, problem_type: str = "single_label") -> list[Example]:
    """At most ``n`` examples, original order kept. single_label: at least one per class, class shares kept;
    multi_label: each label's share kept (iterative stratification); regression: score quantiles kept."""
    if n >= len(examples):
        return examples
    if problem_type == "multi_label":
        dropped = multilabel_held_out([ex.labels or [] for ex in examples], len(examples) - n, seed)
        return [ex for i, ex in enumerate(examples) if i not in dropped]
    if problem_type == "regression":
        bins = score_bins([ex.score for ex in examples], n_bins=min(n, len(examples) // 2))
        kept = _held_by_group(_group(bins), n, seed, keep_one=False, random_ties=True)
        return [ex for i, ex in enumerate(examples) if i in kept]
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

def stratified_split(examples: list[Example], val_size: float, seed: int,
                     problem_type: str = "single_label") -> tuple[list[Example], list[Example]]:
    """Hold out exactly ``val_size`` (fraction or count) of the examples, stratified by the problem type, order kept.

    single_label: by label, every label keeps at least one training row. multi_label: iterative stratification
    (:func:`multilabel_held_out`), each label's rows shared in proportion and kept on at least one training row
    where its rows allow. regression: by quantile bins of the score (:func:`score_bins`). Raises UserError when a
    side would be empty (or, single_label, a label would have no training row)."""
    n = len(examples)
    n_val = val_count(val_size, n)
    if n_val >= n:
        raise UserError(f"key `val_size`: {val_size} holds out {n_val} of the {n} training rows and leaves none to "
                        f"train on; use a smaller val_size or give `eval_dataset`")
    if problem_type == "multi_label":
        held = multilabel_held_out([ex.labels or [] for ex in examples], n_val, seed)
    elif problem_type == "regression":
        bins = score_bins([ex.score for ex in examples], n_bins=min(n_val, n // 2))
        held = _held_by_group(_group(bins), n_val, seed, keep_one=False, random_ties=True)
    else:
        groups = _group([ex.label or "" for ex in examples])
        if n_val > n - len(groups):
            raise UserError(f"key `val_size`: {val_size} holds out {n_val} of {n} training rows, but each of the "
                            f"{len(groups)} labels needs a training row, so at most {n - len(groups)} can be held out; "
                            f"use a smaller val_size or give `eval_dataset`")
        held = _held_by_group(groups, n_val, seed, keep_one=True)
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def _group(keys: list) -> dict:
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return groups


def _held_by_group(groups: dict, n_val: int, seed: int, keep_one: bool, random_ties: bool = False) -> set[int]:
    """``n_val`` indices drawn from the groups in proportion (largest remainder); ``keep_one``: each group keeps one
    index out (the caller has checked that ``n_val`` allows it); ``random_ties``: equal remainders are served in a
    seeded random order (else larger groups, then by key: equal score bins would favour the low ones)."""
    n = sum(len(v) for v in groups.values())
    cap = {k: len(v) - 1 if keep_one else len(v) for k, v in groups.items()}
    share = {k: n_val * len(v) / n for k, v in groups.items()}
    quota = {k: min(int(share[k]), cap[k]) for k in groups}
    rng = random.Random(seed)
    tie = {k: rng.random() if random_ties else 0.0 for k in groups}
    order = sorted(groups, key=lambda k: (-(share[k] - int(share[k])), tie[k], -len(groups[k]), str(k)))
    left = n_val - sum(quota.values())
    while left > 0:
        for k in order:
            if left and quota[k] < cap[k]:
                quota[k] += 1
                left -= 1
    held: set[int] = set()
    for k, idx in groups.items():
        held.update(rng.sample(idx, quota[k]))
    return held


def score_bins(scores: list, n_bins: int) -> list[int]:
    """The quantile bin (0 .. n_bins - 1) of each score: rows sorted by score cut into ``n_bins`` runs of equal
    size (equal scores may straddle two bins; a missing score counts as the lowest)."""
    n = len(scores)
    n_bins = max(1, min(n_bins, n))
    order = sorted(range(n), key=lambda i: (scores[i] is not None, scores[i] if scores[i] is not None else 0.0, i))
    bins = [0] * n
    for rank, i in enumerate(order):
        bins[i] = rank * n_bins // n
    return bins


def multilabel_held_out(label_sets: list[list[str]], n_val: int, seed: int) -> set[int]:
    """Indices of ``n_val`` rows held out of a multi-label set by iterative stratification (Sechidis, Tsoumakas and
    Vlahavas, 2011), sizes exact.

    The rarest label still unplaced goes first: each of its rows (in a seeded random order) goes to the side that
    wants the most of that label, then the side that wants the most rows, and no side past its size. Rows without
    a label fill what is left. Then a label left without a training row takes one back, swapped with a held-out
    row whose labels all keep a training row."""
    rng = random.Random(seed)
    n = len(label_sets)
    want_rows = [n - n_val, n_val]  # train, held out
    counts: dict[str, int] = {}
    for labs in label_sets:
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
    want = {lab: [c * want_rows[0] / n, c * want_rows[1] / n] for lab, c in counts.items()}
    side: list = [None] * n
    by_label: dict[str, list[int]] = {}
    for i, labs in enumerate(label_sets):
        for lab in labs:
            by_label.setdefault(lab, []).append(i)
    remaining = dict(counts)

    def place(i: int, s: int) -> None:
        side[i] = s
        want_rows[s] -= 1
        for lab in label_sets[i]:
            want[lab][s] -= 1
            remaining[lab] -= 1

    while any(remaining.values()):
        lab = min((k for k, v in remaining.items() if v), key=lambda k: (remaining[k], k))
        rows = [i for i in by_label[lab] if side[i] is None]
        rng.shuffle(rows)
        for i in rows:
            open_sides = [s for s in (0, 1) if want_rows[s] > 0]
            s = max(open_sides, key=lambda s: (want[lab][s], want_rows[s], -s))
            place(i, s)
    empty = [i for i in range(n) if side[i] is None]
    rng.shuffle(empty)
    for i in empty:
        place(i, 0 if want_rows[0] > 0 else 1)
    _keep_a_training_row(label_sets, side, rng)
    return {i for i in range(n) if side[i] == 1}


def _keep_a_training_row(label_sets: list[list[str]], side: list, rng: random.Random) -> None:
    """Swap rows so that each label keeps a training row where one swap allows it (sizes unchanged)."""
    train_count: dict[str, int] = {}
    for i, labs in enumerate(label_sets):
        if side[i] == 0:
            for lab in labs:
                train_count[lab] = train_count.get(lab, 0) + 1
    missing = sorted({lab for labs in label_sets for lab in labs} - set(train_count))
    for lab in missing:
        if train_count.get(lab):
            continue  # a previous swap brought it back
        held = [i for i, labs in enumerate(label_sets) if side[i] == 1 and lab in labs]
        held.sort(key=lambda i: len(label_sets[i]))
        # a training row whose labels all keep another training row, the fewest labels first
        free = [j for j, labs in enumerate(label_sets) if side[j] == 0 and all(train_count[x] > 1 for x in labs)]
        if not held or not free:
            continue
        rng.shuffle(free)
        free.sort(key=lambda j: len(label_sets[j]))
        i, j = held[0], free[0]
        side[i], side[j] = 0, 1
        for x in label_sets[i]:
            train_count[x] = train_count.get(x, 0) + 1
        for x in label_sets[j]:
            train_count[x] -= 1
