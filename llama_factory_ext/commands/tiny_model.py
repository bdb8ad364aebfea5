"""``llamafactory-ext tiny-model [DIR]``: build the tiny local Llama the ``tiny_*`` recipes and the demo use."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIR = "tiny_llama"


def add_arguments(parser) -> None:
    parser.add_argument("dir", nargs="?", default=DEFAULT_DIR,
                        help="folder to build it in (default: ./tiny_llama, where the tiny recipes look: next to "
                             "the recipe file, else in the working folder)")
    parser.add_argument("--force", action="store_true", help="rebuild even if DIR already holds a model")


def ensure_tiny_model(dest, force: bool = False) -> tuple[Path, bool]:
    """(folder, built now?): a 2-layer Llama (hidden 64) with a BPE tokenizer trained on the bundled Debian sample."""
    from ..recipes import builtin_dir
    from ..tiny import build_tiny_llama, read_texts

    out = Path(dest).resolve()
    if (out / "config.json").exists() and not force:
        return out, False
    sample = builtin_dir() / "data" / "debian_sample_train.jsonl"
    build_tiny_llama(out, texts=read_texts(sample) if sample.exists() else ())
    return out, True


def run(args) -> int:
    out, built = ensure_tiny_model(args.dir, args.force)
    print(f"{'built' if built else 'found'} a tiny Llama (2 layers, hidden 64, random weights) in {out}")
    print(f"use it: llamafactory-cli train RECIPE.yaml model_name_or_path={out}")
    if out.name == DEFAULT_DIR:
        print("the tiny_* recipes (model_name_or_path: ./tiny_llama) find this folder without the override when it "
              "is in the working folder or next to the recipe file")
    return 0


def model_hint(recipe) -> str:
    """For a copied recipe whose ``model_name_or_path`` is the tiny model's folder and missing: how to build it."""
    from ..recipes import load_yaml

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
