"""Build a tiny Llama and a Llama-3-style tokenizer offline (demo, `tiny-model` and tests; no hub)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
PAD = "<|finetune_right_pad_id|>"


def _corpus(extra: Iterable[str] = ()) -> list[str]:
    base = [
        "The quick brown fox jumps over the lazy dog.",
        "Customer complaint about a credit card charge that was billed twice.",
        "Library for parsing JSON documents in C with a small API.",
        "Python module providing bindings for the GTK toolkit.",
        "Documentation in HTML format for the developer tools.",
        "You are a helpful assistant. Classify the following text into a category.",
    ]
    return base + [t for t in extra if t]


def build_tokenizer(out_dir: str | Path, texts: Iterable[str] = (), vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=LLAMA3_SPECIAL + [PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token=None,
        additional_special_tokens=LLAMA3_SPECIAL[2:4],
    )
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_llama(
    out_dir: str | Path,
    texts: Iterable[str] = (),
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
    vocab_size: int = 512,
) -> Path:
    """Write a randomly initialised 2-layer Llama plus tokenizer into ``out_dir``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out, texts, vocab_size=vocab_size)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(str(out))
    return out


def read_texts(path: str | Path, key: str = "text", limit: Optional[int] = None) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                texts.append(str(row.get(key) or row.get("instruction") or ""))
            if limit and len(texts) >= limit:
                break
    return texts


DEFAULT_DIR = "tiny_llama"  # where the tiny_* recipes look: next to the recipe file, else in the working folder


def ensure_tiny_model(dest, force: bool = False) -> tuple[Path, bool]:
    """(folder, built now?): a 2-layer Llama (hidden 64) with a BPE tokenizer trained on the bundled Debian sample."""
    from .resources import builtin_dir

    out = Path(dest).resolve()
    if (out / "config.json").exists() and not force:
        return out, False
    sample = builtin_dir() / "data" / "debian_sample_train.jsonl"
    build_tiny_llama(out, texts=read_texts(sample) if sample.exists() else ())
    return out, True


def model_hint(recipe) -> str:
    """For a copied recipe whose ``model_name_or_path`` is the tiny model's folder and missing: how to build it."""
    from .recipe.load import read_recipe as load_yaml

    try:
        model = load_yaml(recipe).get("model_name_or_path")
    except Exception:
        return ""
    if not isinstance(model, str) or Path(model).name != DEFAULT_DIR or Path(model).is_absolute():
        return ""
    here = Path(recipe).resolve().parent / model
    if here.exists() or Path(model).exists():
        return ""
    return f"build its model first: llamafactory-ext tiny-model {Path(recipe).parent / DEFAULT_DIR}"
