"""Fast path of ``estimate``: Llama-family decoders counted from config.json by formula, without importing torch,
transformers, peft or the host's argument classes. Taken only for builds whose parameters it reproduces exactly
(tests compare it with the meta-device build); anything else returns None and the meta-device build runs.

The host's argument names and defaults come from ``host.keys`` (a shipped snapshot of a tested host, or the cache),
so that ``prepare`` checks keys without importing the host.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from ..host.keys import cache_path, cached_host_args, write_cache
from .spec import EstimateSpec, ModelDims, ParamStats, nf4_blocks

ARCHS = ("llama", "mistral", "qwen2")
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STAGES = ("sft", "pt", "cls")
# host keys whose non-default value changes the build beyond what the formula covers
SLOW_KEYS = ("adapter_name_or_path", "additional_target", "use_dora", "pissa_init", "pure_bf16", "resize_vocab",
             "upcast_layernorm", "use_unsloth", "use_llama_pro", "use_galore", "use_apollo", "use_badam",
             "freeze_vision_tower", "train_mm_proj_only", "create_new_adapter", "use_adam_mini", "use_muon",
             "quantization_method", "use_mca", "moe_aux_loss_coef", "shift_attn", "use_swanlab", "fp8")


# ---------------------------------------------------------------- the fast spec

def _config_dict(name_or_path: str, config_path: Optional[str]) -> tuple[Optional[dict], str]:
    from .configs import builtin_config

    candidate = Path(config_path or name_or_path).expanduser()
    if candidate.is_dir():
        candidate = candidate / "config.json"
    if candidate.is_file():
        try:
            return json.loads(candidate.read_text()), str(candidate)
        except (OSError, ValueError):
            return None, ""
    data = builtin_config(name_or_path)
    return data, f"built-in config of {name_or_path}"


def _ns(defaults: dict, args: dict) -> SimpleNamespace:
    values = dict(defaults)
    values.update(args)
    return SimpleNamespace(**values)


def _data_key(run, data_args) -> Optional[str]:
    """What the label set depends on: label keys, dataset names, and size + mtime of the dataset folder's files."""
    ddir = Path(str(getattr(data_args, "dataset_dir", None) or "data"))
    try:
        files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in ddir.iterdir() if f.is_file())[:500]
    except OSError:
        return None
    def names(v):
        items = v.split(",") if isinstance(v, str) else (v or [])
        return [str(x).strip() for x in items]

    opts = run.stage_opts
    keys = [names(getattr(data_args, "dataset", None)), names(getattr(data_args, "eval_dataset", None)),
            names(getattr(opts, "test_dataset", None))]
    return json.dumps([str(ddir.resolve()), keys, files])


def cached_label_count(run, data_args, training_args, progress=None) -> tuple[int, Optional[str]]:
    """``build.cls_num_labels`` (the one source), remembered per dataset folder state: reading the data needs the
    host's dataset parser, whose import costs seconds."""
    from .build import cls_num_labels

    if getattr(run.stage_opts, "label_names", None):
        return cls_num_labels(run, data_args, training_args)
    key = _data_key(run, data_args)
    path = cache_path().with_name("cls_labels.json")
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    if key is not None and key in table:
        return int(table[key]), None
    if progress is not None:
        progress("reading the cls dataset for its label count (remembered)")
    n, note = cls_num_labels(run, data_args, training_args)
    if note is None:
        remember_label_count(run, data_args, n)
    return n, note


def remember_label_count(run, data_args, n: int) -> None:
    key = _data_key(run, data_args)
    if key is None or getattr(run.stage_opts, "label_names", None):
        return
    path = cache_path().with_name("cls_labels.json")
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    table = dict(list(table.items())[-200:])
    table[key] = n
    write_cache(path, table)


