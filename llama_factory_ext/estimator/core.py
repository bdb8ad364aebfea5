"""Estimate = memory model + plugin terms + verdict + advice; rendering as a table or JSON."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

from ..api import MemoryTerm, UserError
from .spec import EstimateSpec
from .terms import Breakdown, compute, fmt_bytes

_G = 1024**3
GPU_MEMORY = {  # total memory as torch.cuda.get_device_properties reports it (approx.), bytes
    "H100": int(79.2 * _G), "H100-80GB": int(79.2 * _G), "H100-94GB": int(93.1 * _G), "H200": int(139.8 * _G),
    "A100": int(79.2 * _G), "A100-80GB": int(79.2 * _G), "A100-40GB": int(39.4 * _G), "A10G": int(22.0 * _G),
    "A10": int(22.0 * _G), "L4": int(22.0 * _G), "L40S": int(44.4 * _G), "RTX4090": int(23.6 * _G),
    "RTX3090": int(23.6 * _G), "V100": int(31.7 * _G), "V100-16GB": int(15.8 * _G), "T4": int(14.6 * _G),
    "B200": int(178.4 * _G),
}


def parse_memory(text) -> int:
    """``80GiB`` / ``80GB`` / ``24G`` / ``81920MiB`` / bytes -> bytes."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", str(text))
    if not m:
        raise UserError(f"--gpu-memory: cannot read '{text}' (examples: 80GiB, 24GB, 40960MiB)")
    value, unit, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    base = 1024 if binary or not unit else 1000
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit]
    if not unit:
        return int(value)
    return int(value * base**power)


def gpu_memory_of(name: str) -> int:
    key = name.upper().replace(" ", "").replace("NVIDIA", "")
    if key in GPU_MEMORY:
        return GPU_MEMORY[key]
    raise UserError(f"--gpu: unknown GPU '{name}' (known: {', '.join(sorted(GPU_MEMORY))}); use --gpu-memory 80GiB")


def gpus_text(s) -> str:
    if s.nodes > 1:
        return f"{s.nodes} nodes x {s.gpus} GPUs"
    return f"{s.gpus} GPU{'s' if s.gpus > 1 else ''}"


def engine_name(s) -> str:
    """How the run is spread: DeepSpeed ZeRO-n, FSDP, DDP or one GPU."""
    if s.fsdp is not None:
        f = s.fsdp
        return (f"FSDP{'2' if f.version == 2 else ''} {f.sharding}" + (" + CPU offload" if f.offload_params else ""))
    if s.zero_stage is not None:
        return f"DeepSpeed ZeRO-{s.zero_stage}" + (" + offload" if s.offload_optimizer or s.offload_param else "")
    return "DDP" if s.world > 1 else "no DeepSpeed"


@dataclass
class Option:
    """One way to make the run fit, re-estimated."""

    name: str
    changes: dict
    peak_bytes: float
    fits: bool
    note: str = ""
    upper_bytes: float = 0.0

    def changes_text(self) -> str:
        """The changes as the user types them: ``key: value`` in the recipe, ``--gpus N`` for the estimate."""
        keys = [f"{k}: {v}" for k, v in self.changes.items() if k not in ("gpus", "accelerate_config")]
        gpus = self.changes.get("gpus")
        acc = self.changes.get("accelerate_config")
        if acc:
            return (f"`accelerate launch --config_file {acc} -m llamafactory.launcher RECIPE.yaml` with "
                    f"num_processes: {gpus or 1} (estimate with --accelerate-config {acc})")
        return ", ".join(keys) + (f" (estimate with --gpus {gpus}; train with FORCE_TORCHRUN=1 on {gpus} GPUs)"
                                  if gpus else "")


