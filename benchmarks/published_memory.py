"""The memory estimator against GPU memory measurements other people published, like with like.

Each row is a published run with the configuration needed to rebuild it as a recipe (model, method, batch,
sequence, checkpointing, precision, DeepSpeed / FSDP settings, GPUs) and what was measured: `allocated`
(``torch.cuda.max_memory_allocated``), `reserved` (``max_memory_reserved``) or `nvidia-smi` (the process as the
driver sees it). The estimate compared is the matching one: ``allocated_peak_bytes``, ``reserved_peak_bytes`` or
``peak_bytes`` (likely); ``upper_bytes`` is checked to cover the measured value.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/published_memory.py [--out docs/]

Writes ``estimator_published.json`` and ``estimator_published.md``. No GPU, no download: models without a
built-in config get their published config.json values from ``CONFIGS`` below.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

GB, GIB = 1e9, 2**30


def _llama(hidden, intermediate, layers, heads, kv_heads, max_positions=4096):
    """A Llama / Llama-2-family config.json (32k vocabulary, untied head); bf16 weights as the runs below load them."""
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
            "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "vocab_size": 32000, "max_position_embeddings": max_positions,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
            "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}


# published config.json values (Hugging Face model cards) of models without a built-in config; the cards give
# float16 (Llama 2) and float32 (TinyLlama) as torch_dtype, the runs below load bf16
CONFIGS = {
    "meta-llama/Llama-2-70b-hf": _llama(8192, 28672, 80, 64, 8),
    "meta-llama/Llama-2-7b-hf": _llama(4096, 11008, 32, 32, 32),
    "meta-llama/Llama-2-13b-hf": _llama(5120, 13824, 40, 40, 40),
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T": _llama(2048, 5632, 22, 32, 4, max_positions=2048),
    "Qwen/Qwen2.5-14B": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 152064,
                         "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 48,
                         "num_attention_heads": 40, "num_key_value_heads": 8, "hidden_act": "silu",
                         "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
                         "tie_word_embeddings": False, "bos_token_id": 151643, "eos_token_id": 151643,
                         "torch_dtype": "bfloat16"},
}

PEFT_DS = "https://huggingface.co/docs/peft/accelerate/deepspeed"
PEFT_FSDP = "https://huggingface.co/docs/peft/accelerate/fsdp"
SWIFT = "https://github.com/modelscope/ms-swift/blob/main/examples/train/multi-gpu/"
LITGPT = "https://github.com/Lightning-AI/litgpt/blob/main/config_hub/finetune/README.md"

# the PEFT guide's examples/sft/train.py runs: packing to max_seq_len 2048, flash-attention 2, LoRA r8 all-linear
_PEFT_70B = {"model": "meta-llama/Llama-2-70b-hf", "cutoff_len": 2048, "flash_attn": "fa2", "lora_rank": 8,
             "lora_dropout": 0.1, "lora_target": "all", "bf16": True}
# ms-swift's training log reports `memory(GiB)` = torch.cuda.max_memory_reserved (swift/trainers get_max_cuda_memory);
# the examples' memory comments are taken as that figure
SWIFT_KIND = "reserved"
_PEFT_QLORA = {**_PEFT_70B, "finetuning_type": "lora", "quantization_bit": 4, "per_device_train_batch_size": 2,
               "gradient_accumulation_steps": 2}
_SWIFT_7B = {"model": "Qwen/Qwen2.5-7B-Instruct", "lora_rank": 8, "lora_target": "all", "bf16": True,
             "per_device_train_batch_size": 1, "cutoff_len": 256}
_LITGPT = {"pure_bf16": True, "bf16": True, "disable_gradient_checkpointing": True, "cutoff_len": 512, "lora_dropout": 0.05}


def _hub(row_id, method, value, quote, config, model, micro, accumulation, notes, **recipe):
    """A row of LitGPT's config-hub table (one A10G, max_memory_allocated in GB)."""
    base = {**_LITGPT, "model": model, "finetuning_type": "lora", "per_device_train_batch_size": micro,
            "gradient_accumulation_steps": accumulation}
    return {"id": row_id, "source": LITGPT, "engine": "single", "method": method, "gpus": 1, "quote": quote,
            "kind": "allocated", "value": value, "unit": "GB", "config": config, "recipe": {**base, **recipe},
            "notes": notes}


LITGPT_RT = "https://github.com/Lightning-AI/litgpt/blob/main/tutorials/resource-tables.md"
# LitGPT finetune/lora.py (Oct 2023): LoRA r8 alpha 16 dropout 0.05 on query and value, bf16-true, Alpaca with its
# longest Llama-2 sample 1,304 tokens, global batch 128, no checkpointing on one GPU
_LITGPT_RT = {"pure_bf16": True, "bf16": True, "cutoff_len": 1304, "finetuning_type": "lora", "lora_rank": 8, "lora_dropout": 0.05,
                  "lora_target": "q_proj,v_proj"}


