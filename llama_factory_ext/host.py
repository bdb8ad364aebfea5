"""Every touch of LLaMA-Factory's internals lives here, behind a version gate.

A host upgrade is this file's work: check ``WRAPPED`` against the new host, widen ``SUPPORTED``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from typing import Any, Optional

from .api import HostArgs, Run, UserError

try:  # the host fixes transformers' package probe on import; trl reads it once, so load it before anything imports trl
    import llamafactory.extras.packages  # noqa: F401
except Exception:  # missing or broken host: the gate reports it
    pass

SUPPORTED = ((0, 9, 5), (0, 9, 6))  # [low, high)
SUPPORTED_TEXT = ">=0.9.5,<0.9.6"
TRAINER_MODULES = ("pt", "sft", "rm", "ppo", "dpo", "kto")

# module -> {function name: expected leading parameter names}
WRAPPED: dict[str, dict[str, tuple[str, ...]]] = {
    "llamafactory.train.tuner": {
        "run_exp": ("args", "callbacks"),
        "_training_function": ("config",),
        "get_train_args": ("args",),
        "export_model": ("args",),
        "read_args": ("args",),
    },
    "llamafactory.model.loader": {"init_adapter": ("config", "model", "model_args", "finetuning_args", "is_trainable")},
    "llamafactory.model.adapter": {"init_adapter": ("config", "model", "model_args", "finetuning_args", "is_trainable")},
    "llamafactory.train.trainer_utils": {"create_custom_optimizer": ("model", "training_args", "finetuning_args")},
    **{
        f"llamafactory.train.{m}.trainer": {"create_custom_optimizer": ("model", "training_args", "finetuning_args")}
        for m in TRAINER_MODULES
    },
}

# other host names the pack calls (must exist; signatures are checked through the tests)
USED: dict[str, tuple[str, ...]] = {
    "llamafactory.hparams.parser": ("_TRAIN_ARGS", "_parse_train_args"),
    "llamafactory.hparams.training_args": ("RayArguments",),
    "llamafactory.train.callbacks": ("LogCallback", "ReporterCallback"),
    "llamafactory.model": ("load_tokenizer",),
    "llamafactory.model.loader": ("load_config",),
    "llamafactory.model.patcher": ("patch_config",),
    "llamafactory.model.model_utils.misc": ("find_all_linear_modules",),
    "llamafactory.model.model_utils.checkpointing": ("prepare_model_for_training",),
    "llamafactory.data": ("get_dataset", "get_template_and_fix_tokenizer"),
    "llamafactory.data.parser": ("get_dataset_list",),
    "llamafactory.extras.constants": ("LAYERNORM_NAMES",),
    "llamafactory.extras.ploting": ("plot_loss",),
}

_current: Optional[Run] = None
_state: dict[str, Any] = {"active": False, "problems": []}


def current() -> Optional[Run]:
    return _current


def set_current(run: Optional[Run]) -> None:
    global _current
    _current = run


def host_version() -> Optional[str]:
    try:
        from llamafactory.extras.env import VERSION

        return VERSION
    except Exception:
        try:
            from importlib.metadata import version

            return version("llamafactory")
        except Exception:
            return None


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def check_host(version: Optional[str] = None) -> list[str]:
    """Problems that make the installed host unsafe to patch (empty list = OK)."""
    problems = []
    version = version if version is not None else host_version()
    if version is None:
        return ["LLaMA-Factory (`llamafactory`) is not installed"]
    if not (SUPPORTED[0] <= _version_tuple(version) < SUPPORTED[1]):
        problems.append(f"installed llamafactory {version} is outside the supported range {SUPPORTED_TEXT}")
    for mod_name in dict.fromkeys([*WRAPPED, *USED]):
        try:
            mod = importlib.import_module(mod_name)
        except Exception as exc:
            problems.append(f"{mod_name} cannot be imported ({type(exc).__name__}: {exc})")
            continue
        for fn, params in WRAPPED.get(mod_name, {}).items():
            obj = getattr(mod, fn, None)
            if obj is None:
                problems.append(f"{mod_name}.{fn} is missing")
                continue
            obj = getattr(obj, "__wrapped__", obj)
            try:
                names = tuple(inspect.signature(obj).parameters)[: len(params)]
            except (TypeError, ValueError):
                names = ()
            if names != params:
                problems.append(f"{mod_name}.{fn} changed: parameters {names}, expected {params}")
        problems += [f"{mod_name}.{a} is missing" for a in USED.get(mod_name, ()) if not hasattr(mod, a)]
    return problems


def gate_message(problems: list[str]) -> str:
    return (
        f"llama-factory-ext {_pack_version()} cannot run with this LLaMA-Factory "
        f"(installed: {host_version()}, supported: {SUPPORTED_TEXT}):\n"
        + "\n".join(f"  - {p}" for p in problems)
        + f"\nInstall a supported host (pip install 'llamafactory{SUPPORTED_TEXT}'), upgrade llama-factory-ext, "
        "or set LLAMA_FACTORY_EXT_DISABLE=1 to train without the pack."
    )


def _pack_version() -> str:
    from . import __version__

    return __version__


def host_arg_names() -> set[str]:
    """Every key the host's train parser accepts."""
    import dataclasses

    from llamafactory.hparams.training_args import RayArguments

    names = set()
    for cls in train_arg_classes() + [RayArguments]:
        names.update(f.name for f in dataclasses.fields(cls) if f.init)
    return names


