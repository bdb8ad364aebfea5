"""Nothing lost, nothing hung, no silent takeover: the pieces, tested in process.

The whole path through the real CLI is tests/test_safety_table.py.
"""

from __future__ import annotations

import json
import os
import socket
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
    from llama_factory_ext.config import prepare
    from llama_factory_ext.validation import validate_file

    path = workdir / "r.yaml"
    path.write_text(yaml.safe_dump({**CLS_BASE, **keys}))
    from llama_factory_ext import recipes

    raw = recipes.resolve_paths(recipes.load_yaml(path), path)
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


def test_validation_has_one_home():
    import llama_factory_ext.recipes_cli as cli
    import llama_factory_ext.validation as validation

    for name in ("_type_problems", "_range_problems", "_combination_problems", "_dataset_problems"):
        assert not hasattr(cli, name) and hasattr(validation, name)


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
    from llama_factory_ext.stages.cls.data import read_records

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


def test_regex_overrides_have_bounded_cost():
    from llama_factory_ext.saferegex import PatternError, check_pattern

    for bad in ("(.+)+Z", "(a*)*", "(x+|y)+z", "((a+))+", "a" * 400):
        with pytest.raises(PatternError):
            check_pattern(bad)
    for good in (r"score", r"layers\.(\d+)\.", r".*lora_B.*", r"(\w+\.)*q_proj", r"(q|k|v)_proj"):
        check_pattern(good)


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


def test_oversized_recipe_and_keys_are_refused_quickly(tmp_path):
    from llama_factory_ext import recipes
    from llama_factory_ext.config import prepare

    big = tmp_path / "big.yaml"
    big.write_text("".join(f"key_{i}: {i}\n" for i in range(120_000)))  # ~1.6 MB
    start = time.monotonic()
    with pytest.raises(UserError, match="over the limit"):
        recipes.load_yaml(big)
    many = {f"key_{i}": i for i in range(20_000)}
    with pytest.raises(UserError) as err:
        prepare(many, data=False)
    assert time.monotonic() - start < 30
    assert len(err.value.problems) <= 25 and "more unknown keys" in err.value.problems[-1]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    from llama_factory_ext.safeio import atomic_write

    path = tmp_path / "predictions.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["predictions.jsonl"]
    with atomic_write(path) as f:
        f.write("new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["predictions.jsonl"]


def test_predict_output_killed_midway_leaves_old_file(tmp_path):
    """A process killed while writing `predict --output` leaves the previous file whole."""
    path = tmp_path / "out.jsonl"
    path.write_text("previous\n")
    code = (f"from llama_factory_ext.safeio import atomic_write\nimport os, time\n"
            f"with atomic_write({str(path)!r}) as f:\n    f.write('x' * 100000); f.flush(); os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code])
    assert path.read_text() == "previous\n"


def test_export_refuses_base_model_run_and_model_folders_and_non_empty_folders(tmp_path):
    from llama_factory_ext.stages.cls.export import destination_problem

    run, base, other_run, full, empty, model = (tmp_path / n for n in ("run", "base", "run2", "full", "empty", "model"))
    for d in (run, base, other_run, full, empty, model):
        d.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    (run / "cls_run.json").write_text("{}")
    (base / "config.json").write_text("{}")
    (other_run / "trainer_state.json").write_text("{}")
    (full / "notes.txt").write_text("mine")
    assert "the run folder" in destination_problem(str(run), str(run), str(base))
    assert "the base model" in destination_problem(str(base), str(run), str(base), force=True)
    assert "training run folder" in destination_problem(str(other_run), str(run), str(base), force=True)
    assert "--force" in destination_problem(str(full), str(run), str(base))
    for force in (False, True):
        problem = destination_problem(str(model), str(run), str(base), force=force)
        assert problem.startswith(f"--out {model} holds a model") and "never replaces" in problem, problem
    assert destination_problem(str(full), str(run), str(base), force=True) is None
    assert destination_problem(str(empty), str(run), str(base)) is None
    assert destination_problem(str(tmp_path / "new"), str(run), str(base)) is None


def test_run_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    from llama_factory_ext.stages.cls.runfolder import LOCK, RunLock

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "t"}))
        with pytest.raises(UserError, match=f"in use by another run \\(pid {sleeper.pid}"):
            RunLock(str(tmp_path)).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = RunLock(str(tmp_path)).acquire()  # the owner is gone: stale
    assert lock.held and json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    with pytest.raises(UserError, match="in use"):  # a second run while the first holds it
        RunLock(str(tmp_path)).acquire()
    lock.release()
    assert not (tmp_path / LOCK).exists()
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "another-machine", "started": "t"}))
    with pytest.raises(UserError, match="another-machine"):  # cannot tell if it is alive: kept
        RunLock(str(tmp_path)).acquire()


