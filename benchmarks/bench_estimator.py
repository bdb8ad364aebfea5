"""Estimator speed and CPU validation. Writes docs/estimator_bench.md (+ .json).

Run from any folder with the installed wheel:  python benchmarks/bench_estimator.py
1. speed: `estimate_recipe` on Llama-3-8B's config (built-in), in-process after imports (median of 5) and the
   cold `llamafactory-ext estimate` command (one run, includes Python/torch/transformers imports);
2. the activation model vs a TorchDispatchMode allocation count of one real CPU forward+backward of the
   Llama-3-8B layer structure scaled down 16x (hidden 256, 1-2 layers, seq 256, batch 2), per recipe variant;
3. the comparison table of docs/estimator.md: this estimator vs `accelerate estimate-memory` (weights only),
   the host README rule and a common rule of thumb, for the same configs (no GPU involved).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = Path(__file__).resolve().parents[1] / "docs"
MODEL = "meta-llama/Meta-Llama-3-8B"
GiB = 1024**3


def recipe(**kw) -> dict:
    base = dict(model_name_or_path=MODEL, stage="sft", do_train=True, finetuning_type="lora", lora_target="all",
                dataset="alpaca_sample", dataset_dir="data", template="llama3", cutoff_len=1024,
                output_dir="/tmp/lfx_bench", per_device_train_batch_size=2, bf16=True)
    base.update(kw)
    return base


def speed() -> dict:
    from llama_factory_ext.estimator import estimate_recipe

    estimate_recipe(recipe(), gpu="H100")  # warm-up: lazy imports inside PEFT / transformers
    out = {}
    for name, kw in (("lora", {}), ("full", {"finetuning_type": "full"}), ("qlora4", {"quantization_bit": 4})):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            estimate_recipe(recipe(**kw), gpu="H100")
            times.append(time.perf_counter() - t)
        out[f"in_process_{name}_s"] = round(statistics.median(times), 3)
    with tempfile.TemporaryDirectory() as tmp:
        import yaml

        path = Path(tmp) / "r.yaml"
        path.write_text(yaml.safe_dump(recipe()))
        exe = Path(sys.executable).parent / "llamafactory-ext"
        t = time.perf_counter()
        r = subprocess.run([str(exe), "estimate", str(path), "--gpu", "H100", "--json"], capture_output=True, text=True)
        out["cold_cli_s"] = round(time.perf_counter() - t, 2)
        out["cold_cli_rc"] = r.returncode
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, transformers, peft, llamafactory.hparams"],
                       capture_output=True)
        out["imports_only_s"] = round(time.perf_counter() - t, 2)
    return out


VARIANTS = [
    ("LoRA r8 all, bf16 AMP, GC on", {}),
    ("LoRA r8 all, bf16 AMP, GC off", {"disable_gradient_checkpointing": True}),
    ("LoRA r8 dropout 0.1, GC off", {"lora_dropout": 0.1, "disable_gradient_checkpointing": True}),
    ("LoRA, pure_bf16, GC off", {"pure_bf16": True, "bf16": False, "disable_gradient_checkpointing": True}),
    ("LoRA, eager attention, GC off", {"flash_attn": "disabled", "disable_gradient_checkpointing": True}),
    ("full, bf16 AMP, GC on", {"finetuning_type": "full"}),
    ("full, bf16 AMP, GC off", {"finetuning_type": "full", "disable_gradient_checkpointing": True}),
    ("freeze (2 layers), GC off", {"finetuning_type": "freeze", "disable_gradient_checkpointing": True}),
]


def cpu_validation() -> list:
    import contextlib

    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.estimator.simulate import simulate_spec

    rows = []
    for name, kw in VARIANTS:
        with contextlib.redirect_stdout(sys.stderr):
            spec = spec_from_recipe(recipe(cutoff_len=256, **kw))
            r = simulate_spec(spec, factor=16)
        rows.append({"variant": name, **{k: r[k] for k in ("measured_per_layer", "predicted_per_layer",
                                                            "measured_peak", "predicted_peak")}})
    return rows


COMPARE = [
    ("LoRA r8, b4 x 1024, GC", {"per_device_train_batch_size": 4}),
    ("LoRA r8, b1 x 4096, no GC", {"per_device_train_batch_size": 1, "cutoff_len": 4096,
                                   "disable_gradient_checkpointing": True}),
    ("QLoRA 4-bit r8, b4 x 1024, GC", {"per_device_train_batch_size": 4, "quantization_bit": 4}),
    ("QLoRA 8-bit r8, b4 x 1024, GC", {"per_device_train_batch_size": 4, "quantization_bit": 8}),
    ("freeze 2 layers, b4 x 1024, GC", {"finetuning_type": "freeze", "per_device_train_batch_size": 4}),
    ("full AMP, b1 x 1024, GC", {"finetuning_type": "full", "per_device_train_batch_size": 1}),
    ("full pure_bf16, b1 x 1024, GC", {"finetuning_type": "full", "per_device_train_batch_size": 1,
                                       "pure_bf16": True, "bf16": False}),
    ("full, ZeRO-3 x 8 GPUs, b1 x 1024", {"finetuning_type": "full", "per_device_train_batch_size": 1,
                                          "deepspeed": {"zero_optimization": {"stage": 3}}}),
]


_ACCEL: dict = {}


def accelerate_rows() -> dict:
    """`accelerate estimate-memory`'s own functions on the base model built on the meta device (its method)."""
    if not _ACCEL:
        import torch
        from accelerate.commands.estimate import estimate_training_usage
        from accelerate.utils import calculate_maximum_sizes
        from transformers import LlamaConfig, LlamaForCausalLM

        from llama_factory_ext.estimator.configs import builtin_config

        cfg = builtin_config(MODEL)
        cfg.pop("model_type")
        with torch.device("meta"):
            model = LlamaForCausalLM(LlamaConfig(**cfg)).float()
        total, _ = calculate_maximum_sizes(model)
        _ACCEL["bf16_total"] = total / 2
        _ACCEL["adam"] = max(estimate_training_usage(total, "float32").values())  # its "Training using Adam" (float32)
    return _ACCEL


