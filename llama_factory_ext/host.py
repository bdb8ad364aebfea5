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

MIN_VERSION = (0, 9, 5)
TESTED_VERSIONS = ("0.9.5", "0.9.6.dev0")  # the PyPI release and the development head (source installs)
SUPPORTED_TEXT = f">={'.'.join(map(str, MIN_VERSION))} (tested: {', '.join(TESTED_VERSIONS)})"
HOST_STAGES = ("pt", "sft", "rm", "ppo", "dpo", "kto")
# host switches that route training to another backend (env vars and recipe keys); pack hooks do not run there
BACKEND_ENV = ("USE_MCA", "USE_MEGATRON_BRIDGE")
BACKEND_KEYS = ("use_mca", "use_megatron_bridge", "use_hyper_parallel", "use_kt")
FA2_BROKEN_TRANSFORMERS = ("5.6.0",)  # upstream LLaMA-Factory issue #10610
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
    """Problems that make the installed host unsafe to patch (empty list = OK).

    Capabilities, not version numbers: every wrapped function with its leading parameters, every other
    name the pack calls. An untested version that passes is a warning (:func:`host_warnings`)."""
    problems = []
    version = version if version is not None else host_version()
    if version is None:
        return ["LLaMA-Factory (`llamafactory`) is not installed"]
    if _version_tuple(version) < MIN_VERSION:
        problems.append(f"installed llamafactory {version} is older than {'.'.join(map(str, MIN_VERSION))}")
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
            problem = signature_problem(f"{mod_name}.{fn}", obj, params)
            if problem:
                problems.append(problem)
        problems += [f"{mod_name}.{a} is missing" for a in USED.get(mod_name, ()) if not hasattr(mod, a)]
    return problems


def signature_problem(label: str, obj, params: tuple[str, ...]) -> Optional[str]:
    """'LABEL changed: ...' when the host function behind ``obj`` does not start with ``params``, else None."""
    try:
        names = tuple(inspect.signature(unwrapped(obj)).parameters)[: len(params)]
    except (TypeError, ValueError):
        names = ()
    return None if names == params else f"{label} changed: parameters {names}, expected {params}"


def unwrapped(obj):
    """The host's own function behind the pack's wrapper (never inspect the pack's code as the host's)."""
    seen = 0
    while seen < 10 and (hasattr(obj, "_lfx_original") or hasattr(obj, "__wrapped__")):
        obj = getattr(obj, "_lfx_original", None) or getattr(obj, "__wrapped__")
        seen += 1
    return obj


def tested_host(version: Optional[str] = None) -> Optional[str]:
    """Which tested host this is: 'release' (0.9.5), 'head' (0.9.6.dev0) or None (untested)."""
    version = version if version is not None else host_version()
    return {"0.9.5": "release", "0.9.6.dev0": "head"}.get(version or "")


def host_warnings(version: Optional[str] = None) -> list[str]:
    version = version if version is not None else host_version()
    if version is None or tested_host(version):
        return []
    return [f"LLaMA-Factory {version} is not a tested host (tested: {', '.join(TESTED_VERSIONS)}); "
            "every function the pack wraps matches, so the pack runs"]