def _under_cli() -> bool:
    prog = os.path.basename(sys.argv[0]) if sys.argv else ""
    return prog in ("llamafactory-cli", "lmf", "launcher.py") or prog.endswith("launcher.py")


def fail(err: Exception) -> None:
    """Stop with one message: SystemExit under the CLI, the exception in Python code."""
    message = err.render() if isinstance(err, UserError) else str(err)
    if _under_cli():
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(2)
    raise err


def _source() -> Optional[str]:
    if len(sys.argv) > 1 and sys.argv[1].endswith((".yaml", ".yml", ".json")):
        return sys.argv[1]
    return None


# ---------------------------------------------------------------- activation

def activate(tuner=None) -> bool:
    """Patch the host. Called by the import hook right after ``llamafactory.train.tuner`` loads."""
    if _state["active"]:
        return True
    tuner = tuner or importlib.import_module("llamafactory.train.tuner")
    problems = check_host()
    if problems:
        _state["problems"] = problems
        message = gate_message(problems)
        original = getattr(tuner, "run_exp", None)

        def refuse(*args, **kwargs):
            fail(RuntimeError(message))

        if original is not None:
            tuner.run_exp = refuse
            tuner.export_model = refuse
        return False
    _patch(tuner)
    _state["active"] = True
    return True


def is_active() -> bool:
    return _state["active"]


def _wrap(module, name, make):
    original = getattr(module, name)
    original = getattr(original, "_lfx_original", original)
    wrapper = functools.wraps(original)(make(original))
    wrapper._lfx_original = original
    setattr(module, name, wrapper)
    return wrapper


def _recipe_relative_paths(raw, args):
    """A recipe file's relative ``dataset_dir`` resolves against the recipe's folder (not the cwd)."""
    source = _source() if args is None else None
    if not source:
        return raw
    from .recipes import cli_override_keys, resolve_paths

    return resolve_paths(raw, source, keep=cli_override_keys(sys.argv[2:]))


def _split_argv(argv: list[str]) -> list[tuple[str, list[str], list[str]]]:
    """``--key v``, ``--key=v``, ``--flag``, ``--key a b`` -> [(key, values, tokens)]; a stray positional has key ''."""
    items: list[tuple[str, list[str], list[str]]] = []
    for tok in argv:
        if tok.startswith("--") and len(tok) > 2:
            key, eq, val = tok[2:].partition("=")
            items.append((key, [val] if eq else [], [tok]))
        elif items and items[-1][0]:
            items[-1][1].append(tok)
            items[-1][2].append(tok)
        else:
            items.append(("", [tok], [tok]))
    return items


def _typed(values: list[str]) -> Any:
    """Values as the host types ``key=value`` overrides (OmegaConf's YAML); a bare flag is True."""
    from omegaconf import OmegaConf

    def one(s: str) -> Any:
        try:
            return OmegaConf.to_container(OmegaConf.from_dotlist([f"v={s}"]))["v"]
        except Exception:
            return s

    if not values:
        return True
    return one(values[0]) if len(values) == 1 else [one(v) for v in values]


def argv_recipe(argv: list[str]) -> Optional[dict]:
    """``llamafactory-cli train --key value ...`` as a recipe dict when it uses a pack key; else None (host as is).

    Host keys are typed by the host's own argparse converters; pack keys like YAML scalars.
    """
    import argparse

    from transformers import HfArgumentParser

    from .api import HOST_FINETUNING_TYPES
    from .config import parse_finetuning_type
    from .plugins import stages

    items = _split_argv(argv)
    parser = HfArgumentParser(train_arg_classes())
    known = set(parser._option_string_actions)
    host_names = host_arg_names()
    # kept as strings (the host parser's choices would refuse pack names); several values -> a list
    special = {k: (v[0] if len(v) == 1 else v) for k, v, _ in items if k in ("finetuning_type", "stage")}
    other = [(k, v) for k, v, _ in items if k and k not in special and f"--{k}" not in known]
    uses_pack = (any(k not in host_names for k, _ in other)
                 or any(n not in HOST_FINETUNING_TYPES for n in parse_finetuning_type(special.get("finetuning_type")))
                 or str(special.get("stage")) in stages())
    if not uses_pack:
        return None
    host_tokens = [t for k, _, toks in items if not k or (k not in special and f"--{k}" in known) for t in toks]
    for action in parser._actions:
        action.default, action.required = argparse.SUPPRESS, False
    namespace, rest = parser.parse_known_args(host_tokens)
    if rest:
        raise UserError([f"command line: cannot read `{' '.join(rest)}` (expected --key value)"])
    recipe = {**vars(namespace), **special}
    for key, values in other:
        recipe[key] = _typed(values)
    return recipe


