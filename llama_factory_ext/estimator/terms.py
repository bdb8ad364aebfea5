"""The analytical memory model: bytes per GPU by component, evaluated at three moments of a training step
(end of forward, backward, optimizer step); the peak is the largest. Method and validation: docs/estimator.md."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Optional

from ..api import MemoryTerm
from .spec import EstimateSpec

GiB = 1024**3
CUDA_CONTEXT_BYTES = int(0.75 * GiB)  # CUDA context + cuBLAS workspace: outside torch's allocator
# upper bound of the band: what the CPU cannot show
CUDA_CONTEXT_HI = int(1.3 * GiB)  # CUDA context 0.5-1.3 GB by driver and GPU, + cuBLAS / kernel workspaces



@dataclass
class Breakdown:
    components: list  # [MemoryTerm], per GPU, at the peak moment
    phase: str
    allocated_bytes: float  # comparable with torch.cuda.max_memory_allocated()
    peak_bytes: float  # allocated + framework overhead: what the GPU must hold
    phases: dict = field(default_factory=dict)  # phase -> allocated bytes
    extra_terms: list = field(default_factory=list)
    upper_bytes: float = 0.0  # upper end of the band: what the GPU may need
    upper_reasons: list = field(default_factory=list)  # why the upper bound is above the likely peak
    upper_margins: dict = field(default_factory=dict)  # named distributed margins in the upper bound, bytes
    reserved_bytes: float = 0.0  # comparable with torch.cuda.max_memory_reserved()


# ---------------------------------------------------------------- static parts

def _quantized_weights(spec: EstimateSpec) -> tuple[float, float, float]:
    """(frozen weight bytes, quantization constant bytes, dequantisation buffer bytes)."""
    p = spec.params
    frozen = float(p.frozen_bytes)
    if spec.quant_bits not in (4, 8) or p.quantizable_params == 0:
        return frozen, 0.0, 0.0
    q = p.quantizable_params
    frozen -= p.quantizable_bytes
    if kbit_fp32(spec):
        frozen = frozen * 4.0 / max(p.load_bytes, 1)
    d = spec.dims
    largest = max(d.hidden * d.intermediate, d.hidden * d.heads * d.head_dim)
    if spec.quant_bits == 4:
        double = bool(getattr(spec.model_args, "double_quantization", True))
        # bitsandbytes per module: absmax per block of 64 (uint8 with double quantization, else fp32), a 16-value
        # fp32 code; double quantization adds an fp32 absmax per 256 blocks, a 256-value fp32 code and an offset
        if double:
            const = p.quantizable_blocks + 4.0 * p.quantizable_blocks2 + p.quantizable_modules * (64 + 1024 + 4)
        else:
            const = 4.0 * p.quantizable_blocks + 64.0 * p.quantizable_modules
        return frozen + q * 0.5, const, dequant_bytes(largest, spec.compute_bytes, double)
    return frozen + q * 1.0, 4.0 * p.quantizable_rows, largest * spec.compute_bytes


def dequant_bytes(numel: int, compute_bytes: int, double_quant: bool) -> float:
    """A 4-bit weight dequantized for one matmul (backward; forward too on CUDA past 1,536 tokens): the weight in the
    compute dtype, + its fp32 absmax (one per 64 elements) when the absmax itself is quantized."""
    return numel * (compute_bytes + (4.0 / 64 if double_quant else 0.0))


def _optimizer(spec: EstimateSpec, trainable: float, param_bytes: float) -> tuple[float, float, str]:
    """(state bytes, step temporaries, note) for ``trainable`` params stored with ``param_bytes``."""
    name = spec.optim
    small = min(spec.params.trainable_small_params, trainable)
    if "8bit" in name:
        n_states = 1 if "lion" in name else 2
        if "ademamix" in name:
            n_states = 3
        # bitsandbytes: 1 B per element + an fp32 absmax per 256 elements, one shared 256-value fp32 map per state;
        # tensors < 4096 elements and (the Trainer's override) embeddings keep 32-bit states
        full32 = min(small + spec.params.trainable_embedding_params, trainable)
        states = n_states * ((trainable - full32) + 4.0 * full32 + 4.0 * spec.params.trainable_8bit_blocks + 1024)
        note = "8-bit states (embeddings and tensors < 4096 elements keep 32-bit)"
        if "paged" in name:
            note += "; paged: unified memory, not in max_memory_allocated, can spill to CPU"
        return states, 0.0, note
    if "paged" in name and "32bit" in name:
        return 2 * trainable * 4.0, 0.0, "paged 32-bit: unified memory, not in max_memory_allocated, can spill to CPU"
    if name.startswith("sgd"):
        return 0.0, 0.0, "SGD without momentum"
    if "adafactor" in name:
        return 0.02 * trainable * 4.0, 0.0, "factored second moment (approx.)"
    if "lion" in name:
        return trainable * param_bytes, 0.0, "one state"
    states = 2 * trainable * param_bytes
    if name in ("adamw_torch", "adamw_hf", "adam", "adamw"):
        return states, trainable * param_bytes, "foreach AdamW: one param-sized buffer during step"
    return states, 0.0, "AdamW: exp_avg + exp_avg_sq"


def zero_of(spec: EstimateSpec):
    """The run's ZeroSetup: read from its DeepSpeed config, else the shipped config of that stage (advice)."""
    from dataclasses import replace

    from .distributed import zero_setup

    if spec.zero_stage is None:
        return None
    z = spec.zero
    if z is None or z.stage != spec.zero_stage:
        shipped = {"stage": spec.zero_stage}
        if spec.zero_stage == 3:
            shipped.update({k: "auto" for k in ("reduce_bucket_size", "stage3_prefetch_bucket_size",
                                                 "stage3_param_persistence_threshold")}, overlap_comm=False)
        z = zero_setup({"zero_optimization": shipped}, spec.dims.hidden)
    return replace(z, offload_optimizer=spec.offload_optimizer, offload_param=spec.offload_param)


