"""Text -> token ids for the cls stage: one code path for training and prediction."""

from __future__ import annotations

from typing import Optional


def apply_template(template: Optional[str], text: str, text_pair: Optional[str]) -> tuple[str, Optional[str]]:
    """``cls_template`` with ``{text}`` (and ``{text_pair}``) placeholders; plain replacement, no format()."""
    if not template:
        return text, text_pair
    out = template.replace("{text}", text)
    if "{text_pair}" in template:
        out = out.replace("{text_pair}", text_pair or "")
        text_pair = None
    return out, text_pair


def encode(tokenizer, texts: list[str], pairs: Optional[list[Optional[str]]], cutoff_len: int, template: Optional[str]) -> dict:
    """input_ids / attention_mask (/ token_type_ids) per row, truncated to ``cutoff_len``."""
    pairs = pairs or [None] * len(texts)
    firsts, seconds = [], []
    for t, p in zip(texts, pairs):
        a, b = apply_template(template, t, p)
        firsts.append(a)
        seconds.append(b)
    if any(s is not None for s in seconds):
        seconds = [s or "" for s in seconds]
        enc = tokenizer(firsts, seconds, truncation=True, max_length=cutoff_len)
    else:
        enc = tokenizer(firsts, truncation=True, max_length=cutoff_len)
    return dict(enc)
