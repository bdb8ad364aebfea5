"""``llamafactory-ext export RUN_DIR --out DIR``: merge LoRA into the base, keep the trained head, save a model
that plain ``AutoModelForSequenceClassification.from_pretrained`` loads."""

from __future__ import annotations

import os
import sys


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="output_dir of a finished `stage: cls` run")
    parser.add_argument("--out", required=True, help="folder to write the merged model and tokenizer into")
    parser.add_argument("--base-model", default=None, help="base model path, if it moved since training")


def export_run(run_dir: str, out_dir: str, base_model=None) -> str:
    """Merge and save; returns ``out_dir``."""
    from ...api import UserError
    from .runio import load_run

    if os.path.abspath(out_dir) == os.path.abspath(run_dir):
        raise UserError("--out must differ from the run folder")
    model, tokenizer, manifest = load_run(run_dir, base_model=base_model, quantize=False)  # merge in full precision
    if manifest["adapter"]:
        model = model.merge_and_unload()
    model.config.architectures = [type(model).__name__]
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    from .modelcard import write_model_card

    write_model_card(out_dir, manifest, manifest["labels"], run_dir=run_dir, exported=True)
    return out_dir


def export_from_args(host_args: dict) -> None:
    """``llamafactory-cli export`` with ``stage: cls``: the run is `adapter_name_or_path` (or `model_name_or_path`)."""
    from ...api import UserError

    adapter = host_args.get("adapter_name_or_path")
    if isinstance(adapter, str):
        adapter = adapter.split(",")[0]
    elif isinstance(adapter, (list, tuple)):
        adapter = adapter[0]
    run_dir = adapter or host_args.get("model_name_or_path")
    out = host_args.get("export_dir")
    if not run_dir or not out:
        raise UserError("keys `adapter_name_or_path` (the cls run folder) and `export_dir` are needed to export a cls run")
    base = host_args.get("model_name_or_path") if adapter else None
    export_run(run_dir, out, base_model=base)
    print(f"exported cls model to {out}", file=sys.stderr)


def run(args) -> int:
    export_run(args.run_dir, args.out, args.base_model)
    print(f"exported to {args.out} (load with AutoModelForSequenceClassification.from_pretrained)", file=sys.stderr)
    return 0
