"""Shared fixtures: a tiny Llama built offline, the bundled recipes/data, a CLI runner and a `llamafactory-cli api`
server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
BIN = Path(sys.executable).parent

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DISABLE_VERSION_CHECK": "1",
    "WANDB_DISABLED": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "",
}


def pytest_sessionstart(session):
    unit = REPO / "tests" / "unit"
    if session.config.args and all(Path(a.split("::")[0]).resolve().is_relative_to(unit) for a in session.config.args):
        return  # the unit tier runs from the source tree
    import llama_factory_ext

    where = Path(llama_factory_ext.__file__).resolve()
    if where.is_relative_to(REPO / "llama_factory_ext") and not os.environ.get("LFX_TEST_FROM_SOURCE"):
        pytest.exit(
            f"llama_factory_ext is imported from the source tree ({where}); tests run against the installed "
            "wheel: use `bash scripts/test.sh` (LFX_TEST_FROM_SOURCE=1 with PYTHONPATH=. allows it while developing)",
            returncode=3,
        )


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from llama_factory_ext.tiny import build_tiny_llama, read_texts

    out = tmp_path_factory.mktemp("tiny_llama")
    texts = read_texts(RECIPES / "data" / "debian_sample_train.jsonl")
    return build_tiny_llama(out, texts=texts)


@pytest.fixture()
def workdir(tmp_path) -> Path:
    """A copy of recipes/ (with data/) to run in."""
    shutil.copytree(RECIPES, tmp_path / "recipes")
    return tmp_path / "recipes"


def env(**extra) -> dict:
    e = dict(os.environ)
    e.update(OFFLINE_ENV)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.pop("LLAMA_FACTORY_EXT_DISABLE", None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run_cli(args, cwd, timeout=600, **extra_env) -> subprocess.CompletedProcess:
    """Run a console script of this environment (``llamafactory-cli``, ``llamafactory-ext``)."""
    exe = str(BIN / args[0])
    return subprocess.run([exe, *map(str, args[1:])], cwd=str(cwd), env=env(**extra_env), capture_output=True,
                          text=True, timeout=timeout)


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never through a proxy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def api_server(args, cwd: Path, timeout: float = 300, **extra_env):
    """`llamafactory-cli api ARGS` on a free 127.0.0.1 port; yields (base URL, log path) once `GET /v1/models`
    answers (any HTTP status: an API_KEY refusal is an answer); stopped afterwards, its log free of tracebacks."""
    port = free_port()
    log_path = Path(cwd) / f"api_{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(BIN / "llamafactory-cli"), "api", *map(str, args)], cwd=str(cwd), stdout=log,
                                stderr=subprocess.STDOUT, env=env(API_HOST="127.0.0.1", API_PORT=port, **extra_env))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.monotonic() + timeout, False
        while time.monotonic() < deadline and proc.poll() is None and not ready:
            try:
                with NO_PROXY.open(f"{base}/v1/models", timeout=5):
                    ready = True
            except urllib.error.HTTPError:
                ready = True
            except OSError:
                time.sleep(1)
        assert ready, log_path.read_text(errors="replace")[-4000:]
        yield base, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log_path.read_text(errors="replace"), log_path.read_text(errors="replace")[-4000:]


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def read_log(output_dir: Path) -> list[dict]:
    p = Path(output_dir) / "trainer_log.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


@pytest.fixture()
def cli():
    return run_cli
