"""stages.cls.data without torch: labels, columns, empty rows, sampling, row ids."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.stages.cls import data as cls_data
from llama_factory_ext.stages.cls.args import ClsArgs


def _write_jsonl(path: Path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _dataset_dir(tmp_path: Path, files: dict, columns=None) -> Path:
    info = {}
    for name, rows in files.items():
        fname = f"{name}.jsonl"
        _write_jsonl(tmp_path / fname, rows)
        info[name] = {"file_name": fname, "columns": columns or {"text": "text", "label": "label"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    return tmp_path


def _args(ddir, dataset="tr", eval_dataset=None, max_samples=None, val_size=0.0, do_train=True):
    data_args = SimpleNamespace(dataset_dir=str(ddir), dataset=dataset, eval_dataset=eval_dataset,
                                max_samples=max_samples, val_size=val_size)
    training_args = SimpleNamespace(seed=0, do_train=do_train)
    return data_args, training_args


ROWS = [{"id": f"r{i}", "text": f"text number {i}", "label": "ab"[i % 2] if i % 7 else "c"} for i in range(40)]


def test_labels_from_train_and_eval_label_outside_set_named(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": ROWS, "ev": [{"text": "x", "label": "a"}, {"text": "y", "label": "zzz"},
                                                     {"text": "z", "label": "zzz"}]})
    with pytest.raises(UserError) as err:
        cls_data.load_cls_data(*_args(ddir, eval_dataset="ev"), ClsArgs())
    msg = err.value.render()
    assert "ev.jsonl" in msg and "column `label`" in msg and "'zzz'" in msg and "rows 2, 3" in msg


def test_label_names_order_kept_and_train_checked(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": ROWS})
    got = cls_data.load_cls_data(*_args(ddir), ClsArgs(label_names=["c", "b", "a"]))
    assert got.labels == ["c", "b", "a"]
    with pytest.raises(UserError, match="label 'c' is not in the label set"):
        cls_data.load_cls_data(*_args(ddir), ClsArgs(label_names=["a", "b"]))


def test_missing_column_and_empty_text_reported_together(tmp_path):
    rows = [{"body": "x", "label": "a"}]
    ddir = _dataset_dir(tmp_path, {"tr": ROWS[:3] + [{"text": " ", "label": "a"}] + ROWS[3:], "ev": rows})
    with pytest.raises(UserError) as err:
        cls_data.load_cls_data(*_args(ddir, eval_dataset="ev"), ClsArgs())
    problems = err.value.problems
    assert any("ev.jsonl has no column `text`" in p and "columns: body, label" in p for p in problems)
    assert any("tr.jsonl column `text`: empty text in row 4 " in p for p in problems)


def test_empty_file_and_unknown_dataset(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": []})
    with pytest.raises(UserError, match="tr.jsonl has no rows"):
        cls_data.load_cls_data(*_args(ddir), ClsArgs())
    with pytest.raises(UserError, match="dataset nope not in"):
        cls_data.load_cls_data(*_args(ddir, dataset="nope"), ClsArgs())


def test_max_samples_keeps_every_class_and_val_size_stratified(tmp_path):
    rows = [{"text": f"t{i}", "label": "rare" if i == 5 else "common"} for i in range(100)]
    ddir = _dataset_dir(tmp_path, {"tr": rows})
    got = cls_data.load_cls_data(*_args(ddir, max_samples=10), ClsArgs())
    assert len(got.train) == 10 and {e.label for e in got.train} == {"rare", "common"}
    rows = [{"text": f"t{i}", "label": "abc"[i % 3]} for i in range(60)]
    ddir = _dataset_dir(tmp_path, {"tr": rows})
    got = cls_data.load_cls_data(*_args(ddir, val_size=0.2), ClsArgs())
    assert len(got.eval) == 12 and len(got.train) == 48
    assert sorted(e.label for e in got.eval) == sorted(["a"] * 4 + ["b"] * 4 + ["c"] * 4)


def test_training_ids_use_the_same_form(tmp_path):
    from llama_factory_ext.stages.cls.data import Source, load_source

    (tmp_path / "test.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y", "id": 7}\n')
    src = Source("t", [str(tmp_path / "test.jsonl")], "text", "label", None)
    assert load_source(src) == []
    assert [e.id for e in src.examples] == ["test.jsonl:1", "7"]


def _load(ddir, opts=None, **kw):
    return cls_data.load_cls_data(*_args(ddir, **kw), opts or ClsArgs())


def _problems(ddir, opts=None, **kw) -> str:
    with pytest.raises(UserError) as err:
        _load(ddir, opts, **kw)
    return err.value.render()


def test_labels_normalised_merge_warned_and_kept_raw_on_request(tmp_path, capsys):
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate(["spam", "spam ", "sp\u0061\u0301m", "ham", "sp\u00e1m"])]
    ddir = _dataset_dir(tmp_path, {"tr": rows})
    got = _load(ddir)
    assert got.labels == ["ham", "spam", "sp\u00e1m"]
    assert len(got.warnings) == 1 and "'spam' and 'spam '" in got.warnings[0] and "cls_label_normalize" in got.warnings[0]
    assert "warning: labels written differently" in capsys.readouterr().err
    raw = _load(ddir, ClsArgs(cls_label_normalize=False))
    assert raw.labels == ["ham", "spam", "spam ", "sp\u0061\u0301m", "sp\u00e1m"]
    assert "stay separate classes" in raw.warnings[0]


def test_labels_differing_by_case_warned_not_merged(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": [{"text": "a", "label": "Spam"}, {"text": "b", "label": "spam"},
                                          {"text": "c", "label": "ham"}]})
    got = _load(ddir)
    assert got.labels == ["Spam", "ham", "spam"]
    assert any("differ only by case" in w and "'Spam' and 'spam'" in w for w in got.warnings)


def test_label_names_normalised_and_eval_labels_match_them(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": [{"text": "a", "label": " b"}, {"text": "b", "label": "a\t"}],
                                   "ev": [{"text": "c", "label": "a "}]})
    got = _load(ddir, ClsArgs(label_names=["b ", "a"]), eval_dataset="ev")
    assert got.labels == ["b", "a"] and [e.label for e in got.eval] == ["a"]
    msg = _problems(ddir, ClsArgs(label_names=["a", "a "]))
    assert "key `label_names`: 'a' and 'a ' are the same label after normalisation" in msg


def test_class_weight_key_written_unnormalised_named(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": ROWS})
    msg = _problems(ddir, ClsArgs(class_weights={"a ": 2.0}))
    assert "key `class_weights`: 'a ' is not a label; write it as 'a'" in msg


@pytest.mark.parametrize("label, said", [
    (float("nan"), "the label is NaN"),
    (["doc", "net"], "mixed types in one column: a list of labels in row 3"),
    ({"x": 1}, "the label is an object"),
    (True, "the label is a boolean"),
    (1.5, "the label is a float"),
    (None, "missing label in row 3"),
])
def test_non_scalar_label_named_with_file_and_row(tmp_path, label, said):
    ddir = _dataset_dir(tmp_path, {"tr": ROWS[:2] + [{"text": "x", "label": label}] + ROWS[2:]})
    msg = _problems(ddir)
    assert "tr.jsonl column `label`" in msg and said in msg and "row 3" in msg


def test_integer_labels_are_labels(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": [{"text": "a", "label": 0}, {"text": "b", "label": 1}]})
    assert _load(ddir).labels == ["0", "1"]


@pytest.mark.parametrize("text, said", [(["a", "b"], "the text is a list, not a string"),
                                        ({"t": 1}, "the text is an object, not a string"),
                                        (7, "the text is a number, not a string")])
def test_non_string_text_named(tmp_path, text, said):
    ddir = _dataset_dir(tmp_path, {"tr": ROWS[:4] + [{"text": text, "label": "a"}] + ROWS[4:]})
    msg = _problems(ddir)
    assert "tr.jsonl column `text`" in msg and said in msg and "row 5" in msg


def test_lone_surrogate_named_in_text_and_label(tmp_path):
    (tmp_path / "tr.jsonl").write_text('{"text": "ok", "label": "a"}\n{"text": "bad \\ud800", "label": "b"}\n'
                                       '{"text": "x", "label": "b\\udc00"}\n')
    (tmp_path / "dataset_info.json").write_text(json.dumps({"tr": {"file_name": "tr.jsonl"}}))
    problems = " | ".join(_problems(tmp_path).splitlines())
    assert "column `text`: a lone surrogate character" in problems and "row 2" in problems
    assert "column `label`: the label is a lone surrogate character" in problems and "row 3" in problems


def test_ragged_csv_row_is_a_problem_not_a_pass(tmp_path):
    (tmp_path / "tr.csv").write_text("text,label\nhello,a\nthere,b,extra\nworld\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"tr": {"file_name": "tr.csv"}}))
    problems = cls_data.check_data(ClsArgs(), {"dataset": "tr", "dataset_dir": str(tmp_path), "do_train": True})
    assert any("tr.csv: row 2 has 3 fields, the header has 2" in p for p in problems)
    assert any("tr.csv: row 3 has 1 field, the header has 2" in p for p in problems)
    (tmp_path / "tr.csv").write_text("text,label,text\nhello,a,b\n")
    with pytest.raises(UserError, match="the header repeats column 'text'"):
        cls_data.read_records(str(tmp_path / "tr.csv"))


def test_check_data_skips_only_mistyped_keys(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": ROWS})
    base = {"dataset": "tr", "dataset_dir": str(ddir), "do_train": True}
    assert cls_data.check_data(ClsArgs(), base) == []
    assert cls_data.check_data(ClsArgs(), {**base, "val_size": "lots"}) == []  # the type check names val_size
    assert cls_data.check_data(ClsArgs(), {**base, "val_size": 37}) == []
    assert any("key `val_size`" in p for p in cls_data.check_data(ClsArgs(), {**base, "val_size": 38}))


def _ex(labels):
    return [cls_data.Example("f", i, str(i), f"t{i}", None, lab) for i, lab in enumerate(labels, 1)]


@pytest.mark.parametrize("val_size, n_val", [(0.1, 10), (0.5, 50), (7, 7), (7.0, 7), (0.001, 1)])
def test_split_holds_out_what_is_asked_and_keeps_every_class(val_size, n_val):
    labels = [f"c{i}" for i in range(40)] + ["big"] * 60  # 40 singleton classes
    train, val = cls_data.stratified_split(_ex(labels), val_size, seed=1)
    assert len(val) == n_val and len(train) == 100 - n_val
    assert {e.label for e in train} == set(labels)


def test_split_that_would_empty_a_side_or_drop_a_class_refused():
    with pytest.raises(UserError, match="holds out 4 of the 4 training rows and leaves none"):
        cls_data.stratified_split(_ex(["a", "b", "a", "b"]), 4, 0)
    with pytest.raises(UserError, match="each of the 3 labels needs a training row, so at most 2 can be held out"):
        cls_data.stratified_split(_ex(["a", "b", "c", "a", "b"]), 0.6, 0)
    with pytest.raises(UserError, match="neither a fraction below 1 nor a whole number"):
        cls_data.stratified_split(_ex(["a", "b"] * 5), 2.5, 0)


def test_validate_and_train_see_the_same_split_problem(tmp_path):
    rows = [{"text": f"t{i}", "label": f"c{i % 10}"} for i in range(12)]
    ddir = _dataset_dir(tmp_path, {"tr": rows})
    problems = cls_data.check_data(ClsArgs(), {"dataset": "tr", "dataset_dir": str(ddir), "do_train": True,
                                               "val_size": 0.5})
    assert problems and "at most 2 can be held out" in problems[0]
    assert "at most 2 can be held out" in _problems(ddir, val_size=0.5)


def test_duplicate_ids_in_the_predicted_split_refused_naming_both_rows(tmp_path):
    ddir = _dataset_dir(tmp_path, {"tr": ROWS, "te": [{"id": "x", "text": "a", "label": "a"},
                                                      {"id": "y", "text": "b", "label": "b"},
                                                      {"id": "x", "text": "c", "label": "a"}]})
    msg = _problems(ddir, ClsArgs(test_dataset="te"))
    assert "key `test_dataset`: id 'x' is used twice" in msg and "te.jsonl row 1" in msg and "te.jsonl row 3" in msg
    args = _args(ddir)  # no predictions written: ids are not joined
    args[1].do_predict = False
    assert cls_data.load_cls_data(*args, ClsArgs(test_dataset="te")).test


def test_row_ids_of_same_named_files_in_two_folders_differ(tmp_path):
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        _write_jsonl(tmp_path / sub / "test.jsonl", [{"text": "a", "label": "a"}, {"text": "b", "label": "b"}])
    info = {"tr": {"file_name": "tr.jsonl"}, "te1": {"file_name": "one/test.jsonl"},
            "te2": {"file_name": "two/test.jsonl"}}
    _write_jsonl(tmp_path / "tr.jsonl", ROWS)
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    got = _load(tmp_path, ClsArgs(test_dataset=["te1", "te2"]))
    assert [e.id for e in got.test] == ["one/test.jsonl:1", "one/test.jsonl:2", "two/test.jsonl:1", "two/test.jsonl:2"]


def test_label_names_items_must_be_scalar():
    with pytest.raises(Exception, match="non-empty strings or integers"):
        ClsArgs(label_names=["a", None])
    with pytest.raises(Exception, match="non-empty strings or integers"):
        ClsArgs(label_names=["a", ["b"]])


@pytest.mark.parametrize("info, said", [
    ({"tr": "tr.jsonl"}, "dataset tr is a string; give an object"),
    ({"tr": {"file_name": "tr.jsonl", "columns": "text"}}, "`columns` is a string; give an object"),
    ({"tr": {"file_name": "tr.jsonl", "columns": {"text": ["a"]}}}, "column `text` is mapped to a list"),
    ({"tr": {"file_name": 5}}, "`file_name` is a number, not a path"),
    (["tr"], "expected a JSON object of dataset entries, got a list"),
])
def test_malformed_dataset_info_entry_is_a_problem(tmp_path, info, said):
    _write_jsonl(tmp_path / "tr.jsonl", ROWS)
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    problems = cls_data.check_data(ClsArgs(), {"dataset": "tr", "dataset_dir": str(tmp_path), "do_train": True})
    assert len(problems) == 1 and said in problems[0] and "dataset_info.json" in problems[0]
