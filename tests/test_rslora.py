"""Strategy rslora: host-arg rewriting, parse-time checks (QLoRA included), and the PEFT model the host really built."""

from __future__ import annotations

import math

import pytest

from conftest import run_cli, write_yaml
from lfx_capture import sft_args, train_capture
from llama_factory_ext.host.keys import host_arg_names
from llama_factory_ext.api import UserError
from llama_factory_ext.recipe import prepare

LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
_KEYS = []


def host_keys():
    if not _KEYS:
        _KEYS.append(host_arg_names())
    return _KEYS[0]


def test_alpha_defaults_to_twice_the_rank_and_given_values_win():
    args = prepare({"finetuning_type": "rslora", "lora_rank": 16}, host_keys=host_keys()).host_args
    assert args == {"finetuning_type": "lora", "lora_rank": 16, "use_rslora": True, "lora_target": "all",
                    "lora_alpha": 32}
    args = prepare({"finetuning_type": "rslora"}, host_keys=host_keys()).host_args
    assert (args["lora_rank"], args["lora_alpha"]) == (8, 16)
    args = prepare({"finetuning_type": ["rslora"], "lora_rank": 4, "lora_alpha": 4, "lora_target": "q_proj,v_proj"},
                   host_keys=host_keys()).host_args
    assert (args["lora_alpha"], args["lora_target"]) == (4, "q_proj,v_proj")


def test_contradicting_and_bad_values_reported_together():
    with pytest.raises(UserError) as err:
        prepare({"finetuning_type": "rslora", "use_rslora": False, "use_dora": True, "lora_rank": 0,
                 "lora_alpha": -2}, source="r.yaml", host_keys=host_keys())
    text = err.value.render()
    for key in ("`use_rslora`", "`use_dora`", "`lora_rank`", "`lora_alpha`"):
        assert key in text
    assert len(err.value.problems) == 4


def test_rslora_needs_the_lora_base():
    for other in ("freeze", "full", "oft"):
        with pytest.raises(UserError, match="need different base methods"):
            prepare({"finetuning_type": ["rslora", other]}, host_keys=host_keys())


@pytest.mark.parametrize("bits,method,ok", [(4, None, True), (8, None, True), (3, None, False), (2, "hqq", True),
                                            (4, "eetq", False)])
def test_qlora_bits_checked_at_parse_time(bits, method, ok):
    raw = {"finetuning_type": "rslora", "quantization_bit": bits}
    if method:
        raw["quantization_method"] = method
    if ok:
        args = prepare(raw, host_keys=host_keys()).host_args
        assert args["quantization_bit"] == bits and args["use_rslora"] is True
    else:
        with pytest.raises(UserError, match="`quantization_bit`"):
            prepare(raw, host_keys=host_keys())


def test_host_builds_rslora_on_every_linear_layer_but_the_output_head(tiny_llama, tmp_path):
    cb = train_capture(sft_args(tiny_llama, tmp_path / "out", finetuning_type="rslora", lora_rank=4, max_steps=1))
    kinds = {name.rsplit(".", 1)[-1] for name in cb.lora}
    assert kinds == LINEAR
    assert len(cb.lora) == 2 * len(LINEAR)  # every block of the 2-layer model
    assert not any("lm_head" in n for n in cb.lora) and not any("lm_head" in n for n in cb.trainable)
    for name, info in cb.lora.items():
        assert info["rslora"] is True and (info["r"], info["alpha"]) == (4, 8)
        assert info["scaling"] == pytest.approx(8 / math.sqrt(4)), name  # alpha/sqrt(r), not alpha/r


def test_explicit_alpha_scaling(tiny_llama, tmp_path):
    cb = train_capture(sft_args(tiny_llama, tmp_path / "out", finetuning_type=["rslora"], lora_rank=16,
                                lora_alpha=4, max_steps=1))
    assert {round(i["scaling"], 6) for i in cb.lora.values()} == {round(4 / math.sqrt(16), 6)}


def test_cli_reports_adapters(tiny_llama, workdir):
    recipe = write_yaml(workdir / "rs.yaml", {**sft_args(tiny_llama, workdir / "out", dataset_dir="data", max_steps=1),
                                              "finetuning_type": "rslora", "lora_rank": 8})
    res = run_cli(["llamafactory-cli", "train", recipe.name], cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rslora: 14 modules adapted (down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj), r=8, " \
           "lora_alpha=16, scaling alpha/sqrt(r)=5.657" in res.stdout
