"""Rules for host and transformers versions the pack works around."""

from __future__ import annotations

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
