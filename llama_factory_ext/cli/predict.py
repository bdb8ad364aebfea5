"""``llamafactory-ext predict RUN_DIR --input FILE [--output FILE]``: classify new texts with a finished cls run."""

from __future__ import annotations

import json
import sys

from . import argtypes


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", type=argtypes.run_folder, help="output_dir of a finished `stage: cls` run")
    parser.add_argument("--input", required=True, type=argtypes.existing_file,
                        help="texts: .jsonl/.json/.csv/.parquet with a text column, or .txt (one per line)")
    parser.add_argument("--output", type=argtypes.output_file, help="write JSONL predictions here (default: stdout)")
    parser.add_argument("--text-column", default="text", help="text column of the input (default: text)")
    parser.add_argument("--pair-column", default=None, help="second text column for pair classification")
    parser.add_argument("--base-model", default=None, type=argtypes.model_path,
                        help="base model path, if it moved since training")
    parser.add_argument("--batch-size", type=argtypes.positive_int, default=16,
                        help="texts per forward pass (default: 16)")


def run(args) -> int:
    import os

    from ..api import UserError
    from ..stages.cls.predict import read_inputs
    from ..stages.cls.saved_run import load_run, predict_texts

    if not os.path.exists(args.input):
        raise UserError(f"--input: {args.input} does not exist")
    if args.pair_column is not None and args.pair_column == args.text_column:
        raise UserError(f"--pair-column: '{args.pair_column}' is also the --text-column; name the second text column")
    if args.output:
        _check_output(args.output, args.input, args.run_dir)
    ids, texts, pairs = read_inputs(args.input, args.text_column, args.pair_column)
    model, tokenizer, manifest = load_run(args.run_dir, base_model=args.base_model)
    import contextlib

    from ..safeio import atomic_write
    from ..stages.cls.outputs import prediction_rows

    logits = predict_texts(model, tokenizer, manifest, texts, pairs, batch_size=args.batch_size, raw=True)
    # --output appears complete or not at all (temporary name, then rename)
    with (atomic_write(args.output) if args.output else contextlib.nullcontext(sys.stdout)) as out:
        for row in prediction_rows(ids, logits, manifest):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    if args.output:
        print(f"wrote {len(ids)} predictions to {args.output}", file=sys.stderr)
    return 0


def _check_output(output: str, input_file: str, run_dir: str) -> None:
    """--output must not replace the input file or a file of the run folder (its own predictions, its weights)."""
    import os

    from ..api import UserError

    if os.path.exists(output) and os.path.samefile(output, input_file):
        raise UserError(f"--output: {output} is the --input file; write the predictions to another file")
    out, run = os.path.realpath(output), os.path.realpath(run_dir)
    if os.path.commonpath([out, run]) == run and (os.path.exists(out) or out == os.path.join(run, "predictions.jsonl")):
        raise UserError(f"--output: {output} is a file of the run folder {run_dir} (its own test predictions, "
                        "weights or records); write the predictions elsewhere")
