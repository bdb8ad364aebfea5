"""A cls run killed with SIGKILL (no handler runs) through the real `llamafactory-cli train`: the folder still says
`running`; predict and export call it interrupted in one line; the same recipe again takes the folder over, says
so, resumes from the last complete checkpoint and finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

from conftest import BIN, env, run_cli, write_yaml

pytestmark = pytest.mark.e2e


def test_a_run_killed_with_sigkill_is_reported_interrupted_and_resumes(workdir, tiny_llama):
    data = yaml.safe_load((workdir / "tiny_cls.yaml").read_text())
    out = workdir / "out" / "killed"
    data.update(model_name_or_path=str(tiny_llama), output_dir=str(out), max_steps=400, save_steps=2,
                overwrite_output_dir=False, do_eval=False, do_predict=False, eval_strategy="no",
                load_best_model_at_end=False, save_total_limit=None, logging_steps=1)
    data.pop("eval_steps", None)
    data.pop("metric_for_best_model", None)
    recipe = write_yaml(workdir / "killed.yaml", data)
    proc = subprocess.Popen([str(BIN / "llamafactory-cli"), "train", recipe.name], cwd=workdir, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "checkpoint-2" / "trainer_state.json").exists():
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint within 400 s"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert json.loads((out / "run_status.json").read_text())["status"] == "running"  # nothing recorded the kill

    for cmd in (["llamafactory-ext", "predict", out, "--input", "data/debian_sample_test.jsonl"],
                ["llamafactory-ext", "export", out, "--out", workdir / "exported"]):
        got = run_cli(cmd, cwd=workdir)
        errors = [x for x in got.stderr.splitlines() if "error:" in x]
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr[-2000:]
        assert len(errors) == 1 and f"argument run_dir: {out} holds an interrupted run: it is marked running, but " \
                                    f"its process (pid {proc.pid}) is gone" in errors[0], got.stderr[-2000:]
    assert not (workdir / "exported").exists()

    steps = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists())
    again = run_cli(["llamafactory-cli", "train", recipe.name, f"max_steps={steps + 2}"], cwd=workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{out} holds an interrupted run" in again.stderr and "taking the folder over" in again.stderr
    assert json.loads((out / "run_status.json").read_text())["status"] == "finished"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == steps + 2
    assert not (out / ".lfx_run.lock").exists()
