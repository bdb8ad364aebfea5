"""Generated multi-label and regression data folders (label lists and scores in every form, the problem type key
agreeing with the data or not, label set, delimiter and empty-label keys, val_size and max_samples on tiny and skewed
data) through the cls stage's check (``validate``) and load (``train``): one clean problem list naming file and row or
key, or data that holds the rules of the type it loaded as; what validate passes, train loads."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from unit import fuzzcases as fc


@fc.ci_settings(40)
@given(case=fc.cls_typed_cases())
def test_generated_typed_data_ends_in_named_problems_or_data_of_its_type(case):
    out = fc.run_cls_typed_case(case)
    assert out.ok, f"{out.kind}: {out.detail}"[:4000]


def _case(rows: list, **opts) -> SimpleNamespace:
    import json

    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return SimpleNamespace(files={"tr": ("tr.jsonl", data, "jsonl")}, info={"tr": {"file_name": "tr.jsonl"}},
                           val_size=0.0, opts=opts, eval_dataset=None, max_samples=None, do_train=True,
                           do_predict=False, seed=0)


def test_the_harness_sees_a_broken_rule_of_each_type(monkeypatch):
    """The property can fail: a NaN score or a label outside the set that loads is 'other', a crash 'traceback'."""
    from llama_factory_ext.stages.cls import data as cls_data

    tags = _case([{"text": f"t{i}", "label": [["a"], ["b"], ["a", "b"], []][i % 4]} for i in range(8)])
    scores = _case([{"text": f"t{i}", "label": i / 2} for i in range(8)], cls_problem_type="regression")
    assert fc.run_cls_typed_case(tags).kind == fc.run_cls_typed_case(scores).kind == "correct result"
    real = cls_data._load_cls_data

    def broken(*a):
        got = real(*a)
        got.train[0].labels = got.train[0].labels + ["zz"] if got.problem_type == "multi_label" else None
        got.train[0].score = float("nan") if got.problem_type == "regression" else None
        return got
    monkeypatch.setattr(cls_data, "_load_cls_data", broken)
    assert fc.run_cls_typed_case(tags).kind == fc.run_cls_typed_case(scores).kind == "other"
    monkeypatch.setattr(cls_data, "_load_cls_data", lambda *a: {}["x"])
    assert fc.run_cls_typed_case(scores).kind == "traceback"
    monkeypatch.setattr(cls_data, "_load_cls_data", real)
    no_train = _case([{"text": f"t{i}", "label": [["a"], ["b"]][i % 2]} for i in range(4)],
                     label_names=["a", "b", "c"])
    no_train.do_train, no_train.eval_dataset = False, None
    assert fc.run_cls_typed_case(no_train).ok
