"""With ``LLAMA_FACTORY_EXT_DISABLE=1`` the pack patches nothing; this only watches the host's ``read_args``
so that a recipe needing the pack stops with one message instead of the host's tracebacks."""

from __future__ import annotations

import sys

from .api import DISABLE_ENV, HOST_FINETUNING_TYPES

HOST_STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")


def pack_parts(raw: dict, host_keys: set) -> list[str]:
    """Keys (and `finetuning_type` / `stage` values) of ``raw`` that only the pack understands."""
    parts = []
    unknown = [k for k in raw if k not in host_keys]
    ft = raw.get("finetuning_type")
    names = ft if isinstance(ft, (list, tuple)) else str(ft or "lora").replace(",", "+").split("+")
    odd_ft = [str(n).strip() for n in names if str(n).strip() not in HOST_FINETUNING_TYPES]
    stage = raw.get("stage")
    odd_stage = stage is not None and stage not in HOST_STAGES
    if not (unknown or odd_ft or odd_stage):
        return []
    try:
        from . import plugins

        pack_keys, strategies, stages = set(), set(plugins.strategies()), set(plugins.stages())
        for model in plugins.key_groups().values():
            pack_keys.update(model.model_fields)
        for obj in list(plugins.strategies().values()) + list(plugins.stages().values()):
            pack_keys.update(obj.args_model.model_fields if obj.args_model else {})
    except Exception:  # a broken plugin: say nothing, the host reports the recipe as it does
        return []
    parts += [f"`{k}`" for k in unknown if k in pack_keys]
    parts += [f"`finetuning_type: {n}`" for n in odd_ft if n in strategies]
    if odd_stage and stage in stages:
        parts.append(f"`stage: {stage}`")
    return parts


def wrap_read_args(tuner) -> None:
    original = getattr(tuner, "read_args", None)
    if original is None:
        return

    def read_args(args=None):
        raw = original(args)
        if isinstance(raw, dict):
            try:
                from .host import host_arg_names

                parts = pack_parts(raw, host_arg_names())
            except Exception:
                parts = []
            if parts:
                print(f"llama-factory-ext is disabled ({DISABLE_ENV} is set), and this recipe needs it for "
                      f"{', '.join(parts)}. Unset {DISABLE_ENV} to run it with the pack, or remove those keys "
                      f"to train with the plain host.", file=sys.stderr, flush=True)
                raise SystemExit(2)
        return raw

    read_args.__wrapped__ = original
    tuner.read_args = read_args
