"""Estimator vs measured peak GPU memory: a few real `llamafactory-cli train` steps per config on a random-weight
Llama-3-8B-architecture model. Needs one CUDA GPU (H100/H200) and the installed wheel; writes
docs/estimator_gpu.md and docs/estimator_gpu.json (results are appended config by config, so a run cut short
keeps what it measured).

    python benchmarks/bench_memory_gpu.py [--configs lora_b4_s1024_gc,cls_b8_s512_gc] [--out DIR] [--budget-s 520]
    python benchmarks/bench_memory_gpu.py --dry-run     # CPU: print the configs and their estimates only
    python benchmarks/bench_memory_gpu.py --smoke       # CPU: run every config shrunk onto a tiny Llama

Measured = max over steps of torch.cuda.max_memory_allocated() / max_memory_reserved(), as logged by the host
with RECORD_VRAM=1 (trainer_log.jsonl, GiB rounded to 0.01). Predicted = the estimator's allocated part
(comparable with max_memory_allocated) and its total (adds CUDA context + allocator slack).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GiB = 1024**3

COMMON = dict(stage="sft", do_train=True, finetuning_type="lora", lora_target="all", lora_rank=8,
              dataset="bench_long", template="llama3", overwrite_cache=True, preprocessing_num_workers=4,
              logging_steps=1, save_strategy="no", report_to="none", overwrite_output_dir=True,
              learning_rate=1.0e-5, max_steps=4, bf16=True, max_samples=256, memory_check="warn")
MODELS = {"8b": "meta-llama/Meta-Llama-3-8B", "3b": "meta-llama/Llama-3.2-3B", "1b": "meta-llama/Llama-3.2-1B"}
NOGC = {"disable_gradient_checkpointing": True}
B4S1024 = {"per_device_train_batch_size": 4, "cutoff_len": 1024}
B1S4096 = {"per_device_train_batch_size": 1, "cutoff_len": 4096}
CLS = {"stage": "cls", "finetuning_type": "cls_head", "dataset": "bench_cls", "template": "default",
       "per_device_train_batch_size": 8, "cutoff_len": 512}

# The matrix: Llama-3-8B LoRA / RSLoRA / QLoRA-4 / freeze x GC on/off x two (batch, seq) points, SFT and cls
# heads; Llama-3.2-1B/3B full fine-tuning. Every config names its model ("8b" unless said).
CONFIGS = {
    "lora_b4_s1024_gc": {**B4S1024},
    "lora_b4_s1024_nogc": {**B4S1024, **NOGC},
    "lora_b1_s4096_gc": {**B1S4096},
    "lora_b1_s4096_nogc": {**B1S4096, **NOGC},
    "rslora_b4_s1024_gc": {"finetuning_type": "rslora", **B4S1024},
    "rslora_b1_s4096_nogc": {"finetuning_type": "rslora", **B1S4096, **NOGC},
    "qlora4_b4_s1024_gc": {"quantization_bit": 4, **B4S1024},
    "qlora4_b1_s4096_nogc": {"quantization_bit": 4, **B1S4096, **NOGC},
    "freeze2_b4_s1024_gc": {"finetuning_type": "freeze", **B4S1024},
    "freeze2_b1_s4096_nogc": {"finetuning_type": "freeze", **B1S4096, **NOGC},
    "cls_b8_s512_gc": {**CLS},
    "cls_b8_s512_nogc": {**CLS, **NOGC},
    "cls_rslora_b16_s256_nogc": {**CLS, "finetuning_type": ["rslora", "cls_head"], "per_device_train_batch_size": 16,
                                 "cutoff_len": 256, **NOGC},
    "lora_b2_s1024_eager_nogc_dropout": {"per_device_train_batch_size": 2, "cutoff_len": 1024, "flash_attn": "disabled",
                                         "lora_dropout": 0.05, **NOGC},
    "full_amp_1b_b4_s1024_gc": {"model": "1b", "finetuning_type": "full", **B4S1024},
    "full_amp_1b_b2_s1024_nogc": {"model": "1b", "finetuning_type": "full", "per_device_train_batch_size": 2,
                                  "cutoff_len": 1024, **NOGC},
    "full_purebf16_3b_b2_s1024_gc": {"model": "3b", "finetuning_type": "full", "pure_bf16": True, "bf16": False,
                                     "per_device_train_batch_size": 2, "cutoff_len": 1024},
    "full_purebf16_adam8bit_3b_b2_s1024_gc": {"model": "3b", "finetuning_type": "full", "pure_bf16": True,
                                              "bf16": False, "optim": "adamw_bnb_8bit",
                                              "per_device_train_batch_size": 2, "cutoff_len": 1024},
}
# DeepSpeed ZeRO-3 on the one GPU (world size 1: every partition is whole, but parameters are still gathered into
# fresh buffers and released module by module): what the published multi-GPU rows leave open, the caching
# allocator's slack under ZeRO-3 and what parameter offload leaves on the GPU. Parameter offload alone keeps the
# optimizer on the GPU (no CPU Adam to compile on the device). Needs `gpu_wheels.sh --ds`.
DS_Z3 = "ds_z3_config.json"  # the shipped copy (llama_factory_ext/_recipes/deepspeed)
DS_Z3_PARAM_OFFLOAD = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
                       "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
                       "zero_allow_untested_optimizer": True, "bf16": {"enabled": "auto"},
                       "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu", "pin_memory": True},
                                             "overlap_comm": False, "contiguous_gradients": True,
                                             "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                                             "stage3_param_persistence_threshold": "auto",
                                             "stage3_max_live_parameters": 1e9, "stage3_max_reuse_distance": 1e9}}
CONFIGS.update({
    "z3_lora_b4_s1024_gc": {"deepspeed": DS_Z3, **B4S1024},
    "z3_paramoffload_lora_b4_s1024_gc": {"deepspeed": DS_Z3_PARAM_OFFLOAD, **B4S1024},
    "z3_full_1b_b4_s1024_gc": {"model": "1b", "finetuning_type": "full", "deepspeed": DS_Z3, **B4S1024},
})
NEEDS_BNB = tuple(n for n, c in CONFIGS.items() if c.get("quantization_bit") or "bnb" in str(c.get("optim", "")))
NEEDS_DS = tuple(n for n, c in CONFIGS.items() if c.get("deepspeed"))


def recipe_for(name: str, model_dir: Path, data_dir: Path, work: Path) -> dict:
    cfg = dict(CONFIGS[name])
    cfg.pop("model", None)
    if cfg.get("deepspeed") == DS_Z3:
        from llama_factory_ext.resources import builtin_dir

        cfg["deepspeed"] = str(builtin_dir() / "deepspeed" / DS_Z3)
    return {**COMMON, **cfg, "model_name_or_path": str(model_dir), "dataset_dir": str(data_dir),
            "output_dir": str(work / "out" / name)}


def build_random_llama(out: Path, hub_id: str) -> Path:
    """A Llama of ``hub_id``'s architecture (built-in config), random bf16 weights, small local tokenizer."""
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llama_factory_ext.estimator.configs import builtin_config
    from llama_factory_ext.tiny import build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out, texts=_words(2000), vocab_size=512)
    cfg = builtin_config(hub_id)
    cfg.pop("model_type")
    config = LlamaConfig(**cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.config.dtype = torch.bfloat16  # config.json says bf16, as the real checkpoints do
    model.save_pretrained(str(out))
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def _words(n: int) -> list[str]:
    rng = random.Random(0)
    vocab = ["alpha", "kernel", "memory", "package", "python", "library", "tensor", "batch", "gradient", "token",
             "model", "debian", "section", "layer", "weight", "server", "client", "network", "graphics", "sound"]
    return [" ".join(rng.choice(vocab) for _ in range(40)) for _ in range(n)]


def write_dataset(folder: Path, rows: int = 256, words: int = 6000) -> None:
    """Rows longer than every cutoff_len used, so each sample is truncated to exactly cutoff_len tokens;
    an SFT set (alpaca) and a classification set (text/label, 20 labels)."""
    rng = random.Random(1)
    vocab = ["alpha", "kernel", "memory", "package", "python", "library", "tensor", "batch", "gradient", "token"]
    texts = [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(rows)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench_long.json").write_text(json.dumps([{"instruction": t, "input": "", "output": "ok"} for t in texts]))
    with open(folder / "bench_cls.jsonl", "w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"text": t, "label": f"label_{i % 20}"}) + "\n")
    (folder / "dataset_info.json").write_text(json.dumps({
        "bench_long": {"file_name": "bench_long.json"},
        "bench_cls": {"file_name": "bench_cls.jsonl", "columns": {"text": "text", "label": "label"}},
    }))


def predicted(rec: dict, gpu_memory) -> dict:
    from llama_factory_ext.estimator import estimate_recipe

    est = estimate_recipe(rec, gpu_memory=gpu_memory, advice=False)
    return {"predicted_allocated_gib": est.breakdown.allocated_bytes / GiB, "predicted_total_gib": est.peak_bytes / GiB,
            "predicted_upper_gib": est.upper_bytes / GiB, "peak_phase": est.breakdown.phase,
            "components_gib": {c.name: round(c.bytes / GiB, 3) for c in est.components},
            "trainable_params": est.spec.trainable_params, "total_params": est.spec.total_params}


def launch_env(rec: dict, **extra) -> dict:
    """The environment of one `llamafactory-cli train`: DeepSpeed configs run under torchrun, one process."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", DISABLE_VERSION_CHECK="1", WANDB_DISABLED="true", **extra)
    if rec.get("deepspeed"):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env.update(FORCE_TORCHRUN="1", NPROC_PER_NODE="1", MASTER_PORT=str(port),
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def measure(rec: dict, work: Path, name: str) -> dict:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(rec, sort_keys=False))
    env = launch_env(rec, RECORD_VRAM="1")
    exe = Path(sys.executable).parent / "llamafactory-cli"
    t = time.time()
    r = subprocess.run([str(exe), "train", str(path)], cwd=str(work), env=env, capture_output=True, text=True)
    out = {"seconds": round(time.time() - t, 1), "returncode": r.returncode}
    log = Path(rec["output_dir"]) / "trainer_log.jsonl"
    if log.is_file():
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        alloc = [x["vram_allocated"] for x in rows if "vram_allocated" in x]
        res = [x["vram_reserved"] for x in rows if "vram_reserved" in x]
        if alloc:
            out["measured_allocated_gib"] = max(alloc)
            out["measured_reserved_gib"] = max(res)
    if r.returncode != 0:
        tail = (r.stdout + r.stderr)[-1500:]
        out["error"] = "out of memory" if "OutOfMemoryError" in tail or "CUDA out of memory" in tail else tail
    return out


def summary(results: list) -> str:
    errs = sorted(abs(r["predicted_allocated_gib"] / r["measured_allocated_gib"] - 1)
                  for r in results if r.get("measured_allocated_gib"))
    if not errs:
        return "No config measured."
    median = errs[len(errs) // 2] if len(errs) % 2 else (errs[len(errs) // 2 - 1] + errs[len(errs) // 2]) / 2
    return (f"{len(errs)} configs measured: median |error| of the allocated peak {100 * median:.1f} %, "
            f"max {100 * errs[-1]:.1f} % (goal: median <= 5 %, max <= 10 %).")


def write_docs(results: list, device: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "estimator_gpu.json").write_text(json.dumps({"device": device, "results": results}, indent=2))
    lines = [
        "# Estimator vs measured peak GPU memory (benchmarks/bench_memory_gpu.py)",
        "",
        f"Device: {device}. Random-weight bf16 checkpoints of the Llama-3-8B (8,030,261,248 params), Llama-3.2-3B and "
        "-1B architectures; 4 training steps per config through `llamafactory-cli train` with the pack installed; "
        "measured = max of torch.cuda.max_memory_allocated / max_memory_reserved logged by the host (RECORD_VRAM=1, "
        "GiB rounded to 0.01).",
        "",
        summary(results),
        "",
        "| config | predicted allocated | measured allocated | ratio | measured reserved | predicted total | "
        "predicted upper | reserved + 0.75 GiB within the upper bound | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.get("measured_allocated_gib")
        ratio = f"{r['predicted_allocated_gib'] / m:.3f}" if m else "-"
        note = r.get("error", "")[:60] if r.get("error") else ""
        res, upper = r.get("measured_reserved_gib"), r.get("predicted_upper_gib")
        inside = "-" if res is None or upper is None else ("yes" if res + 0.75 <= upper else "NO")
        lines.append(f"| {r['name']} | {r['predicted_allocated_gib']:.2f} GiB | {m if m is not None else '-'} GiB | "
                     f"{ratio} | {r.get('measured_reserved_gib', '-')} GiB | {r['predicted_total_gib']:.2f} GiB | "
                     f"{upper if upper is None else f'{upper:.2f}'} GiB | {inside} | {note} |")
    (out / "estimator_gpu.md").write_text("\n".join(lines) + "\n")


def smoke(names: list, work: Path) -> int:
    """CPU: every config's recipe, shrunk (tiny Llama, 1 step, cutoff 64, no bf16/4-bit/8-bit optimizer), through
    `llamafactory-cli train` - catches recipe mistakes before device time is spent."""
    from llama_factory_ext.tiny import build_tiny_llama

    tiny = build_tiny_llama(work / "tiny_llama", texts=_words(200))
    failed = 0
    for name in names:
        rec = recipe_for(name, tiny, work / "data", work / "smoke")
        for key in ("quantization_bit", "pure_bf16", "bf16", "optim", "flash_attn"):
            rec.pop(key, None)
        rec.update(max_steps=1, cutoff_len=64, max_samples=16, per_device_train_batch_size=2, preprocessing_num_workers=1)
        path = work / f"smoke_{name}.yaml"
        path.write_text(yaml.safe_dump(rec, sort_keys=False))
        env = launch_env(rec, CUDA_VISIBLE_DEVICES="")
        r = subprocess.run([str(Path(sys.executable).parent / "llamafactory-cli"), "train", str(path)], cwd=str(work),
                           env=env, capture_output=True, text=True)
        ok = r.returncode == 0
        failed += not ok
        print(f"smoke {name}: {'ok' if ok else 'FAILED'}", flush=True)
        if not ok:
            print((r.stdout + r.stderr)[-2000:], file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", default="/tmp/lfx_models", help="random-weight checkpoints are built here once")
    ap.add_argument("--work", default="/tmp/lfx_mem_bench")
    ap.add_argument("--out", default=str(DOCS), help="where estimator_gpu.md/.json go (results accumulate there)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    ap.add_argument("--budget-s", type=float, default=0, help="start no new config after this many seconds (0: none)")
    ap.add_argument("--dry-run", action="store_true", help="only print the configs and their estimates (no GPU)")
    ap.add_argument("--smoke", action="store_true", help="CPU: run every config shrunk onto a tiny Llama")
    args = ap.parse_args()
    t0 = time.time()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        print(f"unknown configs: {unknown}; choose from {list(CONFIGS)}", file=sys.stderr)
        return 2
    work = Path(args.work)
    data_dir = work / "data"
    write_dataset(data_dir)
    if args.smoke:
        return smoke(names, work)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("no CUDA device: use --dry-run (estimates only) or --smoke (recipes on a tiny Llama)", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0) if cuda else "none (dry run)"
    gpu_memory = torch.cuda.get_device_properties(0).total_memory if cuda else 80 * 10**9
    try:
        import bitsandbytes  # noqa: F401

        has_bnb = True
    except Exception:
        has_bnb = False
    try:
        import deepspeed  # noqa: F401

        has_ds = True
    except Exception:
        has_ds = False

    out = Path(args.out)
    previous = out / "estimator_gpu.json"
    results = json.loads(previous.read_text())["results"] if (previous.is_file() and cuda) else []
    results = [r for r in results if r["name"] not in names]
    for name in names:
        if args.budget_s and time.time() - t0 > args.budget_s:
            print(f"budget spent: {name} and later configs not started", file=sys.stderr)
            break
        if name in NEEDS_BNB and not has_bnb:
            print(f"skip {name}: bitsandbytes not installed", file=sys.stderr)
            continue
        if name in NEEDS_DS and not has_ds:
            print(f"skip {name}: deepspeed not installed (gpu_wheels.sh --ds)", file=sys.stderr)
            continue
        hub_id = MODELS[CONFIGS[name].get("model", "8b")]
        if cuda:
            model_dir = build_random_llama(Path(args.models_dir) / CONFIGS[name].get("model", "8b"), hub_id)
        else:
            model_dir = Path(hub_id)  # built-in config: estimates only
        rec = recipe_for(name, model_dir, data_dir, work)
        row = {"name": name, **predicted(rec, gpu_memory)}
        if cuda and row["predicted_total_gib"] * GiB > 1.15 * gpu_memory:
            row["error"] = "skipped: estimate above the GPU's memory"
        elif cuda:
            row.update(measure(rec, work, name))
        results.append(row)
        print(json.dumps(row), flush=True)
        if cuda:
            write_docs(results, device, out)
    if cuda:
        print(summary(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
