"""``llamafactory-ext baseline RECIPE``: TF-IDF + a linear model of the recipe's problem type on its own split."""

from __future__ import annotations

from . import argtypes


def add_arguments(parser):
    parser.add_argument("recipe", type=argtypes.recipe, help="a cls recipe (file or registered name)")
    parser.add_argument("overrides", nargs="*", help="host-style key=value overrides (as for llamafactory-cli train)")
    parser.add_argument("--classifier", choices=("svm", "logreg"), default="svm",
                        help="LinearSVC (default) or LogisticRegression, one per label for multi-label recipes "
                             "(regression recipes use Ridge)")
    parser.add_argument("--C", type=argtypes.positive_float, default=1.0,
                        help="inverse regularisation strength of the classifiers (default 1.0)")
    parser.add_argument("--alpha", type=argtypes.positive_float, default=1.0,
                        help="regularisation strength of Ridge, the regression baseline (default 1.0)")
    parser.add_argument("--output", type=argtypes.output_folder,
                        help="folder for the results (default: the recipe's output_dir/baseline)")


def run(args) -> int:
    import os

    from ..api import UserError
    from ..stages.cls.baseline import baseline_summary, make_baseline

    if args.output and any(os.path.exists(os.path.join(args.output, f)) for f in ("cls_run.json", "run_status.json")):
        raise UserError(f"--output: {args.output} is a training run's folder; its predictions.jsonl would be "
                        "replaced (default: the recipe's output_dir/baseline)")
    out, m = make_baseline(args.recipe, args.overrides, args.classifier, args.C, args.output, args.alpha)
    print(f"{baseline_summary(m)}; wrote {out}")
    return 0
