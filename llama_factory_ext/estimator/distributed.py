"""How a run is spread over GPUs: DeepSpeed ZeRO settings (``auto`` resolved as transformers resolves them) and
FSDP / FSDP2 settings read from an accelerate config or the recipe's ``fsdp`` / ``fsdp_config`` keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..api import UserError

# DeepSpeed's own defaults (deepspeed/runtime/zero/config.py), in elements
DS_DEFAULTS = {
    "reduce_bucket_size": 5e8,
    "allgather_bucket_size": 5e8,
    "stage3_prefetch_bucket_size": 5e7,
    "stage3_max_live_parameters": 1e9,
    "stage3_param_persistence_threshold": 1e5,
    "stage3_max_reuse_distance": 1e9,
}


@dataclass(frozen=True)
class ZeroSetup:
    stage: int
    offload_optimizer: bool = False
    offload_param: bool = False
    overlap_comm: bool = False
    contiguous_gradients: bool = True
    reduce_bucket: float = DS_DEFAULTS["reduce_bucket_size"]
    allgather_bucket: float = DS_DEFAULTS["allgather_bucket_size"]
    prefetch_bucket: float = DS_DEFAULTS["stage3_prefetch_bucket_size"]
    max_live: float = DS_DEFAULTS["stage3_max_live_parameters"]
    persistence_threshold: float = DS_DEFAULTS["stage3_param_persistence_threshold"]
    max_reuse: float = DS_DEFAULTS["stage3_max_reuse_distance"]
    resolved: tuple = ()  # "key = value" for each `auto` resolved here


@dataclass(frozen=True)
class FsdpSetup:
    version: int = 1
    sharding: str = "FULL_SHARD"  # FULL_SHARD | SHARD_GRAD_OP | NO_SHARD | HYBRID_SHARD
    offload_params: bool = False
    use_orig_params: bool = True
    activation_checkpointing: bool = False
    source: str = ""


@dataclass
class Launch:
    """What an accelerate config says about the launch."""

    fsdp: Optional[FsdpSetup] = None
    zero: Optional[dict] = None  # accelerate's deepspeed_config block, as a DeepSpeed config dict
    processes: Optional[int] = None
    machines: Optional[int] = None
    notes: list = field(default_factory=list)


def _number(value, key: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"DeepSpeed config `zero_optimization.{key}`: expected a number or \"auto\", got {value!r}")


def _device(block) -> bool:
    return isinstance(block, dict) and str(block.get("device", "none")).lower() in ("cpu", "nvme")


def zero_setup(ds: dict, hidden: int) -> Optional[ZeroSetup]:
    """ZeRO settings of a DeepSpeed config; ``auto`` sizes as transformers' HfDeepSpeedConfig fills them from the
    model's hidden size (reduce bucket h^2, prefetch 0.9 h^2, persistence threshold 10 h); absent keys: DeepSpeed's
    defaults."""
    if not ds:
        return None
    zero = ds.get("zero_optimization") or {}
    if not isinstance(zero, dict):
        raise UserError("DeepSpeed config `zero_optimization`: expected a mapping")
    stage = int(_number(zero.get("stage", 0), "stage"))
    auto = {"reduce_bucket_size": hidden * hidden, "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
            "stage3_param_persistence_threshold": 10 * hidden}
    values, resolved = {}, []
    for key, default in DS_DEFAULTS.items():
        raw = zero.get(key, default)
        if raw == "auto":
            raw = auto.get(key, default)
            resolved.append(f"{key} = {raw:,.0f}")
        values[key] = _number(raw, key)
    overlap = zero.get("overlap_comm")
    overlap = (stage == 3) if overlap in (None, "auto") else bool(overlap)
    return ZeroSetup(
        stage=stage, offload_optimizer=_device(zero.get("offload_optimizer")), offload_param=_device(zero.get("offload_param")),
        overlap_comm=overlap, contiguous_gradients=bool(zero.get("contiguous_gradients", True)),
        reduce_bucket=values["reduce_bucket_size"], allgather_bucket=values["allgather_bucket_size"],
        prefetch_bucket=values["stage3_prefetch_bucket_size"], max_live=values["stage3_max_live_parameters"],
        persistence_threshold=values["stage3_param_persistence_threshold"], max_reuse=values["stage3_max_reuse_distance"],
        resolved=tuple(resolved))


SHARDINGS = {"1": "FULL_SHARD", "2": "SHARD_GRAD_OP", "3": "NO_SHARD", "4": "HYBRID_SHARD", "5": "HYBRID_SHARD"}


def _flag(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def fsdp_from_accelerate(block: dict, source: str) -> FsdpSetup:
    """An accelerate ``fsdp_config`` block (FSDP1 or ``fsdp_version: 2``)."""
    version = int(block.get("fsdp_version", 1) or 1)
    if version == 2:
        sharding = "FULL_SHARD" if _flag(block.get("fsdp_reshard_after_forward", True)) else "SHARD_GRAD_OP"
    else:
        raw = str(block.get("fsdp_sharding_strategy", "FULL_SHARD")).upper()
        sharding = SHARDINGS.get(raw, raw)
        if sharding not in ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"):
            raise UserError(f"{source}: `fsdp_config.fsdp_sharding_strategy`: unknown value {raw!r} (FULL_SHARD, "
                            "SHARD_GRAD_OP, NO_SHARD, HYBRID_SHARD)")
    return FsdpSetup(version=version, sharding=sharding, offload_params=_flag(block.get("fsdp_offload_params", False)),
                     use_orig_params=_flag(block.get("fsdp_use_orig_params", True)),
                     activation_checkpointing=_flag(block.get("fsdp_activation_checkpointing", False)), source=source)


def fsdp_from_recipe(fsdp, fsdp_config) -> Optional[FsdpSetup]:
    """The Trainer's own keys: ``fsdp: "full_shard auto_wrap [offload]"`` and ``fsdp_config``."""
    if not fsdp:
        return None
    words = fsdp if isinstance(fsdp, list) else str(fsdp).split()
    words = [str(w).lower() for w in words]
    sharding = next((s.upper() for s in ("full_shard", "shard_grad_op", "no_shard", "hybrid_shard") if s in words),
                    "FULL_SHARD")
    cfg = fsdp_config if isinstance(fsdp_config, dict) else {}
    cfg = {k.removeprefix("fsdp_"): v for k, v in cfg.items()}
    version = int(cfg.get("version", 1) or 1)
    if version == 2:
        sharding = "FULL_SHARD" if _flag(cfg.get("reshard_after_forward", True)) else "SHARD_GRAD_OP"
    return FsdpSetup(version=version, sharding=sharding, offload_params="offload" in words,
                     use_orig_params=_flag(cfg.get("use_orig_params", True)),
                     activation_checkpointing=_flag(cfg.get("activation_checkpointing", False)), source="recipe `fsdp`")


