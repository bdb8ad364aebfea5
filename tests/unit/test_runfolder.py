"""runfolder: one run per folder (a lock, taken over when its process is gone), a previous run's outputs cleared,
resuming only from complete checkpoints, the run's status."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from llama_factory_ext.api import UserError


def test_run_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    from llama_factory_ext.runfolder import LOCK, RunLock

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
    from llama_factory_ext.runfolder import usable_checkpoint

    good, bad = tmp_path / "checkpoint-5", tmp_path / "checkpoint-8"
    good.mkdir()
    (good / "trainer_state.json").write_text("{}")
    (good / "adapter_model.safetensors").write_bytes(b"x")
    bad.mkdir()
    (bad / "adapter_model.safetensors").write_bytes(b"x")  # killed before trainer_state.json
    assert usable_checkpoint(str(tmp_path), str(bad)) == str(good)
    assert not bad.exists() and (tmp_path / "incomplete-checkpoint-8").is_dir()


def test_overwrite_clears_only_the_previous_runs_outputs(tmp_path):
    from llama_factory_ext.runfolder import clear_previous_run

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


def test_a_lock_without_a_pid_is_stale_and_another_rank_takes_none(tmp_path, monkeypatch):
    from llama_factory_ext.runfolder import LOCK, RunLock

    (tmp_path / LOCK).write_text(json.dumps({"host": socket.gethostname(), "started": "t"}))
    lock = RunLock(str(tmp_path)).acquire()
    assert lock.held and json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    monkeypatch.setenv("RANK", "1")
    other = RunLock(str(tmp_path)).acquire()  # only rank 0 holds the folder
    assert not other.held
    other.release()
    assert (tmp_path / LOCK).exists()
    monkeypatch.delenv("RANK")
    lock.release()
    lock.release()  # twice is harmless
    assert not (tmp_path / LOCK).exists()


def test_status_written_atomically_and_read_back(tmp_path):
    from llama_factory_ext.runfolder import STATUS, read_status, write_status

    assert read_status(str(tmp_path)) is None
    write_status(str(tmp_path), "failed", reason="loss is nan", step=7)
    status = read_status(str(tmp_path))
    assert (status["status"], status["reason"], status["step"], status["pid"]) == ("failed", "loss is nan", 7, os.getpid())
    assert os.listdir(tmp_path) == [STATUS]
    (tmp_path / STATUS).write_text("{half")
    assert read_status(str(tmp_path)) is None


def test_resume_from_an_incomplete_checkpoint_elsewhere_is_refused(tmp_path):
    from llama_factory_ext.runfolder import usable_checkpoint

    other = tmp_path / "other_run" / "checkpoint-3"
    other.mkdir(parents=True)
    (other / "trainer_state.json").write_text("{not json")
    (other / "model.safetensors").write_bytes(b"x")
    with pytest.raises(UserError, match="resume_from_checkpoint.*incomplete"):
        usable_checkpoint(str(tmp_path / "run"), str(other))
    (other / "trainer_state.json").write_text("{}")
    assert usable_checkpoint(str(tmp_path / "run"), str(other)) == str(other)
    assert usable_checkpoint(str(tmp_path / "run"), None) is None


def test_no_complete_checkpoint_starts_from_the_beginning(tmp_path, capsys):
    from llama_factory_ext.runfolder import usable_checkpoint

    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")  # no weights
    assert usable_checkpoint(str(tmp_path), str(tmp_path / "checkpoint-4")) is None
    assert sorted(os.listdir(tmp_path)) == ["incomplete-checkpoint-2", "incomplete-checkpoint-4"]
    assert "training starts from the beginning" in capsys.readouterr().err
