"""Run the host's real training in-process and record what its trainer built (test helper)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainerCallback

from conftest import RECIPES


class Capture(TrainerCallback):
    """Records the real optimizer's groups at train begin (``lr``: the scheduler's ``initial_lr``) and every
    group's lr after each optimizer step."""

    def __init__(self):
        self.groups, self.lrs, self.optimizer_class, self.lora = None, [], None, {}

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        names = {id(p): n for n, p in model.named_parameters()}
        inner = getattr(optimizer, "optimizer", optimizer)
        self.optimizer_class = f"{type(inner).__module__}.{type(inner).__name__}"
        self.groups = [
            {"lr": g.get("initial_lr", g["lr"]), "weight_decay": g["weight_decay"], "name": g.get("lfx_group"),
             "params": [names[id(p)] for p in g["params"]]}
            for g in optimizer.param_groups
        ]
        for name, module in model.named_modules():
            if isinstance(getattr(module, "scaling", None), dict) and hasattr(module, "lora_A"):
                self.lora[name] = {"scaling": module.scaling["default"], "r": module.r["default"],
                                   "alpha": module.lora_alpha["default"], "rslora": module.use_rslora["default"]}
        self.trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append([g["lr"] for g in optimizer.param_groups])


def sft_args(model_dir: Path, out_dir: Path, **overrides) -> dict:
    args = {
        "model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "dataset": "alpaca_sample", "dataset_dir": str(RECIPES / "data"), "template": "llama3", "cutoff_len": 64,
        "max_samples": 16, "overwrite_cache": True, "preprocessing_num_workers": 1, "output_dir": str(out_dir),
        "logging_steps": 1, "save_strategy": "no", "overwrite_output_dir": True, "report_to": "none",
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1.0e-3,
        "max_steps": 3, "lr_scheduler_type": "constant", "seed": 0, "use_cpu": True,
    }
    args.update(overrides)
    return args


def train_capture(args: dict) -> Capture:
    import torch
    from llamafactory.train.tuner import run_exp

    torch.set_num_threads(1)
    cb = Capture()
    run_exp(dict(args), callbacks=[cb])
    return cb


@pytest.fixture(scope="session")
def tiny_llama4(tmp_path_factory) -> Path:
    """A 4-layer tiny Llama (layer-wise tests need more than two blocks)."""
    from llama_factory_ext.tiny import build_tiny_llama, read_texts

    out = tmp_path_factory.mktemp("tiny_llama4")
    return build_tiny_llama(out, texts=read_texts(RECIPES / "data" / "debian_sample_train.jsonl"), num_layers=4)