def _fsdp_units(spec: EstimateSpec, frozen: float) -> tuple[int, float, float, float]:
    """(shard group size, bytes of one parameter as gathered, parameters of a wrapped unit (one decoder layer), of
    the root (embeddings, final norm, head)); quantized weights stay quantized when gathered."""
    from .distributed import layer_params

    p = spec.params
    T, P = float(p.trainable_params), float(p.total_params)
    group = {"NO_SHARD": 1, "HYBRID_SHARD": max(spec.gpus, 1)}.get(spec.fsdp.sharding, spec.world)
    per_param = (frozen + T * spec.compute_bytes) / P if P else spec.compute_bytes
    unit = float(layer_params(spec.dims))
    return group, per_param, unit, max(P - spec.dims.layers * unit, 0.0)


def _fsdp_parts(spec: EstimateSpec, frozen: float, notes: dict) -> dict:
    """FSDP / FSDP2: flat parameters, gradients and optimizer states sharded over the shard group; the wrapped units
    (one decoder layer each, the host's TRANSFORMER_BASED_WRAP) all-gathered in the compute dtype during forward and
    backward, the root (embeddings, final norm, head) kept gathered for the whole step."""
    f, p = spec.fsdp, spec.params
    T, P = float(p.trainable_params), float(p.total_params)
    c = spec.compute_bytes
    group, per_param, unit_params, root_params = _fsdp_units(spec, frozen)
    t_bytes = float(p.trainable_bytes) / T if T else 4.0
    states, _temp, notes["optimizer states"] = _optimizer(spec, T, t_bytes)
    off = 0.0 if f.offload_params else 1.0
    stored = frozen * 4.0 / max(p.load_bytes, 1) if engine_casts_params(spec) else frozen
    unit = unit_params * per_param
    root = root_params * per_param
    if f.sharding in ("SHARD_GRAD_OP", "NO_SHARD"):
        gathered = P * per_param if f.sharding == "SHARD_GRAD_OP" else 0.0
        what = "all parameters stay gathered between forward and backward" if gathered else "no sharding"
    else:
        gathered = 2 * unit + root
        what = "2 decoder layers gathered (current + prefetched) + the root (embeddings, head) kept gathered"
    name = f"FSDP{'2' if f.version == 2 else ''} {f.sharding}"
    notes["weights"] = f"{name}: parameters / {group} GPUs" + (" (offloaded to CPU)" if f.offload_params else "") + (
        "; stored fp32, 16-bit copies gathered for compute (mixed precision)" if stored != frozen else "")
    notes["trainable master weights"] = f"{T:,.0f} trainable params x {t_bytes:g} B, sharded / {group}"
    notes["gradients"] = f"{name}: sharded gradients + the gathered layer's gradients ({c} B)"
    notes["gathered parameters"] = what
    if not f.use_orig_params and p.lora_modules:
        notes["gathered parameters"] += "; LoRA needs fsdp_use_orig_params: true"
    return {
        "weights": off * stored / group, "master": off * T * t_bytes / group,
        "grads": off * T * t_bytes / group + 2 * unit_params * (T / P if P else 0.0) * c,
        "states": off * states / group, "temp": 0.0, "cache": 0.0, "gathered": gathered,
    }


