"""Recipe -> host arguments -> model built on the meta device with the run's own adapter code -> EstimateSpec."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Optional

from ..api import UserError
from ..host.compat import zero3_init_off
from ..runtime import apply_model_hooks, using
from .configs import builtin_config, known_names
from .spec import EstimateSpec, ModelDims, ParamStats, nf4_blocks

LAYER_RE = re.compile(r"\.layers\.(\d+)\.")


# ---------------------------------------------------------------- recipe -> host dataclasses

# keys whose parsing needs a GPU or DeepSpeed; the estimator reads them itself
_HELD_BACK = ("bf16", "fp16", "deepspeed", "fp8", "use_cpu")


def parse_host_args(run, source: Optional[str]):
    """The host's dataclasses for ``run.host_args``, parsed on any machine (no GPU, no DeepSpeed needed)."""
    from ..host.calls import parse_train_args_only

    args = dict(run.host_args)
    held = {k: args.pop(k) for k in _HELD_BACK if k in args}
    args.setdefault("output_dir", "/tmp/llama_factory_ext_estimate")
    try:
        model_args, data_args, training_args, finetuning_args, generating_args = parse_train_args_only(args)
    except (ValueError, AssertionError, TypeError) as exc:
        raise UserError(f"LLaMA-Factory rejects the arguments: {exc}", source) from exc
    import torch

    training_args.bf16 = bool(held.get("bf16", False))
    training_args.fp16 = bool(held.get("fp16", False))
    training_args.deepspeed = held.get("deepspeed")
    if training_args.bf16 or finetuning_args.pure_bf16:
        model_args.compute_dtype = torch.bfloat16
    elif training_args.fp16:
        model_args.compute_dtype = torch.float16
    return model_args, data_args, training_args, finetuning_args, generating_args


def read_deepspeed(value, base_dir: Optional[str]) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    p = Path(str(value))
    if not p.is_absolute() and base_dir and not p.exists():
        p = Path(base_dir) / p
    if not p.is_file():
        raise UserError(f"key `deepspeed`: config file {value} not found")
    try:
        return json.loads(p.read_text())
    except Exception as exc:
        raise UserError(f"key `deepspeed`: cannot read {value}: {exc}") from exc


# ---------------------------------------------------------------- config

def load_model_config(name_or_path: str, config_path: Optional[str] = None):
    """(transformers config, where it came from). Local folders and config files first, then built-ins."""
    from transformers import AutoConfig

    candidate = Path(config_path or name_or_path).expanduser()
    if candidate.is_file():
        data = json.loads(candidate.read_text())
        return _config_from_dict(data), str(candidate)
    if candidate.is_dir() and (candidate / "config.json").is_file():
        try:
            return AutoConfig.from_pretrained(str(candidate), trust_remote_code=False), str(candidate / "config.json")
        except Exception:
            data = json.loads((candidate / "config.json").read_text())
            return _config_from_dict(data), str(candidate / "config.json")
    data = builtin_config(name_or_path)
    if data is not None:
        return _config_from_dict(data), f"built-in config of {name_or_path}"
    raise UserError(
        f"key `model_name_or_path`: no config.json at '{name_or_path}' and no built-in config for it "
        f"(built-in: {', '.join(sorted(known_names())[:8])}, ...); pass --config PATH/TO/config.json"
    )


def _config_from_dict(data: dict):
    from transformers import AutoConfig

    data = dict(data)
    model_type = data.pop("model_type", None)
    if model_type is None:
        raise UserError("config.json has no `model_type`")
    return AutoConfig.for_model(model_type, **data)


def model_dims(config, num_labels: int = 0) -> ModelDims:
    cfg = getattr(config, "text_config", None) or config
    hidden = cfg.hidden_size
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    return ModelDims(
        hidden=hidden,
        intermediate=getattr(cfg, "intermediate_size", 4 * hidden),
        layers=cfg.num_hidden_layers,
        heads=heads,
        kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        vocab=cfg.vocab_size,
        num_labels=num_labels,
    )


def _config_dtype(config):
    import torch

    dt = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dt, str):
        dt = getattr(torch, dt, None)
    return dt if isinstance(dt, torch.dtype) else torch.float32


# ---------------------------------------------------------------- meta model