def _litgpt_rt(model, micro, quant=None, dq=False, gpus=1):
    r = dict(_LITGPT_RT, model=model, per_device_train_batch_size=micro,
             gradient_accumulation_steps=max(128 // (micro * gpus), 1))
    if quant:
        r.update(quantization_bit=4, double_quantization=dq)
    if gpus == 1:
        r["disable_gradient_checkpointing"] = True
    return r


_ACC_BASE = {"compute_environment": "LOCAL_MACHINE", "machine_rank": 0, "num_machines": 1}


def _peft_z3(processes):
    """The PEFT guide's accelerate DeepSpeed config: ZeRO-3, no offload, zero3_init."""
    return {**_ACC_BASE, "distributed_type": "DEEPSPEED", "num_processes": processes, "mixed_precision": "bf16",
            "deepspeed_config": {"zero_stage": 3, "offload_optimizer_device": "none", "offload_param_device": "none",
                                 "zero3_init_flag": True}}


def _peft_fsdp(processes, mixed_precision, offload):
    """The PEFT guide's accelerate FSDP config: FULL_SHARD, transformer-based wrap, use_orig_params false."""
    return {**_ACC_BASE, "distributed_type": "FSDP", "num_processes": processes, "mixed_precision": mixed_precision,
            "fsdp_config": {"fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_sharding_strategy": "FULL_SHARD",
                            "fsdp_offload_params": offload, "fsdp_use_orig_params": False,
                            "fsdp_backward_prefetch": "BACKWARD_PRE"}}


# ms-swift's swift/config/zero3.json (as in the swift-z3 row, with overlap_comm)
_SWIFT_Z3 = {"zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 1e9,
                                   "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                                   "stage3_param_persistence_threshold": "auto", "stage3_max_live_parameters": 1e9,
                                   "stage3_max_reuse_distance": 1e9}}


def _swift_z3_full(row_id, source, model, gpus, quote, value, config, notes):
    """ms-swift full fine-tuning under its ZeRO-3 config, b1 x 8192 packed tokens, GA 2, fa2, bf16."""
    return {"id": row_id, "source": source, "engine": "ZeRO-3", "method": "full", "gpus": gpus, "quote": quote,
            "kind": SWIFT_KIND, "value": value, "unit": "GB", "config": config, "notes": notes,
            "recipe": {"model": model, "finetuning_type": "full", "bf16": True, "flash_attn": "fa2",
                       "per_device_train_batch_size": 1, "gradient_accumulation_steps": 2, "cutoff_len": 8192,
                       "deepspeed": _SWIFT_Z3}}


LLAMA_RECIPES_PR41 = "https://github.com/meta-llama/llama-cookbook/pull/41"
LLAMA_RECIPES_120 = "https://github.com/meta-llama/llama-cookbook/issues/120"
EKS_KUBEFLOW = "https://github.com/thecloudgarage/eks-anywhere/blob/548674c5f65e4561ae17ba66caaf6f52ff12ec19/bare-metal/kubeflow.md"
# llama-recipes' MemoryTrace prints int(bytes / 2**30): "31 GB" means 31.0-31.99 GiB, compared at the middle
_TRUNCATED = "llama-recipes prints int(GiB), so the true value lies in [{v}, {v}+1) GiB: compared at {v}.5"


def _llama_recipes_fsdp(processes, mixed_precision, machines=1):
    """llama-recipes' FSDP1: FULL_SHARD, one unit per LlamaDecoderLayer, use_orig_params false, limit_all_gathers,
    activation checkpointing per decoder layer."""
    return dict(_ACC_BASE, distributed_type="FSDP", num_processes=processes, num_machines=machines,
                mixed_precision=mixed_precision,
                fsdp_config={"fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_sharding_strategy": "FULL_SHARD",
                             "fsdp_offload_params": False, "fsdp_use_orig_params": False,
                             "fsdp_activation_checkpointing": True})


# llama-recipes full fine-tuning of Llama-2 (Aug 2023 defaults): samsum concatenated into 2048-token chunks, batch 4,
# pure bf16 (weights, gradients and AdamW states bf16, no MixedPrecision), eager attention, torch AdamW (foreach),
# the loss inside LlamaForCausalLM of transformers 4.31 (fp32 logits)
_LR_70B_FULL = {"model": "meta-llama/Llama-2-70b-hf", "finetuning_type": "full", "pure_bf16": True, "bf16": True,
                "per_device_train_batch_size": 4, "cutoff_len": 2048, "flash_attn": "disabled", "optim": "adamw_torch"}

ROWS = [
    # ---- DeepSpeed ZeRO-3 ---------------------------------------------------------------------------------
    {"id": "peft-z3-lora-70b", "source": PEFT_DS, "engine": "ZeRO-3", "method": "LoRA", "gpus": 8,
         "quote": "In the above example, the memory consumed per GPU is 64 GB (80%) as seen in the screenshot below",
         "kind": "nvidia-smi", "value": 64, "unit": "GB",
         "config": "Llama-2-70B, LoRA r8 all-linear, ZeRO-3 (accelerate, no offload), 8xH100, b8 x 2048 packed, GC, fa2",
         "recipe": dict(_PEFT_70B, finetuning_type="lora", per_device_train_batch_size=8, gradient_accumulation_steps=4),
         "accelerate": _peft_z3(8),
         "notes": "screenshot of GPU memory over the run (whole-process view); 80% of 80 GB"},
    {"id": "peft-z3-qlora-70b", "source": PEFT_DS, "engine": "ZeRO-3", "method": "QLoRA", "gpus": 2,
         "quote": "In the above example, the memory consumed per GPU is **36.6 GB**.",
         "kind": "nvidia-smi", "value": 36.6, "unit": "GB",
         "config": "Llama-2-70B, QLoRA nf4 + double quant, bf16 quant storage, LoRA r8 all-linear, ZeRO-3, 2 GPUs, "
                "b2 x 2048 packed, GC (reentrant), fa2",
         "recipe": _PEFT_QLORA,
         "accelerate": _peft_z3(2),
         "notes": "how it was read is not stated; taken as the process view"},
    {"id": "swift-z3-lora-qwen7b", "source": SWIFT + "deepspeed/train_zero3.sh", "engine": "ZeRO-3", "method": "LoRA", "gpus": 2,
         "quote": "# 16GiB * 2", "kind": SWIFT_KIND, "value": 16, "unit": "GiB",
         "config": "Qwen2.5-7B-Instruct, LoRA r8 all-linear, ms-swift `--deepspeed zero3`, 2 GPUs, b1, GC (swift default), "
                "self-cognition samples (short)",
         "recipe": dict(_SWIFT_7B, finetuning_type="lora", gradient_accumulation_steps=8,
                     deepspeed={"zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                                                      "sub_group_size": 1e9, "reduce_bucket_size": "auto",
                                                      "stage3_prefetch_bucket_size": "auto",
                                                      "stage3_param_persistence_threshold": "auto",
                                                      "stage3_max_live_parameters": 1e9,
                                                      "stage3_max_reuse_distance": 1e9}}),
         "notes": "a rounded comment in the example script; samples are short identity Q&A, estimated at 256 tokens; "
               "DeepSpeed block as in swift/llm/ds_config/zero3.json"},
    {"id": "lf5977-z3off-full-llama3-8b", "offload": True, "source": "https://github.com/hiyouga/LlamaFactory/issues/5977",
         "engine": "ZeRO-3", "method": "full", "gpus": 8,
         "quote": "使用ds_z3_offload_config.json就可以跑起来，而且每张卡只占用了13G", "kind": "nvidia-smi", "value": 13, "unit": "GB",
         "config": "Llama-3-8B-Instruct, full, LLaMA-Factory ds_z3_offload_config.json (optimizer + params on CPU), "
                "8x RTX 3090, b1 x cutoff 1024, GA 2, fp16, GC (host default)",
         "recipe": {"model": "meta-llama/Meta-Llama-3-8B-Instruct", "finetuning_type": "full", "cutoff_len": 1024,
                     "per_device_train_batch_size": 1, "gradient_accumulation_steps": 2, "fp16": True,
                     "deepspeed": "ds_z3_offload"},
         "notes": "alpaca_en_demo + identity: most samples are far below cutoff_len 1024 (estimate uses 1024); "
               "'13G' read from nvidia-smi by the reporter"},
    _swift_z3_full("swift-z3-full-qwen7b-pack8k", "https://github.com/modelscope/ms-swift/blob/main/examples/train/liger/sft.sh",
                   "Qwen/Qwen2.5-7B", 4, "# Not using use_liger_kernel: 4 * 54GB, 1 hour 40 minutes", 54,
                   "Qwen2.5-7B, full, ms-swift `--deepspeed zero3`, 4x A100, b1 x 8192 packed (every step 8192 tokens), "
                   "GA 2, GC, fa2, bf16 (fp32 master and AdamW states in DeepSpeed)",
                   "rounded comment ('GB', taken as written); the same script's run with Liger's fused loss (no full "
                   "logits: 42 GB) is left out, Liger kernels are not modelled; packing makes every sequence 8192 tokens"),
    _swift_z3_full("swift-z3-full-qwen14b-pack8k",
                   "https://github.com/modelscope/ms-swift/blob/main/docs/source_en/Megatron-SWIFT/Quick-start.md",
                   "Qwen/Qwen2.5-14B", 8, "| GPU Memory Usage | 8\\*64GB      | 8\\*80GB          | 8\\*58GB          |", 58,
                   "Qwen2.5-14B, full, `swift sft --deepspeed zero3`, 8x A800 80GB, b1 x 8192 packed, GA 2, GC, fa2, "
                   "bf16, expandable_segments",
                   "the ZeRO-3 column of the benchmark table (examples/megatron/benchmark/deepspeed.sh with zero3); the "
                   "ZeRO-2 column (8*80GB) is the card's size, a run at capacity, so it is not a row"),
    # ---- DeepSpeed ZeRO-2 ---------------------------------------------------------------------------------
    {"id": "swift-z2-lora-qwen7b", "source": SWIFT + "deepspeed/train_zero2.sh", "engine": "ZeRO-2", "method": "LoRA", "gpus": 2,
         "quote": "# 18GiB * 2", "kind": SWIFT_KIND, "value": 18, "unit": "GiB",
         "config": "Qwen2.5-7B-Instruct, LoRA r8 all-linear, ms-swift `--deepspeed zero2`, 2 GPUs, b1, GC, "
                "self-cognition samples (short)",
         "recipe": dict(_SWIFT_7B, finetuning_type="lora", gradient_accumulation_steps=8,
                     deepspeed={"zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True,
                                                      "allgather_bucket_size": 2e8, "reduce_bucket_size": 2e8}}),
         "notes": "rounded comment; short samples estimated at 256; DeepSpeed block as in swift/llm/ds_config/zero2.json"},
    # ---- FSDP -----------------------------------------------------------------------------------------------
    {"id": "peft-fsdp-lora-70b", "source": PEFT_FSDP, "engine": "FSDP", "method": "LoRA", "gpus": 8,
         "quote": "In the above example, the memory consumed per GPU is  72-80 GB (90-98%)",
         "kind": "nvidia-smi", "value": 72, "unit": "GB",
         "config": "Llama-2-70B, LoRA r8 all-linear, FSDP FULL_SHARD, use_orig_params false, 8xH100, b8 x 2048 packed, "
                "GC, fa2",
         "recipe": dict(_PEFT_70B, finetuning_type="lora", per_device_train_batch_size=8, gradient_accumulation_steps=4),
         "accelerate": _peft_fsdp(8, "bf16", offload=False),
         "engine_casts_params": True,
         "notes": "72 GB during training; the rise to 80 GB is the FULL_STATE_DICT save at the end. PEFT's "
                  "examples/sft/utils.py loads the model in float32 unless a 4-bit quant storage dtype is set, so FSDP "
                  "keeps fp32 flat parameters and all-gathers bf16 copies (MixedPrecision): engine_casts_params"},
    {"id": "peft-fsdp-qlora-70b", "source": PEFT_FSDP, "engine": "FSDP", "method": "QLoRA", "gpus": 2,
         "quote": "When disabling CPU offloading, the GPU memory usage is  **35.6 GB/ GPU**.",
         "kind": "nvidia-smi", "value": 35.6, "unit": "GB",
         "config": "Llama-2-70B, QLoRA nf4 + double quant, bf16 quant storage, LoRA r8 all-linear, FSDP FULL_SHARD "
                "(no offload), 2 GPUs, b2 x 2048 packed, GC (reentrant), fa2",
         "recipe": _PEFT_QLORA,
         "accelerate": _peft_fsdp(2, "no", offload=False),
         "notes": "the guide's config with fsdp_offload_params false"},
    {"id": "peft-fsdp-qlora-70b-offload", "offload": True, "source": PEFT_FSDP, "engine": "FSDP", "method": "QLoRA", "gpus": 2,
         "quote": "In the above example, the memory consumed per GPU is **19.6 GB** while CPU RAM usage is around "
               "**107 GB**.",
         "kind": "nvidia-smi", "value": 19.6, "unit": "GB",
         "config": "as above with fsdp_offload_params true (CPU offload)",
         "recipe": _PEFT_QLORA,
         "accelerate": _peft_fsdp(2, "no", offload=True),
         "notes": ""},
    {"id": "philschmid-fsdp-qlora-llama3-70b", "offload": True, "source": "https://www.philschmid.de/fsdp-qlora-llama3",
         "engine": "FSDP", "method": "QLoRA", "gpus": 4,
         "quote": "FSDP + Q-Lora + CPU offloading needs 4x24GB GPUs, with 22 GB/GPU and 127 GB CPU RAM with a sequence "
               "length of 3072 and a batch size of 1.",
         "kind": "nvidia-smi", "value": 22, "unit": "GB",
         "config": "Llama-3-70B, QLoRA nf4 + double quant, bf16 quant storage, LoRA r16 all-linear, FSDP "
                "`full_shard auto_wrap offload`, use_orig_params false, 4x A10G, b1 x 3072 packed, GC, SDPA",
         "recipe": {"model": "meta-llama/Meta-Llama-3-70B", "finetuning_type": "lora", "quantization_bit": 4, "lora_rank": 16,
                     "lora_dropout": 0.05, "lora_target": "all", "cutoff_len": 3072, "per_device_train_batch_size": 1,
                     "gradient_accumulation_steps": 2, "bf16": True,
                     "fsdp": "full_shard auto_wrap offload",
                     "fsdp_config": {"backward_prefetch": "backward_pre", "forward_prefetch": False,
                                  "use_orig_params": False}},
         "accelerate": None,
         "notes": "a third-party gist of the notebook prints nvidia-smi at 20611MiB on an A100 40GB (its settings not "
                  "checked); 22 GB is the guide's own figure"},
    {"id": "swift-fsdp2-lora-qwen7b", "source": SWIFT + "fsdp2_lora/train.sh", "engine": "FSDP", "method": "LoRA", "gpus": 2,
         "quote": "# 14.7GiB * 2", "kind": SWIFT_KIND, "value": 14.7, "unit": "GiB",
         "config": "Qwen2.5-7B-Instruct, LoRA r8 all-linear, FSDP2 (accelerate fsdp2.json), 2 GPUs, b1, GC off, "
                "self-cognition samples (short)",
         "recipe": dict(_SWIFT_7B, finetuning_type="lora", gradient_accumulation_steps=8,
                     disable_gradient_checkpointing=True),
         "accelerate": dict(_ACC_BASE, distributed_type="FSDP", num_processes=2, mixed_precision="bf16",
                         fsdp_config={"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                      "fsdp_reshard_after_forward": True, "fsdp_offload_params": False,
                                      "fsdp_activation_checkpointing": False}),
         "engine_casts_params": False,
         "notes": "fsdp2.json itself is not in the stored copy: FSDP2 with reshard_after_forward and no offload assumed, "
               "as in its offload sibling; short samples estimated at 256. Frozen weights taken as bf16 (accelerate "
               ">= 1.13 upcasts only trainable parameters): with 1.6-1.12's whole-model fp32 upcast the fp32 shard "
               "alone (14.2 GiB) plus the gathered root would exceed the 14.7 GiB measured"},
    {"id": "swift-fsdp2-offload-lora-qwen7b", "offload": True, "source": SWIFT + "fsdp2_lora/train_offload.sh", "engine": "FSDP",
         "method": "LoRA", "gpus": 2, "quote": "# Memory: ~10GiB * 2 GPUs (with CPU offload)", "kind": SWIFT_KIND, "value": 10,
         "unit": "GiB",
         "config": "Qwen2.5-7B-Instruct, LoRA r8 all-linear, FSDP2 + CPU offload + activation checkpointing "
                "(fsdp2_offload.json), 2 GPUs, b1, self-cognition samples (short)",
         "recipe": dict(_SWIFT_7B, finetuning_type="lora", gradient_accumulation_steps=8),
         "accelerate": dict(_ACC_BASE, distributed_type="FSDP", num_processes=2, mixed_precision="bf16",
                         fsdp_config={"fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                      "fsdp_reshard_after_forward": True, "fsdp_offload_params": True,
                                      "fsdp_activation_checkpointing": True}),
         "engine_casts_params": False,
         "notes": "approximate ('~'); short samples estimated at 256; frozen weights bf16 as in its sibling above"},
    *[{"id": f"llamarecipes-fsdp-full-7b-{kind}", "source": EKS_KUBEFLOW, "engine": "FSDP", "method": "full", "gpus": 2,
           "nodes": 2, "quote": quote, "kind": kind, "value": value + 0.5, "unit": "GiB",
           "config": "Llama-2-7B, full, llama-recipes FSDP1 (FULL_SHARD, fp32 weights, bf16 MixedPrecision, "
                  "activation checkpointing), 2 nodes x 2 L40S, b3 x 4096 packed, torch AdamW",
           "recipe": {"model": "meta-llama/Llama-2-7b-hf", "finetuning_type": "full", "bf16": True, "flash_attn": "sdpa",
                      "per_device_train_batch_size": 3, "cutoff_len": 4096, "optim": "adamw_torch"},
           "accelerate": _llama_recipes_fsdp(4, "bf16", machines=2),
           "notes": _TRUNCATED.format(v=value) + "; epoch 1 of `torchrun --nproc_per_node=2 --nnodes=2 "
                 "recipes/finetuning/finetuning.py --num_epochs=3 --batch_size_training=3 --enable_fsdp` (branch "
                 "aws-do-fsdp: packing to 4096, fp32 load, MixedPrecision bf16), torch 2.5.1; the transformers "
                 "version is not given (before 4.46 the model upcasts logits: +1.5 GiB)"}
      for kind, value, quote in (
          ("allocated", 31, "Max CUDA memory allocated was 31 GB"),
          ("reserved", 42, "Max CUDA memory reserved was 42 GB"))],
    {"id": "llamarecipes-fsdp-lora-7b-reserved", "source": LLAMA_RECIPES_PR41, "engine": "FSDP", "method": "LoRA", "gpus": 4,
         "quote": "In the end, this only uses 15.22 GB peak active memory and 19.36 GB peak reserved memory.",
         "kind": "reserved", "value": 19.36, "unit": "GB",
         "config": "Llama-2-7B, LoRA r8 on q,v, llama-recipes FSDP1 (FULL_SHARD, pure bf16, activation "
                "checkpointing, limit_all_gathers), 4x A100 40GB, b4 x 2048 (samsum concatenated), eager attention",
         "recipe": {"model": "meta-llama/Llama-2-7b-hf", "finetuning_type": "lora", "lora_rank": 8, "lora_alpha": 32,
                    "lora_dropout": 0.05, "lora_target": "q_proj,v_proj", "pure_bf16": True, "bf16": True,
                    "flash_attn": "disabled", "per_device_train_batch_size": 4, "cutoff_len": 2048,
                    "optim": "adamw_torch"},
         "accelerate": _llama_recipes_fsdp(4, "no"),
         "transformers": "4.31",
         "notes": "a PyTorch FSDP developer's measurement, `torchrun --nproc_per_node 4 llama_finetuning.py "
               "--enable_fsdp --use_peft --peft_method lora --pure_bf16`; 'GB' taken as written; the same run's "
               "peak active memory (15.22) is >= allocated, so it is not compared with the allocated estimate"},
    *[{"id": f"llamarecipes-fsdp-full-70b-{kind}", "source": LLAMA_RECIPES_120, "engine": "FSDP", "method": "full",
           "gpus": 8, "nodes": 2, "quote": quote, "kind": kind, "value": value + 0.5, "unit": "GiB",
           "config": "Llama-2-70B, full, llama-recipes FSDP1 (FULL_SHARD, pure bf16, activation checkpointing), "
                  "2 nodes x 8 A100 80GB, b4 x 2048 (samsum concatenated, the defaults of the time), eager "
                  "attention, torch AdamW",
           "recipe": _LR_70B_FULL, "accelerate": _llama_recipes_fsdp(16, "no", machines=2), "transformers": "4.31",
           "comparable": "the command is not given, and the defaults assumed for it (b4 x 2048) cannot be what "
                         "ran: pure-bf16 weights, gradients and AdamW states sharded over 16 GPUs (32.6 GiB) and one "
                         "checkpoint per layer (80 x 8192 tokens x 8192 x 2 B = 10 GiB) already exceed the 42-43 "
                         "GiB allocated; the run's reserved / allocated ratio (1.50) stands, being read off one log",
           "notes": _TRUNCATED.format(v=value) + "; a maintainer's numbers, the command not restated: batch, "
                 "data and length are llama-recipes' defaults of Aug 2023"}
      for kind, value, quote in (
          ("allocated", 42, "pure_bf16: Max CUDA memory allocated was 42 GB"),
          ("reserved", 63, "Max CUDA memory reserved was 63 GB"))],
    # ---- DDP / single GPU ---------------------------------------------------------------------------------
    {"id": "swift-ddp-lora-qwen7b", "source": SWIFT + "ddp/train.sh", "engine": "DDP", "method": "LoRA", "gpus": 2,
         "quote": "# 27.5GiB * 2", "kind": SWIFT_KIND, "value": 27.5, "unit": "GiB",
         "config": "Qwen2.5-7B-Instruct, LoRA r8 all-linear, DDP, 2 GPUs, b1, GC (non-reentrant), "
                "self-cognition samples (short)",
         "recipe": dict(_SWIFT_7B, finetuning_type="lora", gradient_accumulation_steps=8),
         "notes": "short samples estimated at 256"},
    _hub("litgpt-lora-llama3-8b", "LoRA", 19.73, "| llama-3-8b/lora.yaml | llama-3-8b | 2 | 512 | 1 | 1xA10G | 14.79 min "
         "| $0.4 | 19.73 GB |", "Llama-3-8B, LoRA r32 on q,v, dropout 0.05, bf16-true (pure bf16), b1 x <=512 "
         "(Alpaca2k), no GC", "meta-llama/Meta-Llama-3-8B", 1, 8,
         "LitGPT's own model code (chunked cross-entropy, its own attention); 'Peak memory' is "
         "torch.cuda.max_memory_allocated in GB", lora_rank=32, lora_target="q_proj,v_proj"),
    _hub("litgpt-qlora-llama3-8b", "QLoRA", 17.41, "| llama-3-8b/qlora.yaml | llama-3-8b | 2 | 512 | 2 | 1xA10G | "
         "22.24 min | $0.7 | 17.41 GB |", "Llama-3-8B, QLoRA bnb.nf4 (no double quant), LoRA r32 on q,v, bf16-true, "
         "b2 x <=512, no GC", "meta-llama/Meta-Llama-3-8B", 2, 4, "LitGPT stack, as above", lora_rank=32,
         lora_target="q_proj,v_proj", quantization_bit=4, double_quantization=False),
    _hub("litgpt-lora-mistral-7b", "LoRA", 20.66, "| mistral-7b/lora.yaml | mistral-7b | 4 | 512 | 2 | 1xA10G | "
         "31.01 min | $0.9 | 20.66 GB |", "Mistral-7B-v0.1, LoRA r32 on q,v, bf16-true, b2 x <=512, no GC",
         "mistralai/Mistral-7B-v0.1", 2, 4, "LitGPT stack", lora_rank=32, lora_target="q_proj,v_proj"),
    _hub("litgpt-qlora-mistral-7b", "QLoRA", 14.29, "| mistral-7b/qlora.yaml | mistral-7b | 4 | 512 | 2 | 1xA10G | "
         "44.75 min | $1.3 | 14.29 GB |", "Mistral-7B-v0.1, QLoRA bnb.nf4, LoRA r32 on q,v, bf16-true, b2 x <=512, "
         "no GC", "mistralai/Mistral-7B-v0.1", 2, 4,
         "LitGPT stack; qlora.yaml assumed to differ from lora.yaml only by `quantize: bnb.nf4`", lora_rank=32,
         lora_target="q_proj,v_proj", quantization_bit=4, double_quantization=False),
    _hub("litgpt-full-tinyllama", "full", 14.10, "| tiny-llama/full.yaml | tiny-llama | 1 | 512 | 4 | 1xA10G | "
         "2.58 min | $0.1 | 14.10 GB |", "TinyLlama-1.1B, full, bf16-true (bf16 weights and AdamW states), "
         "b4 x <=512, no GC", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", 4, 8, "LitGPT stack",
         finetuning_type="full"),
    _hub("litgpt-lora-tinyllama", "LoRA", 13.50, "| tiny-llama/lora.yaml | tiny-llama | 3 | 512 | 8 | 1xA10G | "
         "8.09 min | $0.2 | 13.50 GB |", "TinyLlama-1.1B, LoRA r32 on all projections + lm_head, bf16-true, "
         "b8 x <=512, no GC", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", 8, 1,
         "LitGPT stack; LoRA on every projection and the head (lora.yaml)", lora_rank=32,
         lora_target="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head"),
    # ---- LitGPT resource tables: Llama 2, one GPU and FSDP --------------------------------------------------
    *[{"id": f"litgpt-rt-{tag}", "source": LITGPT_RT, "engine": "single", "method": method, "gpus": 1,
           "quote": f"| {size} | Llama 2 | {q} | {micro} | {trainable} | {value:.2f} GB |", "kind": "allocated", "value": value,
           "unit": "GB",
           "config": f"Llama-2-{size.replace(' ', '')}, LoRA r8 on q,v" + (f", {q}" if quant else "") +
                  f", bf16-true, b{micro} x 1304 (Alpaca's longest), no GC, 1x A100 40GB",
           "recipe": _litgpt_rt(model, micro, quant, dq),
           "notes": "LitGPT's own model code; 'Max GPU RAM' is torch.cuda.max_memory_allocated"}
      for tag, size, model, q, quant, dq, micro, trainable, value, method in (
          ("lora-7b-b1", "7 B", "meta-llama/Llama-2-7b-hf", "None", False, False, 1, "4,194,304", 21.30, "LoRA"),
          ("lora-7b-b2", "7 B", "meta-llama/Llama-2-7b-hf", "None", False, False, 2, "4,194,304", 29.07, "LoRA"),
          ("nf4-7b-b1", "7 B", "meta-llama/Llama-2-7b-hf", "bnb.nf4", True, False, 1, "4,194,304", 14.14, "QLoRA"),
          ("nf4dq-7b-b1", "7 B", "meta-llama/Llama-2-7b-hf", "bnb.nf4-dq", True, True, 1, "4,194,304", 13.84,
           "QLoRA"),
          ("lora-13b-b1", "13 B", "meta-llama/Llama-2-13b-hf", "None", False, False, 1, "6,553,600", 38.12, "LoRA"),
          ("nf4-13b-b1", "13 B", "meta-llama/Llama-2-13b-hf", "bnb.nf4", True, False, 1, "6,553,600", 23.14,
           "QLoRA"))],
    *[{"id": f"litgpt-rt-fsdp-{tag}", "source": LITGPT_RT, "engine": "FSDP", "method": "LoRA", "gpus": gpus,
           "quote": f"| {size} | Llama 2 | None | {micro} | {trainable} | {gpus} x A100 | {value:.2f} GB |",
           "kind": "allocated", "value": value, "unit": "GB",
           "config": f"Llama-2-{size.replace(' ', '')}, LoRA r8 on q,v, bf16-true, Fabric FSDPStrategy (FULL_SHARD, "
                  f"wrap per Block, activation checkpointing per Block, use_orig_params), {gpus}x A100 40GB, "
                  f"b{micro} x 1304",
           "recipe": dict(_litgpt_rt(model, micro, gpus=gpus)),
           "accelerate": dict(_ACC_BASE, distributed_type="FSDP", num_processes=gpus, mixed_precision="bf16",
                           fsdp_config={"fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                        "fsdp_sharding_strategy": "FULL_SHARD", "fsdp_offload_params": False,
                                        "fsdp_use_orig_params": True, "fsdp_activation_checkpointing": True}),
           "comparable": "the peak is most likely the checkpoint load, not a training step: on 2 GPUs the 7B run "
                      "peaks above its own 1-GPU run (22.18 vs 21.30 GB), grows only 1.2 GB from batch 1 to 4, and "
                      "13B on 4 GPUs (35.57 GB) is near a full bf16 13B state dict (26 GB) + its shard; lit-gpt "
                      "loaded the full checkpoint on every rank then",
           "notes": "Fabric's FSDPStrategy of lit-gpt finetune/lora.py (Oct 2023): activation checkpointing and "
                 "use_orig_params (Fabric's default on torch 2.x) as that script set them, taken from its source "
                 "of the time, not re-checked here"}
      for tag, size, model, micro, gpus, trainable, value in (
          ("7b-b1", "7 B", "meta-llama/Llama-2-7b-hf", 1, 2, "4,194,304", 22.18),
          ("7b-b4", "7 B", "meta-llama/Llama-2-7b-hf", 4, 2, "4,194,304", 23.39),
          ("13b-b1", "13 B", "meta-llama/Llama-2-13b-hf", 1, 4, "6,553,600", 35.57))],
    # ---- ms-swift single GPU -------------------------------------------------------------------------------
    {"id": "swift-lora-qwen7b", "source": "https://github.com/modelscope/ms-swift/blob/main/examples/train/demo.sh",
         "engine": "single", "method": "LoRA", "gpus": 1, "quote": "# 22GB", "kind": SWIFT_KIND, "value": 22, "unit": "GB",
         "config": "Qwen2.5-7B-Instruct, LoRA r8 all-linear, 1 GPU, b1, GC, alpaca-gpt4 zh/en + self-cognition "
                "(max_length 2048)",
         "recipe": dict(_SWIFT_7B, finetuning_type="lora", gradient_accumulation_steps=16, cutoff_len=1024),
         "notes": "rounded comment; the longest sample of the 1,500 drawn is not known: estimated at 1024 tokens"},
    {"id": "swift-qlora-qwen7b", "source": "https://github.com/modelscope/ms-swift/blob/main/examples/train/qlora/bnb.sh",
         "engine": "single", "method": "QLoRA", "gpus": 1, "quote": "# 10GB", "kind": SWIFT_KIND, "value": 10, "unit": "GB",
         "config": "Qwen2.5-7B-Instruct, QLoRA nf4 + double quant (bnb), LoRA r8 all-linear, 1 GPU, b1, GC, "
                "alpaca-gpt4 zh/en + self-cognition",
         "recipe": dict(_SWIFT_7B, finetuning_type="lora", quantization_bit=4, gradient_accumulation_steps=16,
                     cutoff_len=1024),
         "notes": "rounded comment; longest sample estimated at 1024 tokens"},
    {"id": "swift-full-qwen2-7b", "source": "https://github.com/modelscope/ms-swift/blob/main/examples/train/full/train.sh",
         "engine": "single", "method": "full", "gpus": 1, "quote": "# 76GiB", "kind": SWIFT_KIND, "value": 76, "unit": "GiB",
         "config": "Qwen2-7B-Instruct (same shapes as Qwen2.5-7B), full, bf16 weights and AdamW states (no fp32 "
                "master), 1 GPU, b1, GC, self-cognition samples (short)",
         "recipe": {"model": "Qwen/Qwen2.5-7B-Instruct", "finetuning_type": "full", "pure_bf16": True, "bf16": True,
                     "optim": "adamw_torch", "per_device_train_batch_size": 1, "gradient_accumulation_steps": 16,
                     "cutoff_len": 256},
         "notes": "ms-swift loads bf16 and the Trainer keeps AdamW states in the parameter dtype (the host's "
               "pure_bf16); optimizer taken as HF's foreach adamw_torch; short samples estimated at 256"},
]