def fast_spec(run, gpus: int = 1, config_path: Optional[str] = None, base_dir: Optional[str] = None,
              defaults: Optional[dict] = None, progress=None) -> Optional[EstimateSpec]:
    """The EstimateSpec by formula, or None when this build needs the meta-device path."""
    defaults = cached_host_args() if defaults is None else defaults
    if defaults is None:
        return None
    a = run.host_args
    stage = run.stage.name if run.stage is not None else str(a.get("stage", "sft"))
    if stage not in STAGES or not all(getattr(s, "formula_safe", False) for s, _ in run.strategies):
        return None
    if any(a.get(k) not in (None, False, defaults.get(k)) for k in SLOW_KEYS):
        return None
    if any(k.startswith("freeze_") and a.get(k) not in (None, defaults.get(k)) for k in a):
        return None
    ftype = run.base_type or a.get("finetuning_type", "lora")
    if ftype not in ("lora", "full"):
        return None
    cfg, source = _config_dict(str(a.get("model_name_or_path", "")), config_path)
    if not cfg or cfg.get("model_type") not in ARCHS or "text_config" in cfg:
        return None
    targets = a.get("lora_target", defaults.get("lora_target") or "all")
    targets = [t.strip() for t in (targets.split(",") if isinstance(targets, str) else targets)]
    if ftype == "lora" and targets != ["all"] and not set(targets) <= set(LINEARS):
        return None
    quant = a.get("quantization_bit")
    if quant not in (None, 4, 8) or (quant and ftype != "lora"):
        return None

    model_args = _ns(defaults, {k: v for k, v in a.items()})
    data_args, training_args, finetuning_args = model_args, model_args, model_args  # one namespace holds every key
    model_args.finetuning_type = ftype
    model_args.lora_target = targets
    model_args.compute_dtype = None
    bf16, fp16 = bool(a.get("bf16")), bool(a.get("fp16"))
    if bf16:
        model_args.compute_dtype = "bfloat16"
    elif fp16:
        model_args.compute_dtype = "float16"
    model_args.bf16, model_args.fp16 = bf16, fp16
    model_args.deepspeed = a.get("deepspeed")
    for key, default in (("cutoff_len", 2048), ("per_device_train_batch_size", 8), ("gradient_accumulation_steps", 1),
                         ("lora_rank", 8), ("optim", "adamw_torch_fused"), ("double_quantization", True)):
        if getattr(model_args, key, None) is None:
            setattr(model_args, key, default)
    if getattr(model_args, "lora_alpha", None) is None:
        model_args.lora_alpha = model_args.lora_rank * 2  # as the host's FinetuningArguments.__post_init__
    if getattr(model_args, "quantization_method", None) is None:
        model_args.quantization_method = "bnb"

    notes: list = []
    num_labels = 0
    if stage == "cls":
        num_labels, note = cached_label_count(run, data_args, training_args, progress)
        if note:
            notes.append(note)
    dims, stats = _param_stats(cfg, ftype, targets if ftype == "lora" else [], int(model_args.lora_rank), quant,
                               stage == "cls", num_labels)
    from .build import spec_from_parts

    return spec_from_parts(run, model_args, data_args, training_args, finetuning_args, dims, stats, source,
                           stats.load_bytes, notes, stage, stage == "cls", gpus, base_dir)


def _dtype_bytes(cfg: dict) -> int:
    name = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32")
    return 4 if name in ("float32", "float") else 2


