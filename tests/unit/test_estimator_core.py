"""estimator.core: verdict and advice, each option re-estimated."""

from __future__ import annotations

from estimator_recipe import LLAMA3_8B, recipe


def test_verdict_and_advice_reestimated():
    from llama_factory_ext.estimator import estimate_recipe

    est = estimate_recipe(recipe(LLAMA3_8B, finetuning_type="full", bf16=True, cutoff_len=2048,
                                 per_device_train_batch_size=8), gpu="H100")
    assert est.verdict == "does not fit"
    names = [o.name for o in est.advice]
    assert any("LoRA" in n for n in names) and any("ZeRO-3" in n for n in names)
    for o in est.advice:
        assert o.peak_bytes < est.peak_bytes
    lora = estimate_recipe(recipe(LLAMA3_8B, bf16=True, cutoff_len=1024), gpu="H100")
    assert lora.verdict == "fits" and lora.max_batch >= 2 and lora.advice == []