COMPARE = {"allocated": "allocated_peak_bytes", "reserved": "reserved_peak_bytes", "nvidia-smi": "peak_bytes"}
DS_FILES = {"ds_z3_offload": "recipes/deepspeed/ds_z3_offload_config.json"}


def _recipe(row: dict) -> dict:
    r = dict(row["recipe"])
    model = r.pop("model")
    base = {"model_name_or_path": model, "stage": "sft", "do_train": True, "dataset": "alpaca_en_demo", "template": "default",
                "output_dir": "/tmp/lfx_published", "report_to": "none"}
    base.update(r)
    if isinstance(base.get("deepspeed"), str) and base["deepspeed"] in DS_FILES:
        base["deepspeed"] = str(Path(__file__).resolve().parents[1] / DS_FILES[base["deepspeed"]])
    return base


def estimate_row(row: dict, tmp: Path) -> dict:
    """The estimator's numbers for one row."""
    import yaml

    from llama_factory_ext.estimator import estimate_recipe
    from llama_factory_ext.estimator.core import estimate_spec

    recipe = _recipe(row)
    config_path = None
    model = recipe["model_name_or_path"]
    if model in CONFIGS:
        config_path = tmp / (model.replace("/", "__") + ".json")
        config_path.write_text(json.dumps(CONFIGS[model]))
    acc = None
    if row.get("accelerate"):
        acc = tmp / f"{row['id']}.yaml"
        acc.write_text(yaml.safe_dump(row["accelerate"]))
    from llama_factory_ext.estimator import terms

    installed = terms._transformers_version
    if row.get("transformers"):  # the run's transformers sets the logits term (docs/estimator.md)
        terms._transformers_version = lambda: row["transformers"]
    try:
        est = estimate_recipe(recipe, gpus=row["gpus"], nodes=row.get("nodes", 1), advice=False,
                              config_path=str(config_path) if config_path else None,
                              accelerate_config=str(acc) if acc else None)
    finally:
        terms._transformers_version = installed
    if "engine_casts_params" in row:  # what the run's own script did with parameter dtypes (see its notes)
        est = estimate_spec(est.spec.replace(engine_casts_params=row["engine_casts_params"]), advice=False)
    j = est.to_json()
    res = {k: j[k] for k in ("allocated_peak_bytes", "reserved_peak_bytes", "peak_bytes", "upper_bytes", "peak_phase")}
    res["estimator_engine"] = j["engine"]
    res["components"] = {k: int(v) for k, v in j["components"].items()}
    res["upper_margins"] = j["upper_margins"]
    return res