def comparison() -> list:
    import contextlib

    from llama_factory_ext.estimator import estimate_recipe

    rows = []
    for name, kw in COMPARE:
        gpus = 8 if "ZeRO-3" in name else 1
        with contextlib.redirect_stdout(sys.stderr):
            est = estimate_recipe(recipe(**kw), gpus=gpus, advice=False)
        s = est.spec
        P = 8_030_261_248 if s.base_type != "full" else s.total_params
        x = P / 1e9
        method = s.base_type
        if s.quant_bits == 4:
            readme, seeds = x / 2, x * 6
        elif s.quant_bits == 8:
            readme, seeds = x, x * 6
        elif method == "full":
            readme = 8 * x if s.pure_bf16 else 18 * x
            seeds = x * 20
        else:
            readme, seeds = 2 * x, x * 10
        if gpus > 1:
            readme, seeds = readme / gpus, seeds / gpus
        accel = accelerate_rows()
        rows.append({
            "config": name, "gpus": gpus, "this_estimator_gib": est.peak_bytes / GiB,
            "allocated_gib": est.breakdown.allocated_bytes / GiB,
            "accelerate_bf16_weights_gib": accel["bf16_total"] / GiB, "accelerate_adam_row_gib": accel["adam"] / GiB,
            "host_readme_gb": readme, "seeds_rule_gb": seeds,
        })
    return rows


def main() -> None:
    OUT.mkdir(exist_ok=True)
    result = {"speed": speed(), "cpu_validation": cpu_validation(), "comparison": comparison()}
    (OUT / "estimator_bench.json").write_text(json.dumps(result, indent=2))
    sp = result["speed"]
    lines = [
        "# Estimator benchmark (CPU, measured by benchmarks/bench_estimator.py)",
        "",
        f"Speed, Llama-3-8B built-in config, {os.cpu_count()} CPU cores (shared machine):",
        "",
        "| what | seconds |", "|---|---|",
        f"| estimate_recipe in-process, LoRA r8 all (median of 5, after imports) | {sp['in_process_lora_s']} |",
        f"| estimate_recipe in-process, full | {sp['in_process_full_s']} |",
        f"| estimate_recipe in-process, QLoRA 4-bit | {sp['in_process_qlora4_s']} |",
        f"| `llamafactory-ext estimate --json` cold command (one run) | {sp['cold_cli_s']} |",
        f"| of which `import torch, transformers, peft, llamafactory.hparams` alone | {sp['imports_only_s']} |",
        "",
        "Cold command timings with the formula path: docs/estimate_cli_bench.md (benchmarks/bench_estimate_cli.py).",
        "",
        "CPU validation of the activation model (Llama-3-8B layer structure scaled 16x: hidden 256, intermediate 896,",
        "32 heads x 8 dims, 8 KV heads, vocab 8016; batch 2 with one padded row, seq 256; one real forward+backward",
        "on CPU under a TorchDispatchMode allocation counter; bf16 autocast on CPU). Per layer = saved bytes of one",
        "decoder layer (2-layer minus 1-layer model, after forward); peak = peak bytes allocated during forward+",
        "backward of the 2-layer model, excluding weights.",
        "",
        "| variant | per layer measured | per layer model | ratio | step peak measured | step peak model | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["cpu_validation"]:
        lines.append(f"| {r['variant']} | {r['measured_per_layer'] / 2**20:.2f} MiB | {r['predicted_per_layer'] / 2**20:.2f} MiB"
                     f" | {r['predicted_per_layer'] / r['measured_per_layer']:.3f} | {r['measured_peak'] / 2**20:.1f} MiB"
                     f" | {r['predicted_peak'] / 2**20:.1f} MiB | {r['predicted_peak'] / r['measured_peak']:.3f} |")
    lines += [
        "",
        "Same configs (Llama-3-8B, 1 GPU unless noted), per GPU: this estimator's peak (incl. 0.75 GiB CUDA context",
        "+ allocator slack by method) and its allocated part; `accelerate estimate-memory`'s method (its own functions on",
        "the meta model: bf16 Total Size, and the float32 \"Training using Adam\" column, a maximum of 4x weights, not",
        "a sum; it ignores method, batch and sequence); the host README's per-method rule; the",
        "rule of thumb (params x 20 / x 10 / x 6 GB). None of these numbers is a GPU measurement.",
        "",
        "| config | this estimator | allocated part | accelerate bf16 weights | accelerate Adam row | host README | rule of thumb |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["comparison"]:
        lines.append(f"| {r['config']} | {r['this_estimator_gib']:.1f} GiB | {r['allocated_gib']:.1f} GiB | "
                     f"{r['accelerate_bf16_weights_gib']:.1f} GiB | {r['accelerate_adam_row_gib']:.1f} GiB | "
                     f"{r['host_readme_gb']:.1f} GB | {r['seeds_rule_gb']:.1f} GB |")
    (OUT / "estimator_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
