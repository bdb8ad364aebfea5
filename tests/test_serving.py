"""`llamafactory-cli api` serving finished cls runs: vLLM's /classify schema, two adapter runs on one base, batching,
overload, bad input, the chat refusal, a merged export, and the host's own chat server beside (fail-open).
Everything through the real `llamafactory-cli api` on 127.0.0.1 and a plain HTTP client."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import BIN, RECIPES, env, run_cli, write_yaml
from test_patches_infer import _NO_PROXY, _free_port

pytestmark = pytest.mark.e2e
np = pytest.importorskip("numpy")
pytest.importorskip("torch")

FAST = ["max_steps=3", "do_eval=false", "eval_strategy=no", "load_best_model_at_end=false", "do_predict=false",
        "save_strategy=no"]


def _fail_text(proc) -> str:
    return f"rc={proc.returncode}\nSTDOUT:\n{proc.stdout[-2000:]}\nSTDERR:\n{proc.stderr[-4000:]}"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    """Two tiny cls runs on one base: `six` (6 labels) and `three` (3 labels: heads of different shapes)."""
    work = tmp_path_factory.mktemp("serving") / "recipes"
    shutil.copytree(RECIPES, work)
    info = json.loads((work / "data" / "dataset_info.json").read_text())
    keep = sorted({r["label"] for r in _rows(work / "data" / "debian_sample_train.jsonl")})[:3]
    for split in ("train", "validation"):
        rows = [r for r in _rows(work / "data" / f"debian_sample_{split}.jsonl") if r["label"] in keep]
        (work / "data" / f"three_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        info[f"three_{split}"] = {"file_name": f"three_{split}.jsonl", "columns": {"text": "text", "label": "label"}}
    (work / "data" / "dataset_info.json").write_text(json.dumps(info))
    three = ["dataset=three_train", "eval_dataset=three_validation", "test_dataset=null"]
    for name, extra in (("six", []), ("three", three)):
        proc = run_cli(["llamafactory-cli", "train", "tiny_cls.yaml", f"model_name_or_path={tiny_llama}",
                        f"output_dir=runs/{name}", *FAST, *extra], cwd=work)
        assert proc.returncode == 0, _fail_text(proc)
    texts = [r["text"] for r in _rows(work / "data" / "debian_sample_test.jsonl")][:12]
    return {"work": work, "six": work / "runs" / "six", "three": work / "runs" / "three", "texts": texts,
            "base": tiny_llama}


def _request(url, body=None, raw: bytes = None, headers=None, timeout=120):
    """(status, lower-cased headers, JSON body) for any status (4xx/5xx included)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with _NO_PROXY.open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read().decode())
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(err.read().decode())


@contextmanager
def server(args, cwd: Path, **extra_env):
    """`llamafactory-cli api ARGS` on a free 127.0.0.1 port; yields (base URL, log path) once /v1/models answers."""
    port = _free_port()
    log_path = cwd / f"api_{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(BIN / "llamafactory-cli"), "api", *map(str, args)], cwd=str(cwd), stdout=log,
                                stderr=subprocess.STDOUT, env=env(API_HOST="127.0.0.1", API_PORT=port, **extra_env))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.monotonic() + 300, False
        while time.monotonic() < deadline and proc.poll() is None and not ready:
            try:
                with _NO_PROXY.open(urllib.request.Request(f"{base}/v1/models", headers={
                        "Authorization": f"Bearer {extra_env.get('API_KEY', '')}"}), timeout=5):
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


def _predict(run_dir: Path, texts: list[str], tmp: Path) -> np.ndarray:
    """`llamafactory-ext predict` probabilities, in the run's label order."""
    src, dest = tmp / f"{run_dir.name}_in.jsonl", tmp / f"{run_dir.name}_out.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    proc = run_cli(["llamafactory-ext", "predict", run_dir, "--input", src, "--output", dest], cwd=tmp)
    assert proc.returncode == 0, _fail_text(proc)
    labels = json.loads((run_dir / "label_map.json").read_text())["labels"]
    return np.array([[r["probabilities"][lab] for lab in labels] for r in _rows(dest)])