def evaluate(rows=ROWS) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as d:
        for row in rows:
            measured = row["value"] * (GIB if row["unit"] == "GiB" else GB)
            res = {k: row[k] for k in ("id", "source", "quote", "config", "engine", "method", "gpus", "kind", "value",
                                       "unit", "notes")}
            res["nodes"] = row.get("nodes", 1)
            res["not_comparable"] = row.get("comparable", "")
            res["offload"] = bool(row.get("offload"))
            res["stack"] = "LitGPT" if row["id"].startswith("litgpt") else "HF Trainer"
            res["measured_bytes"] = measured
            try:
                est = estimate_row(row, Path(d))
            except Exception as exc:  # noqa: BLE001 - a row the estimator refuses is reported, not hidden
                res["error"] = f"{type(exc).__name__}: {exc}"
                out.append(res)
                continue
            res.update(est)
            res["estimate_bytes"] = est[COMPARE[row["kind"]]]
            res["error_pct"] = 100.0 * (res["estimate_bytes"] - measured) / measured
            res["upper_covers"] = est["upper_bytes"] >= measured
            out.append(res)
    return out


def summary(results: list[dict]) -> dict:
    """Median |error| and upper-bound coverage per method and per engine, over the like-with-like rows."""
    ok = [r for r in results if "error_pct" in r and not r["not_comparable"]]
    groups = {}
    for name, pick in (("full", lambda r: r["method"] == "full"), ("LoRA", lambda r: r["method"] == "LoRA"),
                       ("QLoRA", lambda r: r["method"] == "QLoRA"), ("ZeRO-2", lambda r: r["engine"] == "ZeRO-2"),
                       ("ZeRO-3", lambda r: r["engine"] == "ZeRO-3"), ("FSDP", lambda r: r["engine"] == "FSDP"),
                       ("DDP / single GPU", lambda r: r["engine"] in ("DDP", "single")),
                       ("HF Trainer stacks (PEFT, TRL, ms-swift, LLaMA-Factory)", lambda r: r["stack"] == "HF Trainer"),
                       ("LitGPT", lambda r: r["stack"] == "LitGPT"),
                       ("multi-GPU without CPU offload", lambda r: r["gpus"] * r["nodes"] > 1 and not r["offload"]),
                       ("CPU offload (ZeRO-3 / FSDP)", lambda r: r["offload"]), ("all", lambda r: True)):
        sel = [r for r in ok if pick(r)]
        if sel:
            groups[name] = {"rows": len(sel), "median_abs_error_pct": statistics.median(abs(r["error_pct"]) for r in sel),
                            "median_error_pct": statistics.median(r["error_pct"] for r in sel),
                            "upper_covers": sum(r["upper_covers"] for r in sel)}
    every = [r for r in results if "error_pct" in r]
    groups["every row (not comparable included)"] = {
        "rows": len(every), "median_abs_error_pct": statistics.median(abs(r["error_pct"]) for r in every),
        "median_error_pct": statistics.median(r["error_pct"] for r in every),
        "upper_covers": sum(r["upper_covers"] for r in every)}
    return {"rows": len(results), "comparable": len(ok), "groups": groups}