def _argv_as_recipe(raw):
    if isinstance(raw, list) and "-h" not in raw and "--help" not in raw:
        try:
            return argv_recipe(raw) or raw
        except UserError as err:
            fail(err)
    return raw


def _prepare_or_fail(raw):
    from .config import prepare

    try:
        run = prepare(raw, source=_source())
    except UserError as err:
        fail(err)
    set_current(run)
    return run


def _patch(tuner) -> None:
    loader = importlib.import_module("llamafactory.model.loader")
    adapter = importlib.import_module("llamafactory.model.adapter")
    read_args = tuner.read_args

    def make_run_exp(original):
        def run_exp(args=None, callbacks=None):
            raw = _argv_as_recipe(read_args(args))
            if isinstance(raw, dict) and "-h" not in raw:
                raw = _recipe_relative_paths(raw, args)
                run = _prepare_or_fail(raw)
                raw = run.host_args
            else:
                set_current(Run(source=None, raw_args={}, host_args={}))
            return original(raw, callbacks)

        return run_exp

    def make_get_train_args(original):
        def get_train_args(args=None):
            parsed = original(args)
            run = current()
            if run is not None and run.host.model_args is None:
                run.host = HostArgs(*parsed)
                from .plugins import get_plugin_manager

                try:
                    get_plugin_manager().hook.lfx_before_training(run=run)
                except UserError as err:
                    fail(err)
            return parsed

        return get_train_args

    def make_training_function(original):
        def _training_function(config):
            run = current()
            if run is None or run.stage is None:
                return original(config)
            return _run_plugin_stage(tuner, run, config)

        return _training_function

    def make_init_adapter(original):
        def init_adapter(config, model, model_args, finetuning_args, is_trainable):
            model = original(config, model, model_args, finetuning_args, is_trainable)
            return apply_model_hooks(model, is_trainable)

        return init_adapter

    def make_optimizer(original):
        def create_custom_optimizer(model, training_args, finetuning_args):
            optimizer = build_strategy_optimizer(model, training_args)
            if optimizer is not None:
                return optimizer
            return original(model, training_args, finetuning_args)

        return create_custom_optimizer

    def make_export(original):
        def export_model(args=None):
            raw = _argv_as_recipe(read_args(args))
            if isinstance(raw, dict):
                raw = _recipe_relative_paths(raw, args)
                run = _prepare_or_fail(raw)
                if run.stage is not None and hasattr(run.stage, "export"):
                    return run.stage.export(run)
                raw = run.host_args
            return original(raw)

        return export_model

    _wrap(tuner, "run_exp", make_run_exp)
    _wrap(tuner, "get_train_args", make_get_train_args)
    _wrap(tuner, "_training_function", make_training_function)
    _wrap(tuner, "export_model", make_export)
    shared = _wrap(loader, "init_adapter", make_init_adapter)
    adapter.init_adapter = shared
    opt = _wrap(importlib.import_module("llamafactory.train.trainer_utils"), "create_custom_optimizer", make_optimizer)
    for m in TRAINER_MODULES:
        setattr(importlib.import_module(f"llamafactory.train.{m}.trainer"), "create_custom_optimizer", opt)


def apply_model_hooks(model, is_trainable: bool = True):
    """Let each selected strategy change the model (after adapters are set up)."""
    run = current()
    if run is None or not is_trainable:
        return model
    for strategy, opts in run.strategies:
        model = strategy.on_model_loaded(model, opts, run) or model
    return model


def build_strategy_optimizer(model, training_args):
    """An optimizer from the first strategy that supplies parameter groups, else None."""
    run = current()
    if run is None:
        return None
    for strategy, opts in run.strategies:
        groups = strategy.param_groups(model, training_args, opts, run)
        if groups is not None:
            from transformers import Trainer

            optim_cls, optim_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
            optimizer = optim_cls(groups, **optim_kwargs)
            keep_embeddings_32bit(model, optim_cls, optim_kwargs)
            return optimizer
    return None


