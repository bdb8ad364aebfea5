"""The classification server behind ``llamafactory-cli api`` for cls runs: vLLM's ``/classify`` schema, the host's
API_HOST / API_PORT / API_KEY / FASTAPI_ROOT_PATH environment."""

from __future__ import annotations

import json
import os
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from .batching import Batcher, Limits, Overloaded

CHAT_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/score/evaluation")


def error(status: int, message: str, param=None, headers=None):
    kind = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError", 413: "BadRequestError",
            503: "ServiceUnavailableError"}.get(status, "Error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def parse_request(body: bytes, models: dict, limits: Limits):
    """(model name, texts) of a /classify body, or (None, error response) naming the field."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, error(400, f"the request body is not JSON ({exc})")
    if not isinstance(data, dict):
        return None, error(400, "the request body must be a JSON object with `model` and `input`")
    name = data.get("model")
    if name is None and len(models) == 1:
        name = next(iter(models))
    if not isinstance(name, str) or name not in models:
        return None, error(404 if isinstance(name, str) else 400,
                           f"field `model`: {name!r} is not served here; served: {', '.join(models)}", "model")
    raw = data.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return None, error(400, "field `input`: a string or a non-empty list of strings", "input")
    if len(texts) > limits.max_texts:
        return None, error(413, f"field `input`: {len(texts)} texts, more than the limit of {limits.max_texts} "
                                "per request (LFX_SERVE_MAX_TEXTS); split the request", "input")
    for i, t in enumerate(texts):
        if len(t) > limits.max_chars:
            return None, error(413, f"field `input`[{i}]: {len(t)} characters, more than the limit of "
                                    f"{limits.max_chars} (LFX_SERVE_MAX_CHARS)", "input")
        if not t.strip():
            return None, error(400, f"field `input`[{i}]: empty text", "input")
    unknown = sorted(set(data) - {"model", "input", "user"})
    if unknown:
        return None, error(400, f"field `{unknown[0]}` is not supported here (fields: model, input, user)", unknown[0])
    return (name, texts), None


def classify_items(served, logits) -> list[dict]:
    """The response's `data` items for raw logits [n, k], with vLLM's fields (index, label, probs, num_classes) as
    vLLM computes them for the exported model's config, plus the pack's extensions: `label_names` (the label of each
    probability), `labels` (multi_label: the labels over their tuned thresholds), `score` (regression, in the
    training data's unit). Values as ``llamafactory-ext predict`` gives them."""
    import numpy as np

    from ..stages.cls.outputs import over_thresholds
    from ..stages.cls.saved_run import from_logits

    names, kind = served.labels, served.problem_type
    values = from_logits(logits, served.manifest)  # calibrated probabilities; regression: scores in the data's unit
    data = []
    for i, row in enumerate(np.asarray(logits, dtype=np.float64)):
        item = {"index": i, "label": None, "probs": [], "num_classes": len(names), "object": "classify",
                "label_names": names}
        if kind == "regression":  # vLLM: identity for problem_type regression, so probs is the model's output
            item.update(label=names[0], probs=[float(z) for z in row], score=float(values[i, 0]))
        else:
            probs = [float(p) for p in values[i]]
            item["probs"] = probs
            if kind == "multi_label":  # the top label over its threshold; null when no label clears its threshold
                over = over_thresholds(probs, served.thresholds)
                item["labels"] = [names[j] for j in over]
                item["label"] = names[max(over, key=probs.__getitem__)] if over else None
            else:
                item["label"] = names[max(range(len(probs)), key=probs.__getitem__)]
        data.append(item)
    return data


def response_body(name: str, served, logits, tokens: int) -> dict:
    return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": name,
            "data": classify_items(served, logits),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                      "prompt_tokens_details": None}}


def model_card(name: str, served) -> dict:
    """A `/v1/models` entry: the labels, the problem type and, multi_label, each label's threshold."""
    card = {"id": name, "object": "model", "created": 0, "owned_by": "llama-factory-ext", "root": served.folder,
            "labels": served.labels, "num_classes": len(served.labels), "task": "classify",
            "problem_type": served.problem_type}
    if served.problem_type == "multi_label":
        card["thresholds"] = served.thresholds
    return card


def create_app(models: dict, limits: Limits):
    batcher = Batcher(models, limits)
    api_key = os.getenv("API_KEY")
    max_body = limits.max_texts * (limits.max_chars * 4 + 16) + 4096

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        batcher.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(lifespan=lifespan, root_path=os.getenv("FASTAPI_ROOT_PATH", ""))
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=True, allow_methods=["*"],
                       allow_headers=["*"])

    def denied(request: Request):
        if api_key and request.headers.get("authorization", "") != f"Bearer {api_key}":
            return error(401, "Invalid API key.")
        return None

    @app.get("/v1/models")
    async def list_models(request: Request):
        if (bad := denied(request)) is not None:
            return bad
        return {"object": "list", "data": [model_card(name, s) for name, s in models.items()]}

    async def classify(request: Request):
        if (bad := denied(request)) is not None:
            return bad
        body = await request.body()
        if len(body) > max_body:
            return error(413, f"the request body has {len(body)} bytes, more than {max_body}")
        parsed, bad = parse_request(body, models, limits)
        if bad is not None:
            return bad
        name, texts = parsed
        try:
            logits, tokens = await batcher.classify(name, texts)
        except Overloaded as exc:
            return error(503, f"{exc}; retry after a second", headers={"Retry-After": "1"})
        return response_body(name, models[name], logits, tokens)

    app.add_api_route("/classify", classify, methods=["POST"])
    app.add_api_route("/v1/classify", classify, methods=["POST"])

    async def refuse(request: Request):
        names = ", ".join(models)
        return error(400, f"the served models ({names}) are classifiers (stage: cls); they do not generate text. "
                          "POST /v1/classify with {\"model\", \"input\"} instead")

    for path in CHAT_PATHS:
        app.add_api_route(path, refuse, methods=["POST"])
    return app


def serve(folders: list[str], base_model=None) -> None:
    """Load the runs and answer on API_HOST:API_PORT until stopped."""
    import uvicorn

    from ..runtime import PREFIX, say

    limits = Limits.from_env()
    from .models import load_models

    host, port = os.getenv("API_HOST", "0.0.0.0"), os.getenv("API_PORT", "8000")
    if not port.isdigit() or not 0 < int(port) < 65536:
        from ..api import UserError

        raise UserError(f"environment variable API_PORT={port!r}: expected a port number (1-65535)")
    port = int(port)
    import torch

    if limits.threads:
        torch.set_num_threads(limits.threads)
    device = os.getenv("LFX_SERVE_DEVICE", "cpu")
    models = load_models(folders, base_model=base_model, device=device)
    listing = "; ".join(f"{n} ({s.problem_type}" + ("" if len(s.labels) == 1 else f", {len(s.labels)} labels") + ")"
                        for n, s in models.items())
    n = torch.get_num_threads()
    threads = f" on {n} CPU thread{'s' if n != 1 else ''} (LFX_SERVE_THREADS)" if device == "cpu" else ""
    say(f"{PREFIX} serving cls models {listing}{threads}: POST http://{host}:{port}/v1/classify, GET /v1/models")
    uvicorn.run(create_app(models, limits), host=host, port=port)
