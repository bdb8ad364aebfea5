"""Host commands beyond `train` (chat, export), the head's other backends and the FA2 warning, through the
real `llamafactory-cli`."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import BIN, NO_PROXY, RECIPES, api_server, env, free_port, run_cli, write_yaml
from test_patches_train import sft_recipe


def _chat(cfg, cwd, **extra):
    """One question, then `exit` once the answer is printed and the host's generation thread has ended.

    The host's `chat` generates in a daemon thread it never joins. Piping `exit` at once lets the main thread
    finalize Python while that thread still frees its KV cache, and the process aborts in C++ ("terminate called
    without an active exception", SIGABRT) -- with the pack disabled too (6 of 32 runs on the head host, CPU).
    A person typing `exit` never hits that window; this test types like one."""
    proc = subprocess.Popen([str(BIN / "llamafactory-cli"), "chat", str(cfg)], cwd=str(cwd), env=env(**extra),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, deadline = b"", time.monotonic() + 300
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    proc.stdin.write(b"hello\n")
    proc.stdin.flush()
    while time.monotonic() < deadline and proc.poll() is None and seen.count(b"User: ") < 2:
        if select.select([fd], [], [], 1.0)[0]:  # until the prompt comes back after the answer
            seen += os.read(fd, 65536)
    if proc.poll() is None:
        time.sleep(1.0)
        proc.stdin.write(b"exit\n")
        proc.stdin.flush()
    os.set_blocking(fd, True)
    try:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    stdout = (seen + out).decode(errors="replace")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, err.decode(errors="replace"))


@pytest.fixture(scope="module")
def rslora_adapter(tmp_path_factory, tiny_llama) -> Path:
    """A 1-step rslora adapter trained by the real `llamafactory-cli train` (served by the chat and api tests)."""
    workdir = tmp_path_factory.mktemp("rslora_run") / "recipes"
    shutil.copytree(RECIPES, workdir)
    recipe = sft_recipe(workdir, tiny_llama, "rs", finetuning_type="rslora", lora_rank=2, max_steps=1)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir / "out" / "rs"


@pytest.mark.e2e
def test_chat_and_export_accept_pack_finetuning_types(workdir, tiny_llama, rslora_adapter):
    """A user's `finetuning_type: [rslora, ...]` works in chat and export (the host alone refuses it)."""
    infer = {"model_name_or_path": str(tiny_llama), "adapter_name_or_path": str(rslora_adapter),
             "template": "llama3", "finetuning_type": ["rslora"], "memory_check": "warn"}
    cfg = write_yaml(workdir / "chat.yaml", infer)
    chat = _chat(cfg, workdir)
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert "Assistant:" in chat.stdout and "Traceback" not in chat.stderr
    host_only = _chat(cfg, workdir, LLAMA_FACTORY_EXT_DISABLE="1")
    assert host_only.returncode != 0  # the host alone cannot read it: the pack is what makes it work

    export = write_yaml(workdir / "export.yaml", dict(infer, export_dir=str(workdir / "merged")))
    out = run_cli(["llamafactory-cli", "export", export.name], cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (workdir / "merged" / "config.json").exists()


def _http(url, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with NO_PROXY.open(req, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read().decode())


@pytest.mark.e2e
def test_api_serves_a_pack_adapter(workdir, tiny_llama, rslora_adapter):
    """`llamafactory-cli api` with the YAML a user trained with (`finetuning_type: [rslora]`) serves the adapter
    over the host's OpenAI-style endpoint; the host alone refuses that YAML."""
    cfg = write_yaml(workdir / "api.yaml", {"model_name_or_path": str(tiny_llama),
                                            "adapter_name_or_path": str(rslora_adapter),
                                            "template": "llama3", "finetuning_type": ["rslora"]})
    with api_server([cfg], workdir, timeout=240, API_KEY="", API_MODEL_NAME="gpt-3.5-turbo") as (base, _):
        status, models = _http(f"{base}/v1/models", timeout=5)
        assert status == 200 and [m["id"] for m in models["data"]] == ["gpt-3.5-turbo"], models
        status, reply = _http(f"{base}/v1/chat/completions", {"model": "gpt-3.5-turbo", "max_tokens": 8,
                                                             "messages": [{"role": "user", "content": "hello"}]})
        assert status == 200 and isinstance(reply["choices"][0]["message"]["content"], str), reply
        assert reply["usage"]["completion_tokens"] >= 1

    host_only = run_cli(["llamafactory-cli", "api", cfg.name], cwd=workdir, timeout=300, LLAMA_FACTORY_EXT_DISABLE="1",
                        API_HOST="127.0.0.1", API_PORT=free_port())
    assert host_only.returncode != 0  # the host alone cannot read it: the pack is what makes it work


EVAL_ARGS = """
import json, sys
from llamafactory.eval.evaluator import get_eval_args  # the evaluator's argument step, through the import hook
model, data, evaluation, finetuning = get_eval_args(json.loads(sys.argv[1]))
print("parsed:", finetuning.finetuning_type, evaluation.task)
"""


def test_evaluator_get_eval_args_accepts_pack_finetuning_types(tiny_llama):
    """Python code importing `llamafactory.eval.evaluator` reads the training YAML: pack methods map to their host
    base, pack keys dropped. (`llamafactory-cli eval` itself raises NotImplementedError in both tested hosts; an
    evaluation needs the host's MMLU/C-Eval data from the hub, so only the argument step runs here.)"""
    recipe = json.dumps({"model_name_or_path": str(tiny_llama), "template": "llama3", "task": "mmlu_test",
                         "finetuning_type": ["rslora", "layerwise_lr"], "layerwise_lr_decay": 0.9})
    out = subprocess.run([str(BIN / "python"), "-c", EVAL_ARGS, recipe], env=env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "parsed: lora mmlu_test" in out.stdout, out.stderr[-3000:]
    host_only = subprocess.run([str(BIN / "python"), "-c", EVAL_ARGS, recipe], env=env(LLAMA_FACTORY_EXT_DISABLE="1"),
                               capture_output=True, text=True, timeout=300)
    assert host_only.returncode != 0 and "parsed:" not in host_only.stdout


@pytest.mark.e2e
def test_backend_switch_refuses_strategies_it_would_drop(workdir, tiny_llama):
    """KTransformers (`use_kt`) skips the pack's optimizer groups: refuse naming the key, before weights load."""
    recipe = sft_recipe(workdir, tiny_llama, "kt", finetuning_type=["lora", "layerwise_lr"], use_kt=True,
                        layerwise_lr_decay=0.9, max_steps=1)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "key `use_kt: true`" in out.stderr and "layerwise_lr" in out.stderr
    assert not (workdir / "out" / "kt").exists()


def test_backend_problems_name_env_and_keys(monkeypatch):
    from llama_factory_ext.recipe import prepare

    run = prepare({"stage": "sft", "finetuning_type": ["lora", "layerwise_lr"], "layerwise_lr_decay": 0.9})
    from llama_factory_ext.patches.train import backend_problems

    assert backend_problems(run, {}) == []
    monkeypatch.setenv("USE_MEGATRON_BRIDGE", "1")
    problems = backend_problems(run, {"use_hyper_parallel": True})
    assert any("USE_MEGATRON_BRIDGE=1" in p for p in problems) and any("use_hyper_parallel" in p for p in problems)
    host_only = prepare({"stage": "sft", "finetuning_type": "lora"})  # nothing of the pack to drop
    assert backend_problems(host_only, {"use_kt": True}) == []


def test_infer_recipe_maps_pack_types_and_refuses_cls(tmp_path):
    from llama_factory_ext.api import UserError
    from llama_factory_ext.patches.infer import infer_recipe

    assert infer_recipe({"finetuning_type": "lora", "template": "llama3"}) is None
    assert infer_recipe({"finetuning_type": "rslora+layerwise_lr", "layerwise_lr_decay": 0.9}) == {
        "finetuning_type": "lora"}
    assert infer_recipe(["--finetuning_type", "rslora", "--template", "llama3"]) == [
        "--finetuning_type", "lora", "--template", "llama3"]
    (tmp_path / "cls_run.json").write_text("{}")
    for raw in ({"stage": "cls"}, {"adapter_name_or_path": str(tmp_path)}):
        with pytest.raises(UserError, match="llamafactory-ext predict"):
            infer_recipe(raw)


@pytest.mark.e2e
def test_fa2_warning_follows_installed_transformers(workdir, tiny_llama):
    recipe = sft_recipe(workdir, tiny_llama, "fa2", finetuning_type="lora", flash_attn="fa2", max_steps=1)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    assert out.returncode == 0, out.stderr[-3000:]
    warned = "LLaMA-Factory issue #10610" in out.stderr
    assert warned == (version("transformers") == "5.6.0")


def test_shipped_recipes_avoid_broken_fa2():
    from conftest import RECIPES

    import yaml

    for path in sorted(RECIPES.glob("*.yaml")):
        assert yaml.safe_load(path.read_text()).get("flash_attn", "auto") != "fa2", path.name


def test_doctor_names_tested_host():
    out = run_cli(["llamafactory-ext", "doctor", "--json"], cwd=BIN)
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    expected = {"0.9.5": "the PyPI release", "0.9.6.dev0": "the development head"}[version("llamafactory")]
    assert expected in checks["llamafactory"]["value"]
    assert ("FlashAttention-2" in checks) == (version("transformers") == "5.6.0")
    if os.environ.get("HOST") == "editable":  # scripts/test.sh HOST=editable: the head from its source tree
        assert "editable install from" in checks["llamafactory"]["value"]


@pytest.mark.e2e
def test_guard_stops_a_diverging_host_stage_run_that_uses_the_pack(workdir, tiny_llama):
    """stage: sft, full fine-tuning with layer-wise LR at lr 1.0: the guard (a callback the pack adds) stops it with advice, marks the
    folder failed and the diverged final model is not saved. The same recipe without pack keys is the host's."""
    recipe = sft_recipe(workdir, tiny_llama, "div", finetuning_type=["full", "layerwise_lr"], learning_rate=1.0,
                        max_steps=30, layerwise_lr_decay=1.0)
    out = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "training guard stopped the run" in out.stderr and "Try:" in out.stderr
    status = json.loads((workdir / "out" / "div" / "run_status.json").read_text())
    assert status["status"] == "failed"
    assert not (workdir / "out" / "div" / "model.safetensors").exists()


@pytest.mark.e2e
def test_host_stage_pack_run_owns_its_output_dir(workdir, tiny_llama):
    """A second pack run into an output_dir in use is refused; a lock left by a dead process is taken over."""
    import socket
    import sys

    recipe = sft_recipe(workdir, tiny_llama, "owned", finetuning_type="rslora", max_steps=1)
    out_dir = workdir / "out" / "owned"
    out_dir.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        (out_dir / ".lfx_run.lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                           "started": "now"}))
        busy = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
        assert busy.returncode != 0 and "is in use by another run" in busy.stderr and "Traceback" not in busy.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    ok = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)  # the owner is gone: taken over
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert (out_dir / "adapter_config.json").exists() and not (out_dir / ".lfx_run.lock").exists()
