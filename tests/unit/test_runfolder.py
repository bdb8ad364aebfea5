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
    clear_previous_run(str(tmp_path), {})
    assert sorted(os.listdir(tmp_path)) == ["my_notes.txt"]
    model = tmp_path / "model"  # a folder that is not a run: untouched
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert clear_previous_run(str(model), {}) == [] and (model / "config.json").exists()


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


def _previous_run(out):
    """A finished LoRA run folder: adapter, manifest, a checkpoint, predictions."""
    out.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json", "cls_run.json", "predictions.jsonl",
                 "run_status.json"):
        (out / name).write_text("{}")
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text("{}")
    return sorted(os.listdir(out))


@pytest.mark.parametrize("key, where", [
    ("adapter_name_or_path", "."), ("adapter_name_or_path", "./"), ("model_name_or_path", "checkpoint-4"),
    ("resume_from_checkpoint", "checkpoint-4"), ("adapter_name_or_path", "checkpoint-4/nested"),
])
def test_overwrite_refuses_to_remove_what_the_run_reads(tmp_path, key, where):
    """An input that is output_dir itself or lies in a run entry: one message naming key and path, nothing removed."""
    from llama_factory_ext.runfolder import clear_previous_run, overwrite_conflicts

    out = tmp_path / "run"
    before = _previous_run(out)
    (out / "checkpoint-4" / "nested").mkdir()
    path = str(out / where)
    inputs = {key: path, "model_name_or_path": str(tmp_path / "elsewhere")} if key != "model_name_or_path" else {key: path}
    with pytest.raises(UserError) as err:
        clear_previous_run(str(out), inputs)
    assert len(err.value.problems) == 1
    assert f"key `{key}`: {path}" in err.value.problems[0] and "overwrite_output_dir: true" in err.value.problems[0]
    assert sorted(os.listdir(out)) == before
    assert overwrite_conflicts(str(out), inputs) == err.value.problems


def test_overwrite_checks_data_files_and_links_not_just_keys(tmp_path):
    """dataset_dir stands for the data files it names; a link into a run entry counts as the entry."""
    from llama_factory_ext.runfolder import clear_previous_run, input_paths

    out = tmp_path / "run"
    before = _previous_run(out)
    (out / "dataset_info.json").write_text(json.dumps({"pseudo": {"file_name": "predictions.jsonl"},
                                                       "mine": {"file_name": "mine.jsonl"}}))
    (out / "mine.jsonl").write_text("{}")
    keep = sorted(before + ["dataset_info.json", "mine.jsonl"])
    with pytest.raises(UserError, match=r"key `test_dataset`: .*predictions\.jsonl lies in predictions\.jsonl"):
        clear_previous_run(str(out), {"dataset_dir": str(out), "dataset": "mine", "test_dataset": ["pseudo"]})
    assert sorted(os.listdir(out)) == keep
    link = tmp_path / "adapter_link"
    link.symlink_to(out / "checkpoint-4")
    with pytest.raises(UserError, match="key `adapter_name_or_path`: .*adapter_link lies in checkpoint-4"):
        clear_previous_run(str(out), {"adapter_name_or_path": [str(link)]})
    assert sorted(os.listdir(out)) == keep
    # data next to the run (dataset_dir == output_dir) and a base model above it are not removed: allowed
    inputs = {"dataset_dir": str(out), "dataset": "mine", "model_name_or_path": str(tmp_path), "cache_dir": None}
    assert input_paths(inputs) == [("model_name_or_path", str(tmp_path)), ("dataset_dir", str(out / "dataset_info.json")),
                                   ("dataset", str(out / "mine.jsonl"))]
    assert clear_previous_run(str(out), inputs) == before
    assert sorted(os.listdir(out)) == ["dataset_info.json", "mine.jsonl"]


def test_a_file_where_the_folder_belongs_is_one_message(tmp_path):
    """output_dir a file, under a file, or where nothing may be created: a UserError naming output_dir."""
    from llama_factory_ext.runfolder import RunLock, mark_failed, write_status

    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(UserError, match=f"key `output_dir`: {afile} is a file, not a folder"):
        RunLock(str(afile)).acquire()
    with pytest.raises(UserError, match="key `output_dir`: .*a file is where a folder belongs"):
        RunLock(str(afile / "run")).acquire()
    with pytest.raises(UserError, match="key `output_dir`: /sys/lfx_no_such_run: cannot create it"):
        RunLock("/sys/lfx_no_such_run").acquire()  # sysfs refuses new folders, even to root
    with pytest.raises(UserError, match="key `output_dir`: cannot write /dev/full/run_status.json"):
        write_status("/dev/full", "running")
    assert afile.read_text() == "mine"


def test_mark_failed_never_raises(tmp_path, capsys):
    from llama_factory_ext.runfolder import STATUS, mark_failed, read_status, write_status

    assert mark_failed(str(tmp_path), "loss is nan", step=3) is True
    assert read_status(str(tmp_path))["status"] == "failed"
    assert mark_failed("/dev/full", "boom") is False  # a device where the folder belongs
    assert "the failure could not be recorded" in capsys.readouterr().err
    write_status(str(tmp_path), "running")
    assert mark_failed(str(tmp_path), "boom", bad=object()) is False  # not JSON: still no exception
    err = capsys.readouterr().err
    assert "TypeError" in err and "the stale `running` status was removed" in err
    assert not (tmp_path / STATUS).exists() and os.listdir(tmp_path) == []


