"""`llamafactory-cli api` serving finished cls runs: vLLM's /classify schema, four adapter runs on one base (single-label
with 6 and 3 labels, multi-label, regression), batching, overload, bad input, the chat refusal, merged exports, and
the host's own chat server beside (fail-open).
Everything through the real `llamafactory-cli api` on 127.0.0.1 and a plain HTTP client."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import NO_PROXY, RECIPES, api_server, run_cli, write_yaml

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
    """Four tiny cls runs on one base: `six` (6 labels) and `three` (3 labels: heads of different shapes), `tags`
    (multi-label, thresholds tuned on its eval split) and `size` (regression, scores standardised in training)."""
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
    tuned = [*FAST[:-1], "do_eval=true"]  # evaluated at the end: thresholds and temperature fitted on eval
    for name, recipe, extra in (("six", "tiny_cls.yaml", FAST), ("three", "tiny_cls.yaml", FAST + three),
                                ("tags", "tiny_cls_multilabel.yaml", tuned), ("size", "tiny_cls_score.yaml", FAST)):
        proc = run_cli(["llamafactory-cli", "train", recipe, f"model_name_or_path={tiny_llama}",
                        f"output_dir=runs/{name}", *extra], cwd=work)
        assert proc.returncode == 0, _fail_text(proc)
    texts = [r["text"] for r in _rows(work / "data" / "debian_sample_test.jsonl")][:12]
    return {"work": work, "texts": texts, "base": tiny_llama,
            **{name: work / "runs" / name for name in ("six", "three", "tags", "size")}}


def _request(url, body=None, raw: bytes = None, headers=None, timeout=120):
    """(status, lower-cased headers, JSON body) for any status (4xx/5xx included)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with NO_PROXY.open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read().decode())
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(err.read().decode())


def _predict_rows(run_dir: Path, texts: list[str], tmp: Path) -> list[dict]:
    """`llamafactory-ext predict` rows of a run for texts."""
    src, dest = tmp / f"{run_dir.name}_in.jsonl", tmp / f"{run_dir.name}_out.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    proc = run_cli(["llamafactory-ext", "predict", run_dir, "--input", src, "--output", dest], cwd=tmp)
    assert proc.returncode == 0, _fail_text(proc)
    return _rows(dest)


def _labels(run_dir: Path) -> list[str]:
    return json.loads((run_dir / "label_map.json").read_text())["labels"]


def _predict(run_dir: Path, texts: list[str], tmp: Path) -> np.ndarray:
    """`llamafactory-ext predict` probabilities, in the run's label order."""
    return np.array([[r["probabilities"][lab] for lab in _labels(run_dir)] for r in _predict_rows(run_dir, texts, tmp)])


def assert_typed_items_equal_predict(data: list[dict], run_dir: Path, rows: list[dict]) -> None:
    """Multi-label or regression response items against `predict`'s rows of the same run and texts."""
    manifest = json.loads((run_dir / "cls_run.json").read_text())
    labels = _labels(run_dir)
    assert [d["index"] for d in data] == list(range(len(rows)))
    for d, r in zip(data, rows):
        assert d["num_classes"] == len(labels) and d["label_names"] == labels
        if manifest["problem_type"] == "regression":
            assert labels == ["score"] and d["label"] == "score" and len(d["probs"]) == 1
            assert d["score"] == pytest.approx(r["predicted"], abs=1e-4)
            assert d["score"] == pytest.approx(d["probs"][0] * manifest["score_std"] + manifest["score_mean"])
            continue
        np.testing.assert_allclose(d["probs"], [r["probabilities"][lab] for lab in labels], atol=1e-4)
        assert d["labels"] == r["predicted"]
        top = max(r["predicted"], key=r["probabilities"].__getitem__) if r["predicted"] else None
        assert d["label"] == top


@pytest.fixture(scope="module")
def adapters(runs):
    """One server with the four runs as adapters on one base (the host's comma-separated adapter_name_or_path)."""
    names = ("six", "three", "tags", "size")
    cfg = write_yaml(runs["work"] / "serve_cls.yaml", {
        "model_name_or_path": str(runs["base"]), "adapter_name_or_path": ",".join(str(runs[n]) for n in names),
        "stage": "cls", "template": "llama3", "finetuning_type": ["rslora", "cls_head"]})
    with api_server([cfg], runs["work"]) as (base, log):
        yield base, log


