"""Finished cls runs loaded for serving. Adapter runs that share a base model share one copy of it: each run's LoRA is
a named PEFT adapter, each run's head a separate module swapped in before its batch (heads may differ in label count).
Runs without an adapter (full fine-tuning, a merged export) are loaded as their own model."""

from __future__ import annotations

import copy
import json
import os
from typing import Optional

from ..api import UserError
from ..stages.cls.export import EXPORT_MARKER
from ..stages.cls.layout import MANIFEST
from ..stages.cls.outputs import run_thresholds
from ..stages.cls.saved_run import load_run, predict_texts, quantized_load, read_manifest
from ..stages.cls.trainer import HEAD_FILE
from .spec import is_export, served_names

ADAPTER_FILE = "adapter_model.safetensors"


class Served:
    """One name the server answers to: a run (or export) with its tokenizer, labels and the model it runs on."""

    def __init__(self, name: str, folder: str, tokenizer, manifest: dict, host: "Loaded"):
        self.name, self.folder, self.tokenizer, self.manifest, self.host = name, folder, tokenizer, manifest, host
        self.labels = list(manifest["labels"])
        self.problem_type = manifest.get("problem_type") or "single_label"
        self.thresholds = run_thresholds(manifest)  # used by multi_label only

    def logits(self, texts: list[str], batch_size: int):
        """Raw logits [n, k] as ``llamafactory-ext predict`` computes them (same encoding, model class and head)."""
        self.host.activate(self)
        return predict_texts(self.host.model, self.tokenizer, self.manifest, texts, batch_size=batch_size, raw=True)

    def count_tokens(self, texts: list[str]) -> int:
        from ..stages.cls.encoding import encode

        enc = encode(self.tokenizer, texts, None, self.manifest["cutoff_len"], self.manifest.get("cls_template"))
        return sum(len(ids) for ids in enc["input_ids"])


class Loaded:
    """A model in memory; a shared base also holds every adapter's head and switches adapter + head per batch."""

    def __init__(self, model, heads: Optional[dict] = None):
        self.model = model
        self.heads = heads or {}  # served name -> {head module name: module}
        self.active: Optional[str] = None

    def activate(self, served: Served) -> None:
        if not self.heads or self.active == served.name:
            return
        base = self.model.get_base_model()
        self.model.set_adapter(served.name)
        for module_name, module in self.heads[served.name].items():
            setattr(base, module_name, module)
        base.config.pad_token_id = served.manifest["pad_token_id"]
        self.active = served.name