def read_accelerate_config(path: str) -> Launch:
    """The parts of an ``accelerate launch --config_file`` YAML that change memory per GPU."""
    from ..recipe.load import read_recipe

    cfg = read_recipe(path)
    name = Path(path).name
    launch = Launch()
    kind = str(cfg.get("distributed_type", "NO")).upper()
    for key, attr in (("num_processes", "processes"), ("num_machines", "machines")):
        if key in cfg:
            try:
                value = int(cfg[key])
            except (TypeError, ValueError):
                raise UserError(f"{name}: `{key}`: expected a whole number, got {cfg[key]!r}")
            if value < 1:
                raise UserError(f"{name}: `{key}`: must be at least 1, got {value}")
            setattr(launch, attr, value)
    if kind == "FSDP":
        block = cfg.get("fsdp_config") or {}
        if not isinstance(block, dict):
            raise UserError(f"{name}: `fsdp_config`: expected a mapping")
        launch.fsdp = fsdp_from_accelerate(block, name)
    elif kind == "DEEPSPEED":
        block = cfg.get("deepspeed_config") or {}
        if block.get("deepspeed_config_file"):
            launch.notes.append(f"{name}: deepspeed_config_file is read from the recipe's `deepspeed` key instead")
        else:
            zero = {"stage": block.get("zero_stage", 0)}
            for side in ("optimizer", "param"):
                if str(block.get(f"offload_{side}_device", "none")).lower() in ("cpu", "nvme"):
                    zero[f"offload_{side}"] = {"device": "cpu"}
            launch.zero = {"zero_optimization": zero}
    elif kind not in ("NO", "MULTI_GPU"):
        launch.notes.append(f"{name}: distributed_type {kind} is modelled as data parallel")
    return launch


def layer_params(dims) -> int:
    """Parameters of one decoder layer (attention, MLP, two norms): FSDP's transformer-based wrap unit."""
    h, qd, kv = dims.hidden, dims.heads * dims.head_dim, dims.kv_heads * dims.head_dim
    return h * qd + 2 * h * kv + qd * h + 3 * h * dims.intermediate + 2 * h


def accelerate_upcasts_frozen(version: Optional[str] = None) -> bool:
    """Whether accelerate's FSDP2 preparation under mixed precision upcasts the whole model to fp32 (frozen weights
    included): ``model.to(torch.float32)`` in ``fsdp2_prepare_model`` from 1.6 (FSDP2 support) to 1.12; from 1.13 it
    upcasts only parameters that require grad. ``version``: the installed accelerate when None."""
    if version is None:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        try:
            version = dist_version("accelerate")
        except PackageNotFoundError:
            return False
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (1, 6) <= (major, minor) < (1, 13)