@dataclass
class Estimate:
    spec: EstimateSpec
    breakdown: Breakdown
    gpu_memory: Optional[int] = None
    gpu_name: Optional[str] = None
    advice: list = field(default_factory=list)
    max_batch: Optional[int] = None
    batch_cap: Optional[int] = None  # max_batch is not searched past this (the recipe's effective batch per GPU)

    @property
    def peak_bytes(self) -> float:
        """Likely peak per GPU."""
        return self.breakdown.peak_bytes

    @property
    def upper_bytes(self) -> float:
        """Upper end of the band (see ``breakdown.upper_reasons``)."""
        return self.breakdown.upper_bytes

    @property
    def components(self) -> list:
        return self.breakdown.components

    @property
    def verdict(self) -> Optional[str]:
        if not self.gpu_memory:
            return None
        if self.peak_bytes > self.gpu_memory:
            return "does not fit"
        if self.upper_bytes > self.gpu_memory:
            return "borderline"
        return "fits"

    def to_json(self) -> dict:
        s = self.spec
        return {
            "model": s.model_name,
            "config_source": s.config_source,
            "stage": s.stage,
            "finetuning_type": s.base_type,
            "strategies": s.strategy_names,
            "total_params": s.total_params,
            "trainable_params": s.trainable_params,
            "gpus": s.gpus,
            "nodes": s.nodes,
            "engine": engine_name(s),
            "per_device_train_batch_size": s.batch_size,
            "seq_len": s.seq_len,
            "peak_bytes": int(self.peak_bytes),
            "upper_bytes": int(self.upper_bytes),
            "upper_reasons": list(self.breakdown.upper_reasons),
            "upper_margins": {k: int(v) for k, v in self.breakdown.upper_margins.items()},
            "allocated_peak_bytes": int(self.breakdown.allocated_bytes),
            "reserved_peak_bytes": int(self.breakdown.reserved_bytes),
            "peak_phase": self.breakdown.phase,
            "components": {c.name: int(c.bytes) for c in self.components},
            "gpu_memory_bytes": self.gpu_memory,
            "verdict": self.verdict,
            "max_batch_size": self.max_batch,
            "max_batch_size_cap": self.batch_cap,
            "advice": [{"option": o.name, "changes": o.changes, "peak_bytes": int(o.peak_bytes),
                        "upper_bytes": int(o.upper_bytes), "fits": o.fits, "note": o.note} for o in self.advice],
            "notes": list(s.notes),
        }

    def summary_line(self) -> str:
        s = self.spec
        return (f"llama-factory-ext memory estimate: ~{fmt_bytes(self.peak_bytes)} peak per GPU, up to "
                f"{fmt_bytes(self.upper_bytes)} "
                f"({s.base_type}, {s.trainable_params:,} / {s.total_params:,} params trainable, "
                f"batch {s.batch_size} x {s.seq_len} tokens, {gpus_text(s)}"
                + (f", {s.dims.num_labels} labels" if s.is_cls else "") + ")"
                + "".join(f"; {n}" for n in s.notes if n.startswith("number of labels")))

    def batch_line(self) -> str:
        """The largest per-device batch whose upper bound fits, in words."""
        s = self.spec
        if self.max_batch == 0:
            b1 = compute(s.replace(batch_size=1), self.breakdown.extra_terms)
            big = sorted(b1.components, key=lambda c: -c.bytes)[:3]
            parts = ", ".join(f"{c.name} {fmt_bytes(c.bytes)}" for c in big)
            return (f"even batch 1 does not fit: {fmt_bytes(b1.peak_bytes)} likely, up to {fmt_bytes(b1.upper_bytes)}"
                    f" at per_device_train_batch_size: 1 (largest parts: {parts})")
        if self.batch_cap and self.max_batch >= self.batch_cap:
            return (f"largest per-device batch that fits: {self.max_batch} or more; the recipe's whole effective batch "
                    f"per GPU (per_device_train_batch_size x gradient_accumulation_steps = {self.batch_cap}) fits in "
                    "one step, so larger is never needed")
        return f"largest per-device batch that fits (up to the upper bound): {self.max_batch}"

    def render(self) -> str:
        s = self.spec
        lines = [
            f"model: {s.model_name}  ({s.config_source})",
            f"method: {s.base_type}" + (f" [{'+'.join(s.strategy_names)}]" if s.strategy_names else "")
            + f", stage {s.stage}; params: {s.total_params:,} total, {s.trainable_params:,} trainable",
            f"per GPU: batch {s.batch_size} x {s.seq_len} tokens, grad accum {s.grad_accum}, {gpus_text(s)}, "
            f"{engine_name(s)}"
            + f", optimizer {s.optim}, {'GC on' if s.gradient_checkpointing else 'GC off'}, {s.attention}",
            "",
            f"{'component':<28}{'per GPU':>12}  note",
        ]
        for c in self.components:
            lines.append(f"{c.name:<28}{fmt_bytes(c.bytes):>12}  {c.note}")
        lines.append(f"{'-' * 40}")
        lines.append(f"{'likely peak (' + self.breakdown.phase + ')':<28}{fmt_bytes(self.peak_bytes):>12}")
        lines.append(f"{'  of which allocated':<28}{fmt_bytes(self.breakdown.allocated_bytes):>12}  "
                     "(compare with torch.cuda.max_memory_allocated)")
        lines.append(f"{'  of which reserved':<28}{fmt_bytes(self.breakdown.reserved_bytes):>12}  "
                     "(compare with torch.cuda.max_memory_reserved; the likely peak adds the CUDA context: "
                     "compare it with nvidia-smi)")
        lines.append(f"{'upper bound':<28}{fmt_bytes(self.upper_bytes):>12}  what the CPU checks cannot show:")
        for r in self.breakdown.upper_reasons:
            lines.append(f"{'':<30}- {r}")
        if self.gpu_memory:
            lines.append(f"{'available':<28}{fmt_bytes(self.gpu_memory):>12}  {self.gpu_name or ''}")
            lines.append(f"verdict: {self.verdict.upper()} (likely {100 * self.peak_bytes / self.gpu_memory:.0f}%, "
                         f"upper {100 * self.upper_bytes / self.gpu_memory:.0f}% of the GPU)")
            if self.max_batch is not None:
                lines.append(self.batch_line())
        else:
            lines.append("available: unknown (pass --gpu H100 or --gpu-memory 80GiB for a verdict)")
        if self.advice:
            lines.append("")
            lines.append("what to change, cheapest first (each re-estimated alone):")
            for o in self.advice:
                lines.append(f"  - {o.name}: {o.changes_text()} -> {fmt_bytes(o.peak_bytes)} (up to "
                             f"{fmt_bytes(o.upper_bytes)}) {'fits' if o.fits else 'still too big'}"
                             f"{'; ' + o.note if o.note else ''}")
        for n in s.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)