def build_meta_model(config, model_args, finetuning_args, run, is_cls: bool, notes: list):
    """The model the run trains, on the meta device, set up by the run's own adapter code."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    mapping = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING if is_cls else MODEL_FOR_CAUSAL_LM_MAPPING
    try:
        model_cls = mapping[type(config)]
    except KeyError as exc:
        kind = "sequence-classification" if is_cls else "causal-LM"
        raise UserError(f"transformers has no {kind} class for model_type '{config.model_type}'") from exc
    with zero3_init_off():  # a meta-device count: no DeepSpeed zero.Init, even inside the classifier's own __init__
        return _build_meta_model(config, model_cls, model_args, finetuning_args, run, is_cls, notes)


def _build_meta_model(config, model_cls, model_args, finetuning_args, run, is_cls: bool, notes: list):
    import torch

    from ..host import calls as host

    load_dtype = _config_dtype(config)  # the host loads with torch_dtype="auto"
    with torch.device("meta"):
        model = model_cls(config)
    model = model.to(load_dtype)
    if getattr(model_args, "upcast_layernorm", False):
        names = host.layernorm_names()
        for name, param in model.named_parameters():
            if param.ndim == 1 and any(ln in name for ln in names):
                param.data = param.data.to(torch.float32)
    model_args = copy.deepcopy(model_args)
    finetuning_args = copy.deepcopy(finetuning_args)
    with torch.device("meta"):  # adapters too: nothing is allocated
        if is_cls:
            return _apply_cls(model, model_args, finetuning_args, run, notes)
        model = host.init_adapter(config, model, model_args, finetuning_args, is_trainable=True)
        if not host.init_adapter_is_wrapped():  # pack not active in this process
            model = _with_run(run, lambda: apply_model_hooks(model, True))
    return model


def _with_run(run, fn):
    with using(run):
        return fn()


def _apply_cls(model, model_args, finetuning_args, run, notes):
    from ..stages.cls.model import apply_cls_adapter

    return _with_run(run, lambda: apply_cls_adapter(model, model_args, finetuning_args, run))


def param_stats(model) -> ParamStats:
    """Counts over ``model.parameters()`` (shared tensors once), as the host's ``count_parameters``."""
    import torch

    seen = set()
    total = trainable = frozen_bytes = trainable_bytes = small = 0
    lin_trainable = 0
    first_layer = None
    head_trainable = False
    largest_module = 0
    for module in model.modules():
        direct = sum(p.numel() for p in module.parameters(recurse=False))
        largest_module = max(largest_module, direct)
    quant_params = quant_bytes = quant_rows = largest_linear = 0
    quant_modules = quant_blocks = quant_blocks2 = 0
    lora_in = lora_out = lora_r = 0
    lora_modules = 0
    lora_layers = set()
    largest_lora = 0
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    embed_bytes = emb.weight.element_size() if emb is not None else 2
    norm_trainable = any(p.requires_grad and p.ndim == 1 and "norm" in n for n, p in model.named_parameters())
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer") and len(getattr(module, "lora_A", {})) > 0:
            base = module.base_layer
            r = next(iter(module.r.values())) if hasattr(module, "r") else 0
            lora_in += base.in_features
            lora_out += base.out_features
            lora_r += r
            lora_modules += 1
            largest_lora = max(largest_lora, base.in_features * base.out_features)
            m = LAYER_RE.search(name + ".")
            if m:
                lora_layers.add(int(m.group(1)))
        if isinstance(module, torch.nn.Linear) and not _is_lora_part(name):
            w = module.weight
            largest_linear = max(largest_linear, w.numel())
            if not w.requires_grad and LAYER_RE.search(name + "."):
                quant_params += w.numel()
                quant_bytes += w.numel() * w.element_size()
                quant_rows += w.shape[0]
                quant_modules += 1
                b, b2 = nf4_blocks(w.numel())
                quant_blocks += b
                quant_blocks2 += b2
    embedding_ids = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    embed_trainable = blocks_8bit = 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
            trainable_bytes += n * p.element_size()
            if n < 4096:
                small += n
            elif id(p) in embedding_ids:
                embed_trainable += n
            else:
                blocks_8bit += -(-n // 256)
            if p.ndim == 2 and "embed" not in name and p.dtype == torch.float32:
                lin_trainable += n
            m = LAYER_RE.search(name)
            if m:
                idx = int(m.group(1))
                first_layer = idx if first_layer is None else min(first_layer, idx)
            elif "lm_head" in name or "score" in name or "classifier" in name:
                head_trainable = True
            elif "embed" in name:
                first_layer = -1
        else:
            frozen_bytes += n * p.element_size()
    n_layers = max(len(lora_layers), 1)
    return ParamStats(
        total_params=total, trainable_params=trainable, frozen_bytes=frozen_bytes, trainable_bytes=trainable_bytes,
        quantizable_params=quant_params, quantizable_bytes=quant_bytes, quantizable_rows=quant_rows,
        quantizable_modules=quant_modules, quantizable_blocks=quant_blocks, quantizable_blocks2=quant_blocks2,
        largest_module_params=largest_module, largest_linear_params=largest_linear,
        trainable_small_params=small, trainable_linear_params=lin_trainable,
        trainable_embedding_params=embed_trainable, trainable_8bit_blocks=blocks_8bit,
        first_trainable_layer=first_layer, head_trainable=head_trainable, embed_bytes=embed_bytes,
        norm_trainable=norm_trainable,
        lora_in_per_layer=lora_in / n_layers, lora_out_per_layer=lora_out / n_layers,
        lora_rank_per_layer=lora_r / n_layers, lora_modules=lora_modules, largest_lora_weight=largest_lora,
    )


def _is_lora_part(name: str) -> bool:
    return any(part in name.split(".") for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B",
                                                    "lora_magnitude_vector"))