def engine_casts_params(spec: EstimateSpec) -> bool:
    """FSDP keeps every parameter fp32 (frozen ones too) and all-gathers 16-bit copies for compute: as the run says
    (``spec.engine_casts_params``), else FSDP2 under mixed precision with an accelerate whose ``fsdp2_prepare_model``
    upcasts the whole model (1.6-1.12). FSDP1 (accelerate upcasts only flat params that require grad) and DeepSpeed
    (the engine / ``zero.Init`` casts the module to 16-bit) keep frozen weights as loaded."""
    if spec.fsdp is None:
        return False
    if spec.engine_casts_params is not None:
        return bool(spec.engine_casts_params)
    from .distributed import accelerate_upcasts_frozen

    return spec.fsdp.version == 2 and spec.amp and spec.quant_bits is None and accelerate_upcasts_frozen()


def zero3_working_set(spec: EstimateSpec, z) -> dict:
    """Elements of parameters ZeRO-3 holds gathered, as DeepSpeed's ``PartitionedParameterCoordinator`` does.

    ``retained``: ``__params_to_release`` keeps a parameter whose next use lies within ``stage3_max_reuse_distance``
    elements of the trace; the trace turns at the head and comes back, so the last max_reuse/2 elements of forward
    stay gathered into backward, and under checkpointing the layer being recomputed stays gathered through its own
    backward (at least the largest module). ``prefetch``: ``fetch_sub_module`` prefetches up to
    ``stage3_prefetch_bucket_size`` elements while the available elements stay under ``stage3_max_live_parameters``.
    ``live``: that cap, which repeated prefetches can fill.
    """
    from .distributed import layer_params

    P = float(spec.params.total_params)
    largest = float(spec.params.largest_module_params)
    layer = float(layer_params(spec.dims))
    retained = min(z.max_reuse / 2.0, P)
    if spec.gradient_checkpointing and layer <= z.max_reuse:
        retained = max(retained, min(layer, P))
    retained = max(retained, largest)
    prefetch = min(z.prefetch_bucket, max(z.max_live - retained, 0.0))
    return {"retained": retained, "prefetch": prefetch, "live": max(z.max_live, retained + prefetch)}


def _zero_comm(spec: EstimateSpec, z) -> tuple[float, float, str]:
    """(backward bytes, optimizer-step bytes, note) of DeepSpeed's communication buffers (16-bit elements)."""
    p = spec.params
    if z.stage >= 3:
        persistent = 2.0 * (2 * spec.dims.layers + 1) * spec.dims.hidden if spec.dims.hidden < z.persistence_threshold \
            else 0.0
        prefetch = zero3_param_bytes(spec) * zero3_working_set(spec, z)["prefetch"]
        bucket = 2.0 * z.reduce_bucket
        return (bucket + prefetch + persistent, bucket + persistent,
                f"reduce bucket {z.reduce_bucket:,.0f} + prefetch bucket {z.prefetch_bucket:,.0f} elements "
                f"(max live {z.max_live:,.0f}), norms kept whole (persistence threshold {z.persistence_threshold:,.0f})")
    buckets = 2 if z.overlap_comm else 1
    bwd = 2.0 * z.reduce_bucket * buckets if z.contiguous_gradients else 0.0
    step = 2.0 * z.allgather_bucket if z.stage >= 1 else 0.0
    return (bwd, step, f"{buckets} reduce bucket(s) of {z.reduce_bucket:,.0f} in backward"
                       f"{' (overlap_comm)' if z.overlap_comm else ''}, all-gather bucket of "
                       f"{z.allgather_bucket:,.0f} in the optimizer step")


def zero3_param_bytes(spec: EstimateSpec) -> float:
    """Bytes of one gathered ZeRO-3 parameter: 16-bit (the engine casts), quantized weights as stored."""
    p = spec.params
    T, P = float(p.trainable_params), float(p.total_params)
    frozen = _quantized_weights(spec)[0] if spec.quant_bits else (P - T) * 2.0
    return (frozen + 2.0 * T) / P if P else 2.0


