"""Which ``llamafactory-cli api`` configs the pack serves: cls run folders (one or several adapters) or a merged cls
export; anything else goes to the host's server."""

from __future__ import annotations

import os
from typing import Optional

from ..api import UserError
from ..stages.cls.export import EXPORT_MARKER
from ..stages.cls.layout import MANIFEST
from ..stages.cls.trained_head import config_is_classifier


def _paths(value) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    return [str(p).strip() for p in items if str(p).strip()]


def serve_spec(values: dict) -> Optional[tuple[list[str], Optional[str]]]:
    """(folders to serve, base model override) when an api config names cls runs or a merged cls export; None for a
    host config (the host serves it untouched)."""
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


def is_export(folder: str) -> bool:
    """A merged cls export: the pack's export marker, or a config of a ``*ForSequenceClassification``."""
    if os.path.isfile(os.path.join(folder, EXPORT_MARKER)):
        return True
    return bool(config_is_classifier(folder))


def served_names(folders: list[str]) -> list[str]:
    """The request `model` of each folder: its folder name (two folders with one name are refused)."""
    names = [os.path.basename(os.path.normpath(f)) for f in folders]
    seen: dict[str, str] = {}
    for name, folder in zip(names, folders):
        if name in seen:
            raise UserError(f"runs {seen[name]} and {folder} have the same folder name `{name}`, which names the model "
                            "in requests; rename one folder")
        seen[name] = folder
    return names
