"""``llamafactory-ext estimate RECIPE.yaml [key=value ...] [--gpus N] [--gpu-memory 80GiB | --gpu H100] [--json]``."""

from __future__ import annotations

import json
import sys

from . import argtypes


def add_arguments(parser) -> None:
    parser.add_argument("recipe", type=argtypes.recipe, help="recipe YAML (as given to `llamafactory-cli train`)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="host-style overrides, as after the recipe")
    parser.add_argument("--gpus", type=argtypes.positive_int, default=1,
                        help="number of GPUs (data parallel / DeepSpeed world size)")
    mem = parser.add_mutually_exclusive_group()
    mem.add_argument("--gpu-memory", type=argtypes.memory_size,
                     help="memory of one GPU, e.g. 80GiB, 24GB (a bare number is GiB: 80 means 80GiB)")
    mem.add_argument("--gpu", type=argtypes.gpu_name,
                     help="GPU name for its memory: H100, H200, A100, A100-40GB, A10G, L4, RTX4090, ...")
    parser.add_argument("--config", type=argtypes.existing_file,
                        help="config.json to use when model_name_or_path has no local config")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-advice", action="store_true", help="skip the re-estimated options")
    parser.add_argument("--seq-from-data", action="store_true",
                        help="use the longest training sample (tokenized by the host's pipeline, after cutoff_len) "
                             "instead of cutoff_len; needs the tokenizer locally")
    parser.add_argument("--simulate", action="store_true",
                        help="also count activation bytes of one real CPU step of a 2-layer model with this "
                             "recipe's shapes scaled down (slow; see docs/estimator.md)")


def run(args) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ..api import UserError
    from ..estimator import estimate_recipe, estimate_with_data_lengths
    from ..estimator.core import GPU_MEMORY
    from ..quiet import stdout_to_stderr
    from ..recipe.load import parse_overrides

    if args.gpus < 1:
        raise UserError("--gpus: must be at least 1")
    overrides = parse_overrides(args.overrides)
    with stdout_to_stderr():  # strategies may print while the model is built
        est = estimate_recipe(args.recipe, gpus=args.gpus, gpu_memory=args.gpu_memory, overrides=overrides,
                              config_path=args.config, gpu=args.gpu, advice=not args.no_advice,
                              progress=lambda text: print(f"llamafactory-ext estimate: {text}", file=sys.stderr,
                                                          flush=True))
    if args.seq_from_data:
        with stdout_to_stderr():
            est = estimate_with_data_lengths(est, advice=not args.no_advice)
    if args.gpu and args.gpu.upper() in GPU_MEMORY:
        est.gpu_name = args.gpu
    sim = None
    if args.simulate:
        from ..estimator.simulate import simulate_spec

        with stdout_to_stderr():
            sim = simulate_spec(est.spec)
    if args.json:
        out = est.to_json()
        if sim is not None:
            out["simulated"] = sim
        print(json.dumps(out, indent=2))
    else:
        print(est.render())
        if sim is not None:
            print()
            print(f"simulated on CPU (allocation counter, one forward+backward of a 1- and 2-layer model, hidden "
                  f"{sim['hidden']}, batch {sim['batch']} x {sim['seq']}): saved per layer "
                  f"{sim['measured_per_layer'] / 2**20:.2f} MiB measured vs {sim['predicted_per_layer'] / 2**20:.2f} MiB "
                  f"modelled; step peak without weights {sim['measured_peak'] / 2**20:.1f} MiB measured vs "
                  f"{sim['predicted_peak'] / 2**20:.1f} MiB modelled")
    if est.verdict == "does not fit":
        return 1
    return 0