def static_parts(spec: EstimateSpec) -> dict:
    """weights, master weights, gradients, optimizer states, step temporaries, autocast copies, gathered parameters
    and communication buffers (bytes per GPU)."""
    p = spec.params
    T, P = float(p.trainable_params), float(p.total_params)
    N = spec.world
    frozen, qconst, dequant = _quantized_weights(spec)
    notes = {}
    comm_bwd = comm_step = gathered = 0.0
    if spec.fsdp is not None:
        out = _fsdp_parts(spec, frozen, notes)
        out.update(qconst=qconst / (1 if spec.fsdp.sharding == "NO_SHARD" else N), dequant=dequant, notes=notes,
                   comm_bwd=0.0, comm_step=0.0)
        return out
    if spec.zero_stage is None:
        master = float(p.trainable_bytes)
        t_bytes = master / T if T else 4.0
        grads = T * t_bytes
        states, temp, notes["optimizer states"] = _optimizer(spec, T, t_bytes)
        cache = 2.0 * p.trainable_linear_params if (spec.amp and t_bytes >= 4) else 0.0
        if N > 1:
            grads *= 2  # DDP reducer buckets hold a copy of the gradients
            notes["gradients"] = "DDP: gradients + reducer buckets"
        weights = frozen
        notes["weights"] = "frozen weights as loaded" + (" (quantized)" if spec.quant_bits else "")
        notes["trainable master weights"] = f"{T:,.0f} trainable params x {t_bytes:g} B"
    else:
        zs = zero_of(spec)
        z = zs.stage
        F = P - T
        frozen16 = frozen if spec.quant_bits else F * 2.0
        if z >= 3:
            weights = (0.0 if spec.offload_param else frozen16 / N + 2 * T / N) + 4.0 * p.largest_module_params
            notes["weights"] = f"ZeRO-3: 16-bit params / {N} GPUs" + (" (offloaded to CPU)" if spec.offload_param
                                                                      else "") + " + gathered largest module"
            ws = zero3_working_set(spec, zs)
            gathered = zero3_param_bytes(spec) * (ws["retained"] - p.largest_module_params)
            notes["gathered parameters"] = (
                f"ZeRO-3: {ws['retained']:,.0f} elements stay gathered from forward into backward "
                f"(stage3_max_reuse_distance {zs.max_reuse:,.0f}: the last half of it before the turn"
                + (", at least the layer being recomputed" if spec.gradient_checkpointing else "")
                + "), beyond the largest module" + ("; offloaded parameters are gathered on the GPU all the same"
                                                     if spec.offload_param else ""))
        else:
            weights = frozen16 + 2 * T
            notes["weights"] = "16-bit params (DeepSpeed casts the module)"
        shard = 1.0 if z == 0 else 1.0 / N
        master = 0.0 if spec.offload_optimizer else 4 * T * shard
        states, temp, notes["optimizer states"] = _optimizer(spec, T, 4.0)
        states = 0.0 if spec.offload_optimizer else states * shard
        temp = 0.0
        # as DeepSpeed's estimate_zero2/3_model_states_mem_needs: ZeRO-0/1 keep the whole 16-bit gradients, ZeRO-2 the
        # 16-bit partition + its fp32 copy; ZeRO-3 upcasts per sub-group (2 B per param of the partition)
        # with the optimizer offloaded, ZeRO-2/3 move each reduced partition to the CPU at once
        fp32_grads = 0.0 if spec.offload_optimizer else (2 * T / N if z >= 3 else 4 * T * shard)
        grads = (0.0 if spec.offload_optimizer else 2 * T / N) if z >= 2 else 2 * T
        grads += fp32_grads
        cache = 0.0
        off = " (offloaded to CPU)" if spec.offload_optimizer else ""
        notes["trainable master weights"] = f"fp32 master, ZeRO-{z}" + off
        notes["gradients"] = f"ZeRO-{z}: 16-bit gradients" + (" partition" if z >= 2 else "") + (
            "" if spec.offload_optimizer else " + fp32 partition")
        comm_bwd, comm_step, notes["communication buffers"] = _zero_comm(spec, zs)
        if zs.resolved:
            notes["communication buffers"] += "; auto: " + ", ".join(zs.resolved)
    return {
        "weights": weights, "master": master, "grads": grads, "states": states, "temp": temp, "cache": cache,
        "qconst": qconst, "dequant": dequant, "notes": notes, "gathered": gathered, "comm_bwd": comm_bwd,
        "comm_step": comm_step,
    }


# ---------------------------------------------------------------- logits

CHECKED_TRANSFORMERS = ("5.6", "5.8")  # loss-path bytes per logit counted on CPU with these (tests, docs)