@pytest.fixture(scope="module")
def two_adapters(runs):
    """One server with both runs as adapters on one base (the host's comma-separated adapter_name_or_path)."""
    cfg = write_yaml(runs["work"] / "serve_cls.yaml", {
        "model_name_or_path": str(runs["base"]), "adapter_name_or_path": f"{runs['six']},{runs['three']}",
        "stage": "cls", "template": "llama3", "finetuning_type": ["rslora", "cls_head"]})
    with server([cfg], runs["work"]) as (base, log):
        yield base, log


def test_models_lists_each_adapter_with_its_labels(two_adapters, runs):
    base, _ = two_adapters
    status, _, body = _request(f"{base}/v1/models")
    assert status == 200
    got = {m["id"]: m for m in body["data"]}
    assert list(got) == ["six", "three"]
    for name in got:
        labels = json.loads((runs[name] / "label_map.json").read_text())["labels"]
        assert got[name]["labels"] == labels and got[name]["num_classes"] == len(labels)
    assert got["six"]["num_classes"] == 6 and got["three"]["num_classes"] == 3


def test_classify_single_and_batched_equal_predict(two_adapters, runs, tmp_path):
    base, _ = two_adapters
    texts = runs["texts"]
    for name in ("six", "three"):
        expected = _predict(runs[name], texts, tmp_path)
        labels = json.loads((runs[name] / "label_map.json").read_text())["labels"]
        status, _, body = _request(f"{base}/v1/classify", {"model": name, "input": texts})
        assert status == 200, body
        assert body["object"] == "list" and body["model"] == name and body["id"].startswith("classify-")
        assert isinstance(body["created"], int) and body["usage"]["prompt_tokens"] > len(texts)
        assert body["usage"]["completion_tokens"] == 0
        assert [d["index"] for d in body["data"]] == list(range(len(texts)))
        probs = np.array([d["probs"] for d in body["data"]])
        np.testing.assert_allclose(probs, expected, atol=1e-4)
        assert [d["label"] for d in body["data"]] == [labels[i] for i in expected.argmax(1)]
        assert all(d["num_classes"] == len(labels) and d["labels"] == labels for d in body["data"])
        status, _, one = _request(f"{base}/classify", {"model": name, "input": texts[3]})  # a single string
        assert status == 200 and len(one["data"]) == 1
        np.testing.assert_allclose(one["data"][0]["probs"], expected[3], atol=1e-4)


def test_concurrent_requests_to_both_adapters_are_batched_and_correct(two_adapters, runs):
    base, _ = two_adapters
    texts = runs["texts"]
    serial = {}
    for name in ("six", "three"):
        body = _request(f"{base}/v1/classify", {"model": name, "input": texts})[2]
        serial[name] = np.array([d["probs"] for d in body["data"]])
    results, errors = {}, []

    def client(i):
        name = ("six", "three")[i % 2]
        chunk = texts[i % 4: i % 4 + 1 + i % 3]
        try:
            status, _, body = _request(f"{base}/v1/classify", {"model": name, "input": chunk})
            results[i] = (name, i % 4, status, body)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 16
    for name, start, status, body in results.values():
        assert status == 200, body
        got = np.array([d["probs"] for d in body["data"]])
        np.testing.assert_allclose(got, serial[name][start:start + len(got)], atol=1e-4)


