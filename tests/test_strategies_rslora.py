"""Strategy rslora: the PEFT model the host really built (host-arg rewriting and parse-time checks, QLoRA included:
tests/unit/test_strategies_rslora.py)."""

from __future__ import annotations

import math

import pytest

from conftest import run_cli, write_yaml
from lfx_capture import sft_args, train_capture

LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


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