def logit_bytes(version: Optional[str] = None) -> tuple[float, str]:
    """(peak bytes per logit b*s*vocab at the causal-LM loss, note) for the installed transformers.

    4.46 and later (``ForCausalLMLoss``, unchanged 5.6 -> 5.8): the model returns 16-bit logits, the loss upcasts
    them (fp32 copy, log-softmax output, its gradient, the 16-bit gradient): 12 B. Before 4.46 the model itself
    upcast and returned fp32 logits: + 4 B.
    """
    if version is None:
        version = _transformers_version()
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return 12.0, f"transformers {version}: loss path assumed as in 5.8"
    if (major, minor) < (4, 46):
        return 16.0, f"transformers {version}: the model upcasts logits to fp32 before the loss (not counted here)"
    checked = f"{major}.{minor}" in CHECKED_TRANSFORMERS
    newer = (major, minor) > tuple(int(x) for x in CHECKED_TRANSFORMERS[-1].split("."))
    return 12.0, (f"transformers {version}: counted" if checked else
                  f"transformers {version}: " + ("newer than 5.8, loss code assumed unchanged" if newer else
                                                 "same ForCausalLMLoss as 5.6/5.8"))


@functools.lru_cache(maxsize=1)
def _transformers_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------- activations

def upcast_logits(spec: EstimateSpec) -> bool:
    """``upcast_lmhead_output``: the host's forward hook returns fp32 logits, kept beside the loss's own upcast."""
    return bool(getattr(spec.model_args, "upcast_lmhead_output", False)) and not spec.is_cls


def kbit_fp32(spec: EstimateSpec) -> bool:
    """Non-quantized params in fp32 as PEFT's ``prepare_model_for_kbit_training`` casts them (the host does not)."""
    return bool(spec.kbit_fp32) and spec.quant_bits in (4, 8)


def qlora_shares_input(spec: EstimateSpec) -> bool:
    """QLoRA under CUDA autocast: PEFT's bitsandbytes LoRA layers skip the fp32 cast of x (``torch.is_autocast_enabled()``)."""
    return spec.quant_bits in (4, 8) and bool(spec.params.lora_modules) and spec.amp


def engine_computes_16bit(spec: EstimateSpec) -> bool:
    """DeepSpeed (the engine casts the module to 16-bit) and FSDP under mixed precision (units gathered as 16-bit
    copies) run forward and backward on 16-bit parameters: fp32 trainable parameters never reach the layers, so the
    residual stream and LoRA's inputs stay in the compute dtype."""
    return spec.compute_bytes < 4 and (spec.zero_stage is not None or spec.fsdp is not None)


def residual_bytes(spec: EstimateSpec) -> int:
    """Bytes per element of the residual stream: the input embedding's dtype, fp32 with PEFT's k-bit preparation."""
    if kbit_fp32(spec):
        return 4
    return spec.compute_bytes if engine_computes_16bit(spec) else (4 if spec.params.embed_bytes >= 4 else spec.compute_bytes)


def layer_activation_bytes_per_token(spec: EstimateSpec, mask_bytes: int = 1) -> float:
    """Bytes one decoder layer keeps for backward per token (no checkpointing), excluding s^2 attention terms.

    A Linear keeps its input only when its weight is trainable; element-wise ops (RMSNorm's fp32 upcast, RoPE,
    SwiGLU, attention) always keep theirs. ``mask_bytes``: dropout mask element (1 on CUDA).
    """
    d, p = spec.dims, spec.params
    h, I, heads = d.hidden, d.intermediate, d.heads
    qd, kv = d.heads * d.head_dim, d.kv_heads * d.head_dim
    c = spec.compute_bytes  # linear inputs / outputs
    kbit = kbit_fp32(spec)
    r = residual_bytes(spec)
    repeat = kv != qd and (spec.attention == "eager" or (spec.attention == "sdpa" and spec.batch_size > 1))
    base_trainable = spec.base_type in ("full", "freeze") and p.trainable_params > p.lora_modules
    # PEFT keeps adapters fp32 (also under pure_bf16) and casts x to their dtype; autocast casts it back
    lora_bytes = round(p.trainable_bytes / p.trainable_params) if (p.trainable_params and not engine_computes_16bit(spec)) else c
    # PEFT's bitsandbytes LoRA layers cast x to the adapter dtype only when CUDA autocast is off: under AMP the
    # adapters read the layer's own 16-bit input, which then stays alive once per distinct input (4 per layer)
    quant_shared = qlora_shares_input(spec)
    cast_path = bool(p.lora_modules) and lora_bytes != c and not quant_shared
    cast_bytes = c if spec.amp else lora_bytes
    keeps_input = base_trainable or (bool(p.lora_modules) and not cast_path)
    norm = 4 * h + (r * h if p.norm_trainable else 0) + (c * h if keeps_input else 0)
    attn = c * qd + (2 * c * qd if repeat else 2 * c * kv) + c * qd + 4 * heads + (
        c * qd if base_trainable or quant_shared else 0)
    mlp = 3 * c * I + (c * I if keeps_input else 0)
    total = 2 * norm + attn + mlp
    if kbit:  # fp32 norm outputs: each adapter keeps its own 16-bit cast of x; 4-bit Linears return fp32 (gate/up)
        total += max(c * p.lora_in_per_layer - c * (2 * h + qd + I), 0.0) + 3 * (4 - c) * I
    if p.lora_modules:
        extra = p.lora_rank_per_layer * c
        if cast_path:
            extra += p.lora_in_per_layer * cast_bytes
        if spec.lora_dropout > 0:
            extra += p.lora_in_per_layer * (mask_bytes if cast_path else mask_bytes + c)
        if spec.use_dora:
            extra += 2 * c * p.lora_out_per_layer
        total += extra
    return float(total)