def export_manifest(folder: str) -> dict:
    """What serving needs from a merged export: labels and problem type (config; multi_label thresholds, regression
    mean and std from the ``lfx_*`` fields the export writes; the temperature is already folded into the head),
    cutoff length and template (export marker, else the run it came from, else 512)."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    id2label = config.get("id2label") or {}
    labels = [id2label[k] for k in sorted(id2label, key=int)] if id2label else None
    marker = {}
    if os.path.isfile(os.path.join(folder, EXPORT_MARKER)):
        with open(os.path.join(folder, EXPORT_MARKER), encoding="utf-8") as f:
            marker = json.load(f)
    run_dir = marker.get("run_dir")
    source = read_manifest(run_dir) if run_dir and os.path.isfile(os.path.join(run_dir, MANIFEST)) else {}
    labels = marker.get("labels") or labels or source.get("labels")
    if not labels:
        raise UserError(f"{folder}: config.json has no id2label; serve a cls run folder or its "
                        "`llamafactory-ext export`")
    cutoff = marker.get("cutoff_len") or source.get("cutoff_len") or 512
    template = marker.get("cls_template", source.get("cls_template"))
    out = {"labels": labels, "cutoff_len": cutoff, "cls_template": template,
           "pad_token_id": config.get("pad_token_id"), "adapter": False, "problem_type": export_problem_type(config)}
    if out["problem_type"] == "multi_label":
        thresholds = config.get("lfx_thresholds") or {}
        out["thresholds"] = [float(thresholds.get(lab, 0.5)) for lab in labels]
    elif out["problem_type"] == "regression":
        out["score_mean"], out["score_std"] = config.get("lfx_score_mean", 0.0), config.get("lfx_score_std", 1.0)
    return out


def export_problem_type(config: dict) -> str:
    """The pack's problem type of an exported config: ``lfx_problem_type``, else transformers' ``problem_type``."""
    from ..stages.cls.model import HF_PROBLEM_TYPES

    if config.get("lfx_problem_type") in HF_PROBLEM_TYPES:
        return config["lfx_problem_type"]
    by_hf = {v: k for k, v in HF_PROBLEM_TYPES.items()}
    return by_hf.get(config.get("problem_type"), "single_label")


def load_models(folders: list[str], base_model: Optional[str] = None, device: str = "cpu") -> dict[str, Served]:
    """Every folder loaded, adapter runs grouped onto one base per (base path, quantization, adapter type)."""
    names = served_names(folders)
    out: dict[str, Served] = {}
    groups: dict[tuple, list] = {}
    for name, folder in zip(names, folders):
        if not os.path.isfile(os.path.join(folder, MANIFEST)):
            if not is_export(folder):
                raise UserError(f"{folder} is neither a finished cls run ({MANIFEST}) nor a merged cls export")
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
            import torch

            manifest = export_manifest(folder)
            model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).to(device).eval()
            out[name] = Served(name, folder, AutoTokenizer.from_pretrained(folder), manifest, Loaded(model))
            continue
        manifest = read_manifest(folder)
        head_ok = os.path.isfile(os.path.join(folder, HEAD_FILE)) and os.path.isfile(os.path.join(folder, ADAPTER_FILE))
        if not manifest.get("adapter") or not head_ok:
            model, tokenizer, manifest = load_run(folder, base_model=base_model, device=device)
            out[name] = Served(name, folder, tokenizer, manifest, Loaded(model))
            continue
        base = base_model or manifest["base_model"]
        if not os.path.exists(base):
            raise UserError(f"base model {base} of run {folder} is not found; set model_name_or_path to its path")
        with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as f:
            peft_type = json.load(f).get("peft_type")
        key = (os.path.realpath(base), json.dumps(manifest.get("quantization"), sort_keys=True), peft_type)
        groups.setdefault(key, []).append((name, folder, manifest))
    for (base, _, _), runs in groups.items():
        out.update(load_shared(base, runs, device))
    return {name: out[name] for name in names}


def load_shared(base: str, runs: list, device: str) -> dict[str, Served]:
    """One base model with every run's LoRA as a named adapter and every run's head kept apart."""
    import torch
    from peft import PeftConfig, PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from ..quiet import held_load_report, import_bitsandbytes_quietly, settle_load_report

    first = runs[0][2]
    config = AutoConfig.from_pretrained(base)
    config.num_labels = len(first["labels"])
    config.pad_token_id = first["pad_token_id"]
    import_bitsandbytes_quietly()
    head_names = sorted({h for _, _, m in runs for h in (m.get("head_modules") or ["score", "classifier"])})
    with held_load_report() as held:  # the base has no trained head: each run brings its own
        model, info = AutoModelForSequenceClassification.from_pretrained(
            base, config=config, dtype=torch.float32, output_loading_info=True,
            **quantized_load(first.get("quantization")))
    settle_load_report(held, info, head_names)
    peft_model = None
    heads: dict[str, dict] = {}
    served = {}
    for name, folder, manifest in runs:
        cfg = PeftConfig.from_pretrained(folder)
        run_heads = manifest.get("head_modules") or ["score", "classifier"]
        cfg.modules_to_save, cfg.task_type, cfg.inference_mode = None, None, True
        if peft_model is None:
            peft_model = PeftModel(model, cfg, adapter_name=name)
        else:
            peft_model.add_adapter(name, cfg)
        state = {k: v for k, v in load_file(os.path.join(folder, ADAPTER_FILE)).items()
                 if k.removeprefix("base_model.model.").split(".")[0] not in run_heads}
        result = set_peft_model_state_dict(peft_model, state, adapter_name=name)
        missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
        if missing:
            raise UserError(f"{folder}: adapter weights {missing[:3]} do not fit the base model {base}")
        heads[name] = build_heads(peft_model.get_base_model(), load_file(os.path.join(folder, HEAD_FILE)))
        served[name] = Served(name, folder, AutoTokenizer.from_pretrained(folder), manifest, None)
    peft_model.to(device).eval()
    for mods in heads.values():
        for m in mods.values():
            m.to(device).eval()
    loaded = Loaded(peft_model, heads)
    for s in served.values():
        s.host = loaded
    return served


def build_heads(base_model, state: dict) -> dict:
    """{head module name: a copy of the base's head module carrying this run's full-shape weights}."""
    import torch

    mods: dict = {}
    for key, value in state.items():
        head, _, leaf = key.partition(".")
        if head not in mods:
            mods[head] = copy.deepcopy(getattr(base_model, head))
        owner, _, pname = leaf.rpartition(".")
        parent = mods[head].get_submodule(owner) if owner else mods[head]
        setattr(parent, pname, torch.nn.Parameter(value.float(), requires_grad=False))
    return mods
