"""Estimator vs measured peak GPU memory: a few real `llamafactory-cli train` steps per config on a random-weight
Llama-3-8B-architecture model. Needs one CUDA GPU (H100/H200) and the installed wheel; writes
docs/estimator_gpu.md and docs/estimator_gpu.json (results are appended config by config, so a run cut short
keeps what it measured).

    python benchmarks/bench_memory_gpu.py --model-dir /tmp/llama3_8b_random [--configs lora_b4_gc,full_bf16_b1]
    python benchmarks/bench_memory_gpu.py --dry-run     # CPU: print the configs and their estimates only

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

CONFIGS = {
    "lora_b4_s1024_gc": {"per_device_train_batch_size": 4, "cutoff_len": 1024},
    "lora_b2_s1024_nogc": {"per_device_train_batch_size": 2, "cutoff_len": 1024, "disable_gradient_checkpointing": True},
    "lora_b1_s4096_gc": {"per_device_train_batch_size": 1, "cutoff_len": 4096},
    "lora_b2_s1024_eager_nogc": {"per_device_train_batch_size": 2, "cutoff_len": 1024, "flash_attn": "disabled",
                                 "disable_gradient_checkpointing": True},
    "lora_b4_s1024_ga2_dropout": {"per_device_train_batch_size": 4, "cutoff_len": 1024, "gradient_accumulation_steps": 2,
                                  "lora_dropout": 0.05},
    "freeze2_b4_s1024_gc": {"finetuning_type": "freeze", "per_device_train_batch_size": 4, "cutoff_len": 1024},
    "full_purebf16_b1_s512_gc": {"finetuning_type": "full", "pure_bf16": True, "bf16": False,
                                 "per_device_train_batch_size": 1, "cutoff_len": 512},
    "full_amp_b1_s512_gc": {"finetuning_type": "full", "per_device_train_batch_size": 1, "cutoff_len": 512},
    "qlora4_b4_s1024_gc": {"quantization_bit": 4, "per_device_train_batch_size": 4, "cutoff_len": 1024},
    "full_purebf16_adam8bit_b1_s512": {"finetuning_type": "full", "pure_bf16": True, "bf16": False,
                                       "optim": "adamw_bnb_8bit", "per_device_train_batch_size": 1, "cutoff_len": 512},
}
NEEDS_BNB = ("qlora4_b4_s1024_gc", "full_purebf16_adam8bit_b1_s512")


def build_random_llama3_8b(out: Path) -> Path:
    """Llama-3-8B architecture, random bf16 weights, with a small local Llama-3-style tokenizer."""
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llama_factory_ext.estimator.configs import builtin_config
    from llama_factory_ext.tiny import build_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out, texts=_words(2000), vocab_size=512)
    cfg = builtin_config("meta-llama/Meta-Llama-3-8B")
    cfg.pop("model_type")
    config = LlamaConfig(**cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
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
    """Rows longer than every cutoff_len used, so each sample is truncated to exactly cutoff_len tokens."""
    rng = random.Random(1)
    vocab = ["alpha", "kernel", "memory", "package", "python", "library", "tensor", "batch", "gradient", "token"]
    data = [{"instruction": " ".join(rng.choice(vocab) for _ in range(words)), "input": "", "output": "ok"}
            for _ in range(rows)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench_long.json").write_text(json.dumps(data))
    (folder / "dataset_info.json").write_text(json.dumps({"bench_long": {"file_name": "bench_long.json"}}))


def predicted(rec: dict, gpu_memory) -> dict:
    from llama_factory_ext.estimator import estimate_recipe

    est = estimate_recipe(rec, gpu_memory=gpu_memory, advice=False)
    return {"predicted_allocated_gib": est.breakdown.allocated_bytes / GiB, "predicted_total_gib": est.peak_bytes / GiB,
            "peak_phase": est.breakdown.phase,
            "components_gib": {c.name: round(c.bytes / GiB, 3) for c in est.components},
            "trainable_params": est.spec.trainable_params, "total_params": est.spec.total_params}


def measure(rec: dict, work: Path, name: str) -> dict:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(rec, sort_keys=False))
    env = dict(os.environ, RECORD_VRAM="1", HF_HUB_OFFLINE="1", DISABLE_VERSION_CHECK="1", WANDB_DISABLED="true")
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


def write_docs(results: list, device: str) -> None:
    DOCS.mkdir(exist_ok=True)
    (DOCS / "estimator_gpu.json").write_text(json.dumps({"device": device, "results": results}, indent=2))
    lines = [
        "# Estimator vs measured peak GPU memory (benchmarks/bench_memory_gpu.py)",
        "",
        f"Device: {device}. Random-weight Llama-3-8B architecture (8,030,261,248 params), bf16 checkpoint, "
        "4 training steps per config through `llamafactory-cli train` with the pack installed; measured = max of "
        "torch.cuda.max_memory_allocated / max_memory_reserved logged by the host (RECORD_VRAM=1).",
        "",
        "| config | predicted allocated | measured allocated | ratio | measured reserved | predicted total | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.get("measured_allocated_gib")
        ratio = f"{r['predicted_allocated_gib'] / m:.3f}" if m else "-"
        note = r.get("error", "")[:60] if r.get("error") else ""
        lines.append(f"| {r['name']} | {r['predicted_allocated_gib']:.2f} GiB | {m if m is not None else '-'} GiB | "
                     f"{ratio} | {r.get('measured_reserved_gib', '-')} GiB | {r['predicted_total_gib']:.2f} GiB | {note} |")
    (DOCS / "estimator_gpu.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", default="/tmp/llama3_8b_random")
    ap.add_argument("--work", default="/tmp/lfx_mem_bench")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    ap.add_argument("--dry-run", action="store_true", help="only print the configs and their estimates (no GPU)")
    args = ap.parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        print(f"unknown configs: {unknown}; choose from {list(CONFIGS)}", file=sys.stderr)
        return 2
    work = Path(args.work)
    data_dir = work / "data"
    write_dataset(data_dir)

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("no CUDA device: use --dry-run to print estimates only", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0) if cuda else "none (dry run)"
    gpu_memory = torch.cuda.get_device_properties(0).total_memory if cuda else 80 * 10**9
    model_dir = Path(args.model_dir)
    if cuda:
        build_random_llama3_8b(model_dir)
    else:
        model_dir = Path("meta-llama/Meta-Llama-3-8B")  # built-in config: estimates only
    try:
        import bitsandbytes  # noqa: F401

        has_bnb = True
    except Exception:
        has_bnb = False

    previous = DOCS / "estimator_gpu.json"
    results = json.loads(previous.read_text())["results"] if (previous.is_file() and cuda) else []
    results = [r for r in results if r["name"] not in names]
    for name in names:
        if name in NEEDS_BNB and not has_bnb:
            print(f"skip {name}: bitsandbytes not installed", file=sys.stderr)
            continue
        rec = {**COMMON, **CONFIGS[name], "model_name_or_path": str(model_dir), "dataset_dir": str(data_dir),
               "output_dir": str(work / "out" / name)}
        row = {"name": name, **predicted(rec, gpu_memory)}
        if cuda and row["predicted_total_gib"] * GiB > 1.15 * gpu_memory:
            row["error"] = "skipped: estimate above the GPU's memory"
        elif cuda:
            row.update(measure(rec, work, name))
        results.append(row)
        print(json.dumps(row), flush=True)
        if cuda:
            write_docs(results, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