# ---------------------------------------------------------------- spec

def _attention(model_args) -> str:
    value = str(getattr(model_args, "flash_attn", "auto")).lower()
    value = value.split(".")[-1]
    if value in ("disabled", "eager"):
        return "eager"
    if value in ("fa2", "fa3", "flash_attention_2", "flash_attention_3"):
        return "flash"
    return "sdpa"


def cls_num_labels(run, data_args=None, training_args=None) -> tuple[int, Optional[str]]:
    """(number of labels, note when assumed): the one source for the cls head's size in ``estimate``, ``validate``
    and the estimate printed when a run starts. ``label_names``, else the label set the cls stage builds from the
    data (reads the dataset files, no weights)."""
    opts = getattr(run, "stage_opts", None) if run is not None else None
    for key in ("label_names", "labels"):
        labels = getattr(opts, key, None)
        if labels:
            return len(labels), None
    n = getattr(opts, "num_labels", None)
    if n:
        return int(n), None
    why = "no dataset arguments"
    if opts is not None and data_args is not None and training_args is not None:
        try:
            from ..stages.cls.data import load_cls_data

            return len(load_cls_data(data_args, training_args, opts).labels), None
        except Exception as exc:
            why = exc.render() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return 2, f"number of labels unknown ({why}); assumed 2: give `label_names` for the exact head size"




def make_spec(run, model_args, data_args, training_args, finetuning_args, gpus: Optional[int] = None,
              config_path: Optional[str] = None, base_dir: Optional[str] = None) -> EstimateSpec:
    """Build the meta model and collect everything the memory model needs."""
    notes: list[str] = []
    stage = run.stage.name if getattr(run, "stage", None) is not None else getattr(finetuning_args, "stage", "sft")
    is_cls = stage == "cls"
    num_labels, note = cls_num_labels(run, data_args, training_args) if is_cls else (0, None)
    if note:
        notes.append(note)
    config, source = load_model_config(model_args.model_name_or_path, config_path)
    if is_cls:
        config.num_labels = num_labels
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = getattr(config, "eos_token_id", 0) if not isinstance(
                getattr(config, "eos_token_id", 0), list) else config.eos_token_id[0]
    model = build_meta_model(config, model_args, finetuning_args, run, is_cls, notes)
    stats = param_stats(model)
    stats.load_bytes = _config_dtype(config).itemsize
    del model
    return spec_from_parts(run, model_args, data_args, training_args, finetuning_args, model_dims(config, num_labels),
                           stats, source, stats.load_bytes, notes, stage, is_cls, gpus, base_dir)


def with_host_args(spec: EstimateSpec) -> EstimateSpec:
    """``spec`` with the host's own argument dataclasses (the formula path carries plain namespaces)."""
    if type(spec.model_args).__name__ != "SimpleNamespace" or spec.run is None:
        return spec
    model_args, data_args, training_args, finetuning_args, _ = parse_host_args(spec.run, spec.run.source)
    model_args.model_name_or_path = spec.model_name
    return spec.replace(model_args=model_args, data_args=data_args, training_args=training_args,
                        finetuning_args=finetuning_args)


def _dtype_bytes(dtype) -> Optional[int]:
    """Bytes per element of a torch dtype or its name; None for None."""
    if dtype is None:
        return None
    if hasattr(dtype, "itemsize"):
        return dtype.itemsize
    name = str(dtype).split(".")[-1]
    return {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2}.get(name, 2)


