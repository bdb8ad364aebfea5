"""A saved cls run: its manifest (``cls_run.json``), reloading it (adapter + head, or a merged model) and predicting."""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

from ...api import UserError
from .encoding import encode
from .layout import MANIFEST
from .trainer import HEAD_FILE, LABEL_MAP


def write_manifest(output_dir: str, **fields) -> None:
    from ...safeio import write_json

    write_json(os.path.join(output_dir, MANIFEST), fields)


def read_manifest(run_dir: str) -> dict:
    from ...runfolder import unfinished_problem

    problem = unfinished_problem(run_dir)  # killed (still marked running), running or failed: not a finished run
    if problem:
        raise UserError(problem)
    path = os.path.join(run_dir, MANIFEST)
    if not os.path.exists(path):
        raise UserError(f"{run_dir} is not a finished cls run: {MANIFEST} is missing (train with `stage: cls` first)")
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(run_dir, LABEL_MAP), encoding="utf-8") as f:
        manifest["labels"] = json.load(f)["labels"]
    return manifest


def load_run(run_dir: str, base_model: Optional[str] = None, device: str = "cpu", quantize: bool = True):
    """(model in eval mode, tokenizer, manifest) of a finished cls run: base + adapter + head, or the full model.

    A QLoRA run's base is quantized as in training unless ``quantize`` is False (export merges into full precision).
    """
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    manifest = read_manifest(run_dir)
    labels = manifest["labels"]
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    if manifest["adapter"]:
        from peft import PeftModel

        base = base_model or manifest["base_model"]
        if not os.path.exists(base):
            raise UserError(f"base model {base} of run {run_dir} is not found; pass --base-model PATH")
        from .model import set_problem

        config = AutoConfig.from_pretrained(base)
        set_problem(config, labels, manifest.get("problem_type", "single_label"))
        config.pad_token_id = manifest["pad_token_id"]
        from ...quiet import held_load_report, import_bitsandbytes_quietly, settle_load_report

        import_bitsandbytes_quietly()
        with held_load_report() as held:  # the head is "missing" from the base: it is restored below
            model, info = AutoModelForSequenceClassification.from_pretrained(
                base, config=config, dtype=torch.float32, output_loading_info=True,
                **quantized_load(manifest.get("quantization") if quantize else None)
            )
        settle_load_report(held, info, manifest.get("head_modules") or ["score", "classifier"])
        model = PeftModel.from_pretrained(model, run_dir)
        load_head_file(model, run_dir)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(run_dir, dtype=torch.float32)
    model.to(device).eval()
    return model, tokenizer, manifest


def quantization_dict(model) -> Optional[dict]:
    """The bitsandbytes config a model was loaded with (for the manifest), or None."""
    q = getattr(getattr(model, "config", None), "quantization_config", None)
    if q is None:
        return None
    return q if isinstance(q, dict) else q.to_dict()


def quantized_load(q: Optional[dict]) -> dict:
    """``from_pretrained`` kwargs that quantize the base as in training (the adapter was trained on it)."""
    if not q:
        return {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        print("llama-factory-ext: the run was trained on a quantized base; bitsandbytes is not installed, so the base "
              "loads unquantized and probabilities may differ slightly from training", file=sys.stderr)
        return {}
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig.from_dict(dict(q))}


def load_head_file(model, run_dir: str) -> bool:
    """Copy the full-shape head of ``cls_head.safetensors`` (if any) into a PEFT model's head."""
    head_file = os.path.join(run_dir, HEAD_FILE)
    if not os.path.exists(head_file):
        return False
    from safetensors.torch import load_file

    base = model.get_base_model()
    for name, value in load_file(head_file).items():
        head, _, leaf = name.partition(".")
        module = getattr(base, head)
        target = getattr(module, "modules_to_save", None)
        target = target["default"] if target is not None else module
        target.get_parameter(leaf).data.copy_(value)
    return True


def from_logits(logits, manifest: dict):
    """What a run predicts from raw logits [n, k]: calibrated probabilities (single_label: softmax, multi_label:
    sigmoid, both of logits / the run's temperature) or, regression, scores [n, 1] in the data's unit."""
    import numpy as np

    from .calibration import apply_temperature

    logits = np.asarray(logits, dtype=np.float64)
    ptype = manifest.get("problem_type", "single_label")
    if ptype == "regression":
        return logits * manifest.get("score_std", 1.0) + manifest.get("score_mean", 0.0)
    return apply_temperature(logits, float(manifest.get("temperature", 1.0)), "multi" if ptype == "multi_label" else "single")


def predict_texts(model, tokenizer, manifest: dict, texts: list[str], pairs=None, batch_size: int = 16, raw=False):
    """Calibrated probabilities (numpy [n, k]) or regression scores [n, 1] for texts (:func:`from_logits`), or the
    raw logits with ``raw``; batched with dynamic padding."""
    import numpy as np
    import torch

    enc = encode(tokenizer, texts, pairs, manifest["cutoff_len"], manifest.get("cls_template"))
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    out = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            feats = [{k: enc[k][i] for k in keys} for i in range(start, min(start + batch_size, len(texts)))]
            batch = tokenizer.pad(feats, padding="longest", return_tensors="pt").to(device)
            out.append(model(**batch).logits.float().cpu().numpy())
    logits = np.concatenate(out) if out else np.zeros((0, len(manifest["labels"])))
    return logits if raw else from_logits(logits, manifest)
