"""Export a cls run (``llamafactory-ext export``, ``llamafactory-cli export``): merge LoRA into the base, keep the
trained head, save a model that plain ``AutoModelForSequenceClassification.from_pretrained`` loads."""

from __future__ import annotations

import os
import sys

from ...api import UserError


RUN_MARKERS = ("cls_run.json", "trainer_state.json", "trainer_log.jsonl", "all_results.json", "adapter_config.json")
MODEL_MARKERS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
                 "adapter_model.safetensors", "adapter_model.bin")
EXPORT_MARKER = "lfx_export.json"  # written into every export: a folder with it may be replaced with --force


def destination_problem(out_dir: str, run_dir: str, base_model=None, force: bool = False):
    """Why ``out_dir`` must not receive an export, or None: the run, the base model, another run or model
    folder (never, even with force; a previous export of the pack may be replaced with force), or a non-empty
    folder (without force)."""
    out = os.path.realpath(out_dir)
    protected = [(run_dir, "the run folder being exported")]
    if base_model and os.path.exists(str(base_model)):
        protected.append((str(base_model), "the base model"))
    for path, what in protected:
        real = os.path.realpath(path)
        if out == real or real.startswith(out + os.sep):
            return f"--out {out_dir} is {what} ({path}); exporting there would overwrite it. Pick a new folder"
    if os.path.isfile(out):
        return f"--out {out_dir} is a file; pick a folder"
    if os.path.isdir(out) and os.listdir(out):
        entries = set(os.listdir(out))
        if entries & set(RUN_MARKERS) or any(e.startswith("checkpoint-") for e in entries):
            return f"--out {out_dir} is a training run folder; exporting there would mix the two. Pick a new folder"
        weights = sorted(entries & set(MODEL_MARKERS))
        if weights and EXPORT_MARKER not in entries:
            return (f"--out {out_dir} holds a model ({', '.join(weights)}) that llama-factory-ext did not export; an export "
                    "never replaces another model, even with --force. Pick a new folder")
        if not force:
            return f"--out {out_dir} is not empty; pick a new or empty folder, or add --force to replace its contents"
    return None


CHECK_TEXTS = ["A library for parsing JSON documents.", "A puzzle game for children.",
               "Documentation of the kernel, in HTML.", "x"]


def fold_temperature(model, heads: list[str], temperature: float) -> None:
    """Divide the last linear layer of the head by the run's temperature, so the exported model's softmax / sigmoid
    are the calibrated probabilities (its config keeps ``lfx_temperature`` to get the raw logits back)."""
    import torch

    if temperature == 1.0:
        return
    for name in heads:
        module = getattr(model, name, None)
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)] if module is not None else []
        if linears:
            with torch.no_grad():
                linears[-1].weight.div_(temperature)
                if linears[-1].bias is not None:
                    linears[-1].bias.div_(temperature)
            return
    raise UserError(f"export: no linear layer in the classification head ({', '.join(heads)}) to apply the "
                    f"temperature {temperature:g} to")


def check_merged(expected, got, tol: float = 1e-3) -> None:
    """Fail loudly when the merged model's logits differ from the run's (adapter + head, temperature applied)."""
    import numpy as np

    diff = float(np.abs(np.asarray(expected) - np.asarray(got)).max()) if len(got) else 0.0
    scale = max(1.0, float(np.abs(np.asarray(expected)).max())) if len(got) else 1.0
    if not np.isfinite(diff) or diff > tol * scale:
        raise UserError(f"export: the merged model's logits differ from the run's by {diff:.3g} on "
                        f"{len(CHECK_TEXTS)} check texts (tolerance {tol * scale:.3g}); nothing was written")


