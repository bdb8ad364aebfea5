"""Sequence lengths of the recipe's training data, tokenized by the host's own pipeline (``--seq-from-data``)."""

from __future__ import annotations

import copy

from ..api import UserError


def train_lengths(spec) -> dict:
    """Token counts of the training samples after the host's template and ``cutoff_len`` truncation.

    Returns ``{"n", "max", "p50", "p95"}``. Needs the tokenizer next to the model (a local folder).
    """
    from ..host import calls as host
    from .build import with_host_args

    spec = with_host_args(spec)
    if spec.is_cls or spec.stage not in ("pt", "sft", "rm", "ppo", "kto", "dpo"):
        raise UserError(f"--seq-from-data: stage '{spec.stage}' prepares its own data; use cutoff_len")
    model_args = copy.deepcopy(spec.model_args)
    data_args = copy.deepcopy(spec.data_args)
    training_args = copy.deepcopy(spec.training_args)
    try:
        tok = host.load_tokenizer(model_args)
    except Exception as exc:
        raise UserError(f"--seq-from-data: no tokenizer at `model_name_or_path` ({exc})") from exc
    template = host.get_template(tok["tokenizer"], data_args)
    stage = "rm" if spec.stage == "dpo" else spec.stage
    module = host.get_dataset_module(template, model_args, data_args, training_args, stage, **tok)
    train = module.get("train_dataset")
    if train is None:
        raise UserError("--seq-from-data: the recipe has no training dataset")
    key = "chosen_input_ids" if "chosen_input_ids" in train.column_names else "input_ids"
    lengths = sorted(len(x) for x in train[key])
    if not lengths:
        raise UserError("--seq-from-data: the training dataset is empty")
    n = len(lengths)
    return {"n": n, "max": lengths[-1], "p50": lengths[n // 2], "p95": lengths[min(n - 1, int(0.95 * n))]}