def activation_parts(spec: EstimateSpec, mask_bytes: int = 1) -> dict:
    """Activation bytes (per GPU) at the end of forward and during backward; logits/loss bytes."""
    d, p = spec.dims, spec.params
    b, s = spec.batch_size, spec.seq_len
    tokens = b * s
    c = spec.compute_bytes
    r = residual_bytes(spec)
    first = p.first_trainable_layer
    if first is None:
        active = 0
    else:
        active = d.layers - max(first, 0)
    per_layer = layer_activation_bytes_per_token(spec, mask_bytes) * tokens
    if spec.attention == "eager":
        per_layer += (4 + c) * b * d.heads * s * s
    elif spec.attention == "sdpa" and b > 1:
        per_layer += c * b * s * s  # SDPA turns the padding mask into an additive bias and keeps it for backward
    mask = 0.0
    if spec.attention == "eager":
        mask = c * b * s * s
    elif spec.attention == "sdpa" and b > 1:
        mask = 1.0 * b * s * s
    final = (4 * d.hidden + c * d.hidden) * tokens if (active or p.head_trainable) else 0.0
    bwd_transient = (3 * c * d.intermediate + 2 * r * d.hidden) * tokens
    if spec.gradient_checkpointing and not spec.unsloth_gc:
        ckpt = r * d.hidden * tokens * active
        fwd = ckpt + final + mask
        bwd = ckpt + (per_layer + bwd_transient if active else 0.0) + mask
    elif spec.gradient_checkpointing:  # unsloth GC keeps checkpoints on the CPU
        fwd = final + mask
        bwd = (per_layer + bwd_transient if active else 0.0) + mask
    else:
        fwd = per_layer * active + final + mask
        bwd = (per_layer + bwd_transient if active else 0.0) + mask
    if spec.is_cls:
        logits = tokens * max(d.num_labels, 1) * 4.0 * 3
    elif active or p.head_trainable:
        logits = tokens * d.vocab * (logit_bytes()[0] + (4.0 if upcast_logits(spec) else 0.0))
    else:
        logits = tokens * d.vocab * c
    dora_tmp = 2 * 4.0 * p.largest_lora_weight if spec.use_dora else 0.0
    if kbit_fp32(spec) and not spec.is_cls and (active or p.head_trainable):
        fwd += c * d.vocab * d.hidden  # autocast's 16-bit copy of the fp32 lm_head weight, kept for backward
    return {"fwd": fwd + dora_tmp, "bwd": bwd + dora_tmp, "logits": logits, "per_layer": per_layer, "active": active}


# ---------------------------------------------------------------- total

def _allocated(spec: EstimateSpec, extra_terms=()) -> float:
    return max(_phase_totals(spec, extra_terms)[0].values())


def _phase_totals(spec: EstimateSpec, extra_terms=()):
    st = static_parts(spec)
    act = activation_parts(spec)
    extra = sum(float(t.bytes) for t in extra_terms)
    ga = spec.grad_accum > 1
    base = st["weights"] + st["master"] + st["states"] + st["qconst"] + extra
    g, cb, cs = st["gathered"], st["comm_bwd"], st["comm_step"]
    phases = {
        "end of forward": {
            "weights": st["weights"] + st["cache"], "gradients": st["grads"] if ga else 0.0,
            "activations": act["fwd"] + st["dequant"], "logits and loss": act["logits"],
            "gathered parameters": g, "communication buffers": cb if (spec.zero_stage or 0) >= 3 else 0.0,
        },
        "backward": {
            "weights": st["weights"], "gradients": st["grads"],
            "activations": act["bwd"] + st["dequant"], "logits and loss": 0.0,
            "gathered parameters": g, "communication buffers": cb,
        },
        "optimizer step": {
            "weights": st["weights"], "gradients": st["grads"], "activations": 0.0, "logits and loss": 0.0,
            "optimizer temporaries": st["temp"], "gathered parameters": 0.0, "communication buffers": cs,
        },
    }
    totals = {}
    for name, parts in phases.items():
        totals[name] = base - st["weights"] + sum(parts.values())
    return totals, phases, st, act


