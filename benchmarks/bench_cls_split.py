"""How well `val_size` keeps each multi-label label's share and the regression score distribution, against a
random split of the same size, on the real Debian data; writes docs/bench_cls_split.json and .md.

    PYTHONPATH=. python benchmarks/bench_cls_split.py [--data ../shared/data] [--out docs] [--seeds 5]

- multi-label (debian_tags train, and the 240-row sample of recipes/data): per label, |held-out rows - its share|;
  reported as the mean and the largest over labels.
- regression (debian_size train, and its 240-row sample): |held-out mean - full mean| and the largest gap between
  the held-out and the full deciles.
Each figure is given as the range over seeds 0..N-1, for val_size 0.1 and 0.2.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections import Counter
from pathlib import Path

from llama_factory_ext.safeio import atomic_write, write_json
from llama_factory_ext.stages.cls.records import Example
from llama_factory_ext.stages.cls.split import stratified_split, val_count

REPO = Path(__file__).resolve().parents[1]


def read(path: Path) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example(path.name, i, str(i), r["text"], None, None, labels=r.get("labels"), score=r.get("score"))
            for i, r in enumerate(rows, 1)]


def random_split(examples, n_val: int, seed: int):
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    held = set(idx[:n_val])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def label_gaps(train, val) -> dict:
    every = Counter(lab for e in train + val for lab in e.labels)
    held = Counter(lab for e in val for lab in e.labels)
    frac = len(val) / (len(train) + len(val))
    gaps = {lab: abs(held[lab] - c * frac) for lab, c in every.items()}
    over = [lab for lab, g in gaps.items() if g > 1]  # labels more than one row off their share
    return {"mean_gap": statistics.fmean(gaps.values()), "max_gap": max(gaps.values()),
            "labels_without_train_row": sum(1 for lab in every if every[lab] == held[lab]),
            "fewest_rows_over_one_row_off": min((every[lab] for lab in over), default=None),
            "largest_relative_gap": max((gaps[lab] / (every[lab] * frac) for lab in over), default=0.0)}


def score_gaps(train, val) -> dict:
    full = [e.score for e in train + val]
    held = [e.score for e in val]
    return {"mean_gap": abs(statistics.fmean(held) - statistics.fmean(full)),
            "max_decile_gap": max(abs(a - b) for a, b in zip(statistics.quantiles(held, n=10),
                                                              statistics.quantiles(full, n=10)))}


def measure(examples, ptype: str, seeds: int) -> list[dict]:
    gaps = label_gaps if ptype == "multi_label" else score_gaps
    out = []
    for val_size in (0.1, 0.2):
        ours, rand = [], []
        for seed in range(seeds):
            ours.append(gaps(*stratified_split(examples, val_size, seed, ptype)))
            rand.append(gaps(*random_split(examples, val_count(val_size, len(examples)), seed)))
        out.append({"val_size": val_size, "stratified": ours, "random": rand})
    return out


def span(values) -> str:
    lo, hi = min(values), max(values)
    fmt = "{:.4f}" if hi < 0.1 else "{:.2f}"
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def markdown(results: dict) -> str:
    """docs/bench_cls_split.md from the JSON results."""
    seeds = len(next(iter(results.values()))["splits"][0]["stratified"])
    lines = ["# `val_size` per problem type: stratified against random (benchmarks/bench_cls_split.py)", "",
             f"Ranges over seeds 0-{seeds - 1}. Multi-label: per label, |held-out rows - the label's share of them| "
             "(mean and largest over labels). Regression: |held-out mean - full mean| and the largest gap between "
             "held-out and full deciles, in the score's unit (log10 installed size).", ""]
    for name, res in results.items():
        ptype, rows = res["problem_type"], res["splits"]
        keys = ("mean_gap", "max_gap") if ptype == "multi_label" else ("mean_gap", "max_decile_gap")
        lines += [f"## {name} ({ptype}, {res['rows']:,} rows)", "",
                  f"| val_size | split | {' | '.join(keys)} |", "|---|---|" + "---:|" * len(keys)]
        for r in rows:
            for how in ("stratified", "random"):
                lines.append(f"| {r['val_size']} | {how} | "
                             + " | ".join(span([m[k] for m in r[how]]) for k in keys) + " |")
        if ptype == "multi_label":
            ms = [m for r in rows for m in r["stratified"]]
            fewest = [m["fewest_rows_over_one_row_off"] for m in ms if m["fewest_rows_over_one_row_off"]]
            lines += ["", f"Labels left without a training row by the stratified split: "
                          f"{max(m['labels_without_train_row'] for m in ms)}."]
            if fewest:
                lines.append(f"Labels more than one row off their share (stratified) have at least {min(fewest):,} rows; "
                             f"their gap is at most {100 * max(m['largest_relative_gap'] for m in ms):.1f}% of their "
                             f"held-out share (the commonest labels are placed last, when the held-out side is "
                             f"nearly full).")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "docs"))
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    data = Path(a.data)
    sets = [("debian_tags train", data / "debian_tags" / "train.jsonl", "multi_label"),
            ("debian_tags sample", REPO / "recipes/data/debian_tags_sample_train.jsonl", "multi_label"),
            ("debian_size train", data / "debian_size" / "train.jsonl", "regression"),
            ("debian_size sample", REPO / "recipes/data/debian_size_sample_train.jsonl", "regression")]
    results = {}
    for name, path, ptype in sets:
        examples = read(path)
        results[name] = {"rows": len(examples), "problem_type": ptype, "splits": measure(examples, ptype, a.seeds)}
    out = Path(a.out)
    text = markdown(results)
    write_json(out / "bench_cls_split.json", results)
    with atomic_write(out / "bench_cls_split.md") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