def _param_stats(cfg: dict, ftype: str, targets: list, rank: int, quant, is_cls: bool, num_labels: int):
    """(ModelDims, ParamStats) of a Llama-family decoder with LoRA on ``targets`` or full fine-tuning."""
    h, inter, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or h // heads
    kv_heads = cfg.get("num_key_value_heads") or heads
    vocab = cfg["vocab_size"]
    qd, kv = heads * head_dim, kv_heads * head_dim
    lb = _dtype_bytes(cfg)
    qkv_bias = cfg["model_type"] == "qwen2" or bool(cfg.get("attention_bias"))
    mlp_bias = bool(cfg.get("mlp_bias"))
    shapes = {"q_proj": (h, qd, qkv_bias), "k_proj": (h, kv, qkv_bias), "v_proj": (h, kv, qkv_bias),
              "o_proj": (qd, h, bool(cfg.get("attention_bias")) and cfg["model_type"] == "llama"),
              "gate_proj": (h, inter, mlp_bias), "up_proj": (h, inter, mlp_bias), "down_proj": (inter, h, mlp_bias)}
    adapted = list(LINEARS) if targets == ["all"] else [t for t in LINEARS if t in targets]
    tied = bool(cfg.get("tie_word_embeddings", False)) and not is_cls
    labels = max(num_labels, 1)
    dims = ModelDims(hidden=h, intermediate=inter, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                     vocab=vocab, num_labels=num_labels)

    tensors = []  # (numel, trainable, kind) with kind in embed / layer_linear / bias / norm / head / lora
    tensors.append((vocab * h, ftype == "full", "embed"))
    for _ in range(layers):
        for name, (i, o, bias) in shapes.items():
            tensors.append((i * o, ftype == "full", "layer_linear"))
            if bias:
                tensors.append((o, ftype == "full", "bias"))
            if name in adapted and ftype == "lora":
                tensors.append((rank * i, True, "lora"))
                tensors.append((o * rank, True, "lora"))
        tensors += [(h, ftype == "full", "norm"), (h, ftype == "full", "norm")]
    tensors.append((h, ftype == "full", "norm"))
    if is_cls:
        tensors.append((h * labels, ftype == "full", "head"))
        if ftype == "lora":
            tensors.append((h * labels, True, "head"))  # modules_to_save: a trainable copy next to the original
    elif not tied:
        tensors.append((vocab * h, ftype == "full", "head"))

    total = trainable = frozen_bytes = trainable_bytes = small = embed_t = blocks8 = lin_t = 0
    for n, train, kind in tensors:
        total += n
        if train:
            trainable += n
            trainable_bytes += 4 * n
            if n < 4096:
                small += n
            elif kind == "embed":
                embed_t += n
            else:
                blocks8 += -(-n // 256)
            if kind in ("layer_linear", "head", "lora"):
                lin_t += n
        else:
            frozen_bytes += lb * n
    quant_params = quant_rows = quant_modules = quant_blocks = quant_blocks2 = 0
    if ftype == "lora":
        for i, o, _ in shapes.values():
            b1, b2 = nf4_blocks(i * o)
            quant_params += layers * i * o
            quant_rows += layers * o
            quant_modules += layers
            quant_blocks += layers * b1
            quant_blocks2 += layers * b2
    linears = [i * o for i, o, _ in shapes.values()] + ([h * labels] if is_cls else [vocab * h])
    lora_in = sum(shapes[t][0] for t in adapted) if ftype == "lora" else 0
    lora_out = sum(shapes[t][1] for t in adapted) if ftype == "lora" else 0
    stats = ParamStats(
        total_params=total, trainable_params=trainable, frozen_bytes=frozen_bytes, trainable_bytes=trainable_bytes,
        quantizable_params=quant_params, quantizable_bytes=quant_params * lb, quantizable_rows=quant_rows,
        quantizable_modules=quant_modules, quantizable_blocks=quant_blocks, quantizable_blocks2=quant_blocks2,
        largest_module_params=max(vocab * h, *linears), largest_linear_params=max(linears),
        trainable_small_params=small, trainable_linear_params=lin_t, trainable_embedding_params=embed_t,
        trainable_8bit_blocks=blocks8, first_trainable_layer=-1 if ftype == "full" else 0,
        head_trainable=is_cls or (ftype == "full" and not tied), embed_bytes=4 if ftype == "full" else lb,
        norm_trainable=ftype == "full", load_bytes=lb,
        lora_in_per_layer=float(lora_in), lora_out_per_layer=float(lora_out),
        lora_rank_per_layer=float(rank * len(adapted)) if ftype == "lora" else 0.0,
        lora_modules=layers * len(adapted) if ftype == "lora" else 0,
        largest_lora_weight=max((shapes[t][0] * shapes[t][1] for t in adapted), default=0) if ftype == "lora" else 0,
    )
    return dims, stats
