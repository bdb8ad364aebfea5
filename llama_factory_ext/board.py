"""What the pack shows in LLaMA Board (the host's web UI), without gradio: which stages, methods and keys to
offer, how UI values become recipe keys, the memory-estimate panel, a finished run's results (from its stage).

The widgets and their wiring into the host's UI live in ``patches/webui.py``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from .api import HOST_FINETUNING_TYPES, UserError

COMPOSITIONS = (("rslora", "cls_head"), ("rslora", "cls_head", "layerwise_lr"))
JOIN = " + "
GPU_AUTO = "this machine"


# ---------------------------------------------------------------- stages and methods

def stage_choices() -> dict[str, str]:
    """Label -> stage name for every plugin stage (third-party ones too)."""
    from .plugins import stages

    return {st.label or f"{name} (plugin)": name
            for name, st in stages().items()}


def method_choices() -> list[str]:
    """Method values for the dropdown: each plugin strategy, then the useful compositions of installed ones."""
    from .plugins import strategies

    names = list(strategies())
    out = list(names)
    for combo in COMPOSITIONS:
        if all(n in names for n in combo):
            out.append(JOIN.join(combo))
    return out


def method_names(value: Any) -> list[str]:
    from .recipe.compose import parse_finetuning_type

    try:
        return parse_finetuning_type(value)
    except UserError:
        return []


def is_pack_method(value: Any) -> bool:
    names = method_names(value)
    return bool(names) and any(n not in HOST_FINETUNING_TYPES for n in names)


def base_method(value: Any) -> str:
    """The host method a pack method builds on (as ``config.prepare`` decides it)."""
    from .plugins import strategies

    strat = strategies()
    for n in method_names(value):
        if n in HOST_FINETUNING_TYPES:
            return n
        s = strat.get(n)
        if s is not None and s.base:
            return s.base
    return "lora"


def recipe_method(value: Any):
    """``rslora + cls_head`` -> ``[rslora, cls_head]`` (a single name stays a string)."""
    names = method_names(value)
    return names[0] if len(names) == 1 else names


# ---------------------------------------------------------------- the pack section's keys

@dataclass
class PackField:
    key: str
    kind: str  # "strategy" | "stage" | "keys" | "host"
    owner: str
    widget: str  # "text" | "choice" | "check"
    choices: list = field(default_factory=list)
    default: Any = None
    help: str = ""
    plain: bool = False  # a string key (a template): the text is kept as typed, not read as YAML

    @property
    def elem_name(self) -> str:
        return f"lfx_{self.key}"

    @property
    def label(self) -> str:
        where = {"strategy": f"with {self.owner}", "stage": f"stage {self.owner}",
                 "keys": "any run", "host": f"stage {self.owner}"}[self.kind]
        return f"{self.key} ({where})"


def _field_widget(annotation) -> tuple[str, list]:
    if annotation is bool:
        return "check", []
    if typing.get_origin(annotation) is typing.Literal:
        return "choice", [str(a) for a in typing.get_args(annotation)]
    return "text", []


def pack_fields() -> list[PackField]:
    """Every key the installed plugins own (strategies, stages, key groups), plus host keys a stage offers."""
    from .plugins import key_groups, stages, strategies

    out: list[PackField] = []

    def add(model, kind, owner):
        for key, info in (model.model_fields if model else {}).items():
            widget, choices = _field_widget(info.annotation)
            default = None if info.is_required() else info.default
            plain = info.annotation in (str, Optional[str])
            out.append(PackField(key, kind, owner, widget, choices, default, info.description or "", plain))

    for name, st in stages().items():
        for key, help_text in st.ui_host_keys().items():
            out.append(PackField(key, "host", name, "text", help=help_text))
        add(st.args_model, "stage", name)
    for name, s in strategies().items():
        add(s.args_model, "strategy", name)
    for owner, model in key_groups().items():
        add(model, "keys", owner)
    return out


def _parse_value(f: PackField, raw: Any) -> Any:
    if f.widget == "check":
        return bool(raw)
    if f.widget == "choice":
        return None if raw in (None, "") else str(raw)  # as chosen (YAML would read `off` as false)
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if f.plain:
            return text
        from .recipe.load import parse_overrides  # typed as a recipe or `key=value` is (5e-5 a float)

        try:
            return parse_overrides([f"value={text}"])["value"]
        except UserError as err:
            reason = err.problems[0].removeprefix(f"overrides value={text}: ")
            raise UserError(f"key `{f.key}`: cannot read {text!r} ({reason})") from None
    return raw


def applies(f: PackField, stage: Optional[str], names: list[str]) -> bool:
    """Whether a pack key applies to this stage and method (shown, and written to the recipe when set)."""
    if f.kind in ("stage", "host"):
        return f.owner == stage
    if f.kind == "strategy":
        return f.owner in names
    return True


def pack_values(fields: list[PackField], raw: dict[str, Any], stage: str, names: list[str]) -> dict[str, Any]:
    """The keys the user set in the pack section that apply to this stage and method (unset ones are left out)."""
    out, problems = {}, []
    for f in fields:
        if f.elem_name not in raw or not applies(f, stage, names):
            continue
        value = raw[f.elem_name]
        if value in (None, "") or (f.widget == "check" and value == f.default):
            continue
        if f.widget == "choice" and str(value) == str(f.default):
            continue
        try:
            parsed = _parse_value(f, value)
        except UserError as err:
            problems += err.problems
            continue
        if parsed is not None:
            out[f.key] = parsed
    if problems:
        raise UserError(problems)
    return out


def uses_pack(stage: str, method: Any, extra: dict) -> bool:
    from .plugins import stages

    return stage in stages() or is_pack_method(method) or bool(extra)


def finish_train_args(args: dict, extra: dict, method: Any) -> dict:
    """Host args built by the web UI (with the base method's fields) -> the recipe the run will use."""
    from .plugins import stages

    args = dict(args)
    args["finetuning_type"] = recipe_method(method)
    args.update(extra)
    stage = stages().get(args.get("stage")) if isinstance(args.get("stage"), str) else None
    return stage.ui_train_args(args) if stage is not None else args


def finish_eval_args(args: dict, method: Any, stage, run_dirs: list[str] = ()) -> dict:
    """The Evaluate tab's host args for a run of a pack stage."""
    args = stage.ui_eval_args(dict(args), list(run_dirs))
    args["finetuning_type"] = recipe_method(method)
    return args


def run_stage(method: Any, run_dirs: list[str]):
    """The pack stage a selected run belongs to: a strategy made for one stage only (cls_head), a checkpoint the
    stage recognises as its run, or a pack stage in the run's ``training_args.yaml``; else None."""
    from .plugins import stages, strategies

    pack_stages, strats = stages(), strategies()
    for n in method_names(method):
        only = getattr(strats.get(n), "stages", None)
        if only and len(only) == 1 and only[0] in pack_stages:
            return pack_stages[only[0]]
    for d in run_dirs:
        if not d:
            continue
        for st in pack_stages.values():
            if st.finished_run(d):
                return st
        try:
            with open(os.path.join(d, "training_args.yaml"), encoding="utf-8") as f:
                name = (yaml.safe_load(f) or {}).get("stage")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if isinstance(name, str) and name in pack_stages:
            return pack_stages[name]
    return None


# ---------------------------------------------------------------- memory estimate

_cache: dict[str, str] = {}
_lock = threading.Lock()
_compute = threading.Lock()  # one estimate at a time (the estimator sets the pack's current run while it builds)


def target_gpu_choices() -> list[str]:
    from .estimator.core import GPU_MEMORY

    return [GPU_AUTO, *GPU_MEMORY]


def _this_gpu() -> tuple[Optional[int], Optional[str]]:
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return int(props.total_memory), props.name
    except Exception:
        pass
    return None, None


def estimate_markdown(args: dict, gpus: int = 1, target: str = GPU_AUTO, top: int = 4) -> str:
    """The estimator's figure, verdict and top components for these args, as Markdown (cached)."""
    key = json.dumps([args, gpus, target], sort_keys=True, default=str)
    with _lock:
        if key in _cache:
            return _cache[key]
    with _compute:
        text = _estimate_markdown(args, gpus, target, top)
    with _lock:
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = text
    return text


def _estimate_markdown(args: dict, gpus: int, target: str, top: int) -> str:
    from .estimator import spec_from_recipe
    from .estimator.core import GPU_MEMORY, engine_name, estimate_spec, gpus_text
    from .estimator.terms import fmt_bytes

    title = "**Predicted peak GPU memory** (llama-factory-ext)"
    recipe = {k: v for k, v in args.items() if k not in ("memory_check",)}
    recipe["memory_check"] = "off"
    t0 = time.perf_counter()
    try:
        spec = spec_from_recipe(recipe, gpus=max(1, int(gpus or 1)))
        if target and target != GPU_AUTO:
            memory, name = GPU_MEMORY.get(target), target
        else:
            memory, name = _this_gpu()
        est = estimate_spec(spec, memory, gpu_name=name, advice=False)
    except UserError as err:
        return f"{title}: cannot estimate these settings:\n\n" + "\n".join(f"- {p}" for p in err.problems)
    except Exception as exc:
        return f"{title}: cannot estimate these settings ({type(exc).__name__}: {exc})"
    ms = 1000 * (time.perf_counter() - t0)
    s = est.spec
    head = (f"{title}: **{fmt_bytes(est.peak_bytes)}** per GPU, batch {s.batch_size} x {s.seq_len} tokens, "
            f"{gpus_text(s)}" + (f", {engine_name(s)}" if s.world > 1 or s.zero_stage is not None else ""))
    if est.verdict:
        head += f" — **{est.verdict}** on {name} ({100 * est.peak_bytes / memory:.0f}% of {fmt_bytes(memory)})"
    else:
        head += " — no GPU here: pick a target GPU in the pack section for a verdict"
    parts = sorted(est.components, key=lambda c: -c.bytes)[:top]
    lines = [head, "", "| component | per GPU |", "|---|---:|"]
    lines += [f"| {c.name} | {fmt_bytes(c.bytes)} |" for c in parts]
    lines.append(f"\n<sub>{s.base_type}{' [' + '+'.join(s.strategy_names) + ']' if s.strategy_names else ''}, "
                 f"{s.trainable_params:,} / {s.total_params:,} params trainable; estimated in {ms:.0f} ms</sub>")
    return "\n".join(lines)


# ---------------------------------------------------------------- results of a finished run

def results_markdown(output_dir: str) -> str:
    """The results a pack stage shows for a finished run in ``output_dir`` ('' if no stage claims it); for a pack run
    that was interrupted or failed, what happened and how to resume."""
    from .plugins import stages

    unfinished = unfinished_markdown(output_dir)
    if unfinished:
        return unfinished
    for st in stages().values():
        md = st.ui_results(output_dir)
        if md:
            return md
    return ""


def unfinished_markdown(output_dir: str) -> str:
    """A pack run's folder that says it was interrupted or failed, for the Board ('' otherwise)."""
    from .runfolder import latest_complete_checkpoint, run_state, unfinished_problem

    state, _ = run_state(output_dir)
    if state not in ("interrupted", "failed"):
        return ""
    lines = ["### Run not finished (llama-factory-ext)", "", unfinished_problem(output_dir) or ""]
    ckpt = latest_complete_checkpoint(output_dir)
    if ckpt:
        lines.append(f"\nStarting the same run again (same output dir) resumes from `{os.path.basename(ckpt)}`.")
    elif state == "interrupted":
        lines.append("\nNo complete checkpoint was saved: starting the same run again trains from the beginning.")
    return "\n".join(lines)