@pytest.mark.parametrize("body, status, field", [
    (b"{not json", 400, None),
    ({"model": "six"}, 400, "input"),
    ({"model": "six", "input": []}, 400, "input"),
    ({"model": "six", "input": ["ok", 3]}, 400, "input"),
    ({"model": "six", "input": "   "}, 400, "input"),
    ({"model": "nope", "input": "x"}, 404, "model"),
    ({"input": "x"}, 400, "model"),  # two models served: `model` is needed
    ({"model": "six", "input": "x", "temperature": 2}, 400, "temperature"),
    ({"model": "six", "input": ["x"] * 257}, 413, "input"),
    ({"model": "six", "input": "x" * 20001}, 413, "input"),
])
def test_bad_input_gets_a_json_error_naming_the_field(two_adapters, body, status, field):
    base, _ = two_adapters
    raw = body if isinstance(body, bytes) else None
    got, _, reply = _request(f"{base}/v1/classify", None if raw else body, raw=raw)
    assert got == status, reply
    assert reply["error"]["code"] == status and reply["error"]["param"] == field
    if field:
        assert f"`{field}`" in reply["error"]["message"]


def test_chat_completions_for_a_classifier_refuse_with_one_message(two_adapters):
    base, _ = two_adapters
    status, _, reply = _request(f"{base}/v1/chat/completions",
                                {"model": "six", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and "classifiers" in reply["error"]["message"] and "/v1/classify" in reply["error"]["message"]


def test_export_served_with_api_key_and_overload_answers_503(runs, tmp_path):
    """A merged export (model_name_or_path, stage: cls) with API_KEY; a full queue answers 503 + Retry-After at once
    while the queued request still completes."""
    exported = tmp_path / "six_merged"
    proc = run_cli(["llamafactory-ext", "export", runs["six"], "--out", exported], cwd=tmp_path)
    assert proc.returncode == 0, _fail_text(proc)
    assert "vllm serve" in proc.stderr and "llamafactory-cli api" in proc.stderr
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"] and config["num_labels"] == 6
    assert len(config["id2label"]) == 6 and config["pad_token_id"] is not None
    texts = runs["texts"]
    expected = _predict(runs["six"], texts, tmp_path)
    auth = {"Authorization": "Bearer s3cret"}
    with server(["--model_name_or_path", exported, "--stage", "cls"], tmp_path, API_KEY="s3cret",
                LFX_SERVE_WINDOW_MS="1500", LFX_SERVE_MAX_QUEUE="4") as (base, _):
        status, _, reply = _request(f"{base}/v1/classify", {"model": "six_merged", "input": "x"})
        assert status == 401
        status, _, models = _request(f"{base}/v1/models", headers=auth)
        assert [m["id"] for m in models["data"]] == ["six_merged"]
        first = {}
        t = threading.Thread(target=lambda: first.update(r=_request(f"{base}/v1/classify",
                                                                    {"input": texts[:3]}, headers=auth)))
        t.start()
        time.sleep(0.5)  # the first request waits in the 1.5 s window with 3 of 4 queue places
        started = time.monotonic()
        status, headers, reply = _request(f"{base}/v1/classify", {"input": texts[3:5]}, headers=auth)
        assert status == 503 and headers.get("retry-after") == "1", reply
        assert time.monotonic() - started < 1.0 and "queue is full" in reply["error"]["message"]
        t.join(120)
        status, _, body = first["r"]
        assert status == 200, body
        np.testing.assert_allclose([d["probs"] for d in body["data"]], expected[:3], atol=1e-4)


def test_host_chat_model_beside_is_served_by_the_host(runs):
    """Fail-open: a plain chat model's config goes to the host's own server, which answers chat completions."""
    cfg = write_yaml(runs["work"] / "serve_chat.yaml", {"model_name_or_path": str(runs["base"]), "template": "llama3"})
    with server([cfg], runs["work"], API_MODEL_NAME="gpt-3.5-turbo") as (base, _):
        status, _, reply = _request(f"{base}/v1/chat/completions", {
            "model": "gpt-3.5-turbo", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]})
        assert status == 200 and isinstance(reply["choices"][0]["message"]["content"], str), reply
        status, _, reply = _request(f"{base}/v1/classify", {"model": "gpt-3.5-turbo", "input": "x"})
        assert status in (404, 405)  # the host's server, untouched: no classify route
