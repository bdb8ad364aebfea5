"""estimator.terms: model states against DeepSpeed's formulas, what each saving changes, the QLoRA band."""

from __future__ import annotations

import pytest

from estimator_recipe import LLAMA3_8B, recipe


def test_deepspeed_model_states_match_deepspeed_formulas():
    """Full fine-tuning model states follow DeepSpeed's estimate_zero2/zero3 formulas (the wheel tier calls them)."""
    from llama_factory_ext.estimator import spec_from_recipe
    from llama_factory_ext.estimator.terms import static_parts

    P = 8_030_261_248
    for stage, gpus, expected in ((1, 8, 4 * P + 16 * P / 8), (2, 8, 2 * P + 18 * P / 8), (3, 8, 18 * P / 8)):
        ds = {"zero_optimization": {"stage": stage}, "bf16": {"enabled": True}}
        spec = spec_from_recipe(recipe(LLAMA3_8B, finetuning_type="full", bf16=True, deepspeed=ds), gpus=gpus)
        st = static_parts(spec)
        states = st["weights"] + st["master"] + st["grads"] + st["states"]
        if stage == 3:
            states -= 4 * spec.params.largest_module_params
        assert states == pytest.approx(expected, rel=1e-9)
    off = spec_from_recipe(recipe(LLAMA3_8B, finetuning_type="full", bf16=True, deepspeed={
        "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu"}}}),
        gpus=8)
    st = static_parts(off)
    assert st["master"] == st["states"] == 0


def test_memory_shrinks_with_each_saving():
    """Checkpointing, QLoRA, shorter cutoff and ZeRO-3 each lower the estimate; batch raises it."""
    from llama_factory_ext.estimator import estimate_recipe

    def peak(**kw):
        return estimate_recipe(recipe(LLAMA3_8B, bf16=True, **kw), advice=False).peak_bytes

    base = peak(cutoff_len=2048, disable_gradient_checkpointing=True)
    assert peak(cutoff_len=2048) < base
    assert peak(cutoff_len=2048, disable_gradient_checkpointing=True, quantization_bit=4) < base
    assert peak(cutoff_len=1024, disable_gradient_checkpointing=True) < base
    assert peak(cutoff_len=2048, disable_gradient_checkpointing=True, per_device_train_batch_size=4) > base
    assert peak(cutoff_len=2048, disable_gradient_checkpointing=True, flash_attn="disabled") > base
    full = estimate_recipe(recipe(LLAMA3_8B, finetuning_type="full", bf16=True), advice=False)
    z3 = estimate_recipe(recipe(LLAMA3_8B, finetuning_type="full", bf16=True,
                                deepspeed={"zero_optimization": {"stage": 3}}), gpus=8, advice=False)
    assert z3.peak_bytes < full.peak_bytes / 3


def test_qlora_band_covers_the_kbit_prepared_step():
    """QLoRA's upper bound is at least the step with PEFT-style fp32 non-quantized params; LoRA's band is narrow."""
    from llama_factory_ext.estimator import estimate_recipe

    q = estimate_recipe(recipe(LLAMA3_8B, quantization_bit=4, bf16=True, cutoff_len=1024, per_device_train_batch_size=4),
                        advice=False)
    from llama_factory_ext.estimator.terms import compute

    kbit = compute(q.spec.replace(kbit_fp32=True))
    assert q.upper_bytes >= kbit.peak_bytes > q.peak_bytes
    assert 1.10 < q.upper_bytes / q.peak_bytes < 1.40
    lo = estimate_recipe(recipe(LLAMA3_8B, bf16=True, cutoff_len=1024, per_device_train_batch_size=4), advice=False)
    assert 1.0 < lo.upper_bytes / lo.peak_bytes < 1.12
