"""Optimizer parameter groups with layer-wise learning-rate decay and per-module overrides.

Works on any model (PEFT-wrapped or not, meta device, DeepSpeed ZeRO-3 partitioned): torch is
imported lazily so the CLI can import this module cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

NO_DECAY_NAME = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)", re.IGNORECASE)
EMBEDDING_NAME = re.compile(r"(?:^|\.)(?:[a-z_]*embed[a-z_]*|wte|wpe)(?:\.|$)", re.IGNORECASE)


@dataclass
class Group:
    name: str
    pattern: str
    lr: float
    weight_decay: float
    names: list = field(default_factory=list)
    params: list = field(default_factory=list)

    @property
    def numel(self) -> int:
        return sum(param_numel(p) for p in self.params)


def param_numel(p) -> int:
    """Element count; under DeepSpeed ZeRO-3 the local tensor is empty and ``ds_numel`` holds it."""
    n = getattr(p, "ds_numel", None)
    return int(n) if n is not None else int(p.numel())


def _arg(args: Any, key: str, default):
    if isinstance(args, dict):
        value = args.get(key, default)
    else:
        value = getattr(args, key, default)
    return default if value is None else float(value)


def _opts(opts) -> tuple[float, dict]:
    if opts is None:
        return 1.0, {}
    if isinstance(opts, dict):
        return float(opts.get("layerwise_lr_decay", 1.0)), dict(opts.get("layerwise_lr_overrides") or {})
    return float(opts.layerwise_lr_decay), dict(opts.layerwise_lr_overrides or {})


def find_blocks(model) -> tuple[Optional[str], int]:
    """(qualified name, length) of the transformer block list: the ModuleList of identical
    modules holding the most parameters."""
    import torch.nn as nn

    best, best_size = (None, 0), -1
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        size = sum(param_numel(p) for p in module.parameters())
        if size > best_size:
            best, best_size = (name, len(module)), size
    return best


def _no_decay(name: str, owner) -> bool:
    import torch.nn as nn

    if name.rsplit(".", 1)[-1] == "bias" or NO_DECAY_NAME.search(name):
        return True
    return isinstance(owner, nn.LayerNorm) or "norm" in type(owner).__name__.lower()


def build_groups(model, training_args, opts) -> list[Group]:
    """Assign every trainable parameter to a group (first matching override, else its block,
    else embeddings, else the top: final norm / heads at the base lr); split by weight decay."""
    import torch.nn as nn

    base_lr = _arg(training_args, "learning_rate", 5e-5)
    wd = _arg(training_args, "weight_decay", 0.0)
    decay, overrides = _opts(opts)
    compiled = [(p, _compile(p), float(lr)) for p, lr in overrides.items()]
    blocks_name, num_blocks = find_blocks(model)
    block_re = re.compile(re.escape(blocks_name) + r"\.(\d+)\.") if blocks_name else None
    modules = dict(model.named_modules())

    groups: dict[tuple, Group] = {}
    order: list[tuple] = []

    def add(key, name, pattern, lr, param, no_decay):
        full_key = key + (no_decay,)
        if full_key not in groups:
            groups[full_key] = Group(name, pattern, lr, 0.0 if no_decay else wd)
            order.append(full_key)
        groups[full_key].names.append(pname)
        groups[full_key].params.append(param)

    for pname, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if "flat_param" in pname:
            from ...api import UserError

            raise UserError("strategy 'layerwise_lr' needs per-parameter names, but FSDP flattened them "
                            f"({pname}); set `fsdp_config: {{use_orig_params: true}}`")
        owner = modules.get(pname.rsplit(".", 1)[0]) if "." in pname else model
        no_decay = wd != 0.0 and _no_decay(pname, owner)
        hit = next(((i, p, lr) for i, (p, rx, lr) in enumerate(compiled) if _search(rx, pname)), None)
        m = block_re.search(pname) if block_re else None
        if hit is not None:
            i, p, lr = hit
            add(("override", i), f"override[{i}]", p, lr, param, no_decay)
        elif m is not None:
            i = int(m.group(1))
            add(("block", i), f"layer.{i}", f"{blocks_name}.{i}.", base_lr * decay ** (num_blocks - 1 - i), param, no_decay)
        elif EMBEDDING_NAME.search(pname) or isinstance(owner, nn.Embedding):
            add(("embeddings",), "embeddings", "embeddings", base_lr * decay ** num_blocks, param, no_decay)
        else:
            add(("top",), "top", "(final norm, heads, rest)", base_lr, param, no_decay)

    # the top group (base lr) first: the trainer logs the first group's lr
    rank = {"top": 0, "block": 1, "embeddings": 2, "override": 3}
    order.sort(key=lambda k: (rank[k[0]], -k[1] if k[0] == "block" else (k[1] if len(k) > 2 else 0), k[-1]))
    return [groups[k] for k in order]


def unmatched_overrides(model, opts) -> list[str]:
    """Override patterns that match no trainable parameter."""
    _, overrides = _opts(opts)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    compiled = {p: _compile(p) for p in overrides}
    return [p for p in overrides if not any(_search(compiled[p], n) for n in names)]


def _compile(pattern: str):
    """A recipe's override pattern, checked for catastrophic backtracking (see saferegex)."""
    from ...api import UserError
    from ...saferegex import PatternError, compile_pattern

    try:
        return compile_pattern(pattern)
    except PatternError as exc:
        raise UserError(f"key `layerwise_lr_overrides`: {exc}") from None


def _search(compiled, name: str):
    from ...api import UserError
    from ...saferegex import PatternError, search

    try:
        return search(compiled, name)
    except PatternError as exc:
        raise UserError(f"key `layerwise_lr_overrides`: {exc}") from None


def param_groups(model, training_args, opts) -> list[dict]:
    """Optimizer parameter groups (``params``, ``lr``, ``weight_decay``, ``lfx_group``)."""
    return [
        {"params": g.params, "lr": g.lr, "weight_decay": g.weight_decay, "lfx_group": g.name}
        for g in build_groups(model, training_args, opts)
    ]


def layerwise_table(model, training_args_like, opts) -> list[dict]:
    """Rows (group, pattern, params, lr, weight_decay) for the groups this model would get.

    ``training_args_like``: TrainingArguments, or any object/dict with ``learning_rate`` and
    ``weight_decay``. Works on a meta-device model.
    """
    return table_rows(build_groups(model, training_args_like, opts))


def table_rows(groups: list[Group]) -> list[dict]:
    return [{"group": g.name, "pattern": g.pattern, "params": g.numel, "lr": g.lr, "weight_decay": g.weight_decay}
            for g in groups]


def format_table(rows: list[dict]) -> str:
    """Plain-text table of :func:`layerwise_table` rows."""
    head = ("group", "pattern", "params", "lr", "weight_decay")
    body = [(r["group"], r["pattern"], f"{r['params']:,}", f"{r['lr']:.3g}", f"{r['weight_decay']:g}") for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(head), line(["-" * w for w in widths])] + [line(b) for b in body]
    total = sum(r["params"] for r in rows)
    out.append(f"{len(rows)} groups, {total:,} trainable parameters")
    return "\n".join(out)
