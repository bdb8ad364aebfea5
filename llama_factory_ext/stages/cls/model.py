"""Build the sequence-classification model and set up its trainable parts (LoRA + head / freeze / full)."""

from __future__ import annotations

import re
from typing import Any, Optional

from ...host import calls as host
from ...runtime import apply_model_hooks, report
from ...api import UserError
from .args import HF_PROBLEM_TYPES
from .trained_head import HEAD_CANDIDATES


def head_module_names(model) -> list[str]:
    """Top-level names of the classification head (``score`` for decoders, ``classifier`` for BERT)."""
    base = _unwrap(model)
    names = [n for n, _ in base.named_children() if n in HEAD_CANDIDATES]
    if not names:
        raise UserError(
            f"model class {type(base).__name__} has no classification head named "
            f"{' / '.join(HEAD_CANDIDATES)}; the cls stage supports AutoModelForSequenceClassification models with one"
        )
    return names


def _unwrap(model):
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.get_base_model()
    return model


def pick_pad_token(tokenizer) -> Optional[int]:
    """Give a tokenizer without pad token one (Llama-3): a reserved pad token if present, else EOS."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    vocab = tokenizer.get_vocab()
    for cand in ("<|finetune_right_pad_id|>", "<pad>", "[PAD]"):
        if cand in vocab:
            tokenizer.pad_token = cand
            return tokenizer.pad_token_id
    if tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        return tokenizer.pad_token_id
    raise UserError("the tokenizer has neither a pad token nor an EOS token; add one (key `add_special_tokens`)")


def set_problem(config, labels: list[str], problem_type: str = "single_label") -> None:
    """num_labels, id2label, label2id and problem_type of a config (regression: one output, labelled ``score``)."""
    config.num_labels = len(labels)
    config.id2label = {i: lab for i, lab in enumerate(labels)}
    config.label2id = {lab: i for i, lab in enumerate(labels)}
    config.problem_type = HF_PROBLEM_TYPES[problem_type]


def cls_config(model_args, labels: list[str], tokenizer, problem_type: str = "single_label"):
    """The model config with num_labels, id2label, label2id, problem_type and pad_token_id set."""
    config = host.load_config(model_args)
    set_problem(config, labels, problem_type)
    pad = pick_pad_token(tokenizer)
    config.pad_token_id = pad
    text_config = getattr(config, "text_config", None)
    if text_config is not None:
        text_config.pad_token_id = pad
    return config


def head_names_for_config(config) -> list[str]:
    """Head names without building the model (for quantization skip lists)."""
    model_type = getattr(config, "model_type", "")
    if model_type in ("bert", "distilbert", "electra", "xlm-roberta", "roberta", "deberta", "deberta-v2", "albert"):
        return ["classifier", "pre_classifier"] if model_type == "distilbert" else ["classifier"]
    return ["score"]


def load_kwargs(config, tokenizer, model_args, is_trainable: bool = True) -> dict[str, Any]:
    """``from_pretrained`` kwargs via the host's patch_config (dtype, attention, quantization).

    With ``quantization_bit`` the classification head is kept out of quantization (higher precision).
    """
    kwargs: dict[str, Any] = {
        "trust_remote_code": model_args.trust_remote_code,
        "cache_dir": model_args.cache_dir,
        "revision": model_args.model_revision,
        "token": model_args.hf_hub_token,
    }
    host.patch_config(config, tokenizer, model_args, kwargs, is_trainable)
    qcfg = kwargs.get("quantization_config")
    if qcfg is not None and hasattr(qcfg, "llm_int8_skip_modules"):
        skip = list(qcfg.llm_int8_skip_modules or [])
        for name in head_names_for_config(config):
            if name not in skip:
                skip.append(name)
        qcfg.llm_int8_skip_modules = skip
    kwargs["config"] = config
    kwargs["dtype"] = "auto"
    return kwargs


def load_cls_model(model_args, finetuning_args, labels: list[str], tokenizer, is_trainable: bool = True,
                   problem_type: str = "single_label"):
    """AutoModelForSequenceClassification from the host's model path, ready for apply_cls_adapter."""
    from transformers import AutoModelForSequenceClassification

    from ...quiet import held_load_report, settle_load_report

    config = cls_config(model_args, labels, tokenizer, problem_type)
    kwargs = load_kwargs(config, tokenizer, model_args, is_trainable)
    try:
        with held_load_report() as held:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                model_args.model_name_or_path, output_loading_info=True, **kwargs)
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise UserError(
                f"model `{model_args.model_name_or_path}` ({config.model_type}) has no sequence-classification "
                "class in transformers; the cls stage cannot train it"
            ) from err
        raise
    heads = head_module_names(model)
    new_head = [k for k in info.get("missing_keys") or () if k.split(".")[0] in heads]
    model.lfx_head_loaded = not new_head  # the checkpoint held a head (read by the cls workflow without training)
    if not settle_load_report(held, info, heads) and new_head and not model_args.adapter_name_or_path:
        report(f"new classification head {', '.join(f'`{h}`' for h in heads)} for "
               f"{'a score' if problem_type == 'regression' else f'{len(labels)} labels'}: "
               "randomly initialised here and trained by this run")
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = config.pad_token_id
    if is_trainable:
        host.prepare_model_for_training(model, model_args)
    return model


