"""Serving finished cls runs (``llamafactory-cli api`` with a cls recipe): vLLM's ``/classify`` schema, several
adapter runs on one copy of their base model, batched requests with a bounded queue."""

from __future__ import annotations

import os
from typing import Optional

from ..api import UserError


def _paths(value) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    return [str(p).strip() for p in items if str(p).strip()]


def serve_spec(values: dict) -> Optional[tuple[list[str], Optional[str]]]:
    """(folders to serve, base model override) when an api config names cls runs or a merged cls export; None for a
    host config (the host serves it untouched)."""
    from ..stages.cls.layout import MANIFEST
    from .models import is_export

    def is_run(p):
        return os.path.isfile(os.path.join(p, MANIFEST))

    adapters = _paths(values.get("adapter_name_or_path"))
    model = _paths(values.get("model_name_or_path"))
    runs = [p for p in adapters if is_run(p)]
    if runs and len(runs) < len(adapters):
        other = next(p for p in adapters if not is_run(p))
        raise UserError(f"key `adapter_name_or_path`: {other} is not a cls run, beside the cls runs {', '.join(runs)}; "
                        "one server answers either classifiers or the host's chat model: start two servers")
    if runs:
        base = model[0] if model and not is_run(model[0]) else None
        return runs, base
    if values.get("stage") == "cls" or (len(model) == 1 and is_run(model[0])):
        folders = [p for p in model if is_run(p) or is_export(p)]
        if not folders or len(folders) < len(model):
            raise UserError("key `model_name_or_path`: with `stage: cls` it names a finished cls run or a merged cls "
                            "export (`llamafactory-ext export`), or set `adapter_name_or_path: RUN_A,RUN_B` "
                            f"(got {', '.join(model) or 'nothing'})")
        return folders, None
    return None