def method_of(spec: EstimateSpec) -> str:
    """full | lora | qlora: what sets the caching allocator's slack over the allocated peak."""
    if spec.quant_bits in (4, 8):
        return "qlora"
    return "full" if spec.params.trainable_params > 0.2 * max(spec.params.total_params, 1) else "lora"


# reserved over allocated (torch.cuda.max_memory_reserved / max_memory_allocated) in training loops: likely, high.
# Published tables (docs/estimator.md) put nvidia-smi 6-12 % over the allocated peak for full fine-tuning, 16-17 %
# for LoRA and 26-32 % for QLoRA, CUDA context included
# (QLoRA's high end applies to the bound's k-bit-prepared step, already above the likely allocated peak)
RESERVED_SLACK = {"full": (0.05, 0.12), "lora": (0.10, 0.18), "qlora": (0.15, 0.20)}
# FSDP1's caching-allocator fragmentation (unsharded flat parameters allocated and freed per unit, record_stream):
# llama-recipes logs of one run each give max_memory_reserved / max_memory_allocated 1.26-1.39 (Llama-2-7B full,
# 4 GPUs) and 1.38-1.50 (Llama-2-70B full, 16 GPUs), while the PEFT guide's FSDP runs agree with the method's slack:
# the bound takes the high end, the likely value keeps the method's
FSDP1_SLACK_HI = 0.50


def _fsdp1_sharded(spec: EstimateSpec) -> bool:
    f = spec.fsdp
    return f is not None and f.version == 1 and f.sharding != "NO_SHARD"


def reserved_slack(spec: EstimateSpec) -> tuple[float, float]:
    """(likely, high) allocator slack over the allocated peak: by method, and up to 50% under FSDP1."""
    lo, hi = RESERVED_SLACK[method_of(spec)]
    return lo, max(hi, FSDP1_SLACK_HI) if _fsdp1_sharded(spec) else hi


def distributed_margins(spec: EstimateSpec) -> list:
    """[(name, bytes, why)]: memory a distributed engine may hold beyond the likely peak, each from its source.

    - ZeRO-3 live parameters: the prefetcher may fill the gathered set up to ``stage3_max_live_parameters``.
    - FSDP all-gather stream pool (FSDP2): ``foreach_all_gather`` allocates each unit's all-gather output on the
      all-gather stream before copying it into the unsharded parameters; the caching allocator keeps freed blocks
      per stream, so the compute stream cannot reuse them (two units in flight, or the root).
    - parameter-offload residual: offloaded partitions / shards are copied to the GPU for the all-gather.
    """
    out = []
    if (spec.zero_stage or 0) >= 3 and spec.fsdp is None:
        z = zero_of(spec)
        ws = zero3_working_set(spec, z)
        per = zero3_param_bytes(spec)
        extra = per * max(ws["live"] - ws["retained"] - ws["prefetch"], 0.0)
        if extra > 0:
            out.append(("ZeRO-3 live parameters", extra, f"prefetches may fill the gathered set up to "
                        f"stage3_max_live_parameters ({z.max_live:,.0f} elements)"))
        if spec.offload_param:
            out.append(("parameter-offload residual", per * ws["live"] / spec.world,
                        "offloaded partitions of the gathered set are copied to the GPU for the all-gather"))
    if spec.fsdp is not None:
        f = spec.fsdp
        group, per, unit, root = _fsdp_units(spec, _quantized_weights(spec)[0])
        if f.version == 2 and f.sharding != "NO_SHARD":
            out.append(("FSDP all-gather stream pool", per * max(root, 2 * unit),
                        "FSDP2 all-gathers into buffers on its own stream, then copies out; the allocator keeps "
                        "those blocks for that stream (two units in flight, or the root)"))
        if f.offload_params:
            out.append(("parameter-offload residual", per * (2 * unit + root) / group,
                        "the CPU shards of the gathered units are copied to the GPU for the all-gather"))
    return out


