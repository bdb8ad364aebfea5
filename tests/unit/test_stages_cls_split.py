"""stages.cls.split per problem type: `val_size` held out by iterative stratification (multi-label) and by score
bins (regression), sizes exact, every label kept in training where its rows allow."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from llama_factory_ext.stages.cls.records import Example
from llama_factory_ext.stages.cls.split import multilabel_held_out, score_bins, stratified_split

REPO = Path(__file__).resolve().parents[2]


def _multi(label_sets):
    return [Example("f", i, str(i), f"t{i}", None, None, labels=list(labs)) for i, labs in enumerate(label_sets, 1)]


def _scores(values):
    return [Example("f", i, str(i), f"t{i}", None, None, score=v) for i, v in enumerate(values, 1)]


def _tags_sample() -> list[Example]:
    rows = [json.loads(line) for line in (REPO / "recipes/data/debian_tags_sample_train.jsonl").read_text().splitlines()]
    return _multi([r["labels"] for r in rows])


def _share_gap(train, val) -> float:
    """The largest gap, over labels, between a label's held-out rows and its proportional share."""
    every = Counter(lab for e in train + val for lab in e.labels)
    held = Counter(lab for e in val for lab in e.labels)
    frac = len(val) / (len(train) + len(val))
    return max(abs(held[lab] - c * frac) for lab, c in every.items())


@pytest.mark.parametrize("val_size", [0.1, 0.2, 37])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_split_keeps_each_label_share_and_a_training_row(val_size, seed):
    examples = _tags_sample()  # 240 rows, 8 debtags, as the tiny multi-label recipe
    train, val = stratified_split(examples, val_size, seed, "multi_label")
    n_val = 37 if val_size == 37 else round(240 * val_size)
    assert len(val) == n_val and len(train) == 240 - n_val
    assert [e.row for e in train] == sorted(e.row for e in train) and [e.row for e in val] == sorted(e.row for e in val)
    assert {lab for e in train for lab in e.labels} == {lab for e in examples for lab in e.labels}
    assert _share_gap(train, val) <= 1.0  # every label within one row of its share


def test_multilabel_split_beats_a_random_split_of_the_same_size():
    examples = _tags_sample()
    ours = [_share_gap(*stratified_split(examples, 0.1, seed, "multi_label")) for seed in range(5)]
    rand = []
    for seed in range(5):
        idx = list(range(len(examples)))
        random.Random(seed).shuffle(idx)
        held = set(idx[:24])
        rand.append(_share_gap([e for i, e in enumerate(examples) if i not in held],
                               [e for i, e in enumerate(examples) if i in held]))
    assert max(ours) < min(rand), (ours, rand)


def test_multilabel_split_is_seeded_and_places_empty_rows():
    label_sets = [["a"], ["a", "b"], ["b"], [], ["c"], ["a", "c"], [], ["b", "c"]] * 5
    first = stratified_split(_multi(label_sets), 0.25, 3, "multi_label")
    again = stratified_split(_multi(label_sets), 0.25, 3, "multi_label")
    assert [e.row for e in first[1]] == [e.row for e in again[1]]
    assert len(first[1]) == 10
    assert sum(1 for e in first[1] if not e.labels) in (2, 3)  # the 10 empty rows keep their quarter too


def test_a_label_on_one_row_only_stays_in_training():
    label_sets = [["rare"]] + [["x"]] * 3 + [["x", "y"]] * 3 + [["y"]] * 3
    for seed in range(10):
        held = multilabel_held_out(label_sets, 5, seed)  # half held out: the lone row could have gone either way
        assert 0 not in held and len(held) == 5


def test_score_bins_are_equal_sized_quantiles():
    assert score_bins([5.0, 1.0, 3.0, 2.0, 4.0, 0.0], 3) == [2, 0, 1, 1, 2, 0]
    assert score_bins([1.0, 1.0, 1.0, 1.0], 2) == [0, 0, 1, 1]  # ties straddle bins


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regression_split_holds_out_each_score_decile_alike(seed):
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 1) for _ in range(1000)]
    assert len(set(values)) == 1000
    train, val = stratified_split(_scores(values), 0.1, seed, "regression")
    assert len(val) == 100 and len(train) == 900
    deciles = score_bins(values, 10)
    by_row = {e.row: d for e, d in zip(_scores(values), deciles)}
    per_decile = Counter(by_row[e.row] for e in val)
    assert all(abs(per_decile[d] - 10) <= 1 for d in range(10)), per_decile


def test_regression_split_of_a_few_rows_and_refusals():
    train, val = stratified_split(_scores([0.5, 1.5, 2.5]), 1, 0, "regression")
    assert len(val) == 1 and len(train) == 2
    from llama_factory_ext.api import UserError

    with pytest.raises(UserError, match="holds out 3 of the 3 training rows"):
        stratified_split(_scores([0.5, 1.5, 2.5]), 3, 0, "regression")
    with pytest.raises(UserError, match="holds out 2 of the 2 training rows"):
        stratified_split(_multi([["a"], ["b"]]), 2, 0, "multi_label")


def test_max_samples_subset_keeps_label_shares_and_score_quantiles():
    from llama_factory_ext.stages.cls.split import stratified_subset

    examples = _tags_sample()
    kept = stratified_subset(examples, 60, 0, "multi_label")
    assert len(kept) == 60 and [e.row for e in kept] == sorted(e.row for e in kept)
    dropped = [e for e in examples if e not in kept]
    assert _share_gap(dropped, kept) <= 1.0
    assert {lab for e in kept for lab in e.labels} == {lab for e in examples for lab in e.labels}
    rng = random.Random(5)
    values = [rng.gauss(0, 1) for _ in range(400)]
    kept = stratified_subset(_scores(values), 40, 0, "regression")
    deciles = dict(zip(range(1, 401), score_bins(values, 10)))
    assert len(kept) == 40 and set(Counter(deciles[e.row] for e in kept).values()) == {4}


def test_bench_cls_split_doc_is_what_its_json_renders_and_stratified_wins():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cls_split", REPO / "benchmarks" / "bench_cls_split.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = json.loads((REPO / "docs" / "bench_cls_split.json").read_text())
    assert (REPO / "docs" / "bench_cls_split.md").read_text() == bench.markdown(result)
    for res in result.values():
        for split in res["splits"]:
            ours = max(m["mean_gap"] for m in split["stratified"])
            rand = min(m["mean_gap"] for m in split["random"])
            assert ours < rand, (res, split["val_size"])
            if res["problem_type"] == "multi_label":
                assert all(m["labels_without_train_row"] == 0 for m in split["stratified"])
