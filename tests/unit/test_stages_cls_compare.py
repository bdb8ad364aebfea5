"""stages.cls.compare without sklearn: reading predictions.jsonl and the refusals of compare before any metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.stages.cls.compare import compare_predictions, read_predictions


def _row(rid, gold="a", predicted="a", probs=None):
    return {"id": rid, "gold": gold, "predicted": predicted, "probabilities": probs or {"a": 0.7, "b": 0.3}}


def _write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_repeated_id_refused_naming_both_lines(tmp_path):
    p = _write(tmp_path / "predictions.jsonl", [_row("x"), _row("y"), _row("x", gold="b")])
    with pytest.raises(UserError) as err:
        read_predictions(p, "the run")
    msg = err.value.render()
    assert "id 'x' is on line 1 and line 3" in msg and str(p) in msg


def test_integer_and_string_id_of_one_value_collide(tmp_path):
    p = _write(tmp_path / "predictions.jsonl", [_row(7), _row("7")])
    with pytest.raises(UserError, match="id '7' is on line 1 and line 2"):
        read_predictions(p, "the run")


@pytest.mark.parametrize("line, said", [
    ("[1, 2]", "line 2: not a JSON object"),
    ("7", "line 2: not a JSON object"),
    (json.dumps(_row(["x"])), "line 2: id is list"),
    (json.dumps(_row("z", gold=None)), "line 2: `gold` is missing (null)"),
    (json.dumps({**_row("z"), "probabilities": [0.5, 0.5]}), "line 2: `probabilities` is not a mapping"),
    ('{"id": "z", ', "line 2: not JSON"),
])
def test_malformed_rows_named_not_crashing(tmp_path, line, said):
    p = _write(tmp_path / "predictions.jsonl", [_row("ok"), line])
    with pytest.raises(UserError, match=said.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_predictions(p, "the run")


def test_not_utf8_named(tmp_path):
    p = tmp_path / "predictions.jsonl"
    p.write_bytes(b'{"id": "\xff"}\n')
    with pytest.raises(UserError, match="predictions.jsonl"):
        read_predictions(p, "the run")


def test_compare_refuses_rows_missing_from_the_baseline_and_gold_mismatch():
    llm = {"x": _row("x"), "y": _row("y")}
    with pytest.raises(UserError, match="1 of the run's 2 predicted rows are not in the baseline"):
        compare_predictions(llm, {"x": _row("x")})
    with pytest.raises(UserError, match="differ only by whitespace or Unicode form"):
        compare_predictions({"x": _row("x", gold="a ")}, {"x": _row("x", gold="a")})


def test_compare_refuses_a_different_label_set():
    llm = {"x": _row("x"), "y": _row("y")}
    base = {"x": _row("x"), "y": _row("y", probs={"a": 0.5, "c": 0.5})}
    with pytest.raises(UserError, match="the baseline's label set differs"):
        compare_predictions(llm, base)


def test_multilabel_and_regression_rows_are_read(tmp_path):
    multi = {"id": "m", "gold": ["a", "b"], "predicted": [], "probabilities": {"a": 0.4, "b": 0.2}}
    p = _write(tmp_path / "multi.jsonl", [multi])
    assert read_predictions(p, "the run")["m"]["gold"] == ["a", "b"]
    p = _write(tmp_path / "reg.jsonl", [{"id": 1, "gold": 2.5, "predicted": 3}])  # no probabilities needed
    assert read_predictions(p, "the run")["1"]["predicted"] == 3


@pytest.mark.parametrize("rows, said", [
    ([{"id": "x", "gold": 1.5, "predicted": "big"}], "line 1: `predicted` is 'big', not a finite number"),
    (['{"id": "x", "gold": NaN, "predicted": 1.0}'], "line 1: `gold` is nan, not a finite number"),
    ([{"id": "x", "gold": 1.0, "predicted": True}], "`predicted` is True, not a finite number"),
    ([{"id": "x", "gold": ["a"], "predicted": "a", "probabilities": {"a": 1}}], "`predicted` is str, not a list of labels"),
    ([{"id": "x", "gold": ["a", 3], "predicted": [], "probabilities": {"a": 1}}], "`gold` is list, not a list of labels"),
    ([{"id": "x", "gold": ["a"], "predicted": []}], "line 1: missing probabilities"),
    ([{"id": "x", "gold": 1.0, "predicted": 1.0}, _row("y")], "line 2: a single_label row .* after regression rows"),
])
def test_typed_rows_with_wrong_fields_are_named(tmp_path, rows, said):
    p = _write(tmp_path / "predictions.jsonl", rows)
    with pytest.raises(UserError, match=said):
        read_predictions(p, "the run")
