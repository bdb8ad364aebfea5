"""estimator.distributed: DeepSpeed buckets with `auto` resolved, FSDP from an accelerate config, several nodes."""

from __future__ import annotations

import pytest
from estimator_recipe import LLAMA3_8B, recipe

P = 8_030_261_248  # Llama-3-8B


def _est(tmp_path=None, accelerate=None, **kw):
    from llama_factory_ext.estimator import estimate_recipe

    path = None
    if accelerate is not None:
        import yaml

        path = tmp_path / "accelerate.yaml"
        path.write_text(yaml.safe_dump(accelerate))
    gpus = kw.pop("gpus", None)
    nodes = kw.pop("nodes", None)
    return estimate_recipe(recipe(LLAMA3_8B, bf16=True, **kw), gpus=gpus, nodes=nodes, advice=False,
                           accelerate_config=str(path) if path else None)


def _fsdp(sharding="FULL_SHARD", processes=8, machines=1, **extra):
    block = {"fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_sharding_strategy": sharding,
             "fsdp_offload_params": False, "fsdp_use_orig_params": True}
    block.update(extra)
    return {"distributed_type": "FSDP", "fsdp_config": block, "mixed_precision": "bf16",
            "num_processes": processes, "num_machines": machines}


def test_auto_bucket_sizes_resolve_as_transformers_does():
    from llama_factory_ext.estimator.distributed import zero_setup

    z = zero_setup({"zero_optimization": {"stage": 3, "reduce_bucket_size": "auto",
                                          "stage3_prefetch_bucket_size": "auto",
                                          "stage3_param_persistence_threshold": "auto"}}, hidden=4096)
    assert (z.reduce_bucket, z.prefetch_bucket, z.persistence_threshold) == (4096**2, int(0.9 * 4096**2), 40960)
    assert z.overlap_comm is True and z.max_live == 1e9 and len(z.resolved) == 3
    z2 = zero_setup({"zero_optimization": {"stage": 2}}, hidden=4096)
    assert (z2.reduce_bucket, z2.allgather_bucket, z2.overlap_comm) == (5e8, 5e8, False)


def test_bad_bucket_value_names_the_key():
    from llama_factory_ext.api import UserError
    from llama_factory_ext.estimator.distributed import zero_setup

    with pytest.raises(UserError, match="zero_optimization.reduce_bucket_size"):
        zero_setup({"zero_optimization": {"stage": 2, "reduce_bucket_size": "lots"}}, hidden=64)


def test_zero2_buckets_are_counted_and_follow_the_config():
    big = _est(gpus=8, finetuning_type="full", deepspeed={"zero_optimization": {"stage": 2, "reduce_bucket_size": 5e8,
                                                                               "allgather_bucket_size": 5e8}})
    small = _est(gpus=8, finetuning_type="full", deepspeed={"zero_optimization": {"stage": 2, "reduce_bucket_size": 1e8,
                                                                                 "allgather_bucket_size": 1e8}})
    overlap = _est(gpus=8, finetuning_type="full", deepspeed={"zero_optimization": {
        "stage": 2, "reduce_bucket_size": 5e8, "allgather_bucket_size": 5e8, "overlap_comm": True}})
    comm = [{c.name: c.bytes for c in e.components}["communication buffers"] for e in (big, small)]
    assert comm == [pytest.approx(1e9), pytest.approx(2e8)]
    assert big.breakdown.phases["backward"] - small.breakdown.phases["backward"] == pytest.approx(8e8)
    assert overlap.breakdown.phases["backward"] - big.breakdown.phases["backward"] == pytest.approx(1e9)
    assert big.breakdown.phases["optimizer step"] - small.breakdown.phases["optimizer step"] == pytest.approx(8e8)


def test_fsdp_full_shard_model_states_and_ordering(tmp_path):
    from llama_factory_ext.estimator.distributed import layer_params
    from llama_factory_ext.estimator.terms import static_parts

    full = _est(tmp_path, _fsdp(), finetuning_type="full")
    assert full.spec.gpus == 8 and full.spec.fsdp.sharding == "FULL_SHARD"
    st = static_parts(full.spec)
    # the host upcasts trainable params to fp32 outside ZeRO-3: fp32 params + grads + AdamW's two states, sharded
    states = st["weights"] + st["master"] + st["states"]
    assert st["master"] + st["states"] == pytest.approx(12 * P / 8, rel=1e-3)
    gathered_grads = 2 * layer_params(full.spec.dims) * 2  # the current and the prefetched layer, bf16
    assert states + st["grads"] == pytest.approx(16 * P / 8 + gathered_grads, rel=1e-3)
    names = [c.name for c in full.components]
    assert "gathered parameters" in names and full.breakdown.phase in ("backward", "optimizer step")
    grad_op = _est(tmp_path, _fsdp("SHARD_GRAD_OP"), finetuning_type="full")
    no_shard = _est(tmp_path, _fsdp("NO_SHARD"), finetuning_type="full")
    offload = _est(tmp_path, _fsdp(fsdp_offload_params=True), finetuning_type="full")
    assert offload.peak_bytes < full.peak_bytes < grad_op.peak_bytes < no_shard.peak_bytes
    assert "FSDP FULL_SHARD" in full.render()