def carry_run_fields(config, manifest: dict) -> None:
    """problem_type / id2label come from the run; the config also carries what plain transformers does not know:
    ``lfx_temperature`` (already folded into the head), ``lfx_thresholds`` (multi_label: one per label, on the
    exported sigmoid) and ``lfx_score_mean`` / ``lfx_score_std`` (regression: score = output * std + mean)."""
    from .model import set_problem

    ptype = manifest.get("problem_type", "single_label")
    set_problem(config, manifest["labels"], ptype)
    config.lfx_problem_type = ptype
    if ptype == "regression":
        config.lfx_score_mean, config.lfx_score_std = manifest["score_mean"], manifest["score_std"]
        return
    config.lfx_temperature = float(manifest.get("temperature", 1.0))
    if ptype == "multi_label":
        config.lfx_thresholds = dict(zip(manifest["labels"], manifest.get("thresholds") or []))


def export_run(run_dir: str, out_dir: str, base_model=None, force: bool = False) -> str:
    """Merge and save into a temporary folder renamed to ``out_dir`` (complete or absent); returns ``out_dir``."""
    from ...safeio import atomic_dir, write_json
    from .saved_run import load_run, predict_texts, read_manifest

    manifest = read_manifest(run_dir)
    problem = destination_problem(out_dir, run_dir, base_model or manifest.get("base_model"), force)
    if problem:
        raise UserError(problem)
    model, tokenizer, manifest = load_run(run_dir, base_model=base_model, quantize=False)  # merge in full precision
    before = predict_texts(model, tokenizer, manifest, CHECK_TEXTS, raw=True)
    if manifest["adapter"]:
        model = model.merge_and_unload()
    temperature = float(manifest.get("temperature", 1.0))
    fold_temperature(model, manifest.get("head_modules") or [], temperature)
    check_merged(before / temperature, predict_texts(model, tokenizer, manifest, CHECK_TEXTS, raw=True))
    model.config.architectures = [type(model).__name__]
    carry_run_fields(model.config, manifest)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        spell_out_num_labels(tmp, len(manifest["labels"]))
        tokenizer.save_pretrained(tmp)
        from .modelcard import write_model_card

        write_model_card(tmp, manifest, manifest["labels"], run_dir=run_dir, exported=True, model_id=out_dir)
        write_json(os.path.join(tmp, EXPORT_MARKER), {"run_dir": os.path.abspath(run_dir), "labels": manifest["labels"],
                                                     "cutoff_len": manifest.get("cutoff_len"),
                                                     "cls_template": manifest.get("cls_template")})
    return out_dir


def export_from_args(host_args: dict) -> None:
    """``llamafactory-cli export`` with ``stage: cls``: the run is `adapter_name_or_path` (or `model_name_or_path`)."""

    adapter = host_args.get("adapter_name_or_path")
    if isinstance(adapter, str):
        adapter = adapter.split(",")[0]
    elif isinstance(adapter, (list, tuple)):
        adapter = adapter[0]
    run_dir = adapter or host_args.get("model_name_or_path")
    out = host_args.get("export_dir")
    if not run_dir or not out:
        raise UserError("keys `adapter_name_or_path` (the cls run folder) and `export_dir` are needed to export a cls run")
    base = host_args.get("model_name_or_path") if adapter else None
    export_run(run_dir, out, base_model=base)
    print(f"exported cls model to {out}\n" + serve_note(out), file=sys.stderr)


def spell_out_num_labels(folder: str, num_labels: int) -> None:
    """`num_labels` written in config.json (vLLM reads it; transformers 5 leaves it implied by `id2label`)."""
    import json

    from ...safeio import write_json

    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    if "num_labels" not in config:
        write_json(path, dict(config, num_labels=num_labels))


def serve_note(out_dir: str) -> str:
    """How to serve an export: this pack's server (vLLM's /v1/classify schema) or vLLM itself."""
    return (f"serve it: llamafactory-cli api --model_name_or_path {out_dir} --stage cls  (POST /v1/classify)\n"
            f"or with vLLM: vllm serve {out_dir} --runner pooling --convert classify")
