"""The layer-wise cls recipe (RSLoRA all-linear + trained head + layer-wise LR) on the real host. Which combinations
compose and which are refused at parse time: tests/unit/test_recipe_compose.py."""

from __future__ import annotations

import math

import pytest

from conftest import RECIPES, run_cli
from lfx_capture import tiny_llama4, train_capture  # noqa: F401  (fixture)


# ------------------------------------------------------- the layer-wise cls recipe on the real host

def cls_args(model_dir, out_dir, **overrides) -> dict:
    args = {
        "model_name_or_path": str(model_dir), "stage": "cls", "do_train": True, "dataset": "debian_sample_train",
        "dataset_dir": str(RECIPES / "data"), "cutoff_len": 64, "max_samples": 32, "output_dir": str(out_dir),
        "logging_steps": 1, "save_strategy": "no", "overwrite_output_dir": True, "report_to": "none",
        "per_device_train_batch_size": 4, "learning_rate": 1.0e-3, "max_steps": 3, "lr_scheduler_type": "cosine",
        "warmup_steps": 1, "seed": 0, "use_cpu": True, "weight_decay": 0.01,
    }
    args.update(overrides)
    return args


def test_seed_recipe_rslora_trained_head_layerwise_lr(tiny_llama4, tmp_path):
    cb = train_capture(cls_args(tiny_llama4, tmp_path / "out", finetuning_type=["rslora", "cls_head", "layerwise_lr"],
                                lora_rank=4, layerwise_lr_decay=0.5, layerwise_lr_overrides={r"\.score\.": 5e-3}))
    head = "base_model.model.score.modules_to_save.default.weight"
    # rslora on every linear layer of every block, never on the head; scaling alpha/sqrt(r)
    assert {n.rsplit(".", 1)[-1] for n in cb.lora} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                       "down_proj"}
    assert len(cb.lora) == 4 * 7 and not any("score" in n for n in cb.lora)
    assert all(i["rslora"] and i["scaling"] == pytest.approx(8 / math.sqrt(4)) for i in cb.lora.values())
    # the head is trained fully (modules_to_save copy) at its own lr; LoRA A/B decay per block
    lr_of = {n: (g["lr"], g["weight_decay"]) for g in cb.groups for n in g["params"]}
    assert sorted(lr_of) == cb.trainable
    assert head in lr_of and lr_of[head] == (5e-3, 0.01)
    assert not any("original_module" in n for n in lr_of)
    for i in range(4):
        assert lr_of[f"base_model.model.model.layers.{i}.mlp.up_proj.lora_B.default.weight"][0] == pytest.approx(
            1e-3 * 0.5 ** (3 - i))
    # cosine with 1 warmup step: every group keeps its ratio to the base group
    start = [g["lr"] for g in cb.groups]
    assert len(cb.lrs) == 3
    assert cb.lrs[-1][0] == 0.0  # cosine ends at 0
    for lrs in cb.lrs[:-1]:
        assert [x / lrs[0] for x in lrs] == pytest.approx([s / start[0] for s in start])


def test_cls_freeze_top_layers_with_head_and_layerwise_lr(tiny_llama4, tmp_path):
    cb = train_capture(cls_args(tiny_llama4, tmp_path / "out", finetuning_type=["freeze", "layerwise_lr"],
                                freeze_trainable_layers=2, layerwise_lr_decay=0.5, max_steps=1))
    lr_of = {n: g["lr"] for g in cb.groups for n in g["params"]}
    assert sorted(lr_of) == cb.trainable
    assert lr_of["score.weight"] == 1e-3  # the head: base lr (no override)
    assert lr_of["model.layers.3.mlp.up_proj.weight"] == 1e-3 and lr_of["model.layers.2.mlp.up_proj.weight"] == 5e-4
    assert not any(".layers.0." in n or ".layers.1." in n for n in lr_of)


def test_seed_recipe_cli(tiny_llama, workdir):
    recipe = workdir / "tiny_cls_layerwise.yaml"
    assert recipe.exists()
    res = run_cli(["llamafactory-cli", "train", recipe.name, f"model_name_or_path={tiny_llama}",
                   f"output_dir={workdir / 'out'}", "max_steps=2", "do_eval=false", "do_predict=false"], cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "rslora: 14 modules adapted" in out
    table = out.split("layerwise_lr parameter groups:")[1].splitlines()[1:]
    rows = [line.split() for line in table[2:] if line.split() and line.split()[0].startswith(("layer.", "override"))]
    by_pattern = {r[1]: r for r in rows}
    assert by_pattern["score"][3] == "0.005"  # the head at its own lr (recipe: "score": 5.0e-3)
    assert by_pattern["base_model.model.model.layers.1."][3] == "0.002"
    assert by_pattern["base_model.model.model.layers.0."][3] == "0.0016"
    assert (workdir / "out" / "trainer_log.jsonl").exists()
