"""stages.cls problem types without torch: inference from the train labels, multi-label and score parsing, and
the collected errors (file, column, rows)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.stages.cls import data as cls_data
from llama_factory_ext.stages.cls.args import ClsArgs
from llama_factory_ext.stages.cls.records import cell_kind, multi_labels, score_value


def _dir(tmp_path: Path, files: dict, ext: str = "jsonl") -> Path:
    info = {}
    for name, rows in files.items():
        path = tmp_path / f"{name}.{ext}"
        if ext == "csv":
            path.write_text(rows)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        info[name] = {"file_name": path.name, "columns": {"text": "text", "label": "y"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    return tmp_path


def _load(ddir, opts=None, eval_dataset=None, do_train=True, val_size=0.0):
    data_args = SimpleNamespace(dataset_dir=str(ddir), dataset="tr", eval_dataset=eval_dataset, max_samples=None,
                                val_size=val_size)
    training_args = SimpleNamespace(seed=0, do_train=do_train, do_predict=False)
    return cls_data.load_cls_data(data_args, training_args, opts or ClsArgs())


def _problems(ddir, opts=None, **kw) -> str:
    with pytest.raises(UserError) as err:
        _load(ddir, opts, **kw)
    return err.value.render()


TAGS = [{"text": f"t{i}", "y": [["a"], ["b", "c"], [], ["a", "c"]][i % 4]} for i in range(12)]
SCORES = [{"text": f"t{i}", "y": [1.5, 2, 3.25, -0.5][i % 4]} for i in range(12)]


def test_auto_reads_lists_as_multi_label_and_keeps_empty_rows(tmp_path):
    got = _load(_dir(tmp_path, {"tr": TAGS}))
    assert got.problem_type == "multi_label" and got.labels == ["a", "b", "c"]
    assert [e.labels for e in got.train[:4]] == [["a"], ["b", "c"], [], ["a", "c"]]
    assert all(e.label is None for e in got.train)


def test_auto_reads_numbers_as_regression_with_train_mean_and_std(tmp_path):
    got = _load(_dir(tmp_path, {"tr": SCORES}))
    assert got.problem_type == "regression" and got.labels == ["score"]
    assert [e.score for e in got.train[:4]] == [1.5, 2.0, 3.25, -0.5]
    assert got.score_mean == pytest.approx(1.5625) and got.score_std > 0


def test_auto_keeps_strings_and_integers_single_label(tmp_path):
    rows = [{"text": f"t{i}", "y": i % 3} for i in range(9)]
    got = _load(_dir(tmp_path, {"tr": rows}))
    assert got.problem_type == "single_label" and got.labels == ["0", "1", "2"]


def test_delimited_strings_and_csv_json_lists(tmp_path):
    cells = ["a|b", "b", "a | c", ""]
    csv = "text,y\n" + "".join(f"t{i},{cells[i % 4]}\n" for i in range(8))
    got = _load(_dir(tmp_path, {"tr": csv}, ext="csv"), ClsArgs(cls_label_delimiter="|"))
    assert got.problem_type == "multi_label" and [e.labels for e in got.train[:4]] == [["a", "b"], ["b"], ["a", "c"], []]
    cells = ['"[""a""]"', '"[""c"", ""b""]"']
    csv = "text,y\n" + "".join(f"t{i},{cells[i % 2]}\n" for i in range(6))
    got = _load(_dir(tmp_path, {"tr": csv}, ext="csv"))
    assert got.problem_type == "multi_label" and got.train[1].labels == ["c", "b"]


def test_csv_scores_are_numbers(tmp_path):
    csv = "text,y\n" + "".join(f"t{i},{[0.5, 1.25, 3][i % 3]}\n" for i in range(9))
    got = _load(_dir(tmp_path, {"tr": csv}, ext="csv"))
    assert got.problem_type == "regression" and got.train[2].score == 3.0


def test_mixed_types_in_one_column_named_with_rows(tmp_path):
    rows = TAGS[:5] + [{"text": "x", "y": "a"}, {"text": "z", "y": "b"}] + TAGS[5:]
    msg = _problems(_dir(tmp_path, {"tr": rows}))
    assert "tr.jsonl column `y`: mixed types in one column: text in rows 6, 7, but a list of labels elsewhere" in msg
    assert "the label is a single string; multi-label rows carry a JSON list" in msg


@pytest.mark.parametrize("bad, said", [
    (float("nan"), "the score is NaN; scores are finite numbers in row 3"),
    (float("inf"), "the score is infinite; scores are finite numbers in row 3"),
    ("lots", "the score is not a number ('lots'); scores are numbers in row 3"),
    (True, "the score is a boolean; scores are numbers in row 3"),
    (None, "missing score in row 3"),
])
def test_bad_scores_named(tmp_path, bad, said):
    rows = SCORES[:2] + [{"text": "x", "y": bad}] + SCORES[2:]
    msg = _problems(_dir(tmp_path, {"tr": rows}), ClsArgs(cls_problem_type="regression"))
    assert "tr.jsonl column `y`" in msg and said in msg


def test_constant_scores_and_single_class_refused(tmp_path):
    rows = [{"text": f"t{i}", "y": 2.5} for i in range(5)]
    assert "(every score is 2.5); regression needs scores that vary" in _problems(_dir(tmp_path, {"tr": rows}))
    rows = [{"text": f"t{i}", "y": ["a", "b"] if i % 2 else ["a"]} for i in range(6)]
    assert "label 'a' is on every one of the 6 train rows: a single class" in _problems(_dir(tmp_path, {"tr": rows}))
    rows = [{"text": f"t{i}", "y": ["a"] if i % 2 else []} for i in range(6)]
    assert "the train split has 1 distinct label(s)" in _problems(_dir(tmp_path, {"tr": rows}))


def test_eval_label_unseen_in_train_and_empty_lists_refused_when_asked(tmp_path):
    ddir = _dir(tmp_path, {"tr": TAGS, "ev": [{"text": "x", "y": ["a", "zz"]}, {"text": "y", "y": []}]})
    msg = _problems(ddir, eval_dataset="ev")
    assert "ev.jsonl column `y`: label 'zz' is not in the label set (taken from the train split) in row 1" in msg
    msg = _problems(ddir, ClsArgs(cls_allow_empty_labels=False), eval_dataset="ev")
    assert "tr.jsonl column `y`: an empty label list in rows 3, 7, 11" in msg and "ev.jsonl" in msg


def test_key_disagreeing_with_data_named(tmp_path):
    msg = _problems(_dir(tmp_path, {"tr": TAGS}), ClsArgs(cls_problem_type="single_label"))
    assert "the label is a list: several labels per row are multi-label classification" in msg
    msg = _problems(_dir(tmp_path, {"tr": SCORES}), ClsArgs(cls_problem_type="multi_label"))
    assert "the label is a float; multi-label rows carry a list of labels" in msg
    rows = [{"text": f"t{i}", "y": "ab"[i % 2]} for i in range(4)]
    msg = _problems(_dir(tmp_path, {"tr": rows}), ClsArgs(cls_problem_type="regression"))
    assert "the score is not a number ('a')" in msg


def test_regression_refuses_label_keys(tmp_path):
    msg = _problems(_dir(tmp_path, {"tr": SCORES}), ClsArgs(class_weights="balanced", label_names=["a", "b"]))
    assert "key `label_names`: a regression run predicts a number" in msg and "key `class_weights`: a regression" in msg


def test_label_names_fix_multi_label_order_and_flag_unused_label(tmp_path):
    got = _load(_dir(tmp_path, {"tr": TAGS}), ClsArgs(label_names=["c", "b", "a"]))
    assert got.labels == ["c", "b", "a"]
    msg = _problems(_dir(tmp_path, {"tr": TAGS}), ClsArgs(label_names=["c", "b", "a", "d"]))
    assert "label 'd' is on none of the 12 train rows: a single class" in msg


def test_val_size_split_works_for_every_type(tmp_path):
    for rows in (TAGS, SCORES):
        got = _load(_dir(tmp_path, {"tr": rows}), val_size=0.25)
        assert len(got.train) == 9 and len(got.eval) == 3


def test_val_size_split_is_stratified_per_type(tmp_path):
    tags = [dict(r, text=f"t{i}") for i, r in enumerate(TAGS * 10)]  # 120 rows: a 3/4, b 1/4, c 1/2, none 1/4
    got = _load(_dir(tmp_path, {"tr": tags}), val_size=0.25)
    assert got.problem_type == "multi_label" and len(got.eval) == 30
    held = Counter(lab for e in got.eval for lab in e.labels)
    assert abs(held["a"] - 15) <= 1 and abs(held["b"] - 7.5) <= 1 and abs(held["c"] - 15) <= 1
    scores = [dict(r, text=f"t{i}") for i, r in enumerate(SCORES * 10)]  # 30 rows of each of 4 scores
    got = _load(_dir(tmp_path, {"tr": scores}), val_size=0.25)
    assert got.problem_type == "regression" and len(got.eval) == 30
    assert all(c in (7, 8) for c in Counter(e.score for e in got.eval).values())


@pytest.mark.parametrize("value, delimiter, kind", [
    (["a"], None, "list"), ("a|b", "|", "list"), ('["a"]', None, "list"), (1.5, None, "number"), ("2.5", None, "number"),
    (3, None, "integer"), ("3", None, "integer"), ("spam", None, "text"), ("nan", None, "text"), (True, None, "other"),
    (None, None, None)])
def test_cell_kind(value, delimiter, kind):
    assert cell_kind(value, delimiter) == kind


def test_multi_labels_and_score_value():
    assert multi_labels(["a", "a", 2], None) == (["a", "2"], None)
    assert multi_labels("a, b,,", ",") == (["a", " b"], None)
    assert multi_labels([["x"]], None)[1].startswith("a list holding a list")
    assert score_value(" 1e2 ") == (100.0, None) and score_value(3) == (3.0, None)
    assert score_value("inf")[1].startswith("infinite")


def test_delimiter_key_refuses_blank():
    with pytest.raises(ValueError):
        ClsArgs(cls_label_delimiter=" ")


def test_metric_for_best_model_checked_against_the_type(tmp_path):
    from llama_factory_ext.stages.cls.args import metric_problem

    ddir = _dir(tmp_path, {"tr": SCORES})
    host = {"dataset": "tr", "dataset_dir": str(ddir), "do_train": True, "metric_for_best_model": "macro_f1"}
    problems = cls_data.check_data(ClsArgs(), host)
    assert problems == ["key `metric_for_best_model`: macro_f1 is not reported by a regression run; use one of "
                        "mae, rmse, pearson, spearman, loss"]
    assert cls_data.check_data(ClsArgs(), {**host, "metric_for_best_model": "eval_rmse"}) == []
    assert metric_problem("micro_f1", "multi_label") is None and metric_problem("accuracy", "multi_label")


# ---- found by the generative harness (tests/unit/fuzzcases.py, cls_typed_cases)


@pytest.mark.parametrize("bad", [10**400, -(10**400), 1e308, "-1e39"])
def test_scores_past_float32_named_not_a_crash(tmp_path, bad):
    """An integer past the largest float (JSON allows any length) raised OverflowError; scores past float32 (the
    model's) made the mean and std overflow (fsum) or the targets infinite."""
    rows = SCORES[:2] + [{"text": "x", "y": bad}] + SCORES[2:]
    msg = _problems(_dir(tmp_path, {"tr": rows}), ClsArgs(cls_problem_type="regression"))
    assert "tr.jsonl column `y`: the score is beyond ±3.4e+38 (float32" in msg and "in row 3" in msg
    assert score_value(3.4e38) == (3.4e38, None)


def test_integers_too_long_for_python_named_with_file_and_row(tmp_path):
    """json.loads raises ValueError (not JSONDecodeError) for an integer of more than 4300 digits."""
    ddir = _dir(tmp_path, {"tr": SCORES})
    with open(ddir / "tr.jsonl", "a") as f:
        f.write('{"text": "x", "y": ' + "9" * 5000 + "}\n")
    msg = _problems(ddir)
    assert "tr.jsonl: row 13 holds a number too long to read (Exceeds the limit (4300 digits)" in msg
    assert "set_int_max_str_digits" not in msg
    (ddir / "dataset_info.json").write_text('{"tr": {"file_name": "tr.jsonl", "n": ' + "9" * 5000 + "}}")
    assert "dataset_info.json: invalid JSON (Exceeds the limit" in _problems(ddir)


def test_multi_label_without_do_train_not_judged_on_train_rows(tmp_path):
    """Without `do_train` there are no train rows: labels were refused as on 'none of the 0 train rows'."""
    got = _load(_dir(tmp_path, {"tr": TAGS, "ev": TAGS}), ClsArgs(label_names=["a", "b", "c"]), eval_dataset="ev",
                do_train=False)
    assert got.problem_type == "multi_label" and got.labels == ["a", "b", "c"] and len(got.eval) == 12


def test_max_samples_leaving_a_label_on_no_kept_row_named(tmp_path):
    """multi_label: the label set is the whole train split's; `max_samples` could keep rows that carry a label on
    none (or all) of them, and train went ahead with a class it cannot learn."""
    ddir = _dir(tmp_path, {"tr": TAGS})
    data_args = SimpleNamespace(dataset_dir=str(ddir), dataset="tr", eval_dataset=None, max_samples=1, val_size=0.0)
    with pytest.raises(UserError) as err:
        cls_data.load_cls_data(data_args, SimpleNamespace(seed=0, do_train=True, do_predict=False), ClsArgs())
    assert "key `max_samples`: the 1 train row it keeps carry labels" in err.value.render()
    data_args.max_samples = 8
    assert len(cls_data.load_cls_data(data_args, SimpleNamespace(seed=0, do_train=True, do_predict=False),
                                      ClsArgs()).train) == 8


def test_multi_label_list_items_named_by_kind():
    """A nested list in a multi-label row said 'set `cls_problem_type: multi_label`', which it already was."""
    for item, said in (([["x"]], "a list holding a list; list items"), ([None], "a list holding null;"),
                       ([""], "a list holding an empty string;"), ([1.5], "a list holding a float;")):
        why = multi_labels(item, None)[1]
        assert why.startswith(said) and "cls_problem_type" not in why