def test_resume_skips_an_incomplete_checkpoint(tmp_path):
    from llama_factory_ext.stages.cls.runfolder import usable_checkpoint

    good, bad = tmp_path / "checkpoint-5", tmp_path / "checkpoint-8"
    good.mkdir()
    (good / "trainer_state.json").write_text("{}")
    (good / "adapter_model.safetensors").write_bytes(b"x")
    bad.mkdir()
    (bad / "adapter_model.safetensors").write_bytes(b"x")  # killed before trainer_state.json
    assert usable_checkpoint(str(tmp_path), str(bad)) == str(good)
    assert not bad.exists() and (tmp_path / "incomplete-checkpoint-8").is_dir()


def test_overwrite_clears_only_the_previous_runs_outputs(tmp_path):
    from llama_factory_ext.stages.cls.runfolder import clear_previous_run

    for name in ("predictions.jsonl", "classification_report.md", "confusion_matrix.png", "all_results.json",
                 "cls_run.json", "my_notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "checkpoint-10").mkdir()
    clear_previous_run(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["my_notes.txt"]
    model = tmp_path / "model"  # a folder that is not a run: untouched
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert clear_previous_run(str(model)) == [] and (model / "config.json").exists()


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


def test_guard_keys_are_pack_keys():
    from llama_factory_ext.config import prepare

    run = prepare({"training_guard": False, "training_guard_loss_factor": 3}, data=False)
    assert run.settings["training_guard"].training_guard is False and "training_guard" not in run.host_args
    with pytest.raises(UserError, match="training_guard_loss_factor"):
        prepare({"training_guard_loss_factor": 0.5}, data=False)


def _plugin_module(name: str, keys: dict):
    import types

    from pydantic import create_model

    from llama_factory_ext.plugins import hookimpl

    mod = types.ModuleType(name)
    model = create_model(f"{name}_keys", **{k: (float, 0.0) for k in keys})

    @hookimpl
    def lfx_register_keys(register):
        register(name, model)

    mod.lfx_register_keys = lfx_register_keys
    return mod


def test_a_plugin_cannot_take_host_keys_or_another_owners_keys():
    from llama_factory_ext import plugins

    plugins.reset()
    try:
        pm = plugins.get_plugin_manager()
        pm.register(_plugin_module("takes_host", {"learning_rate": 1, "lora_rank": 1}), name="takes_host")
        reason = plugins.clash_of(pm, "takes_host")
        assert "`learning_rate`" in reason and "`lora_rank`" in reason and "LLaMA-Factory" in reason
        pm.unregister(name="takes_host")
        pm.register(_plugin_module("takes_decay", {"layerwise_lr_decay": 1}), name="takes_decay")
        reason = plugins.clash_of(pm, "takes_decay")
        assert "`layerwise_lr_decay`" in reason and "strategy 'layerwise_lr'" in reason
        pm.unregister(name="takes_decay")
        pm.register(_plugin_module("fine", {"my_new_key": 1}), name="fine")
        assert plugins.clash_of(pm, "fine") is None
    finally:
        plugins.reset()


def test_recipes_copy_stays_inside_the_recipe_folder(tmp_path):
    from llama_factory_ext.recipes_cli import copy_recipe

    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("TOPSECRET")
    shared = tmp_path / "shared" / "r"
    (shared / "data").mkdir(parents=True)
    (shared / "data" / "dataset_info.json").write_text("{}")
    (shared / "data" / "leak.txt").symlink_to(secret / "key.txt")
    (shared / "data" / "leakdir").symlink_to(secret)
    (shared / "in.yaml").write_text("model_name_or_path: x\ndataset_dir: data\n")
    (shared / "out.yaml").write_text("model_name_or_path: x\ndataset_dir: ../..\n")
    target, left = copy_recipe(str(shared / "in.yaml"), str(tmp_path / "c1"))
    assert sorted(p.name for p in (tmp_path / "c1" / "data").rglob("*")) == ["dataset_info.json"]
    assert any("leak.txt" in x for x in left) and any("leakdir" in x for x in left)
    target, left = copy_recipe(str(shared / "out.yaml"), str(tmp_path / "c2"))
    assert not (tmp_path / "c2" / "data").exists() and any("not inside the recipe's own folder" in x for x in left)
    assert "TOPSECRET" not in "".join(p.read_text() for p in (tmp_path).rglob("*") if p.is_file() and "secret" not in str(p) and not p.is_symlink())


def test_recipes_bundled_still_validate_with_safety_checks():
    from llama_factory_ext.validation import validate_file

    problems, _ = validate_file(RECIPES / "tiny_cls.yaml")
    assert problems == []


def test_host_stage_guard_raises_at_train_end_and_marks_the_folder(tmp_path):
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from llama_factory_ext.api import Run
    from llama_factory_ext.guard import host_callbacks

    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    (cb,) = host_callbacks(Run())
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
