"""``llamafactory-ext compare RUN_DIR``: a finished cls run against its TF-IDF baseline (error analysis)."""

from __future__ import annotations

from . import argtypes


def add_arguments(parser):
    parser.add_argument("run_dir", type=argtypes.run_folder,
                        help="a finished cls run (its output_dir, with predictions.jsonl)")
    parser.add_argument("--baseline", type=argtypes.existing_folder, help="baseline folder (default: RUN_DIR/baseline)")
    parser.add_argument("--confident", type=argtypes.probability, default=None,
                        help="optional: also require both models' probability for their label to reach this "
                             "(default: no absolute threshold; suspects are ranked by margin)")
    parser.add_argument("--examples", type=argtypes.non_negative_int, default=20,
                        help="examples listed per section (default 20)")
    parser.add_argument("--output", type=argtypes.output_folder,
                        help="folder for compare.md / compare.json / chart (default: RUN_DIR/compare)")


def run(args) -> int:
    import os

    from ..api import UserError
    from ..stages.cls.compare import make_compare
    from ..stages.cls.compare_report import compare_summary

    if args.baseline and os.path.realpath(args.baseline) == os.path.realpath(args.run_dir):
        raise UserError(f"--baseline: {args.baseline} is RUN_DIR itself; give the baseline's folder "
                        "(default: RUN_DIR/baseline)")
    out, c = make_compare(args.run_dir, args.baseline, args.confident, args.examples, args.output)
    print(f"{compare_summary(c)}; wrote {out}")
    return 0
