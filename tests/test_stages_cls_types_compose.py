"""Multi-label and score regression under the strategy compositions and launchers single-label runs use: the real
host trains in-process (rslora + trained head + layer-wise LR, freeze, full, QLoRA 4-bit), and a multi-label run
under torchrun with two processes through the real `llamafactory-cli`."""

from __future__ import annotations

import json
import math

import pytest

from conftest import RECIPES, run_cli
from lfx_capture import Capture, tiny_llama4, train_capture  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
torch = pytest.importorskip("torch")

TYPES = {  # problem type -> (bundled dataset, labels the head has, the loss the model config names)
    "multi_label": ("debian_tags_sample_train", 8, "multi_label_classification"),
    "regression": ("debian_size_sample_train", 1, "regression"),
}
COMPOSITIONS = {
    "rslora_head_layerwise": {"finetuning_type": ["rslora", "cls_head", "layerwise_lr"], "lora_rank": 4,
                              "layerwise_lr_decay": 0.5},
    "freeze_layerwise": {"finetuning_type": ["freeze", "layerwise_lr"], "freeze_trainable_layers": 2,
                         "layerwise_lr_decay": 0.5},
    "full": {"finetuning_type": "full"},
    "qlora_head": {"finetuning_type": "cls_head", "quantization_bit": 4, "lora_rank": 4},
}


class LossCapture(Capture):
    """Also records the model's problem type, its head's output size and every logged training loss."""

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        super().on_train_begin(args, state, control, model=model, optimizer=optimizer, **kwargs)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.problem_type, self.num_labels = base.config.problem_type, base.config.num_labels
        head = [p for n, p in model.named_parameters() if "score" in n and n.endswith("weight")
                and "original_module" not in n]
        self.head_rows = {tuple(p.shape)[0] for p in head}
        self.quantized = any(type(m).__name__ == "Linear4bit" for m in model.modules())
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def _args(model_dir, out_dir, dataset: str, problem_type: str, **overrides) -> dict:
    args = {
        "model_name_or_path": str(model_dir), "stage": "cls", "do_train": True, "dataset": dataset,
        "cls_problem_type": problem_type, "dataset_dir": str(RECIPES / "data"), "cutoff_len": 64, "max_samples": 32,
        "output_dir": str(out_dir), "logging_steps": 1, "save_strategy": "no", "overwrite_output_dir": True,
        "report_to": "none", "per_device_train_batch_size": 4, "learning_rate": 1.0e-3, "max_steps": 3,
        "lr_scheduler_type": "constant", "seed": 0, "use_cpu": True,
    }
    args.update(overrides)
    return args


@pytest.mark.parametrize("composition", sorted(COMPOSITIONS))
@pytest.mark.parametrize("problem_type", sorted(TYPES))
def test_types_train_under_every_composition(tiny_llama4, tmp_path, problem_type, composition):
    if composition == "qlora_head":
        pytest.importorskip("bitsandbytes")
    dataset, num_labels, config_type = TYPES[problem_type]
    cb = LossCapture()
    import llamafactory.train.tuner as tuner

    torch.set_num_threads(1)
    tuner.run_exp(_args(tiny_llama4, tmp_path / "out", dataset, problem_type, **COMPOSITIONS[composition]),
                  callbacks=[cb])
    assert cb.problem_type == config_type and cb.num_labels == num_labels
    assert cb.head_rows == {num_labels}  # the trained head (a modules_to_save copy under LoRA) has one row per label
    assert any("score" in n for n in cb.trainable)
    assert cb.quantized == ("quantization_bit" in COMPOSITIONS[composition])
    assert len(cb.losses) == 3 and all(math.isfinite(x) and x > 0 for x in cb.losses)
    if "layerwise_lr" in COMPOSITIONS[composition]["finetuning_type"]:
        assert len({g["lr"] for g in cb.groups}) > 1  # layer-wise groups exist, not a silent single lr
    manifest = json.loads((tmp_path / "out" / "cls_run.json").read_text())
    assert manifest["problem_type"] == problem_type


def test_multilabel_under_torchrun_two_processes(tiny_llama, workdir):
    """Two ranks train one multi-label run with the layer-wise composition; rank 0 alone writes the reports."""
    proc = run_cli(["llamafactory-cli", "train", "tiny_cls_multilabel.yaml", f"model_name_or_path={tiny_llama}",
                    "finetuning_type=[rslora,cls_head,layerwise_lr]", "layerwise_lr_decay=0.5", "max_steps=2",
                    "eval_steps=1", "save_steps=1", "per_device_train_batch_size=4"],
                   cwd=workdir, FORCE_TORCHRUN="1", NPROC_PER_NODE="2", MASTER_PORT="29517", OMP_NUM_THREADS="1")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    assert "world size: 2" in log
    out = workdir / "runs" / "tiny_cls_multilabel"
    manifest = json.loads((out / "cls_run.json").read_text())
    assert manifest["problem_type"] == "multi_label" and len(manifest["thresholds"]) == 8
    test_rows = (workdir / "data" / "debian_tags_sample_test.jsonl").read_text().splitlines()
    preds = (out / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == len([r for r in test_rows if r.strip()])  # every test row once, not once per rank
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2


def test_score_run_over_two_nodes(tiny_llama, tmp_path):
    """Two "machines" (one process each, own copy of the recipes, as on two hosts) train one regression run with the
    host's NNODES / NODE_RANK variables; node 0 alone writes the run's results."""
    import shutil
    import subprocess

    from conftest import BIN, env

    nodes = []
    for rank in (0, 1):
        work = tmp_path / f"node{rank}"
        shutil.copytree(RECIPES, work)
        nodes.append((work, subprocess.Popen(
            [str(BIN / "llamafactory-cli"), "train", "tiny_cls_score.yaml", f"model_name_or_path={tiny_llama}",
             "max_steps=2", "eval_steps=1", "save_steps=1"], cwd=work, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env(FORCE_TORCHRUN="1", NNODES="2", NODE_RANK=str(rank), NPROC_PER_NODE="1",
                                              MASTER_ADDR="127.0.0.1", MASTER_PORT="29519", OMP_NUM_THREADS="1"))))
    logs = [proc.communicate(timeout=600)[0] for _, proc in nodes]
    assert [proc.returncode for _, proc in nodes] == [0, 0], "\n----\n".join(log[-4000:] for log in logs)
    assert "world size: 2" in logs[0] and "Process rank: 1" in logs[1]
    first, second = (work / "runs" / "tiny_cls_score" for work, _ in nodes)
    manifest = json.loads((first / "cls_run.json").read_text())
    assert manifest["problem_type"] == "regression" and manifest["score_std"] > 0
    assert (first / "predictions.jsonl").is_file() and (first / "regression_report.json").is_file()
    assert not (second / "cls_run.json").exists() and not (second / "predictions.jsonl").exists()
