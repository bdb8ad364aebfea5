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
