"""``llamafactory-ext export RUN_DIR --out DIR``: merge LoRA into the base, keep the trained head, save a model
that plain ``AutoModelForSequenceClassification.from_pretrained`` loads."""

from __future__ import annotations

import sys

from . import argtypes


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", type=argtypes.run_folder, help="output_dir of a finished `stage: cls` run")
    parser.add_argument("--out", required=True, type=argtypes.output_folder,
                        help="folder to write the merged model and tokenizer into (new or empty)")
    parser.add_argument("--base-model", default=None, type=argtypes.model_path,
                        help="base model path, if it moved since training")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out folder (never a model or run folder)")


def run(args) -> int:
    from ..stages.cls.export import export_run, serve_note

    export_run(args.run_dir, args.out, args.base_model, force=args.force)
    print(f"exported to {args.out} (load with AutoModelForSequenceClassification.from_pretrained)\n"
          + serve_note(args.out), file=sys.stderr)
    return 0
