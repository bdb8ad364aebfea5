"""What an estimate is computed from: model dimensions, parameter statistics and the run's knobs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional


def nf4_blocks(numel: int) -> tuple[int, int]:
    """bitsandbytes 4-bit blocks of one weight: (blocks of 64 elements, blocks of 256 absmax values)."""
    blocks = -(-numel // 64)
    return blocks, -(-blocks // 256)


@dataclass
class ModelDims:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    num_labels: int = 0


@dataclass
class ParamStats:
    """Counts from the model built on the meta device by the run's own adapter code."""

    total_params: int
    trainable_params: int
    frozen_bytes: int  # storage of frozen params as built (16-bit or fp32)
    trainable_bytes: int  # storage of trainable params as built (fp32 after the host's upcast)
    quantizable_params: int = 0  # frozen Linear weights inside decoder layers (what bitsandbytes quantizes)
    quantizable_bytes: int = 0
    quantizable_rows: int = 0  # sum of their out_features (int8 row scales)
    quantizable_modules: int = 0
    quantizable_blocks: int = 0  # 4-bit blocks of 64 (one absmax each)
    quantizable_blocks2: int = 0  # double quantization: blocks of 256 absmax values
    largest_module_params: int = 0  # DeepSpeed ZeRO-3 gathers one module at a time
    largest_linear_params: int = 0
    trainable_small_params: int = 0  # trainable params in tensors < 4096 elements (8-bit Adam keeps them 32-bit)
    trainable_embedding_params: int = 0  # trainable nn.Embedding weights >= 4096: HF keeps their 8-bit-optimizer states 32-bit
    trainable_8bit_blocks: int = 0  # sum of ceil(n / 256) over tensors with 8-bit optimizer states (one absmax each)
    trainable_linear_params: int = 0  # trainable fp32 Linear weights (autocast keeps a 16-bit copy)
    first_trainable_layer: Optional[int] = None  # activations are saved from here on
    head_trainable: bool = False
    embed_bytes: int = 2  # bytes per element of the input embedding (the residual stream's dtype)
    norm_trainable: bool = False
    load_bytes: int = 2  # bytes per element of the checkpoint as loaded (torch_dtype="auto")
    lora_in_per_layer: float = 0.0  # sum of in_features of LoRA-adapted Linears per decoder layer
    lora_out_per_layer: float = 0.0
    lora_rank_per_layer: float = 0.0
    lora_modules: int = 0
    largest_lora_weight: int = 0  # out*in of the largest adapted Linear (DoRA materialises it)


@dataclass
class EstimateSpec:
    """Everything the memory model reads. Plugins receive it in ``lfx_memory_terms(spec)``."""

    strategy_names: list
    stage: str
    base_type: str
    model_name: str
    config_source: str
    dims: ModelDims
    params: ParamStats
    batch_size: int
    seq_len: int
    grad_accum: int = 1
    gpus: int = 1
    gradient_checkpointing: bool = True
    attention: str = "sdpa"  # sdpa | flash | eager
    compute_bytes: int = 2
    amp: bool = True  # bf16/fp16 autocast with fp32 trainable params
    pure_bf16: bool = False
    optim: str = "adamw_torch_fused"
    zero_stage: Optional[int] = None  # None: no DeepSpeed
    offload_optimizer: bool = False
    offload_param: bool = False
    zero: Any = None  # distributed.ZeroSetup read from the DeepSpeed config (buckets); None: the shipped configs'
    fsdp: Any = None  # distributed.FsdpSetup (accelerate config or the recipe's `fsdp` key); None: no FSDP
    # parameters stored fp32 by the engine, 16-bit copies gathered for compute (FSDP mixed precision); None: as the
    # installed engine does (terms.engine_casts_params)
    engine_casts_params: Optional[bool] = None
    nodes: int = 1  # machines; `gpus` is GPUs per machine
    quant_bits: Optional[int] = None
    kbit_fp32: bool = False  # non-quantized params fp32 (PEFT prepare_model_for_kbit_training); the host: no
    lora_dropout: float = 0.0
    use_dora: bool = False
    is_cls: bool = False
    unsloth_gc: bool = False
    model_args: Any = None
    data_args: Any = None
    training_args: Any = None
    finetuning_args: Any = None
    run: Any = None
    notes: list = field(default_factory=list)

    @property
    def world(self) -> int:
        """GPUs in all: data-parallel / sharding world size."""
        return max(self.gpus, 1) * max(self.nodes, 1)

    @property
    def total_params(self) -> int:
        return self.params.total_params

    @property
    def trainable_params(self) -> int:
        return self.params.trainable_params

    def replace(self, **changes) -> "EstimateSpec":
        return dataclasses.replace(self, notes=list(self.notes), **changes)
