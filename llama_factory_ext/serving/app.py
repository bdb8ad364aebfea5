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


def response_body(name: str, served, probs, tokens: int) -> dict:
    labels = served.labels
    data = []
    for i, row in enumerate(probs):
        values = [float(p) for p in row]
        best = max(range(len(values)), key=values.__getitem__)
        data.append({"index": i, "label": labels[best], "probs": values, "num_classes": len(values),
                     "object": "classify", "labels": labels})
    return {"id": f"classify-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": name,
            "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                                    "prompt_tokens_details": None}}


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
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "llama-factory-ext", "root": s.folder,
             "labels": s.labels, "num_classes": len(s.labels), "task": "classify"} for name, s in models.items()]}

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
            probs, tokens = await batcher.classify(name, texts)
        except Overloaded as exc:
            return error(503, f"{exc}; retry after a second", headers={"Retry-After": "1"})
        return response_body(name, models[name], probs, tokens)

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
    models = load_models(folders, base_model=base_model, device=os.getenv("LFX_SERVE_DEVICE", "cpu"))
    listing = "; ".join(f"{n} ({len(s.labels)} labels)" for n, s in models.items())
    say(f"{PREFIX} serving cls models {listing}: POST http://{host}:{port}/v1/classify, GET /v1/models")
    uvicorn.run(create_app(models, limits), host=host, port=port)
