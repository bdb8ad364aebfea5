"""Strategy rslora at parse time: host-arg rewriting, alpha, contradicting values, QLoRA bits."""

from __future__ import annotations

import pytest

from llama_factory_ext.api import UserError
from llama_factory_ext.recipe import prepare



def test_alpha_defaults_to_twice_the_rank_and_given_values_win(host_keys):
    args = prepare({"finetuning_type": "rslora", "lora_rank": 16}, host_keys=host_keys).host_args
    assert args == {"finetuning_type": "lora", "lora_rank": 16, "use_rslora": True, "lora_target": "all",
                    "lora_alpha": 32}
    args = prepare({"finetuning_type": "rslora"}, host_keys=host_keys).host_args
    assert (args["lora_rank"], args["lora_alpha"]) == (8, 16)
    args = prepare({"finetuning_type": ["rslora"], "lora_rank": 4, "lora_alpha": 4, "lora_target": "q_proj,v_proj"},
                   host_keys=host_keys).host_args
    assert (args["lora_alpha"], args["lora_target"]) == (4, "q_proj,v_proj")


def test_contradicting_and_bad_values_reported_together(host_keys):
    with pytest.raises(UserError) as err:
        prepare({"finetuning_type": "rslora", "use_rslora": False, "use_dora": True, "lora_rank": 0,
                 "lora_alpha": -2}, source="r.yaml", host_keys=host_keys)
    text = err.value.render()
    for key in ("`use_rslora`", "`use_dora`", "`lora_rank`", "`lora_alpha`"):
        assert key in text
    assert len(err.value.problems) == 4


def test_rslora_needs_the_lora_base(host_keys):
    for other in ("freeze", "full", "oft"):
        with pytest.raises(UserError, match="need different base methods"):
            prepare({"finetuning_type": ["rslora", other]}, host_keys=host_keys)


@pytest.mark.parametrize("bits,method,ok", [(4, None, True), (8, None, True), (3, None, False), (2, "hqq", True),
                                            (4, "eetq", False)])
def test_qlora_bits_checked_at_parse_time(host_keys, bits, method, ok):
    raw = {"finetuning_type": "rslora", "quantization_bit": bits}
    if method:
        raw["quantization_method"] = method
    if ok:
        args = prepare(raw, host_keys=host_keys).host_args
        assert args["quantization_bit"] == bits and args["use_rslora"] is True
    else:
        with pytest.raises(UserError, match="`quantization_bit`"):
            prepare(raw, host_keys=host_keys)