def spec_from_parts(run, model_args, data_args, training_args, finetuning_args, dims, stats, source, config_bytes,
                    notes, stage, is_cls, gpus=None, base_dir=None) -> EstimateSpec:
    """The EstimateSpec from parsed arguments, model dimensions and parameter statistics (no torch needed)."""
    from .distributed import fsdp_from_recipe, zero_setup

    ds = read_deepspeed(getattr(training_args, "deepspeed", None), base_dir)
    zero = zero_setup(ds, dims.hidden) if ds else None
    zero_stage = zero.stage if zero else None
    off_opt, off_par = (zero.offload_optimizer, zero.offload_param) if zero else (False, False)
    fsdp = fsdp_from_recipe(getattr(training_args, "fsdp", None), getattr(training_args, "fsdp_config", None))

    if gpus is None:
        gpus = int(os.environ.get("WORLD_SIZE", "0") or 0) or max(int(getattr(training_args, "world_size", 1) or 1), 1)
    amp = bool(training_args.bf16 or training_args.fp16) and not finetuning_args.pure_bf16
    compute_bytes = 4 if (_dtype_bytes(model_args.compute_dtype) or config_bytes) == 4 else 2
    if not amp and not finetuning_args.pure_bf16 and config_bytes != 4:
        compute_bytes = 2  # weights stay 16-bit; activations follow them
    seq_len = int(data_args.cutoff_len)
    optim = getattr(training_args, "optim", "adamw_torch_fused")
    optim = str(getattr(optim, "value", optim)).lower()
    if model_args.quantization_bit is not None and model_args.quantization_method not in ("bnb", "bitsandbytes") \
            and str(model_args.quantization_method).split(".")[-1].lower() not in ("bnb", "bitsandbytes"):
        notes.append(f"quantization_method {model_args.quantization_method}: modelled like bitsandbytes")
    if getattr(finetuning_args, "use_galore", False) or getattr(finetuning_args, "use_apollo", False) \
            or getattr(finetuning_args, "use_badam", False):
        notes.append("GaLore/APOLLO/BAdam optimizer states are not modelled; modelled as AdamW")
    if getattr(finetuning_args, "stage", "sft") in ("ppo", "dpo", "kto", "rm") and not is_cls:
        notes.append(f"stage {finetuning_args.stage}: reference/reward models are not added; chosen+rejected pairs double "
                     "the batch for dpo/kto" if finetuning_args.stage in ("dpo", "kto") else
                     f"stage {finetuning_args.stage}: modelled like sft")
    if model_args.quantization_bit in (4, 8):
        upcast = [what for key, what in (("upcast_layernorm", "norms in fp32"),
                                         ("upcast_lmhead_output", "fp32 logits"))
                  if getattr(model_args, key, False)]
        notes.append(f"QLoRA as the host runs it: non-quantized weights (embeddings, norms, head) stay "
                     f"{'bf16' if compute_bytes == 2 else 'fp32'}, LoRA adapters fp32"
                     + (f"; {', '.join(upcast)}" if upcast else "") +
                     " (no prepare_model_for_kbit_training: its fp32 variant is the upper bound)")
    batch = int(training_args.per_device_train_batch_size)
    if getattr(finetuning_args, "stage", "sft") in ("dpo", "kto", "rm") and not is_cls:
        batch *= 2
    return EstimateSpec(
        strategy_names=list(getattr(run, "strategy_names", []) or []),
        stage=stage,
        base_type=finetuning_args.finetuning_type,
        model_name=str(model_args.model_name_or_path),
        config_source=source,
        dims=dims,
        params=stats,
        batch_size=batch,
        seq_len=seq_len,
        grad_accum=int(training_args.gradient_accumulation_steps),
        gpus=int(gpus),
        gradient_checkpointing=not model_args.disable_gradient_checkpointing,
        unsloth_gc=bool(getattr(model_args, "use_unsloth_gc", False)),
        attention=_attention(model_args),
        compute_bytes=compute_bytes,
        amp=amp,
        pure_bf16=bool(finetuning_args.pure_bf16),
        optim=optim,
        zero_stage=zero_stage,
        offload_optimizer=off_opt,
        offload_param=off_par,
        zero=zero,
        fsdp=fsdp,
        quant_bits=model_args.quantization_bit,
        lora_dropout=float(getattr(finetuning_args, "lora_dropout", 0.0) or 0.0),
        use_dora=bool(getattr(finetuning_args, "use_dora", False)),
        is_cls=is_cls,
        model_args=model_args,
        data_args=data_args,
        training_args=training_args,
        finetuning_args=finetuning_args,
        run=run,
        notes=notes,
    )
