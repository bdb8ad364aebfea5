"""Nothing lost, nothing hung, no silent takeover: the pieces, tested in process.

The whole path through the real CLI is tests/test_safety_table.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import RECIPES
from llama_factory_ext.api import UserError

CLS_BASE = {"model_name_or_path": "m", "stage": "cls", "do_train": True, "finetuning_type": ["rslora", "cls_head"],
            "dataset": "debian_sample_train", "eval_dataset": "debian_sample_validation",
            "test_dataset": "debian_sample_test", "dataset_dir": "data", "output_dir": "o"}


def _both(workdir: Path, **keys) -> tuple[list[str], list[str]]:
    """(problems from `train`'s prepare, problems from `validate`) for the same recipe."""
    from llama_factory_ext.recipe import prepare
    from llama_factory_ext.recipe.validate import validate_file

    path = workdir / "r.yaml"
    path.write_text(yaml.safe_dump({**CLS_BASE, **keys}))
    from llama_factory_ext.recipe.load import read_recipe, resolve_paths

    raw = resolve_paths(read_recipe(path), path)
    try:
        prepare(raw, source=str(path))
        train = []
    except UserError as err:
        train = err.problems
    validate, _ = validate_file(path)
    return train, validate


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _write_rows(path: Path, rows: list[dict], encoding: str = "utf-8") -> None:
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(encoding))


@pytest.mark.parametrize("keys,expected", [
    ({"learning_rate": -1}, "key `learning_rate`: -1 is out of range"),
    ({"learning_rate": 10}, "key `learning_rate`: 10 is out of range"),
    ({"stage": ["cls"]}, "key `stage`: expected one stage name"),
    ({"class_weights": [1, 2]}, "key `class_weights`: 2 weights for 6 labels"),
    ({"class_weights": {"gmaes": 2.0}}, "did you mean 'games'"),
    ({"class_weights": {"games": -1.0}}, "weights must be finite numbers > 0"),
    ({"layerwise_lr_overrides": {"(.+)+Z": 1e-3}, "finetuning_type": ["rslora", "cls_head", "layerwise_lr"]},
     "nests repetition"),
])
def test_train_and_validate_refuse_alike(workdir, keys, expected):
    train, validate = _both(workdir, **keys)
    assert any(expected in p for p in train), train
    assert [p for p in train if expected in p] == [p for p in validate if expected in p]


def test_data_problems_same_in_train_and_validate(workdir):
    data = workdir / "data"
    train_rows = _rows(data / "debian_sample_train.jsonl")
    train_rows[2]["text"] = "  "
    del train_rows[5]["label"]
    _write_rows(data / "debian_sample_train.jsonl", train_rows)
    test_rows = _rows(data / "debian_sample_test.jsonl")
    test_rows[0]["label"] = "astrology"
    _write_rows(data / "debian_sample_test.jsonl", test_rows)
    train, validate = _both(workdir)
    text = "\n".join(train)
    assert "empty text in row 3" in text and "missing label in row 6" in text
    train_rows[2]["text"], train_rows[5]["label"] = "fine", "games"
    _write_rows(data / "debian_sample_train.jsonl", train_rows)
    train, validate = _both(workdir)
    assert any("label 'astrology' is not in the label set" in p and "row 1" in p for p in train), train
    assert train == validate


def test_latin1_file_is_one_message_with_file_row_and_encoding(workdir):
    from llama_factory_ext.stages.cls.records import read_records

    rows = [{k: v.encode("ascii", "ignore").decode() for k, v in r.items()}
            for r in _rows(workdir / "data" / "debian_sample_test.jsonl")]
    rows[6]["text"] = "un café crème"
    path = workdir / "data" / "debian_sample_test.jsonl"
    _write_rows(path, rows, encoding="latin-1")
    with pytest.raises(UserError) as err:
        read_records(str(path))
    msg = err.value.render()
    assert str(path) in msg and "row 7" in msg and "latin-1" in msg and "iconv -f latin-1" in msg
    train, validate = _both(workdir)
    assert train == validate and any("row 7 is not UTF-8" in p for p in train)


