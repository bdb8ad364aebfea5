"""``llamafactory-ext tiny-model [DIR]``: build the tiny local Llama the ``tiny_*`` recipes and the demo use."""

from __future__ import annotations

from ..tiny import DEFAULT_DIR, ensure_tiny_model
from . import argtypes


def add_arguments(parser) -> None:
    parser.add_argument("dir", nargs="?", default=DEFAULT_DIR, type=argtypes.output_folder,
                        help="folder to build it in (default: ./tiny_llama, where the tiny recipes look: next to "
                             "the recipe file, else in the working folder)")
    parser.add_argument("--force", action="store_true", help="rebuild even if DIR already holds a model")


def run(args) -> int:
    out, built = ensure_tiny_model(args.dir, args.force)
    print(f"{'built' if built else 'found'} a tiny Llama (2 layers, hidden 64, random weights) in {out}")
    print(f"use it: llamafactory-cli train RECIPE.yaml model_name_or_path={out}")
    if out.name == DEFAULT_DIR:
        print("the tiny_* recipes (model_name_or_path: ./tiny_llama) find this folder without the override when it "
              "is in the working folder or next to the recipe file")
    return 0
