"""``layerwise_lr``: layer-wise learning-rate decay plus per-module lr overrides, on whatever is trainable."""

from __future__ import annotations

import json
import os

from ...api import Strategy, UserError
from ...hookspecs import hookimpl
from ...runtime import is_main_process, report
from .args import LayerwiseLrArgs
from .groups import build_groups, find_blocks, format_table, layerwise_table, table_rows, unmatched_overrides

__all__ = ["LayerwiseLrStrategy", "layerwise_table", "format_table", "find_blocks", "build_groups"]

# host keys that select another optimizer builder -> the host value that leaves it off
EXCLUSIVE_HOST_KEYS = {
    "loraplus_lr_ratio": None,
    "use_galore": False,
    "use_apollo": False,
    "use_badam": False,
    "use_adam_mini": False,
    "use_muon": False,
}
# HF `optim` values that build their own parameter groups or per-parameter optimizers
EXCLUSIVE_OPTIM_PREFIXES = ("galore_", "apollo_", "lomo", "adalomo")


def _deepspeed_optimizer_section(value, base_dir: str) -> tuple[bool, str]:
    """(has an ``optimizer`` section, problem reading it)."""
    if isinstance(value, dict):
        return "optimizer" in value, ""
    if not isinstance(value, str):
        return False, ""
    path = value if os.path.isabs(value) else os.path.join(base_dir, value)
    if not os.path.isfile(path):
        return False, ""  # the host reports a missing file
    try:
        with open(path, encoding="utf-8") as f:
            return "optimizer" in json.load(f), ""
    except (OSError, ValueError) as exc:
        return False, f"key `deepspeed`: cannot read {value} as JSON ({exc})"


class LayerwiseLrStrategy(Strategy):
    name = "layerwise_lr"
    formula_safe = True
    help = ("Layer-wise lr decay (block i of L gets lr x decay^(L-1-i), embeddings the lowest) and regex -> lr "
            "overrides; no weight decay on biases and norms. Composes with lora/freeze/full, rslora, cls_head.")
    base = None
    compatible_bases = None
    args_model = LayerwiseLrArgs

    def validate(self, opts, host_args, run):
        problems = []
        for key, off in EXCLUSIVE_HOST_KEYS.items():
            value = host_args.get(key, off)
            if value is not None and value is not False and value != off:
                problems.append(
                    f"key `{key}`: strategy 'layerwise_lr' and `{key}` each build the optimizer's parameter groups "
                    f"and cannot be combined; remove `{key}` or drop layerwise_lr from `finetuning_type`"
                )
        optim = str(host_args.get("optim", "adamw_torch"))
        if optim.startswith(EXCLUSIVE_OPTIM_PREFIXES):
            problems.append(
                f"key `optim`: '{optim}' builds its own parameter groups and cannot be combined with strategy "
                "'layerwise_lr'; use adamw_torch, adamw_8bit, paged_adamw_8bit, sgd, adafactor..."
            )
        if "deepspeed" in host_args and host_args["deepspeed"]:
            has_optimizer, problem = _deepspeed_optimizer_section(host_args["deepspeed"], os.getcwd())
            if problem:
                problems.append(problem)
            elif has_optimizer:
                problems.append(
                    "key `deepspeed`: the DeepSpeed config has an `optimizer` section, so DeepSpeed would build the "
                    "optimizer and ignore strategy 'layerwise_lr'; remove that section (the trainer's optimizer is used)"
                )
        return problems

    def param_groups(self, model, training_args, opts, run):
        groups = build_groups(model, training_args, opts)
        if is_main_process():
            text = "layerwise_lr parameter groups:\n" + format_table(table_rows(groups))
            if opts.layerwise_lr_decay != 1.0 and find_blocks(model)[0] is None:
                text += "\nwarning: no transformer block list (ModuleList) found; layerwise_lr_decay is not applied"
            for pattern in unmatched_overrides(model, opts):
                text += f"\nwarning: layerwise_lr_overrides pattern {pattern!r} matches no trainable parameter"
            report(text)
        return [{"params": g.params, "lr": g.lr, "weight_decay": g.weight_decay, "lfx_group": g.name} for g in groups]

    def notes(self, run):
        """The layer-wise LR groups the run would get, computed on a meta-device model (no weights)."""
        from ...estimator.build import build_meta_model, cls_num_labels, load_model_config, parse_host_args

        try:
            model_args, data_args, training_args, finetuning_args, _ = parse_host_args(run, run.source)
            config, _ = load_model_config(model_args.model_name_or_path)
            is_cls = run.stage is not None and run.stage.name == "cls"
            if is_cls:
                config.num_labels = cls_num_labels(run, data_args, training_args)[0]
            model = build_meta_model(config, model_args, finetuning_args, run, is_cls, [])
            rows = layerwise_table(model, training_args, run.opts(self.name))
        except Exception as exc:  # e.g. no config for the model: say why the table is missing
            msg = exc.render() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            return [f"layer-wise LR table: not available ({msg})"]
        return ["layer-wise learning rates (meta-device model, no weights loaded):"] + format_table(rows).splitlines()


@hookimpl
def lfx_register_strategies(register):
    register(LayerwiseLrStrategy())
