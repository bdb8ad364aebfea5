"""Generated run folders (damaged, foreign, in use, holding the run's own input) and file-system faults (read-only,
a file where a folder belongs, a full disk: a small tmpfs where this process may mount, else RLIMIT_FSIZE in a
child, EFBIG standing in for ENOSPC) under the readers and a new run: one message naming output_dir or a key, or a
finished run; nothing foreign or read by the run is lost; never `running` or `finished` left by a failed run."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from unit import fuzzcases as fc

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@FUZZ
@given(case=fc.run_folder_cases())
def test_generated_run_folders_end_in_a_finished_run_or_a_named_problem(case):
    out = fc.run_run_folder_case(case)
    assert out.ok, f"{out.kind}: {out.detail}\ncase: {case!r}"[:4000]


BASE = {"shape": "previous + foreign", "status": "finished", "status_owner": "dead", "lock": "none",
        "checkpoints": ["complete"], "inputs": [], "resume": None, "overwrite": True, "fault": "none", "limit": 0,
        "write_mb": 1}


@pytest.mark.parametrize("fault, said", [
    ("size limit", "file too large"),
    ("full disk", "no space left" if os.geteuid() == 0 else "file too large"),
    ("read-only", "read-only" if os.geteuid() == 0 else "permission denied"),
])
def test_each_file_system_fault_is_one_message_and_keeps_user_files(fault, said):
    out = fc.run_run_folder_case({**BASE, "fault": fault})
    if "skipped" in out.tags:
        pytest.skip(out.detail)
    assert out.kind == "clean error" and said in out.detail and "key `output_dir`" in out.detail, out.detail


@pytest.mark.parametrize("change, kind, said", [
    ({"lock": "live"}, "clean error", "in use by another run (pid 1"),
    ({"lock": "other host stale"}, "clean error", "has not been refreshed for 12 min"),
    ({"lock": "dead", "status": "running"}, "correct result", "holds an interrupted run"),
    ({"inputs": ["adapter in a checkpoint"]}, "clean error", "key `adapter_name_or_path`"),
    ({"shape": "a file"}, "clean error", "is a file, not a folder"),
    ({"lock": "a folder"}, "clean error", "cannot remove the stale lock"),
    ({"status": "a folder"}, "correct result", "removed the previous run's outputs"),  # cleared like the rest
    ({"status": "a folder", "overwrite": False}, "clean error", "run_status.json"),
])
def test_run_folder_classes(change, kind, said):
    out = fc.run_run_folder_case({**BASE, **change})
    assert out.kind == kind and said in out.detail, out.detail


def test_the_harness_sees_a_run_left_running(monkeypatch):
    """The property can fail: a failure handler that records nothing leaves `running`, which is not ok."""
    from llama_factory_ext import runfolder

    monkeypatch.setattr(runfolder, "mark_failed", lambda *a, **k: True)
    out = fc.run_run_folder_case({**BASE, "fault": "none", "status": "none", "write_mb": 0,
                                  "inputs": [], "overwrite": False, "resume": "missing", "checkpoints": ["a file"]})
    assert out.ok  # nothing failed here
    monkeypatch.setattr(fc, "new_run_in", _fails_after_running)
    out = fc.run_run_folder_case({**BASE, "fault": "none"})
    assert out.kind == "other" and "left `running`" in out.detail, out.detail


def _fails_after_running(out, *a, **k):
    from llama_factory_ext.api import UserError
    from llama_factory_ext.runfolder import write_status

    write_status(out, "running")
    raise UserError("key `output_dir`: boom")