def gate_message(problems: list[str], needs: Optional[list[str]] = None) -> str:
    head = (f"llama-factory-ext {_pack_version()} cannot run with this LLaMA-Factory "
            f"(installed: {host_version()}, supported: {SUPPORTED_TEXT})")
    if needs:
        head = f"{', '.join(needs)} need{'s' if len(needs) == 1 else ''} the pack, but " + head
    return (
        head + ":\n"
        + "\n".join(f"  - {p}" for p in problems)
        + "\nInstall a tested host (pip install 'llamafactory==0.9.5', or the head from source), upgrade "
        "llama-factory-ext, or remove the pack's keys to train with the host alone."
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
    """Stop with one message: SystemExit under the CLI, the exception in Python code (and in the web UI's threads)."""
    import threading

    message = err.render() if isinstance(err, UserError) else str(err)
    if _under_cli() and threading.current_thread() is threading.main_thread():
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(2)
    raise err


def _source() -> Optional[str]:
    if len(sys.argv) > 1 and sys.argv[1].endswith((".yaml", ".yml", ".json")):
        return sys.argv[1]
    return None


# ---------------------------------------------------------------- activation

def _say(message: str) -> None:
    """One line on stderr, once per process group (rank 0 of torchrun workers)."""
    if os.environ.get("LOCAL_RANK", "0") in ("", "0"):
        print(message, file=sys.stderr, flush=True)


def activate(tuner=None) -> bool:
    """Patch the host. Called by the import hook right after ``llamafactory.train.tuner`` loads.

    If the host fails the capability check, nothing is patched except a fail-open guard: runs that use no
    pack key, strategy or stage go to the host untouched; the others stop with one message naming what needs
    the pack and why it cannot run."""
    if _state["active"]:
        return True
    tuner = tuner or importlib.import_module("llamafactory.train.tuner")
    problems = check_host()
    if problems:
        _state["problems"] = problems
        _install_gate_guard(tuner, problems)
        return False
    for warning in host_warnings():
        _say(f"llama-factory-ext: {warning}")
    _patch(tuner)
    _state["active"] = True
    return True


def _install_gate_guard(tuner, problems: list[str]) -> None:
    read_args = getattr(tuner, "read_args", None)

    def make_guard(original):
        def guarded(args=None, *rest, **kwargs):
            needs = []
            try:
                raw = read_args(args) if read_args else args
                if isinstance(raw, list):
                    raw = {k: (v[0] if len(v) == 1 else v or True) for k, v, _ in _split_argv(raw) if k}
                if isinstance(raw, dict):
                    needs = pack_uses(raw, known_only=True)
            except Exception:  # a broken host reports its own errors
                needs = []
            if needs:
                fail(RuntimeError(gate_message(problems, needs)))
            return original(args, *rest, **kwargs)

        return guarded

    for name in ("run_exp", "export_model"):
        if callable(getattr(tuner, name, None)):
            _wrap(tuner, name, make_guard)


def pack_uses(raw: dict, host_keys: Optional[set] = None, known_only: bool = False) -> list[str]:
    """What in a recipe needs the pack: keys the host does not know, pack strategies, a pack stage.

    ``known_only``: name only what an installed plugin registers (keys nobody knows are left to the host)."""
    from .api import HOST_FINETUNING_TYPES
    from .config import parse_finetuning_type

    known = _pack_names() if known_only else None
    if host_keys is None:
        try:
            host_keys = host_arg_names()
        except Exception:
            host_keys = set()
    needs = [f"key `{k}`" for k in raw if k not in host_keys and (known is None or k in known)]
    try:
        names = parse_finetuning_type(raw.get("finetuning_type"))
    except UserError:
        names = [str(raw.get("finetuning_type"))]
    needs += [f"finetuning_type `{n}`" for n in names
              if n not in HOST_FINETUNING_TYPES and (known is None or n in known)]
    stage = raw.get("stage")
    if stage is not None and (not isinstance(stage, str) or stage not in HOST_STAGES):
        if known is None or (isinstance(stage, str) and stage in known):
            needs.append(f"stage `{stage}`")
    return needs


def _pack_names() -> set:
    """Every key, strategy and stage name the installed plugins register (empty if they cannot load)."""
    try:
        from . import plugins

        names = set(plugins.strategies()) | set(plugins.stages())
        for obj in [*plugins.strategies().values(), *plugins.stages().values()]:
            names |= set(obj.args_model.model_fields) if obj.args_model else set()
        for model in plugins.key_groups().values():
            names |= set(model.model_fields)
        return names
    except Exception:
        return set()


def backend_problems(run: Run, raw: dict) -> list[str]:
    """Pack strategies with model hooks or optimizer groups, and pack stages, do not run on the host's other
    training backends (Megatron-Core, Megatron-Bridge, HyperParallel, KTransformers): refuse, naming the switch."""
    from .api import Strategy

    hooked = [s.name for s, _ in run.strategies
              if type(s).param_groups is not Strategy.param_groups or type(s).on_model_loaded is not Strategy.on_model_loaded]
    users = hooked + ([f"stage {run.stage.name}"] if run.stage else [])
    if not users:
        return []
    switches = [f"environment variable {e}=1" for e in BACKEND_ENV if os.environ.get(e, "").lower() in ("1", "true", "y", "yes")]
    switches += [f"key `{k}: true`" for k in BACKEND_KEYS if raw.get(k) in (True, "true", "True", 1)]
    return [f"{sw} routes training to another backend that skips the pack's hooks, so {', '.join(users)} "
            "would be silently dropped; remove it or train without the pack's strategies" for sw in switches]


def fa2_warning(model_args) -> Optional[str]:
    """transformers 5.6.0's FlashAttention-2 path is broken (LLaMA-Factory issue #10610)."""
    if str(getattr(model_args, "flash_attn", "")) != "fa2":
        return None
    try:
        from importlib.metadata import version

        tv = version("transformers")
    except Exception:
        return None
    if tv not in FA2_BROKEN_TRANSFORMERS:
        return None
    return (f"flash_attn: fa2 on transformers {tv} takes a broken FlashAttention-2 path (LLaMA-Factory issue #10610): "
            "use `flash_attn: sdpa`, or the host's development head (it excludes transformers 5.6.0)")


def is_active() -> bool:
    return _state["active"]


def _wrapper(module, name, make):
    original = getattr(module, name)
    original = getattr(original, "_lfx_original", original)
    wrapper = functools.wraps(original)(make(original))
    wrapper._lfx_original = original
    return wrapper


def _wrap(module, name, make):
    wrapper = _wrapper(module, name, make)
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

    items = _split_argv(argv)
    parser = HfArgumentParser(train_arg_classes())
    known = set(parser._option_string_actions)
    host_names = host_arg_names()
    # kept as strings (the host parser's choices would refuse pack names); several values -> a list
    special = {k: (v[0] if len(v) == 1 else v) for k, v, _ in items if k in ("finetuning_type", "stage")}
    other = [(k, v) for k, v, _ in items if k and k not in special and f"--{k}" not in known]
    uses_pack = (any(k not in host_names for k, _ in other)
                 or any(n not in HOST_FINETUNING_TYPES for n in parse_finetuning_type(special.get("finetuning_type")))
                 or ("stage" in special and special["stage"] not in HOST_STAGES))
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
            raw = read_args(args)
            if isinstance(raw, list):
                if "-h" in raw or "--help" in raw:
                    return original(args, callbacks)
                raw = _argv_as_recipe(raw)
            if not isinstance(raw, dict) or "-h" in raw or not pack_uses(raw):
                set_current(Run(source=_source(), extras={"host_only": True}))
                return original(args, callbacks)  # the host exactly as without the pack
            raw = _recipe_relative_paths(raw, args)
            run = _prepare_or_fail(raw)
            problems = backend_problems(run, raw)
            if problems:
                fail(UserError(problems, _source()))
            lock = None
            if run.stage is None:  # host stage: the guard rides along, the folder is owned (pack stages do both)
                from .guard import host_callbacks as guard_callbacks
                from .stages.cls.runfolder import RunLock

                callbacks = list(callbacks or []) + guard_callbacks(run)
                out = run.host_args.get("output_dir")
                try:
                    lock = RunLock(str(out)).acquire() if out and run.host_args.get("do_train") else None
                except UserError as err:
                    fail(err)
            try:
                return original(run.host_args, callbacks)
            except UserError as err:  # the guard stopped a diverging run
                fail(err)
            finally:
                if lock is not None:
                    lock.release()

        return run_exp

    def make_get_train_args(original):
        def get_train_args(args=None):
            parsed = original(args)
            run = current()
            if run is not None and run.host.model_args is None:
                run.host = HostArgs(*parsed[:4], parsed[-1])  # the head's Megatron-Bridge path adds one
                warning = fa2_warning(run.host.model_args)
                if warning:
                    _say(f"llama-factory-ext: warning: {warning}")
                _before_training(run)
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
            run_dir = _cls_run_dir(raw) if isinstance(raw, dict) and raw.get("stage") is None else None
            if run_dir:  # e.g. the web UI's Export tab on a cls run
                print(f"llama-factory-ext: {run_dir} is a classification run (cls_run.json): exporting the merged "
                      "classifier (AutoModelForSequenceClassification), as with `stage: cls`", file=sys.stderr)
                raw = {**raw, "stage": "cls"}
            if isinstance(raw, dict) and pack_uses(raw):
                raw = _recipe_relative_paths(raw, args)
                run = _prepare_or_fail(raw)
                if run.stage is not None and hasattr(run.stage, "export"):
                    return run.stage.export(run)
                return original(run.host_args)
            return original(args)  # the host exactly as without the pack

        return export_model

    # build every wrapper first, then assign them all: an error on the way leaves the host untouched
    plan = [(tuner, "run_exp", _wrapper(tuner, "run_exp", make_run_exp)),
            (tuner, "get_train_args", _wrapper(tuner, "get_train_args", make_get_train_args)),
            (tuner, "_training_function", _wrapper(tuner, "_training_function", make_training_function)),
            (tuner, "export_model", _wrapper(tuner, "export_model", make_export))]
    shared = _wrapper(loader, "init_adapter", make_init_adapter)
    plan += [(loader, "init_adapter", shared), (adapter, "init_adapter", shared)]
    utils = importlib.import_module("llamafactory.train.trainer_utils")
    opt = _wrapper(utils, "create_custom_optimizer", make_optimizer)
    plan.append((utils, "create_custom_optimizer", opt))
    plan += [(importlib.import_module(f"llamafactory.train.{m}.trainer"), "create_custom_optimizer", opt)
             for m in TRAINER_MODULES]
    for module, name, wrapper in plan:
        setattr(module, name, wrapper)


def _before_training(run: Run) -> None:
    """Run ``lfx_before_training``. In a host-only run a failing plugin hook is reported and skipped."""
    from .plugins import get_plugin_manager

    if not run.extras.get("host_only"):
        try:
            get_plugin_manager().hook.lfx_before_training(run=run)
        except UserError as err:
            fail(err)
        return
    try:
        get_plugin_manager().hook.lfx_before_training(run=run)
    except Exception as exc:
        what = "; ".join(exc.problems) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        _say(f"llama-factory-ext: a plugin's before-training hook failed ({what}); "
             "this run uses no pack feature, so it goes on as the host's own")


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


# ---------------------------------------------------------------- chat, api, webchat, eval

# module imported by `llamafactory-cli chat/api/webchat/eval` -> the argument function it calls
INFER_ENTRY = {"llamafactory.chat.chat_model": "get_infer_args", "llamafactory.eval.evaluator": "get_eval_args"}


def activate_module(module) -> None:
    """Import-hook entry: the train stack, or an inference / evaluation module. Never breaks the host's import."""
    try:
        if module.__name__ == "llamafactory.train.tuner":
            activate(module)
        elif module.__name__ in INFER_ENTRY:
            _patch_infer(module, INFER_ENTRY[module.__name__])
        elif module.__name__ == "llamafactory.webui.interface":
            activate_webui(module)
    except Exception as exc:
        _say(f"llama-factory-ext: could not attach to {module.__name__} ({type(exc).__name__}: {exc}); "
             "the host runs without the pack")


def _patch_infer(module, name: str) -> None:
    from llamafactory.hparams.parser import read_args

    original = getattr(module, name, None)
    if original is None or tuple(inspect.signature(unwrapped(original)).parameters)[:1] != ("args",):
        return  # changed host: leave it as it is

    def make(orig):
        def parse(args=None):
            try:
                new = infer_recipe(read_args(args))
            except UserError as err:
                fail(err)
            return orig(args if new is None else new)

        return parse

    _wrap(module, name, make)


def _cls_run_dir(raw: dict) -> Optional[str]:
    for key in ("adapter_name_or_path", "model_name_or_path"):
        for path in str(raw.get(key) or "").split(","):
            if path and os.path.isfile(os.path.join(path.strip(), "cls_run.json")):
                return path.strip()
    return None


def infer_recipe(raw) -> Optional[Any]:
    """A chat / api / eval config that names pack strategies, as the host reads it: finetuning_type -> its host
    base, pack keys dropped. A classification run refuses with a pointer to ``predict``. None = unchanged."""
    from .api import HOST_FINETUNING_TYPES
    from .config import parse_finetuning_type

    argv = isinstance(raw, list)
    items = _split_argv(raw) if argv else None
    values = {k: (v[0] if len(v) == 1 else v) for k, v, _ in items if k} if argv else raw
    if not isinstance(values, dict):
        return None
    stage, run_dir = values.get("stage"), _cls_run_dir(values)
    if run_dir or (stage is not None and stage not in HOST_STAGES):
        where = run_dir or "RUN_DIR"
        raise UserError(f"this is a classification run (stage: {stage or 'cls'}); chat, api and eval generate text. "
                        f"Classify with `llamafactory-ext predict {where} --input texts.jsonl`, or serve the merged "
                        f"classifier: `llamafactory-ext export {where} --out DIR` (AutoModelForSequenceClassification)")
    try:
        names = parse_finetuning_type(values.get("finetuning_type"))
    except UserError:
        return None
    pack_keys = _pack_names() - {"finetuning_type", "stage"}
    dropped = [k for k in values if k in pack_keys]
    if all(n in HOST_FINETUNING_TYPES for n in names) and not dropped:
        return None
    from . import plugins

    strategies = plugins.strategies()
    bases = [n for n in names if n in HOST_FINETUNING_TYPES]
    bases += [strategies[n].base for n in names if n in strategies and strategies[n].base]
    base = bases[0] if bases else "lora"
    if not argv:
        out = {k: v for k, v in raw.items() if k not in dropped}
        if "finetuning_type" in out:
            out["finetuning_type"] = base
        return out
    tokens = []
    for k, v, toks in items:
        if k in dropped:
            continue
        tokens += ["--finetuning_type", base] if k == "finetuning_type" else toks
    return tokens


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


# ---- web UI (LLaMA Board)
# The pack's stage, strategies, keys, memory estimate and cls results in ``llamafactory-cli webui``.
# Activated by the import hook right after ``llamafactory.webui.interface`` loads (before any tab is built).
# Fail open: if the gate or the web UI's internals do not match, the UI stays the host's own (one warning).

WEBUI_WRAPPED: dict[str, dict[str, tuple[str, ...]]] = {
    "llamafactory.webui.interface": {"create_train_tab": ("engine",), "create_footer": (), "create_ui": ("demo_mode",)},
    "llamafactory.webui.runner": {
        "Runner._parse_train_args": ("self", "data"),
        "Runner._parse_eval_args": ("self", "data"),
        "Runner.preview_train": ("self", "data"),
        "Runner.monitor": ("self",),
        "Runner._build_config_dict": ("self", "data"),
    },
    "llamafactory.webui.chatter": {"WebChatModel.load_model": ("self", "data")},
    "llamafactory.webui.manager": {
        "Manager.get_base_elems": ("self",),
        "Manager.add_elems": ("self", "tab_name", "elem_dict"),
        "Manager.get_elem_by_id": ("self", "elem_id"),
        "Manager.get_elem_list": ("self",),
        "Manager.get_id_by_elem": ("self", "elem"),
    },
    "llamafactory.webui.common": {"get_save_dir": ("paths",), "_clean_cmd": ("args",)},
}
WEBUI_CONSTANTS = {"TRAINING_STAGES": dict, "METHODS": list, "PEFT_METHODS": set}
# elements of the host's UI the pack reads (top.* and train.*)
WEBUI_ELEMS = ("top.model_name", "top.model_path", "top.finetuning_type", "top.checkpoint_path", "top.quantization_bit",
               "train.training_stage", "train.dataset", "train.output_dir", "train.output_box", "train.device_count",
               "eval.output_dir", "eval.output_box")
# settings that change the estimate (the ones present are watched)
WEBUI_ESTIMATE_TRIGGERS = (
    "top.model_name", "top.model_path", "top.finetuning_type", "top.quantization_bit", "top.quantization_method",
    "top.booster", "train.training_stage", "train.dataset", "train.dataset_dir", "train.batch_size",
    "train.cutoff_len", "train.gradient_accumulation_steps", "train.compute_type", "train.ds_stage",
    "train.ds_offload", "train.lora_rank", "train.lora_target", "train.additional_target", "train.extra_args",
    "train.use_galore", "train.use_apollo", "train.use_badam",
)
_webui: dict[str, Any] = {"active": False, "problems": [], "warned": False, "engine": None, "fields": [], "elems": {}}


def _warn_webui(problems: list[str]) -> None:
    _webui["problems"] = problems
    if not _webui["warned"]:
        _webui["warned"] = True
        print("llama-factory-ext: the web UI starts without the pack's stage, methods and memory estimate:\n"
              + "\n".join(f"  - {p}" for p in problems), file=sys.stderr, flush=True)


def check_webui() -> list[str]:
    """Problems with the web UI internals the pack touches (empty list = OK)."""
    problems = []
    for mod_name, names in WEBUI_WRAPPED.items():
        try:
            mod = importlib.import_module(mod_name)
        except Exception as exc:
            problems.append(f"{mod_name} cannot be imported ({type(exc).__name__}: {exc})")
            continue
        for dotted, params in names.items():
            obj = mod
            for part in dotted.split("."):
                obj = getattr(obj, part, None)
            if obj is None:
                problems.append(f"{mod_name}.{dotted} is missing")
                continue
            problem = signature_problem(f"{mod_name}.{dotted}", obj, params)
            if problem:
                problems.append(problem)
    try:
        constants = importlib.import_module("llamafactory.extras.constants")
        for name, kind in WEBUI_CONSTANTS.items():
            if not isinstance(getattr(constants, name, None), kind):
                problems.append(f"llamafactory.extras.constants.{name} is not a {kind.__name__}")
    except Exception as exc:
        problems.append(f"llamafactory.extras.constants cannot be imported ({exc})")
    try:
        import gradio as gr

        for name in ("on", "Accordion", "Markdown", "Textbox", "Dropdown", "Checkbox", "Error"):
            if not hasattr(gr, name):
                problems.append(f"gradio.{name} is missing")
    except Exception as exc:
        problems.append(f"gradio cannot be imported ({exc})")
    return problems


def activate_webui(interface=None) -> bool:
    """Add the pack to LLaMA Board. Called by the import hook after ``llamafactory.webui.interface`` loads."""
    if _webui["active"]:
        return True
    try:
        interface = interface or importlib.import_module("llamafactory.webui.interface")
        importlib.import_module("llamafactory.train.tuner")  # the pack's host patches (the estimator builds with them)
        problems = list(_state["problems"]) if not _state["active"] else []
        problems = problems or check_host() or check_webui()
        if problems:
            _warn_webui(problems)
            return False
        _patch_webui(interface)
    except Exception as exc:  # never break the host's UI
        _warn_webui([f"{type(exc).__name__}: {exc}"])
        return False
    _webui["active"] = True
    return True


def webui_is_active() -> bool:
    return _webui["active"]


def _patch_webui(interface) -> None:
    from . import webui

    constants = importlib.import_module("llamafactory.extras.constants")
    runner_mod = importlib.import_module("llamafactory.webui.runner")
    chatter = importlib.import_module("llamafactory.webui.chatter")
    stages = webui.stage_choices()
    methods = webui.method_choices()
    peft = set(constants.PEFT_METHODS)
    # in place: the host's modules hold these very objects (``from ..extras.constants import METHODS``)
    for label, name in stages.items():
        constants.TRAINING_STAGES.setdefault(label, name)
    constants.METHODS.extend(m for m in methods if m not in constants.METHODS)
    constants.PEFT_METHODS.update(m for m in methods if webui.base_method(m) in peft)

    _wrap(interface, "create_train_tab", _make_create_train_tab)
    _wrap(interface, "create_footer", _make_create_footer)
    _wrap(runner_mod.Runner, "_parse_train_args", _make_parse_train_args)
    _wrap(runner_mod.Runner, "_parse_eval_args", _make_parse_eval_args)
    _wrap(runner_mod.Runner, "preview_train", _make_preview_train)
    _wrap(runner_mod.Runner, "monitor", _make_monitor)
    _wrap(runner_mod.Runner, "_build_config_dict", _make_build_config_dict)
    _wrap(chatter.WebChatModel, "load_model", _make_chat_load_model)


def _ui_get(manager, data):
    def get(elem_id, default=None):
        try:
            return data.get(manager.get_elem_by_id(elem_id), default)
        except KeyError:
            return default

    return get


def _save_dir(*parts) -> str:
    from llamafactory.webui.common import get_save_dir

    return get_save_dir(*parts)


def _run_dirs(manager, data, method) -> list[str]:
    get = _ui_get(manager, data)
    model_name, ckpt = get("top.model_name"), get("top.checkpoint_path")
    if not model_name or not ckpt:
        return []
    return [_save_dir(model_name, method, c) for c in (ckpt if isinstance(ckpt, list) else [ckpt])]


def _host_data(manager, data, method) -> dict:
    """The UI values with a pack method replaced by its host base (so the host fills that base's fields) and
    checkpoints as full paths under the pack method's folder."""
    from . import webui

    out = dict(data)
    out[manager.get_elem_by_id("top.finetuning_type")] = webui.base_method(method)
    ckpt_elem = manager.get_elem_by_id("top.checkpoint_path")
    ckpt = out.get(ckpt_elem)
    if ckpt:
        dirs = _run_dirs(manager, data, method)
        out[ckpt_elem] = dirs if isinstance(ckpt, list) else dirs[0]
    return out


def _gr_error(err: UserError):
    import gradio as gr

    return gr.Error(err.render())


def _pack_raw(data) -> dict:
    return {name: data[elem] for name, elem in _webui["elems"].items() if elem in data}


def _make_parse_train_args(original):
    def _parse_train_args(self, data):
        from . import webui

        constants = importlib.import_module("llamafactory.extras.constants")
        get = _ui_get(self.manager, data)
        method = get("top.finetuning_type")
        stage = constants.TRAINING_STAGES.get(get("train.training_stage"))
        try:
            extra = webui.pack_values(_webui["fields"], _pack_raw(data), stage, webui.method_names(method))
        except UserError as err:
            raise _gr_error(err) from None
        if not webui.uses_pack(stage, method, extra):
            return original(self, data)
        args = original(self, _host_data(self.manager, data, method))
        args["output_dir"] = _save_dir(get("top.model_name"), method, get("train.output_dir"))
        return webui.finish_train_args(args, extra, method)

    return _parse_train_args


def _make_parse_eval_args(original):
    def _parse_eval_args(self, data):
        from . import webui

        get = _ui_get(self.manager, data)
        method = get("top.finetuning_type")
        run_dirs = _run_dirs(self.manager, data, method)
        is_cls = webui.is_cls_run(method, run_dirs)
        if not is_cls and not webui.is_pack_method(method):
            return original(self, data)
        args = original(self, _host_data(self.manager, data, method))
        args["output_dir"] = _save_dir(get("top.model_name"), method, get("eval.output_dir"))
        if is_cls:
            return webui.finish_eval_args(args, method, run_dirs)
        args["finetuning_type"] = webui.recipe_method(method)
        return args

    return _parse_eval_args


def _is_pack_run(args: dict) -> bool:
    from . import webui

    return webui.uses_pack(args.get("stage"), args.get("finetuning_type"), set(args) - host_arg_names())


def _make_preview_train(original):
    def preview_train(self, data):
        import yaml

        from llamafactory.webui.common import _clean_cmd

        from . import webui

        output_box = self.manager.get_elem_by_id("train.output_box")
        for out in original(self, data):
            text = out.get(output_box) if isinstance(out, dict) else None
            if isinstance(text, str) and text.startswith("```"):  # a command, not an error
                args = self._parse_train_args(data)
                if _is_pack_run(args):
                    body = yaml.safe_dump(_clean_cmd(args), sort_keys=False, allow_unicode=True)
                    gpus = _ui_get(self.manager, data)("train.device_count") or 1
                    target = data.get(_webui["elems"].get("lfx_target_gpu"), webui.GPU_AUTO)
                    out[output_box] = (text + "\n\n`training_args.yaml` the run will use (llama-factory-ext):\n\n"
                                       f"```yaml\n{body}```\n\n"
                                       + webui.estimate_markdown(_clean_cmd(args), int(gpus), target))
            yield out

    return preview_train


def _make_monitor(original):
    def monitor(self):
        from . import webui

        output_path = output_box = None
        try:
            get = _ui_get(self.manager, self.running_data)
            tab = "train" if self.do_train else "eval"
            output_path = _save_dir(get("top.model_name"), get("top.finetuning_type"), get(f"{tab}.output_dir"))
            output_box = self.manager.get_elem_by_id(f"{tab}.output_box")
        except Exception:
            pass
        for out in original(self):
            if not self.running and output_path and isinstance(out, dict) and output_box in out:
                results = webui.results_markdown(output_path)
                if results:
                    out[output_box] = results + "\n\n" + str(out[output_box])
            yield out

    return monitor


def _make_build_config_dict(original):
    def _build_config_dict(self, data):
        """Saved UI settings keep only the pack fields that are set (a host-only run saves what the host saves)."""
        unset = {elem for elem in _webui["elems"].values() if elem in data and data[elem] in (None, "", elem.value)}
        return original(self, {k: v for k, v in data.items() if k not in unset})

    return _build_config_dict


def _make_chat_load_model(original):
    def load_model(self, data):
        from . import webui

        method = _ui_get(self.manager, data)("top.finetuning_type")
        if webui.is_cls_run(method, _run_dirs(self.manager, data, method)):
            yield webui.CHAT_REFUSAL
            return
        if webui.is_pack_method(method):
            data = _host_data(self.manager, data, method)
        yield from original(self, data)

    return load_model


def _make_create_train_tab(original):
    def create_train_tab(engine):
        import gradio as gr

        from . import webui

        try:
            fields = webui.pack_fields()
            elems = {}
            for f in fields:
                kw = dict(label=f.label, info=f.help or None, render=False, elem_id=f"lfx-{f.key}")
                if f.widget == "check":
                    elems[f.elem_name] = gr.Checkbox(value=bool(f.default), **kw)
                elif f.widget == "choice":
                    elems[f.elem_name] = gr.Dropdown(choices=f.choices, value=None if f.default is None else str(f.default), **kw)
                else:
                    placeholder = "" if f.default in (None, {}, []) else f"default: {f.default}"
                    elems[f.elem_name] = gr.Textbox(value="", placeholder=placeholder or "not set", **kw)
            elems["lfx_target_gpu"] = gr.Dropdown(choices=webui.target_gpu_choices(), value=webui.GPU_AUTO,
                                                  label="target GPU (memory verdict)", render=False,
                                                  elem_id="lfx-target-gpu")
        except Exception as exc:
            _warn_webui([f"pack section not built ({type(exc).__name__}: {exc})"])
            return original(engine)
        manager = engine.manager
        host_base = manager.get_base_elems
        manager.get_base_elems = lambda: host_base() | set(elems.values())  # the train tab's inputs include them
        try:
            elem_dict = original(engine)
        finally:
            del manager.get_base_elems
        with gr.Accordion("llama-factory-ext: stage, strategy and memory settings", open=False,
                          elem_id="lfx-pack-tab"):
            gr.Markdown("Keys of the installed plugins; empty = not set. They apply when the stage / method "
                        "in brackets is selected. Values are YAML (`balanced`, `[1.0, 2.0]`, `{'lm_head': 1e-5}`).")
            items = list(elems.values())
            for i in range(0, len(items), 4):
                with gr.Row():
                    for elem in items[i:i + 4]:
                        elem.render()
        manager.add_elems("lfx", elems)
        _webui.update(engine=engine, fields=fields, elems=elems)
        try:
            _wire_visibility(elem_dict["training_stage"], manager.get_elem_by_id("top.finetuning_type"), fields, elems)
        except Exception as exc:  # all fields stay visible
            _warn_webui([f"pack fields always shown ({type(exc).__name__}: {exc})"])
        return elem_dict

    return create_train_tab


def _wire_visibility(stage_elem, method_elem, fields, elems) -> None:
    """Show a pack key only while its stage / strategy is selected."""
    import gradio as gr

    from . import webui

    constants = importlib.import_module("llamafactory.extras.constants")
    outputs = [elems[f.elem_name] for f in fields]

    def show(stage_label, method):
        stage, names = constants.TRAINING_STAGES.get(stage_label), webui.method_names(method)
        return [gr.update(visible=webui.applies(f, stage, names)) for f in fields]

    for elem, visible in zip(outputs, show(stage_elem.value, method_elem.value), strict=True):
        elem.visible = visible["visible"]
    for trigger in (stage_elem.change, method_elem.change):
        trigger(show, [stage_elem, method_elem], outputs, queue=False)


def _make_create_footer(original):
    def create_footer():
        import gradio as gr

        engine = _webui["engine"]
        if engine is None:
            return original()
        with gr.Row():
            with gr.Column(scale=1):
                elems = original()
            with gr.Column(scale=2):
                panel = gr.Markdown("**Predicted peak GPU memory** (llama-factory-ext): choose a model and a dataset",
                                    elem_id="lfx-memory-estimate")
        try:
            _wire_estimate(engine, panel)
        except Exception as exc:
            _warn_webui([f"memory estimate not wired ({type(exc).__name__}: {exc})"])
        return elems

    return create_footer


def _wire_estimate(engine, panel) -> None:
    import gradio as gr

    from . import webui

    manager = engine.manager
    skip = (gr.Button, gr.Markdown, gr.Plot, gr.HTML)
    inputs = {elem for elem_id, elem in ((manager.get_id_by_elem(e), e) for e in manager.get_elem_list())
              if elem_id.split(".")[0] in ("top", "train", "lfx") and isinstance(elem, gr.components.Component)
              and not isinstance(elem, skip) and not (isinstance(elem, gr.Slider) and elem.interactive is False)}
    triggers = []
    for elem_id in WEBUI_ESTIMATE_TRIGGERS:
        try:
            triggers.append(manager.get_elem_by_id(elem_id).change)
        except KeyError:
            pass
    triggers += [elem.change for elem in _webui["elems"].values()]

    from llamafactory.webui.common import _clean_cmd

    def estimate(data):
        full = {elem: data.get(elem, getattr(elem, "value", None)) for elem in manager.get_elem_list()}
        get = _ui_get(manager, full)
        if not get("top.model_path"):
            return "**Predicted peak GPU memory** (llama-factory-ext): choose a model"
        full[manager.get_elem_by_id("train.dataset")] = get("train.dataset") or []
        try:
            args = engine.runner._parse_train_args(full)
        except Exception as exc:
            return f"**Predicted peak GPU memory** (llama-factory-ext): cannot read the settings ({exc})"
        gpus = get("train.device_count") or 1
        return webui.estimate_markdown(_clean_cmd(args), int(gpus), get("lfx.lfx_target_gpu") or webui.GPU_AUTO)

    gr.on(triggers, estimate, inputs=inputs, outputs=[panel], trigger_mode="always_last", show_progress="hidden",
          concurrency_limit=1, concurrency_id="lfx_estimate")