def test_models_lists_each_adapter_with_its_labels(adapters, runs):
    base, _ = adapters
    status, _, body = _request(f"{base}/v1/models")
    assert status == 200
    got = {m["id"]: m for m in body["data"]}
    assert list(got) == ["six", "three", "tags", "size"]
    for name in got:
        labels = _labels(runs[name])
        assert got[name]["labels"] == labels and got[name]["num_classes"] == len(labels)
    assert got["six"]["num_classes"] == 6 and got["three"]["num_classes"] == 3
    assert [got[n]["problem_type"] for n in got] == ["single_label", "single_label", "multi_label", "regression"]
    thresholds = json.loads((runs["tags"] / "cls_run.json").read_text())["thresholds"]
    assert got["tags"]["thresholds"] == thresholds and thresholds != [0.5] * len(thresholds)  # tuned on eval
    assert got["size"]["labels"] == ["score"] and "thresholds" not in got["size"]


def test_classify_single_and_batched_equal_predict(adapters, runs, tmp_path):
    base, _ = adapters
    texts = runs["texts"]
    for name in ("six", "three"):
        expected = _predict(runs[name], texts, tmp_path)
        labels = _labels(runs[name])
        status, _, body = _request(f"{base}/v1/classify", {"model": name, "input": texts})
        assert status == 200, body
        assert body["object"] == "list" and body["model"] == name and body["id"].startswith("classify-")
        assert isinstance(body["created"], int) and body["usage"]["prompt_tokens"] > len(texts)
        assert body["usage"]["completion_tokens"] == 0
        assert [d["index"] for d in body["data"]] == list(range(len(texts)))
        probs = np.array([d["probs"] for d in body["data"]])
        np.testing.assert_allclose(probs, expected, atol=1e-4)
        assert [d["label"] for d in body["data"]] == [labels[i] for i in expected.argmax(1)]
        assert all(d["num_classes"] == len(labels) and d["label_names"] == labels for d in body["data"])
        assert not any("labels" in d or "score" in d for d in body["data"])  # multi_label / regression fields
        status, _, one = _request(f"{base}/classify", {"model": name, "input": texts[3]})  # a single string
        assert status == 200 and len(one["data"]) == 1
        np.testing.assert_allclose(one["data"][0]["probs"], expected[3], atol=1e-4)


def test_multilabel_and_regression_adapters_equal_predict(adapters, runs, tmp_path):
    """Beside the single-label adapters on the same base: calibrated sigmoids and the labels over the tuned
    thresholds (multi-label), the score in the data's unit with vLLM's identity `probs` (regression)."""
    base, _ = adapters
    texts = runs["texts"]
    for name in ("tags", "size"):
        rows = _predict_rows(runs[name], texts, tmp_path)
        status, _, body = _request(f"{base}/v1/classify", {"model": name, "input": texts})
        assert status == 200 and body["model"] == name, body
        assert_typed_items_equal_predict(body["data"], runs[name], rows)
        status, _, one = _request(f"{base}/classify", {"model": name, "input": texts[5]})
        assert status == 200
        assert_typed_items_equal_predict(one["data"], runs[name], rows[5:6])


def test_concurrent_requests_to_all_adapters_are_batched_and_correct(adapters, runs):
    base, _ = adapters
    texts = runs["texts"]
    names = ("six", "three", "tags", "size")
    serial = {}
    for name in names:
        body = _request(f"{base}/v1/classify", {"model": name, "input": texts})[2]
        serial[name] = np.array([d["probs"] for d in body["data"]])
    results, errors = {}, []

    def client(i):
        name, start = names[i % 4], (i // 4) % 4
        chunk = texts[start: start + 1 + i % 3]
        try:
            status, _, body = _request(f"{base}/v1/classify", {"model": name, "input": chunk})
            results[i] = (name, start, status, body)
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
    ({"input": "x"}, 400, "model"),  # several models served: `model` is needed
    ({"model": "six", "input": "x", "temperature": 2}, 400, "temperature"),
    ({"model": "six", "input": ["x"] * 257}, 413, "input"),
    ({"model": "six", "input": "x" * 20001}, 413, "input"),
])
def test_bad_input_gets_a_json_error_naming_the_field(adapters, body, status, field):
    base, _ = adapters
    raw = body if isinstance(body, bytes) else None
    got, _, reply = _request(f"{base}/v1/classify", None if raw else body, raw=raw)
    assert got == status, reply
    assert reply["error"]["code"] == status and reply["error"]["param"] == field
    if field:
        assert f"`{field}`" in reply["error"]["message"]