FULL_DISK = r"""
import json, os, resource, sys
from llama_factory_ext.api import UserError
from llama_factory_ext.runfolder import RunLock, mark_failed, read_status, write_status
out = sys.argv[1]
write_status(out, "running")
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # every write past byte 0 fails (EFBIG)
try:
    write_status(out, "finished")
except UserError as err:
    print("WRITE:", err.problems[0])
try:
    RunLock(out).acquire()
except UserError as err:
    print("LOCK:", err.problems[0])
print("MARKED:", mark_failed(out, "the disk is full"))
print("LEFT:", sorted(os.listdir(out)))
"""


def test_full_disk_status_is_never_left_running(tmp_path):
    """A real write fault (a file-size limit of 0 bytes): status and lock writes give one message each, the
    failure handler does not raise, and the folder no longer says `running`."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(out)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert lines["WRITE"].startswith(f"key `output_dir`: cannot write {out}/run_status.json (file too large")
    assert lines["LOCK"] == f"key `output_dir`: {out}: cannot write in it (file too large for this file system or " \
                            "limit; free space or pick another folder)"
    assert lines["MARKED"] == "False" and lines["LEFT"] == "[]"
    assert "the stale `running` status was removed" in proc.stderr


HOLD = r"""
import sys, time
from llama_factory_ext.runfolder import RunLock, write_status
out = sys.argv[1]
RunLock(out).acquire()
write_status(out, "running")
print("HOLDING", flush=True)
time.sleep(120)
"""


def test_a_run_killed_with_sigkill_reads_as_interrupted(tmp_path):
    """A real process takes the folder, marks it running and is killed with SIGKILL (no handler runs): readers say
    `interrupted` in one message (the commands that read a run refuse it), a new run takes the folder over."""
    import argparse
    import signal

    from llama_factory_ext.cli import argtypes
    from llama_factory_ext.runfolder import LOCK, RunLock, read_status, run_state, unfinished_problem

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "HOLDING"
        assert run_state(str(out))[0] == "running"
        assert "still running" in unfinished_problem(str(out))
        with pytest.raises(UserError, match="in use by another run"):
            RunLock(str(out)).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    status = read_status(str(out))
    assert status["status"] == "running" and status["pid"] == proc.pid and status["host"] == socket.gethostname()
    assert (out / LOCK).exists()  # left behind: nothing ran after the kill
    state, why = run_state(str(out))
    assert state == "interrupted" and f"its process (pid {proc.pid}) is gone" in why
    problem = unfinished_problem(str(out))
    assert problem.startswith(f"{out} holds an interrupted run: it is marked running, but its process")
    assert "\n" not in problem and "resume" in problem
    with pytest.raises(argparse.ArgumentTypeError, match="holds an interrupted run"):
        argtypes.run_folder(str(out))
    lock = RunLock(str(out)).acquire()  # the next run of the same recipe takes the folder over
    assert lock.held
    lock.release()


def test_interrupted_by_pid_reuse_and_by_a_stale_lock_of_another_host(tmp_path):
    from llama_factory_ext.runfolder import LOCK, STALE_S, STATUS, owner_record, run_state

    me = owner_record()
    (tmp_path / STATUS).write_text(json.dumps({"status": "running", **me}))
    (tmp_path / LOCK).write_text(json.dumps(me))
    assert run_state(str(tmp_path))[0] == "running"  # this very process: alive
    (tmp_path / LOCK).write_text(json.dumps({**me, "pid_start": "1"}))  # same pid, another process's start time
    state, why = run_state(str(tmp_path))
    assert state == "interrupted" and "the pid now belongs to another process" in why
    other = {**me, "host": "another-machine"}
    (tmp_path / LOCK).write_text(json.dumps(other))
    assert run_state(str(tmp_path))[0] == "running"  # refreshed recently: cannot tell, so running
    old = os.stat(tmp_path / LOCK).st_mtime - STALE_S - 60
    os.utime(tmp_path / LOCK, (old, old))
    state, why = run_state(str(tmp_path))
    assert state == "interrupted" and "has not been refreshed for 11 min" in why
    os.unlink(tmp_path / LOCK)
    (tmp_path / STATUS).write_text(json.dumps({"status": "running", **other}))
    assert run_state(str(tmp_path))[0] == "interrupted"  # a live run on any host holds its lock
    (tmp_path / STATUS).write_text(json.dumps({"status": "finished", **other}))
    assert run_state(str(tmp_path)) == ("finished", "")


def test_a_held_lock_is_refreshed(tmp_path, monkeypatch):
    import time

    from llama_factory_ext import runfolder

    monkeypatch.setattr(runfolder, "HEARTBEAT_S", 0.05)
    lock = runfolder.RunLock(str(tmp_path)).acquire()
    path = tmp_path / runfolder.LOCK
    os.utime(path, (1, 1))
    deadline = time.monotonic() + 10
    while os.stat(path).st_mtime < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    lock.release()
    assert time.monotonic() < deadline and not path.exists()


def test_a_new_run_says_when_it_takes_over_an_interrupted_run_without_a_lock(tmp_path, capsys):
    from llama_factory_ext.runfolder import STATUS, RunLock

    (tmp_path / STATUS).write_text(json.dumps({"status": "running", "pid": 4_194_399, "host": socket.gethostname(),
                                               "time": "t"}))
    lock = RunLock(str(tmp_path)).acquire()
    lock.release()
    err = capsys.readouterr().err
    assert err.count("holds an interrupted run") == 1 and "pid 4194399" in err and "taking the folder over" in err
