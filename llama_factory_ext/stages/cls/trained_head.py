"""Whether a model or adapter folder holds a trained classification head, read from its files (no torch).

A cls run without ``do_train`` only evaluates and predicts; with a random head its predictions and its
``finished`` folder would be noise, so such a recipe is refused up front (``validate`` and ``train`` say the same).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Optional

HEAD_CANDIDATES = ("score", "classifier", "classification_head")
HEAD_FILE = "cls_head.safetensors"
HEADER_LIMIT = 100 * 1024 * 1024

NO_TRAINED_HEAD = ("set adapter_name_or_path to a trained cls run (its folder), or model_name_or_path to a trained "
                   "classifier (a full / freeze cls run, or an `llamafactory-ext export` folder), or set "
                   "`do_train: true` to train one")


def _is_head(key: str) -> bool:
    parts = key.split(".")
    return parts[0] in HEAD_CANDIDATES or (len(parts) > 1 and parts[1] in HEAD_CANDIDATES)  # `bert.` / `base_model.`


def safetensors_keys(path: str) -> Optional[list[str]]:
    """Tensor names from a safetensors file's header, or None if it cannot be read as one."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > HEADER_LIMIT:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    return [k for k in header if k != "__metadata__"] if isinstance(header, dict) else None


def _weight_keys(folder: str) -> Optional[list[str]]:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                return list(json.load(f).get("weight_map", {}))
        except (OSError, ValueError, AttributeError):
            return None
    single = os.path.join(folder, "model.safetensors")
    return safetensors_keys(single) if os.path.isfile(single) else None


def head_in_model(folder) -> Optional[bool]:
    """True / False for a local model folder (its safetensors weights, else its config's architecture);
    None when it cannot tell (a hub id, no config)."""
    if not isinstance(folder, str) or not os.path.isdir(folder):
        return None
    keys = _weight_keys(folder)
    if keys is not None:
        return any(_is_head(k) for k in keys)
    return config_is_classifier(folder)


def config_is_classifier(folder: str) -> Optional[bool]:
    """Whether the folder's config.json names a ``*ForSequenceClassification``; None without a readable config."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            archs = json.load(f).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return None
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


def head_in_adapter(folder) -> Optional[bool]:
    """True / False for a local adapter folder (``cls_head.safetensors``, or a head among the adapter's
    ``modules_to_save``, or a full classifier saved there); None when it cannot tell."""
    if not isinstance(folder, str) or not os.path.isdir(folder):
        return None
    if os.path.isfile(os.path.join(folder, HEAD_FILE)):
        return True
    try:
        with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as f:
            saved = json.load(f).get("modules_to_save") or []
    except (OSError, ValueError, AttributeError):
        return head_in_model(folder)
    return any(str(m).split(".")[-1] in HEAD_CANDIDATES for m in saved)


def _adapters(value) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []  # None, or a number or mapping: the recipe's type checks name the key


def trained_head_problem(model_path, adapter_paths) -> Optional[str]:
    """The message for a run without training whose model and adapters hold no trained head (known from the
    files); None when one is there or it cannot be told before loading (then the loaded weights decide)."""
    adapters = _adapters(adapter_paths)
    found = [head_in_adapter(adapters[-1])] if adapters else []
    found.append(head_in_model(model_path))
    if any(f is not False for f in found):
        return None
    what = (f"adapter_name_or_path {adapters[-1]} holds no classification head and model_name_or_path {model_path} "
            "is not a classifier" if adapters else f"model_name_or_path {model_path} is not a classifier "
            "and no adapter_name_or_path is set")
    return (f"key `do_train`: false evaluates and predicts with a trained classification head, but {what}: its "
            f"predictions would come from a randomly initialised head; {NO_TRAINED_HEAD}")