def test_chat_completions_for_a_classifier_refuse_with_one_message(adapters):
    base, _ = adapters
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
    with api_server(["--model_name_or_path", exported, "--stage", "cls"], tmp_path, API_KEY="s3cret",
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


def test_multilabel_and_regression_exports_served_equal_predict(runs, tmp_path):
    """Merged exports of the multi-label and regression runs in one server (`model_name_or_path: A,B`, stage cls):
    the thresholds and the score's mean and std come from the exported config, the temperature from the head."""
    texts = runs["texts"]
    exports = []
    for name in ("tags", "size"):
        exports.append(tmp_path / f"{name}_merged")
        proc = run_cli(["llamafactory-ext", "export", runs[name], "--out", exports[-1]], cwd=tmp_path)
        assert proc.returncode == 0, _fail_text(proc)
    rows = {name: _predict_rows(runs[name], texts, tmp_path) for name in ("tags", "size")}
    with api_server(["--model_name_or_path", ",".join(map(str, exports)), "--stage", "cls"], tmp_path) as (base, _):
        for name in ("tags", "size"):
            status, _, body = _request(f"{base}/v1/classify", {"model": f"{name}_merged", "input": texts})
            assert status == 200, body
            assert_typed_items_equal_predict(body["data"], runs[name], rows[name])


def test_multilabel_label_is_the_top_label_over_its_threshold_or_null():
    """`labels`: every label at or over its own threshold; `label`: the most probable of them, null when none
    (the most probable label overall may be under its threshold). Regression: `probs` is the model's output
    (vLLM's identity activation), `score` that output in the data's unit."""
    from llama_factory_ext.serving.app import classify_items
    from llama_factory_ext.serving.models import Served

    def logit(p):
        return np.log(np.asarray(p) / (1 - np.asarray(p)))

    tags = Served("tags", "runs/tags", None, {"labels": ["a", "b", "c"], "problem_type": "multi_label",
                                               "thresholds": [0.9, 0.3, 0.5], "temperature": 2.0}, None)
    items = classify_items(tags, 2.0 * logit([[0.8, 0.4, 0.1], [0.1, 0.1, 0.1], [0.95, 0.6, 0.7]]))
    np.testing.assert_allclose(items[0]["probs"], [0.8, 0.4, 0.1])
    assert [(d["label"], d["labels"]) for d in items] == [("b", ["b"]), (None, []), ("a", ["a", "b", "c"])]
    size = Served("size", "runs/size", None, {"labels": ["score"], "problem_type": "regression", "score_mean": 10.0,
                                               "score_std": 2.0}, None)
    [item] = classify_items(size, np.array([[0.5]]))
    assert (item["label"], item["probs"], item["score"], item["num_classes"]) == ("score", [0.5], 11.0, 1)


def test_host_chat_model_beside_is_served_by_the_host(runs):
    """Fail-open: a plain chat model's config goes to the host's own server, which answers chat completions."""
    cfg = write_yaml(runs["work"] / "serve_chat.yaml", {"model_name_or_path": str(runs["base"]), "template": "llama3"})
    with api_server([cfg], runs["work"], API_MODEL_NAME="gpt-3.5-turbo") as (base, _):
        status, _, reply = _request(f"{base}/v1/chat/completions", {
            "model": "gpt-3.5-turbo", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]})
        assert status == 200 and isinstance(reply["choices"][0]["message"]["content"], str), reply
        status, _, reply = _request(f"{base}/v1/classify", {"model": "gpt-3.5-turbo", "input": "x"})
        assert status in (404, 405)  # the host's server, untouched: no classify route