def test_nodes_shard_further_and_hybrid_shards_within_a_node(tmp_path):
    one = _est(tmp_path, _fsdp(processes=8), finetuning_type="full")
    two = _est(tmp_path, _fsdp(processes=16, machines=2), finetuning_type="full")
    hybrid = _est(tmp_path, _fsdp("HYBRID_SHARD", processes=16, machines=2), finetuning_type="full")
    assert (two.spec.gpus, two.spec.nodes, two.spec.world) == (8, 2, 16)
    assert two.peak_bytes < one.peak_bytes
    assert hybrid.breakdown.allocated_bytes == pytest.approx(one.breakdown.allocated_bytes, rel=1e-6)
    z3_1 = _est(gpus=8, finetuning_type="full", deepspeed={"zero_optimization": {"stage": 3}})
    z3_2 = _est(gpus=8, nodes=2, finetuning_type="full", deepspeed={"zero_optimization": {"stage": 3}})
    assert z3_2.peak_bytes < z3_1.peak_bytes and "2 nodes x 8 GPUs" in z3_2.render()


def test_fsdp2_and_the_trainers_own_fsdp_key(tmp_path):
    v2 = _est(tmp_path, {"distributed_type": "FSDP", "num_processes": 4,
                         "fsdp_config": {"fsdp_version": 2, "fsdp_reshard_after_forward": True}}, finetuning_type="full")
    assert (v2.spec.fsdp.version, v2.spec.fsdp.sharding, v2.spec.gpus) == (2, "FULL_SHARD", 4)
    keyed = _est(gpus=4, finetuning_type="full", fsdp="full_shard auto_wrap")
    assert keyed.spec.fsdp is not None and keyed.spec.fsdp.sharding == "FULL_SHARD"
    assert keyed.breakdown.allocated_bytes == pytest.approx(v2.breakdown.allocated_bytes, rel=1e-6)


def test_bad_accelerate_config_is_one_message(tmp_path):
    from llama_factory_ext.api import UserError

    with pytest.raises(UserError, match="fsdp_sharding_strategy"):
        _est(tmp_path, _fsdp("QUARTER_SHARD"), finetuning_type="full")
    with pytest.raises(UserError, match="num_processes"):
        _est(tmp_path, dict(_fsdp(), num_processes="eight"), finetuning_type="full")


def test_three_numbers_in_order():
    for kw in ({}, {"finetuning_type": "full"}, {"quantization_bit": 4}):
        b = _est(**kw).breakdown
        assert b.allocated_bytes < b.reserved_bytes < b.peak_bytes < b.upper_bytes


def test_advice_names_zero2_fsdp_and_zero3_with_files_that_exist():
    from pathlib import Path

    from llama_factory_ext.estimator import estimate_recipe

    est = estimate_recipe(recipe(LLAMA3_8B, bf16=True, finetuning_type="full", cutoff_len=1024), gpu="H100")
    names = [o.name for o in est.advice]
    assert any("FSDP" in n for n in names) and any("ZeRO-3" in n for n in names), names
    fsdp = next(o for o in est.advice if "FSDP" in o.name)
    assert fsdp.fits and "accelerate launch --config_file" in fsdp.changes_text()
    assert Path(fsdp.changes["accelerate_config"]).is_file()
    for o in est.advice:
        if "deepspeed" in o.changes:
            assert Path(o.changes["deepspeed"]).is_file()


def test_qlora_names_the_hosts_path_and_upcast_lmhead_output_costs_fp32_logits():
    q = _est(quantization_bit=4)
    assert any("QLoRA as the host runs it" in n for n in q.spec.notes)
    up = _est(quantization_bit=4, upcast_lmhead_output=True)
    note = next(n for n in up.spec.notes if "QLoRA as the host runs it" in n)
    assert "fp32 logits" in note
    assert up.breakdown.phases["end of forward"] > q.breakdown.phases["end of forward"]


def _z3(**zero):
    return _est(gpus=8, finetuning_type="full", deepspeed={"zero_optimization": {"stage": 3, **zero}})


def test_zero3_keeps_the_reuse_distance_gathered_and_prefetch_under_max_live():
    from llama_factory_ext.estimator.terms import zero3_param_bytes, zero3_working_set

    near, far = _z3(stage3_max_reuse_distance=0), _z3(stage3_max_reuse_distance=4e9)
    largest = near.spec.params.largest_module_params
    ws_near, ws_far = (zero3_working_set(e.spec, e.spec.zero) for e in (near, far))
    # reuse distance 0: only the module being computed (the largest, or the recomputed layer under GC)
    assert ws_near["retained"] >= largest and ws_far["retained"] == pytest.approx(2e9)
    gathered = {c.name: c.bytes for c in far.components}["gathered parameters"]
    assert gathered == pytest.approx(zero3_param_bytes(far.spec) * (2e9 - largest))
    assert far.breakdown.allocated_bytes > near.breakdown.allocated_bytes
    capped = zero3_working_set(far.spec, _z3(stage3_max_reuse_distance=4e9, stage3_max_live_parameters=1e9).spec.zero)
    assert capped["prefetch"] == 0  # the retained set already fills max live: no prefetch
    assert zero3_working_set(near.spec, near.spec.zero)["prefetch"] == near.spec.zero.prefetch_bucket