def _g(b: float) -> str:
    return f"{b / GIB:.1f}"


def render_md(results: list[dict], summ: dict) -> str:
    intro = ("Generated by `benchmarks/published_memory.py` (runs on CPU, no download). Each row is a GPU run someone "
             "published with enough configuration to rebuild it as a recipe; the estimate compared is the one that "
             "matches what was measured: `allocated` (`torch.cuda.max_memory_allocated`) with `allocated_peak_bytes`, "
             "`reserved` with `reserved_peak_bytes`, `nvidia-smi` (the process as the driver shows it) with the likely "
             "peak `peak_bytes`. Error = (estimate - measured) / measured. \"upper covers\": `upper_bytes` >= measured. "
             "Values in GiB.")
    lines = ["# Memory estimator against published measurements", "", intro, "",
             "## Summary", "", "| rows | n | median abs error | median signed error | upper bound covers |",
             "|---|---|---|---|---|"]
    for name, g in summ["groups"].items():
        lines.append(f"| {name} | {g['rows']} | {g['median_abs_error_pct']:.1f}% | {g['median_error_pct']:+.1f}% | "
                     f"{g['upper_covers']} of {g['rows']} |")
    groups = ("Rows are grouped by method (full / LoRA / QLoRA), by engine (ZeRO-2 / ZeRO-3 / FSDP / DDP or single "
              "GPU), by training stack and by offload: one row counts in several groups. The groups leave out the rows "
              "marked not like with like (their peak is not a training step); the last line includes them.")
    lines += ["", groups, "",
              "## Rows", "",
              "| id | config | GPUs | measured | estimate | error | upper | covers | phase | like with like |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        meas = f"{r['kind']} {r['value']} {r['unit']} ({_g(r['measured_bytes'])})"
        if "error" in r:
            lines.append(f"| [{r['id']}]({r['source']}) | {r['config']} | {r['gpus']} | {meas} | not estimated: "
                         f"{r['error']} | | | | | |")
            continue
        gpus = f"{r['nodes']} x {r['gpus']}" if r.get("nodes", 1) > 1 else r["gpus"]
        lines.append(f"| [{r['id']}]({r['source']}) | {r['config']} | {gpus} | {meas} | {_g(r['estimate_bytes'])} "
                     f"| {r['error_pct']:+.1f}% | {_g(r['upper_bytes'])} | {'yes' if r['upper_covers'] else 'no'} "
                     f"| {r['peak_phase']} | {'no (see below)' if r['not_comparable'] else 'yes'} |")
    margined = [r for r in results if r.get("upper_margins")]
    if margined:
        lines += ["", "## Named margins in the upper bound (GiB)", "",
                  "Distributed margins the upper bound adds before slack and context (docs/estimator.md, \"The band\").",
                  ""]
        lines += [f"- **{r['id']}**: " + ", ".join(f"{k} {_g(v)}" for k, v in r["upper_margins"].items())
                  for r in margined]
    lines += ["", "## Sources and assumptions", ""]
    for r in results:
        lines.append(f"- **{r['id']}** ({r['source']}): \"{r['quote']}\"" + (f" — {r['notes']}" if r["notes"] else "")
                     + (f". **Not comparable**: {r['not_comparable']}" if r["not_comparable"] else ""))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs"))
    args = ap.parse_args(argv)
    results = evaluate()
    summ = summary(results)
    out = Path(args.out)
    from llama_factory_ext.safeio import atomic_write

    with atomic_write(out / "estimator_published.json") as f:
        f.write(json.dumps({"summary": summ, "rows": results}, indent=1) + "\n")
    with atomic_write(out / "estimator_published.md") as f:
        f.write(render_md(results, summ))
    for name, g in summ["groups"].items():
        print(f"{name:18s} n={g['rows']:2d} median |err| {g['median_abs_error_pct']:5.1f}%  "
              f"signed {g['median_error_pct']:+6.1f}%  upper covers {g['upper_covers']}/{g['rows']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
