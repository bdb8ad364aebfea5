"""Trainer, collator and metrics of the cls stage."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
from transformers import Trainer

from ...runtime import build_strategy_optimizer
from ...safeio import atomic_path, write_json
from .args import METRICS

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids", "labels")
LABEL_MAP = "label_map.json"
HEAD_FILE = "cls_head.safetensors"


class ClsCollator:
    """Dynamic padding to the longest sequence of the batch."""

    def __init__(self, tokenizer, pad_to_multiple_of: Optional[int] = None, problem_type: str = "single_label"):
        self.tokenizer = tokenizer
        self.pad_to_multiple_of = pad_to_multiple_of
        self.problem_type = problem_type

    def __call__(self, features):
        feats = [{k: f[k] for k in MODEL_KEYS if k in f and k != "labels"} for f in features]
        batch = self.tokenizer.pad(feats, padding="longest", pad_to_multiple_of=self.pad_to_multiple_of, return_tensors="pt")
        if "labels" in features[0]:
            if self.problem_type == "single_label":
                batch["labels"] = torch.tensor([int(f["labels"]) for f in features], dtype=torch.long)
            else:  # multi-hot rows (multi_label) or standardised scores (regression)
                batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        return batch


def model_training(model) -> bool:
    return bool(getattr(model, "training", False))


def compute_metrics(eval_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    pred = np.asarray(logits).argmax(-1)
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, pred, average="weighted", zero_division=0)),
        "pred_classes": int(len(np.unique(pred))),  # the training guard watches for collapse to one class
        "gold_classes": int(len(np.unique(labels))),
    }




class TypeMetrics:
    """``compute_metrics`` of the multi_label and regression types. ``thresholds`` and ``temperature`` (multi_label)
    start at 0.5 and 1 and are set once tuned on the eval split; ``mean`` / ``std`` (regression) turn the model's
    standardised outputs back into scores."""

    def __init__(self, problem_type: str, labels: list[str], mean: float = 0.0, std: float = 1.0):
        self.problem_type = problem_type
        self.labels = list(labels)
        self.thresholds = np.full(len(labels), 0.5)
        self.temperature = 1.0
        self.mean, self.std = mean, std

    def __call__(self, eval_pred) -> dict:
        from .metrics import multilabel_metrics, regression_metrics

        logits, gold = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        logits = np.asarray(logits, dtype=np.float64)
        if self.problem_type == "regression":
            m = regression_metrics(self.scores(np.asarray(gold, dtype=np.float64)), self.scores(logits[:, 0]))
            return {k: m[k] for k in METRICS["regression"]}
        probs = sigmoid(logits / self.temperature)
        m = multilabel_metrics(np.asarray(gold) > 0.5, probs, self.thresholds, self.labels)
        return {k: m[k] for k in METRICS["multi_label"]}

    def scores(self, standardised: np.ndarray) -> np.ndarray:
        return standardised * self.std + self.mean


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def pos_weights_for(setting, labels: list[str], multi_hot: np.ndarray) -> Optional[list[float]]:
    """multi_label ``class_weights``: per-label positive weights; ``balanced``: negatives / positives in train."""
    if setting is None or setting is False:
        return None
    if setting == "balanced":
        pos = multi_hot.sum(0).astype(float)
        return ((len(multi_hot) - pos) / np.maximum(pos, 1.0)).tolist()
    if isinstance(setting, dict):
        return [float(setting.get(lab, 1.0)) for lab in labels]
    return [float(w) for w in setting]


def class_weights_for(setting, labels: list[str], train_label_ids: list[int]) -> Optional[list[float]]:
    """``balanced`` (n / (k * count)), a list in label order, a {label: weight} dict, or None."""
    if setting is None or setting is False:
        return None
    k = len(labels)
    if setting == "balanced":
        counts = np.bincount(np.asarray(train_label_ids, dtype=int), minlength=k).astype(float)
        counts[counts == 0] = 1.0
        return (len(train_label_ids) / (k * counts)).tolist()
    if isinstance(setting, dict):
        return [float(setting.get(lab, 1.0)) for lab in labels]
    return [float(w) for w in setting]


class BucketedRandomSampler(torch.utils.data.Sampler):
    """Random order, but each batch holds texts of similar length (less padding, labels stay mixed).

    Shuffle, cut into windows of ``buckets`` batches, sort each window by length, split it into
    batches, shuffle the batches; the one short batch (if any) goes last.
    """

    def __init__(self, lengths, batch_size: int, buckets: int, seed: int = 0):
        self.lengths = list(lengths)
        self.batch_size = max(1, batch_size)
        self.buckets = max(1, buckets)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g).tolist()
        window = self.batch_size * self.buckets
        full, short = [], []
        for i in range(0, len(perm), window):
            part = sorted(perm[i : i + window], key=lambda j: self.lengths[j])
            for k in range(0, len(part), self.batch_size):
                (full if len(part[k : k + self.batch_size]) == self.batch_size else short).append(part[k : k + self.batch_size])
        order = torch.randperm(len(full), generator=g).tolist()
        return [full[i] for i in order] + short

    def __iter__(self):
        batches = self.batches()
        self.epoch += 1  # a new order next epoch even when nobody calls set_epoch
        for b in batches:
            yield from b


def type_loss(logits, labels, problem_type: str, pos_weight=None, regression_loss: str = "mse"):
    """multi_label: BCE with logits (per-label positive weights); regression: MSE or Huber (delta 1) on the
    standardised scores."""
    import torch.nn.functional as F

    logits = logits.float()
    if problem_type == "multi_label":
        weight = pos_weight.to(logits.device, torch.float32) if pos_weight is not None else None
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.device, torch.float32), pos_weight=weight)
    pred = logits.squeeze(-1)
    target = labels.to(logits.device, torch.float32)
    return F.huber_loss(pred, target, delta=1.0) if regression_loss == "huber" else F.mse_loss(pred, target)


class ClsTrainer(Trainer):
    """HF Trainer with strategy optimizers, class weights, in-order eval and full-shape head saving."""

    def __init__(self, *args, class_weights=None, head_names=(), labels=(), length_buckets: int = 0,
                 problem_type: str = "single_label", regression_loss: str = "mse", **kwargs):
        super().__init__(*args, **kwargs)
        self.problem_type = problem_type
        self.regression_loss = regression_loss
        self.length_buckets = length_buckets
        self.class_weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.head_names = list(head_names)
        self.labels = list(labels)

    def create_optimizer(self, *args, **kwargs):
        if self.optimizer is None:
            optimizer = build_strategy_optimizer(self.model, self.args)
            if optimizer is not None:
                self.optimizer = optimizer
                return self.optimizer
        return super().create_optimizer(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.problem_type != "single_label":
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = type_loss(outputs.logits, labels, self.problem_type, self.class_weights, self.regression_loss)
            self._watch(loss)
            return (loss, outputs) if return_outputs else loss
        if self.class_weights is None:
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self._watch(out[0] if isinstance(out, tuple) else out)
            return out
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits
        weight = self.class_weights.to(logits.device, torch.float32)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight)
        self._watch(loss)
        return (loss, outputs) if return_outputs else loss

    def _watch(self, loss) -> None:
        """Remember a non-finite training loss without a device sync (the training guard reads it at log time;
        the Trainer's logging filters NaN losses out of the logs)."""
        if not model_training(self.model) or not isinstance(loss, torch.Tensor):
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._nonfinite = bad if getattr(self, "_nonfinite", None) is None else (self._nonfinite | bad)

    def nonfinite(self) -> bool:
        flag = getattr(self, "_nonfinite", None)
        return bool(flag.item()) if flag is not None else False

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        explicit = self.args.train_sampling_strategy not in (None, "random")
        if self.length_buckets <= 0 or explicit or ds is None or "length" not in getattr(ds, "column_names", ()):
            return super()._get_train_sampler(train_dataset)
        return BucketedRandomSampler(ds["length"], self.args.per_device_train_batch_size, self.length_buckets,
                                     seed=self.args.seed)

    def _get_eval_sampler(self, eval_dataset):
        from torch.utils.data import SequentialSampler

        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return SequentialSampler(eval_dataset)

    def _save(self, output_dir: Optional[str] = None, state_dict=None):
        super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            save_cls_extras(self.model, output_dir, self.head_names, self.labels)

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        # under ZeRO-3 only rank 0 writes in _save; the head gather is collective, so do it on every rank
        if self.is_deepspeed_enabled and not self.args.should_save:
            from .model import gather_head_state

            gather_head_state(self.model, self.head_names)


def save_cls_extras(model, output_dir: str, head_names: list[str], labels: list[str]) -> None:
    """Write the label map and the full-shape head; repair [0]-shaped head tensors in the adapter file."""
    from safetensors.torch import save_file

    from .model import gather_head_state

    os.makedirs(output_dir, exist_ok=True)
    write_json(os.path.join(output_dir, LABEL_MAP), {"labels": labels, "label2id": {lab: i for i, lab in enumerate(labels)}})
    state = gather_head_state(model, head_names)
    if not state:
        return
    with atomic_path(os.path.join(output_dir, HEAD_FILE)) as tmp:
        save_file(state, tmp)
    adapter_file = os.path.join(output_dir, "adapter_model.safetensors")
    if os.path.exists(adapter_file):
        repair_adapter_head(adapter_file, state)


def repair_adapter_head(adapter_file: str, head_state: dict) -> bool:
    """Replace empty ([0]-shaped) head tensors in a PEFT adapter file with the gathered ones (#7665)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(adapter_file)
    changed = False
    for key, value in tensors.items():
        if value.numel() > 0:
            continue
        for name, full in head_state.items():
            head, _, leaf = name.partition(".")
            if key.endswith(f"{head}.{leaf}") or key.endswith(f"{head}.modules_to_save.{leaf}"):
                tensors[key] = full.to(value.dtype)
                changed = True
    if changed:
        with atomic_path(adapter_file) as tmp:
            save_file(tensors, tmp, metadata={"format": "pt"})
    return changed
