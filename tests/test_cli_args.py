"""Numbers and paths on the real `llamafactory-ext` command line: one line naming the argument, exit 2, no traceback."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli


def _refused(r, argument: str, expected: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert f"error: argument {argument}: {expected}" in lines[-1], r.stderr
    assert len([ln for ln in lines if "error" in ln]) == 1, r.stderr


@pytest.mark.parametrize("size", ["0", "-1", "1.5", "many"])
def test_predict_batch_size(size, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "in.txt").write_text("one text\n")
    r = run_cli(["llamafactory-ext", "predict", "run", "--input", "in.txt", "--output", "out.jsonl",
                 "--batch-size", size], tmp_path)
    _refused(r, "--batch-size", "expected a whole number of at least 1")
    assert not (tmp_path / "out.jsonl").exists()


def test_predict_output_over_its_input_or_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "in.txt").write_text("one text\n")
    r = run_cli(["llamafactory-ext", "predict", "run", "--input", "in.txt", "--output", "in.txt"], tmp_path)
    assert r.returncode == 2 and "--output: in.txt is the --input file" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "in.txt").read_text() == "one text\n"
    r = run_cli(["llamafactory-ext", "predict", "run", "--input", "in.txt", "--output", "run/predictions.jsonl"], tmp_path)
    assert r.returncode == 2 and "is a file of the run folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "predictions.jsonl").exists()


def test_estimate_gpu_memory(tiny_llama, workdir):
    base = ["llamafactory-ext", "estimate", "tiny_sft_rslora.yaml", f"model_name_or_path={tiny_llama}", "--json"]
    for bad in ("0", "-80", "80 bytes"):
        _refused(run_cli([*base, "--gpu-memory", bad], workdir), "--gpu-memory", "expected a memory size")
    r = run_cli([*base, "--gpu-memory", "80"], workdir)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["gpu_memory_bytes"] == 80 * 1024**3 and data["verdict"] == "fits"
    r = run_cli([*base, "--gpu-memory", "80GB"], workdir)
    assert json.loads(r.stdout)["gpu_memory_bytes"] == 80 * 10**9
    _refused(run_cli([*base, "--gpus", "0"], workdir), "--gpus", "expected a whole number of at least 1")
    _refused(run_cli([*base, "--gpu", "H1000"], workdir), "--gpu", "expected a known GPU name")