def keep_embeddings_32bit(model, optim_cls, optim_kwargs) -> int:
    """As ``Trainer.create_optimizer`` does for 8-bit bitsandbytes optimizers: embeddings keep 32-bit
    optimizer states. Returns how many embedding modules were registered."""
    if "bitsandbytes" not in str(optim_cls) or optim_kwargs.get("optim_bits") != 8:
        return 0
    import bitsandbytes
    import torch.nn as nn

    manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            manager.register_module_override(module, "weight", {"optim_bits": 32})
            count += 1
    return count


def host_callbacks(model_args, data_args, finetuning_args, generating_args, training_args) -> list:
    """The callbacks the host's ``_training_function`` adds, for plugin stages."""
    from transformers import EarlyStoppingCallback

    from llamafactory.train.callbacks import LogCallback, ReporterCallback

    callbacks = [LogCallback()]
    if finetuning_args.early_stopping_steps is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=finetuning_args.early_stopping_steps))
    callbacks.append(ReporterCallback(model_args, data_args, finetuning_args, generating_args))
    return callbacks


def _run_plugin_stage(tuner, run: Run, config: dict) -> None:
    import torch.distributed as dist

    args, callbacks = config.get("args"), config.get("callbacks") or []
    model_args, data_args, training_args, finetuning_args, generating_args = tuner.get_train_args(args)
    callbacks = list(callbacks) + host_callbacks(model_args, data_args, finetuning_args, generating_args, training_args)
    try:
        run.stage.run_stage(model_args, data_args, training_args, finetuning_args, generating_args, callbacks, run)
    except UserError as err:
        fail(err)
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass


# ---------------------------------------------------------------- host helpers used by stages

def load_tokenizer(model_args):
    from llamafactory.model import load_tokenizer as _load

    return _load(model_args)


def load_config(model_args):
    from llamafactory.model.loader import load_config as _load

    return _load(model_args)


def host_init_adapter(config, model, model_args, finetuning_args, is_trainable: bool):
    """The host's adapter setup (full / freeze / lora), followed by the strategies' model hooks."""
    from llamafactory.model import loader

    return loader.init_adapter(config, model, model_args, finetuning_args, is_trainable)


def find_all_linear_modules(model, freeze_vision_tower: bool = True) -> list[str]:
    from llamafactory.model.model_utils.misc import find_all_linear_modules as _find

    return _find(model, freeze_vision_tower)


def get_dataset_module(*args, **kwargs):
    from llamafactory.data import get_dataset

    return get_dataset(*args, **kwargs)


def patch_config(config, tokenizer, model_args, init_kwargs: dict, is_trainable: bool) -> None:
    """The host's config patching: compute dtype, attention, rope, quantization kwargs (into ``init_kwargs``)."""
    from llamafactory.model.patcher import patch_config as _patch

    _patch(config, tokenizer, model_args, init_kwargs, is_trainable)


def prepare_model_for_training(model, model_args) -> None:
    """The host's training preparation: layernorm upcast, gradient checkpointing."""
    from llamafactory.model.model_utils.checkpointing import prepare_model_for_training as _prep

    _prep(model, model_args)


def dataset_attrs(dataset_names, dataset_dir) -> list:
    """The host's ``dataset_info.json`` resolution: one DatasetAttr per name."""
    from llamafactory.data.parser import get_dataset_list

    return get_dataset_list(dataset_names, dataset_dir)


# ---------------------------------------------------------------- helpers for the memory estimator

def parse_train_args_only(args: dict):
    """The host's dataclasses for a train dict, without ``get_train_args``'s environment checks
    (no GPU, DeepSpeed or dataset needed): model, data, training, finetuning, generating args."""
    from llamafactory.hparams.parser import _parse_train_args

    return _parse_train_args(args)


def layernorm_names() -> set:
    from llamafactory.extras.constants import LAYERNORM_NAMES

    return set(LAYERNORM_NAMES)


def init_adapter_is_wrapped() -> bool:
    """Whether the pack's ``init_adapter`` wrapper (which runs the strategies' model hooks) is installed."""
    from llamafactory.model import loader

    return hasattr(loader.init_adapter, "_lfx_original")


def get_template(tokenizer, data_args):
    """The host's chat template for ``data_args.template`` (fixes the tokenizer's special tokens in place)."""
    from llamafactory.data import get_template_and_fix_tokenizer

    return get_template_and_fix_tokenizer(tokenizer, data_args)


def train_arg_classes() -> list:
    """The host's train-argument dataclasses (ModelArguments, DataArguments, ...)."""
    from llamafactory.hparams import parser

    return list(parser._TRAIN_ARGS)


def plot_loss(output_dir: str, keys: list[str]) -> None:
    from llamafactory.extras.ploting import plot_loss as _plot

    _plot(output_dir, keys=keys)
