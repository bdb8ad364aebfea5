"""Generated cls data folders (jsonl/json/csv, encodings, ragged rows, labels of every type, duplicate ids, tiny and
skewed splits) through the cls stage's check (``validate``) and load (``train``): one clean problem list naming file
and row or key, or data that trains (rows in train, every label in the set, unique predicted ids); what validate
passes, train loads."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from unit import fuzzcases as fc

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


@FUZZ
@given(case=fc.cls_cases())
def test_generated_cls_data_ends_in_named_problems_or_trainable_data(case):
    out = fc.run_cls_case(case)
    assert out.ok, f"{out.kind}: {out.detail}"[:4000]


def test_the_harness_sees_a_broken_invariant(monkeypatch):
    """The property can fail: data loaded with an empty train split is 'other', a crash is 'traceback'."""
    from types import SimpleNamespace

    from llama_factory_ext.stages.cls import data as cls_data

    rows = b"".join(b'{"text": "t%d", "label": "%s"}\n' % (i, b"ab"[i % 2:i % 2 + 1]) for i in range(6))
    case = SimpleNamespace(files={"tr": ("tr.jsonl", rows, "jsonl/utf-8")}, info={"tr": {"file_name": "tr.jsonl"}},
                           val_size=0.0, opts={}, eval_dataset=None, max_samples=None, do_train=True,
                           do_predict=False, seed=0)
    assert fc.run_cls_case(case).kind == "correct result"
    real = cls_data._load_cls_data

    def emptied(*a):
        got = real(*a)
        got.train = []
        return got
    monkeypatch.setattr(cls_data, "_load_cls_data", emptied)
    assert fc.run_cls_case(case).kind == "other"
    monkeypatch.setattr(cls_data, "_load_cls_data", lambda *a: {}["x"])
    assert fc.run_cls_case(case).kind == "traceback"