# ---------------------------------------------------------------- estimate

def plugin_terms(spec: EstimateSpec) -> list:
    from ..plugins import get_plugin_manager

    terms = []
    for result in get_plugin_manager().hook.lfx_memory_terms(spec=spec):
        for t in result or []:
            if isinstance(t, MemoryTerm):
                terms.append(t)
    return terms


def breakdown_of(spec: EstimateSpec, extra_terms=None) -> Breakdown:
    terms = plugin_terms(spec) if extra_terms is None else extra_terms
    b = compute(spec, terms)
    if terms:
        b.components[-1:-1] = [MemoryTerm(t.name, float(t.bytes), t.note) for t in terms]
    return b


def estimate_spec(spec: EstimateSpec, gpu_memory: Optional[int] = None, gpu_name: Optional[str] = None,
                  advice: bool = True) -> Estimate:
    terms = plugin_terms(spec)
    est = Estimate(spec=spec, breakdown=breakdown_of(spec, terms), gpu_memory=gpu_memory, gpu_name=gpu_name)
    if gpu_memory:
        est.batch_cap = max(spec.batch_size * spec.grad_accum, 1)
        est.max_batch = max_batch(spec, gpu_memory, terms, limit=est.batch_cap)
        if advice:
            est.advice = make_advice(spec, gpu_memory, terms, est)
    return est


def _peak(spec, terms) -> float:
    return compute(spec, terms).upper_bytes


