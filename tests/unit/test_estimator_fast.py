"""estimator.fast: the formula path's parameter counts from a built-in config (no torch, no host)."""

from __future__ import annotations

import pytest

from estimator_recipe import LLAMA3_8B, recipe


@pytest.mark.parametrize(
    "kw,trainable",
    [
        ({"finetuning_type": "full"}, 8_030_261_248),
        ({"finetuning_type": "lora", "lora_rank": 8}, 20_971_520),
        ({"finetuning_type": "lora", "lora_rank": 16, "lora_target": "q_proj,v_proj"}, 6_815_744),
    ],
)
def test_llama3_8b_builtin_config_counts(kw, trainable):
    from llama_factory_ext.estimator import spec_from_recipe

    spec = spec_from_recipe(recipe(LLAMA3_8B, **kw))
    base_total = 8_030_261_248
    assert spec.trainable_params == trainable
    assert spec.total_params == (base_total if kw["finetuning_type"] == "full" else base_total + trainable)
    assert "built-in" in spec.config_source