def test_zero3_upper_bound_names_the_live_parameter_margin():
    est = _z3(stage3_max_live_parameters=3e9, stage3_max_reuse_distance=0)
    margins = est.breakdown.upper_margins
    assert set(margins) == {"ZeRO-3 live parameters"} and margins["ZeRO-3 live parameters"] > 4e9
    assert any(r.startswith("ZeRO-3 live parameters") for r in est.breakdown.upper_reasons)
    assert est.to_json()["upper_margins"] == {"ZeRO-3 live parameters": int(margins["ZeRO-3 live parameters"])}
    small = _z3(stage3_max_live_parameters=1e8, stage3_max_reuse_distance=0)
    assert small.upper_bytes < est.upper_bytes
    off = _z3(offload_param={"device": "cpu"}, offload_optimizer={"device": "cpu"}, stage3_max_reuse_distance=4e9)
    assert "parameter-offload residual" in off.breakdown.upper_margins
    assert {c.name: c.bytes for c in off.components}["gathered parameters"] > 0  # offloaded params still gather


def test_fsdp_stored_fp32_doubles_frozen_shards_and_fsdp2_names_its_all_gather_pool(tmp_path):
    from llama_factory_ext.estimator.core import estimate_spec
    from llama_factory_ext.estimator.distributed import accelerate_upcasts_frozen

    assert [accelerate_upcasts_frozen(v) for v in ("1.5.0", "1.6.0", "1.12.1", "1.13.0", "bad")] == [
        False, True, True, False, False]
    lora = _est(tmp_path, _fsdp(), lora_rank=8)
    cast = estimate_spec(lora.spec.replace(engine_casts_params=True), advice=False)
    w = [{c.name: c.bytes for c in e.components}["weights"] for e in (lora, cast)]
    assert w[1] == pytest.approx(2 * w[0])
    assert "stored fp32" in cast.render()
    assert lora.breakdown.upper_margins == {}  # FSDP1 all-gathers straight into the unsharded flat parameter
    v2 = _est(tmp_path, _fsdp(fsdp_version=2), lora_rank=8)
    assert set(v2.breakdown.upper_margins) == {"FSDP all-gather stream pool"}
    off = _est(tmp_path, _fsdp(fsdp_version=2, fsdp_offload_params=True), lora_rank=8)
    assert set(off.breakdown.upper_margins) == {"FSDP all-gather stream pool", "parameter-offload residual"}


def test_sharded_engines_run_the_residual_stream_in_16_bit(tmp_path):
    """Full fine-tuning keeps an fp32 residual stream on one GPU (the host upcasts the embedding); under DeepSpeed and
    FSDP the layers see 16-bit parameters, so each checkpointed layer input is 2 bytes per element, not 4."""
    from llama_factory_ext.estimator.terms import activation_parts, residual_bytes

    one = _est(finetuning_type="full", cutoff_len=1024)
    z3 = _est(gpus=8, finetuning_type="full", cutoff_len=1024, deepspeed={"zero_optimization": {"stage": 3}})
    fsdp = _est(tmp_path, _fsdp(), finetuning_type="full", cutoff_len=1024)
    assert [residual_bytes(e.spec) for e in (one, z3, fsdp)] == [4, 2, 2]
    tokens, h, layers = one.spec.batch_size * 1024, 4096, 32
    a_one, a_z3 = activation_parts(one.spec), activation_parts(z3.spec)
    assert a_one["fwd"] - a_z3["fwd"] == pytest.approx(2 * h * tokens * layers)  # the checkpoints
    assert activation_parts(fsdp.spec)["fwd"] == pytest.approx(a_z3["fwd"])


def test_fsdp1_bound_takes_its_logged_fragmentation_fsdp2_does_not(tmp_path):
    """FSDP1's upper bound allows 50% allocator slack (llama-recipes logs: reserved 1.26-1.50 x allocated); the
    likely value keeps the method's slack; FSDP2 and one GPU keep the method's bound."""
    from llama_factory_ext.estimator.terms import (
        CUDA_CONTEXT_BYTES,
        CUDA_CONTEXT_HI,
        reserved_slack,
    )

    one = _est(finetuning_type="full")
    f1 = _est(tmp_path, _fsdp(), finetuning_type="full")
    f2 = _est(tmp_path, _fsdp(fsdp_version=2, fsdp_reshard_after_forward=True), finetuning_type="full")
    assert reserved_slack(one.spec) == reserved_slack(f2.spec) == (0.05, 0.12)
    assert reserved_slack(f1.spec) == (0.05, 0.50)
    b = f1.breakdown
    assert b.peak_bytes == pytest.approx(b.allocated_bytes * 1.05 + CUDA_CONTEXT_BYTES)
    assert b.upper_bytes >= b.allocated_bytes * 1.50 + CUDA_CONTEXT_HI
    assert any("FSDP1" in r and "1.26-1.50" in r for r in b.upper_reasons)