def _cast_trainable_to_fp32(model_args, finetuning_args) -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    if finetuning_args.pure_bf16 or finetuning_args.use_badam:
        return False
    if model_args.quantization_bit is None and is_deepspeed_zero3_enabled():
        return False
    return True


def lora_target_regex(model, finetuning_args, heads: list[str]) -> str:
    """A PEFT target regex: the user's targets (or every linear layer) anywhere but in the head."""
    targets = list(finetuning_args.lora_target)
    if len(targets) == 1 and targets[0] == "all":
        targets = host.find_all_linear_modules(_unwrap(model), finetuning_args.freeze_vision_tower)
    targets = sorted({t for t in targets if t not in heads})
    if not targets:
        raise UserError("key `lora_target`: no LoRA target left outside the classification head")
    head_alt = "|".join(re.escape(h) for h in heads)
    target_alt = "|".join(re.escape(t) for t in targets)
    return rf"^(?!(?:{head_alt})(?:\.|$))(?:.*\.)?(?:{target_alt})$"


def apply_cls_adapter(model, model_args, finetuning_args, run=None):
    """Set up trainable parts: PEFT SEQ_CLS LoRA with the head in ``modules_to_save`` (lora),
    host freeze (plus the head) or host full. Works on a meta-device model."""
    import torch

    heads = head_module_names(model)
    ftype = finetuning_args.finetuning_type
    if ftype in ("full", "freeze"):
        if ftype == "freeze":
            extra = list(finetuning_args.freeze_extra_modules or [])
            finetuning_args.freeze_extra_modules = extra + [h for h in heads if h not in extra]
        return host.init_adapter(model.config, model, model_args, finetuning_args, True)
    if ftype != "lora":
        raise UserError(f"key `finetuning_type`: the cls stage supports lora (cls_head, rslora), freeze and full, not {ftype}")

    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from transformers.integrations import is_deepspeed_zero3_enabled

    from ...host.compat import zero3_modules_to_save_ready
    from ...quiet import import_bitsandbytes_quietly

    import_bitsandbytes_quietly()  # PEFT imports bitsandbytes when it builds LoRA layers
    if model_args.adapter_name_or_path:
        model = PeftModel.from_pretrained(model, model_args.adapter_name_or_path[-1], is_trainable=True)
    else:
        modules_to_save = list(heads)
        for extra in finetuning_args.additional_target or []:
            if extra not in modules_to_save:
                modules_to_save.append(extra)
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            inference_mode=False,
            r=finetuning_args.lora_rank,
            lora_alpha=finetuning_args.lora_alpha,
            lora_dropout=finetuning_args.lora_dropout,
            use_rslora=finetuning_args.use_rslora,
            use_dora=finetuning_args.use_dora,
            target_modules=lora_target_regex(model, finetuning_args, heads),
            modules_to_save=modules_to_save,
        )
        model = get_peft_model(model, config)
    if is_deepspeed_zero3_enabled():
        zero3_modules_to_save_ready(model)
    if _cast_trainable_to_fp32(model_args, finetuning_args):
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.float32)
    return apply_model_hooks(model)


def trainable_names(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def gather_head_state(model, heads: list[str]) -> dict:
    """Full-shape head weights, named ``<head>.<param>``; gathers ZeRO-3 partitioned params first."""
    import contextlib

    base = _unwrap(model)
    wanted = []
    for name, param in base.named_parameters():
        top = name.split(".")[0]
        if top not in heads or ".original_module." in name:
            continue
        clean = name.replace(".modules_to_save.default.", ".")
        wanted.append((clean, param))
    params = [p for _, p in wanted]
    ctx = contextlib.nullcontext()
    if any(hasattr(p, "ds_numel") for p in params):
        import deepspeed

        ctx = deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    with ctx:
        return {n: p.detach().to("cpu").clone().contiguous() for n, p in wanted}
