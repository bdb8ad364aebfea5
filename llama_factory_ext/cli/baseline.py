"""``llamafactory-ext baseline RECIPE``: TF-IDF + linear classifier on the recipe's own split."""

from __future__ import annotations

from . import argtypes


def add_arguments(parser):
    parser.add_argument("recipe", type=argtypes.recipe, help="a cls recipe (file or registered name)")
    parser.add_argument("overrides", nargs="*", help="host-style key=value overrides (as for llamafactory-cli train)")
    parser.add_argument("--classifier", choices=("svm", "logreg"), default="svm",
                        help="LinearSVC (default) or LogisticRegression")
    parser.add_argument("--C", type=argtypes.positive_float, default=1.0,
                        help="inverse regularisation strength (default 1.0)")
    parser.add_argument("--output", type=argtypes.output_folder,
                        help="folder for the results (default: the recipe's output_dir/baseline)")


def run(args) -> int:
    import os

    from ..api import UserError
    from ..stages.cls.baseline import make_baseline

    if args.output and any(os.path.exists(os.path.join(args.output, f)) for f in ("cls_run.json", "run_status.json")):
        raise UserError(f"--output: {args.output} is a training run's folder; its predictions.jsonl would be "
                        "replaced (default: the recipe's output_dir/baseline)")
    out, m = make_baseline(args.recipe, args.overrides, args.classifier, args.C, args.output)
    print(f"baseline ({m['classifier']}): accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
          f"on {m['n']} rows (trained on {m['n_train']}); wrote {out}")
    return 0