def max_batch(spec: EstimateSpec, gpu_memory: int, terms=(), limit: int = 4096) -> int:
    """Largest per-device batch size up to ``limit`` whose upper bound fits (0 if batch 1 does not)."""
    if _peak(spec.replace(batch_size=1), terms) > gpu_memory:
        return 0
    lo, hi = 1, 2
    while hi <= limit and _peak(spec.replace(batch_size=hi), terms) <= gpu_memory:
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _peak(spec.replace(batch_size=mid), terms) <= gpu_memory:
            lo = mid
        else:
            hi = mid
    return lo


def lora_params(spec: EstimateSpec, rank: int):
    """ParamStats of LoRA on every linear layer of the decoder (the host's ``lora_target: all``)."""
    d = spec.dims
    h, I, qd, kv, L = d.hidden, d.intermediate, d.heads * d.head_dim, d.kv_heads * d.head_dim, d.layers
    ins = 5 * h + qd + I
    outs = qd + 2 * kv + 2 * h + 2 * I
    T = L * rank * (ins + outs)
    linear = L * (h * qd + 2 * h * kv + qd * h + 3 * h * I)
    rows = L * (qd + 2 * kv + h + 2 * I + h)
    from .spec import ParamStats, nf4_blocks

    per_module = [nf4_blocks(n) for n in (h * qd, h * kv, h * kv, qd * h, h * I, h * I, I * h)]
    blocks, blocks2 = (L * sum(b[i] for b in per_module) for i in (0, 1))
    p0 = spec.params
    lb = p0.load_bytes

    return ParamStats(
        total_params=p0.total_params + T, trainable_params=T, frozen_bytes=p0.total_params * lb,
        trainable_bytes=T * 4, quantizable_params=linear, quantizable_bytes=linear * lb, quantizable_rows=rows,
        quantizable_modules=7 * L, quantizable_blocks=blocks, quantizable_blocks2=blocks2,
        largest_module_params=p0.largest_module_params, largest_linear_params=p0.largest_linear_params,
        trainable_small_params=0, trainable_linear_params=T, trainable_8bit_blocks=-(-T // 256),
        first_trainable_layer=0, head_trainable=False,
        embed_bytes=lb, norm_trainable=False, load_bytes=lb, lora_in_per_layer=ins, lora_out_per_layer=outs,
        lora_rank_per_layer=7 * rank, lora_modules=7 * L, largest_lora_weight=h * I,
    )


def deepspeed_config(name: str) -> str:
    """Installed path of a ZeRO config shipped with the pack's recipes (a pip-installed host has none)."""
    from ..resources import builtin_dir

    return str(builtin_dir() / "deepspeed" / name)


def accelerate_config(name: str) -> str:
    """Installed path of an accelerate config shipped with the pack's recipes."""
    from ..resources import builtin_dir

    return str(builtin_dir() / "accelerate" / name)


def make_advice(spec: EstimateSpec, gpu_memory: int, terms, est: Estimate) -> list:
    """Options in order of cost, each re-estimated for this recipe and these GPUs."""
    fits_now = est.upper_bytes <= gpu_memory
    options: list[Option] = []

    def add(name, changes, new_spec, note=""):
        b = compute(new_spec, terms)
        if b.peak_bytes < est.peak_bytes * 0.995:
            options.append(Option(name, changes, b.peak_bytes, b.upper_bytes <= gpu_memory, note, b.upper_bytes))

    b, ga = spec.batch_size, spec.grad_accum
    if not fits_now and est.max_batch and est.max_batch < b:
        nb = est.max_batch
        nga = math.ceil(b * ga / nb)
        add("smaller per-device batch, same effective batch", {"per_device_train_batch_size": nb,
            "gradient_accumulation_steps": nga}, spec.replace(batch_size=nb, grad_accum=nga), "same math, fewer tokens per step")
    if fits_now:
        return options
    b1 = spec.replace(batch_size=1, grad_accum=b * ga)
    if not spec.gradient_checkpointing:
        add("gradient checkpointing", {"disable_gradient_checkpointing": False},
            spec.replace(gradient_checkpointing=True), "~20-30% slower steps")
    full_like = spec.params.trainable_params > 0.2 * spec.params.total_params
    if full_like and "8bit" not in spec.optim:
        add("8-bit AdamW", {"optim": "adamw_bnb_8bit"}, spec.replace(optim="adamw_bnb_8bit"), "needs bitsandbytes")
    rank = int(getattr(spec.finetuning_args, "lora_rank", 8) or 8)
    gc = {"gradient_checkpointing": True}
    if spec.base_type in ("full", "freeze") and not spec.is_cls:
        lp = lora_params(spec, rank)
        add("LoRA instead", {"finetuning_type": "lora", "lora_target": "all", "lora_rank": rank},
            spec.replace(params=lp, base_type="lora", **gc), "trains adapters only")
        add("QLoRA 4-bit instead", {"finetuning_type": "lora", "lora_target": "all", "quantization_bit": 4},
            spec.replace(params=lp, base_type="lora", quant_bits=4, **gc), "needs bitsandbytes; some quality cost")
    elif spec.base_type == "lora" and spec.quant_bits is None:
        add("QLoRA 4-bit", {"quantization_bit": 4}, spec.replace(quant_bits=4, **gc), "needs bitsandbytes; some quality cost")
        add("QLoRA 8-bit", {"quantization_bit": 8}, spec.replace(quant_bits=8, **gc), "needs bitsandbytes")
    if spec.zero_stage != 3 and spec.fsdp is None and spec.world > 1 and spec.quant_bits is None:
        add(f"DeepSpeed ZeRO-3 on {spec.world} GPUs", {"deepspeed": deepspeed_config("ds_z3_config.json")},
            spec.replace(zero_stage=3, offload_optimizer=False, offload_param=False, **gc))
    if spec.zero_stage is None and spec.fsdp is None:
        # several GPUs, cheapest engine first: ZeRO-2 shards optimizer states and gradients only
        from .distributed import FsdpSetup

        for label, changes, make in (
                ("DeepSpeed ZeRO-2", {"deepspeed": deepspeed_config("ds_z2_config.json")},
                 lambda n: spec.replace(zero_stage=2, zero=None, gpus=n, offload_optimizer=False, offload_param=False)),
                ("FSDP (FULL_SHARD)", {"accelerate_config": accelerate_config("fsdp_config.yaml")},
                 lambda n: spec.replace(fsdp=FsdpSetup(), gpus=n))):
            for n in (2, 4, 8):
                if n <= spec.world or (label.startswith("DeepSpeed") and spec.quant_bits is not None):
                    continue
                if _peak(make(n), terms) <= gpu_memory:
                    add(f"{n} GPUs with {label}", dict(changes, gpus=n), make(n), "more hardware")
                    break
    if spec.quant_bits is None:
        for n in (2, 4, 8):
            if n <= spec.world:
                continue
            s3 = spec.replace(zero_stage=3, gpus=n, offload_optimizer=False, offload_param=False, **gc)
            if _peak(s3, terms) <= gpu_memory:
                add(f"{n} GPUs with DeepSpeed ZeRO-3", {"deepspeed": deepspeed_config("ds_z3_config.json"),
                    "gpus": n}, s3, "more hardware")
                break
        add(f"ZeRO-3 + CPU offload on {spec.gpus} GPU(s)", {"deepspeed": deepspeed_config("ds_z3_offload_config.json")},
            spec.replace(zero_stage=3, offload_optimizer=True, offload_param=True, **gc), "needs CPU RAM; much slower")
    cut = 1 << (max(spec.seq_len - 1, 1).bit_length() - 1)
    while cut >= 128:
        sc = b1.replace(seq_len=cut, **gc)
        if _peak(sc, terms) <= gpu_memory:
            add("shorter cutoff (truncates data)", {"cutoff_len": cut, "per_device_train_batch_size": 1,
                "gradient_accumulation_steps": b * ga}, sc)
            break
        cut //= 2
    return options