def upper_bound(spec: EstimateSpec, allocated: float, extra_terms=()) -> tuple[float, list, dict]:
    """(upper end of the band, reasons, named margins): allocator slack (by method) and CUDA context at their high
    ends; for QLoRA the step with non-quantized params in fp32 (PEFT's k-bit preparation), which published QLoRA
    peaks ran; for distributed runs the margins of ``distributed_margins``."""
    lo, hi_slack = reserved_slack(spec)
    fsdp1 = _fsdp1_sharded(spec)
    reasons = [f"allocator slack up to {hi_slack:.0%} for {method_of(spec)}" + (" under FSDP1" if fsdp1 else "")
               + f" (likely: {lo:.0%}): what nvidia-smi shows over max_memory_allocated"
               + ("; FSDP1 runs have logged max_memory_reserved 1.26-1.50 x max_memory_allocated" if fsdp1 else ""),
               f"CUDA context and kernel workspaces up to {CUDA_CONTEXT_HI / GiB:.1f} GiB "
               f"(likely: {CUDA_CONTEXT_BYTES / GiB:.2f} GiB)"]
    hi = allocated
    if spec.quant_bits in (4, 8) and not spec.kbit_fp32:
        kbit = _allocated(spec.replace(kbit_fp32=True), extra_terms)
        if kbit > hi:
            reasons.append(f"{spec.quant_bits}-bit, no GPU measurement of the host's step: published QLoRA peaks sit "
                           f"14-25% above the likely value; the bound counts the step with fp32 embeddings, norms and "
                           f"head as PEFT's prepare_model_for_kbit_training leaves them (+{fmt_bytes(kbit - allocated)})")
            hi = kbit
    margins = {}
    for name, size, why in distributed_margins(spec):
        margins[name] = size
        reasons.append(f"{name} +{fmt_bytes(size)}: {why}")
        hi += size
    if spec.zero_stage is not None:
        reasons.append("DeepSpeed: buckets counted at their configured sizes; NCCL's own buffers (outside torch's "
                       "allocator, ~0.1-0.5 GiB per communicator) are not")
    if spec.fsdp is not None:
        reasons.append("FSDP: one layer prefetched; NCCL's own buffers are not counted")
    return hi * (1 + hi_slack) + CUDA_CONTEXT_HI, reasons, margins


def compute(spec: EstimateSpec, extra_terms=()) -> Breakdown:
    totals, phases, st, act = _phase_totals(spec, extra_terms)
    phase = max(totals, key=totals.get)
    allocated = totals[phase]
    slack = reserved_slack(spec)[0]
    overhead = CUDA_CONTEXT_BYTES + slack * allocated
    parts = phases[phase]
    notes = st["notes"]
    comps = [
        MemoryTerm("weights", parts["weights"], notes.get("weights", "") + (
            "; + 16-bit autocast copies of trainable weights" if phase == "end of forward" and st["cache"] else "")),
        MemoryTerm("trainable master weights", st["master"], notes.get("trainable master weights", "")),
        MemoryTerm("gradients", parts["gradients"], notes.get("gradients", "")),
        MemoryTerm("optimizer states", st["states"] + parts.get("optimizer temporaries", 0.0),
                   notes.get("optimizer states", "")),
        MemoryTerm("activations", parts["activations"], _act_note(spec, act)),
        MemoryTerm("logits and loss", parts["logits and loss"],
                   "classification head: b x labels" if spec.is_cls else
                   f"{logit_bytes()[0]:g} B per logit: fp32 upcast + log-softmax + its gradient ({logit_bytes()[1]})"),
        MemoryTerm("quantization constants", st["qconst"],
                   f"{spec.quant_bits}-bit bitsandbytes" if spec.quant_bits else "no quantization"),
    ]
    if spec.fsdp is not None or (spec.zero_stage or 0) >= 3 or parts.get("gathered parameters"):
        comps.insert(1, MemoryTerm("gathered parameters", parts.get("gathered parameters", 0.0),
                                   notes.get("gathered parameters", "")))
    if spec.zero_stage is not None:
        comps.append(MemoryTerm("communication buffers", parts.get("communication buffers", 0.0),
                                notes.get("communication buffers", "")))
    comps.append(MemoryTerm("framework overhead", overhead,
                            f"CUDA context + cuBLAS workspace + allocator slack ({slack:.0%}, {method_of(spec)})"))
    upper, reasons, margins = upper_bound(spec, allocated, extra_terms)
    return Breakdown(components=comps, phase=phase, allocated_bytes=allocated, peak_bytes=allocated + overhead,
                     reserved_bytes=allocated * (1 + slack),
                     phases=totals, extra_terms=list(extra_terms), upper_bytes=max(upper, allocated + overhead),
                     upper_reasons=reasons, upper_margins=margins)


def _act_note(spec: EstimateSpec, act: dict) -> str:
    gc = "checkpointing on" if spec.gradient_checkpointing else "checkpointing off"
    return f"{act['active']} layers x b{spec.batch_size} x s{spec.seq_len}, {spec.attention}, {gc}"


def fmt_bytes(n: float) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    if n >= 1024**2:
        return f"{n / 1024**2:.1f} MiB"
    return f"{n / 1024:.1f} KiB"