def test_layerwise_groups_refuse_a_catastrophic_pattern_fast():
    import torch.nn as nn

    from llama_factory_ext.strategies.layerwise_lr.groups import build_groups

    model = nn.Sequential(nn.Linear(2, 2))

    class Opts:
        layerwise_lr_decay = 1.0
        layerwise_lr_overrides = {"(.+)+Z": 1e-3}

    start = time.monotonic()
    with pytest.raises(UserError, match="nests repetition"):
        build_groups(model, None, Opts())
    assert time.monotonic() - start < 5


def test_predict_output_killed_midway_leaves_old_file(tmp_path):
    """A process killed while writing `predict --output` leaves the previous file whole."""
    path = tmp_path / "out.jsonl"
    path.write_text("previous\n")
    code = (f"from llama_factory_ext.safeio import atomic_write\nimport os, time\n"
            f"with atomic_write({str(path)!r}) as f:\n    f.write('x' * 100000); f.flush(); os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code])
    assert path.read_text() == "previous\n"


def test_training_guard_trips_with_advice():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import GuardArgs, failure_message, make_callback

    args = TrainingArguments(output_dir="/nonexistent/lfx", learning_rate=1.0, max_grad_norm=5.0, report_to=[])
    state, control = TrainerState(), TrainerControl()
    cases = [
        ([{"loss": 2.0}, {"loss": 11.0}], "rose to 11"),
        ([{"loss": float("nan")}], "loss is nan"),
        ([{"loss": 2.0, "grad_norm": 3e5}], "gradient norm exploded"),
        ([{"loss": 2.0, "grad_norm": float("inf")}], "gradient norm is inf"),
    ]
    for logs, reason in cases:
        guard = make_callback(Run(), args)
        control = TrainerControl()
        for i, log in enumerate(logs):
            state.global_step = i + 1
            guard.on_log(args, state, control, logs=log)
        assert reason in guard.reason and control.should_training_stop and not control.should_save
        msg = failure_message(guard, args)
        assert "lower learning_rate" in msg and "max_grad_norm: 1.0" in msg and "training_guard: false" in msg
    guard = make_callback(Run(), args)
    guard.on_evaluate(args, state, TrainerControl(), metrics={"eval_loss": 1.0, "eval_pred_classes": 3, "eval_gold_classes": 3})
    control = TrainerControl()
    guard.on_evaluate(args, state, control, metrics={"eval_loss": 9.0, "eval_pred_classes": 1, "eval_gold_classes": 3})
    assert "collapsed to predicting one class" in guard.reason and control.should_training_stop
    healthy = make_callback(Run(), args)
    for loss in (2.0, 1.5, 3.0, 1.0):
        healthy.on_log(args, state, TrainerControl(), logs={"loss": loss, "grad_norm": 4.0})
    assert healthy.reason is None
    assert make_callback(Run(settings={"training_guard": GuardArgs(training_guard=False)}), args) is None


def test_recipes_bundled_still_validate_with_safety_checks():
    from llama_factory_ext.recipe.validate import validate_file

    problems, _ = validate_file(RECIPES / "tiny_cls.yaml")
    assert problems == []


def test_host_stage_guard_raises_at_train_end_and_marks_the_folder(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import guard_callbacks

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    (cb,) = guard_callbacks(Run())
    state = TrainerState()
    cb.on_log(args, state, TrainerControl(), logs={"loss": 1.0})
    cb.on_log(args, state, TrainerControl(), logs={"loss": float("inf")})
    with pytest.raises(UserError, match="training guard stopped the run"):
        cb.on_train_end(args, state, TrainerControl())
    assert json.loads((tmp_path / "run_status.json").read_text())["status"] == "failed"


def test_cls_data_read_once_but_rechecked_after_a_change(workdir):
    train, _ = _both(workdir)
    assert train == []
    path = workdir / "data" / "debian_sample_train.jsonl"
    rows = _rows(path)
    rows[0]["text"] = ""
    time.sleep(0.01)
    _write_rows(path, rows)
    train, _ = _both(workdir)
    assert any("empty text in row 1" in p for p in train), train
