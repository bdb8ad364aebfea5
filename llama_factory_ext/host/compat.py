"""Rules for host and transformers versions the pack works around."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

FA2_BROKEN_TRANSFORMERS = ("5.6.0",)  # upstream LLaMA-Factory issue #10610


def fa2_warning(model_args) -> Optional[str]:
    """transformers 5.6.0's FlashAttention-2 path is broken (LLaMA-Factory issue #10610)."""
    if str(getattr(model_args, "flash_attn", "")) != "fa2":
        return None
    try:
        from importlib.metadata import version

        tv = version("transformers")
    except Exception:
        return None
    if tv not in FA2_BROKEN_TRANSFORMERS:
        return None
    return (f"flash_attn: fa2 on transformers {tv} takes a broken FlashAttention-2 path (LLaMA-Factory issue #10610): "
            "use `flash_attn: sdpa`, or the host's development head (it excludes transformers 5.6.0)")


@contextmanager
def zero3_init_off():
    """Build a model without DeepSpeed's ``zero.Init`` while a ZeRO-3 config is registered (the estimator's meta-device
    count). transformers wraps every ``from_config`` in ``zero.Init`` then, including the one inside
    ``*ForSequenceClassification.__init__``; on DeepSpeed 0.16 with transformers 5.6 / 5.8 the next real
    ``from_pretrained`` of a classifier then fails (``no attribute 'all_tied_weights_keys'``)."""
    try:
        from transformers.integrations import deepspeed as integration
    except ImportError:  # transformers without its DeepSpeed integration: nothing registered
        yield
        return
    ref = getattr(integration, "_hf_deepspeed_config_weak_ref", None)
    integration._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        integration._hf_deepspeed_config_weak_ref = ref


def zero3_modules_to_save_ready(model) -> int:
    """Give each module PEFT copies for ``modules_to_save`` the counter DeepSpeed ZeRO-3's backward hooks expect.

    PEFT's ``ModulesToSaveWrapper`` forwards attribute lookups to the module it wraps, so DeepSpeed (0.16) reuses that
    module's post-backward function for the wrapper, which counts on the wrapped module before the module's own hook
    has set its counter: ``'Linear' object has no attribute 'ds_grads_remaining'`` in the first forward. Returns how
    many modules were given one."""
    try:
        from peft.utils.other import ModulesToSaveWrapper
    except ImportError:
        return 0
    n = 0
    for wrapper in model.modules():
        if isinstance(wrapper, ModulesToSaveWrapper):
            for inner in (wrapper.original_module, *wrapper.modules_to_save.values()):
                if not hasattr(inner, "ds_grads_remaining"):
                    inner.ds_grads_remaining = 0
                    n += 1
    return n
