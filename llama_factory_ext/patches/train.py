"""What ``llamafactory-cli train`` and ``export`` call back: the pack's wrappers of the host's train stack.

Patching is all-or-nothing: every wrapper is built first, then all are assigned. If the host fails the gate, only a
fail-open guard is installed: runs that use no pack key, strategy or stage go to the host untouched."""

from __future__ import annotations

import importlib
import os
import sys

from ..api import HostArgs, Run, Strategy, UserError
from ..recipe import prepare
from ..recipe.checks import model_problems
from ..guard import guard_callbacks
from ..host.calls import trainer_callbacks
from ..host.compat import fa2_warning
from ..host.gate import BACKEND_ENV, BACKEND_KEYS, TRAINER_MODULES, check_host, gate_message, host_warnings, state
from ..plugins import get_plugin_manager
from ..recipe.uses import pack_uses
from ..runfolder import RunLock
from ..runtime import (PREFIX, apply_model_hooks, build_strategy_optimizer, current, fail, recipe_source, say,
                       set_current)
from .argv import argv_as_recipe, recipe_relative_paths, split_argv
from .infer import stage_run
from .wrap import wrap, wrapper


def is_active() -> bool:
    return state["active"]


def activate(tuner=None) -> bool:
    """Patch the host. Called by the import hook right after ``llamafactory.train.tuner`` loads.

    If the host fails the capability check, nothing is patched except a fail-open guard: runs that use no
    pack key, strategy or stage go to the host untouched; the others stop with one message naming what needs
    the pack and why it cannot run."""
    if state["active"]:
        return True
    tuner = tuner or importlib.import_module("llamafactory.train.tuner")
    problems = check_host()
    if problems:
        state["problems"] = problems
        _install_gate_guard(tuner, problems)
        return False
    for warning in host_warnings():
        say(f"{PREFIX} {warning}")
    _patch(tuner)
    state["active"] = True
    return True


def _install_gate_guard(tuner, problems: list[str]) -> None:
    read_args = getattr(tuner, "read_args", None)

    def make_guard(original):
        def guarded(args=None, *rest, **kwargs):
            needs = []
            try:
                raw = read_args(args) if read_args else args
                if isinstance(raw, list):
                    raw = {k: (v[0] if len(v) == 1 else v or True) for k, v, _ in split_argv(raw) if k}
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
            wrap(tuner, name, make_guard)


# strategies whose hooks do not change training (rslora's only reports the adapter): they work in Ray workers
RAY_SAFE = ("rslora",)


def backend_problems(run: Run, raw: dict) -> list[str]:
    """Pack strategies with model hooks or optimizer groups, and pack stages, do not run on the host's other
    training backends (Megatron-Core, Megatron-Bridge, HyperParallel, KTransformers) nor in Ray workers
    (``USE_RAY``: the pack's run state stays in the driver): refuse, naming the switch."""
    hooked = [s.name for s, _ in run.strategies
              if type(s).param_groups is not Strategy.param_groups or type(s).on_model_loaded is not Strategy.on_model_loaded]
    users = hooked + ([f"stage {run.stage.name}"] if run.stage else [])
    if not users:
        return []
    on = lambda env: os.environ.get(env, "").lower() in ("1", "true", "y")  # noqa: E731 -- the host's is_env_enabled
    switches = [f"environment variable {e}=1" for e in BACKEND_ENV if on(e)]
    switches += [f"key `{k}: true`" for k in BACKEND_KEYS if raw.get(k) in (True, "true", "True", 1)]
    problems = [f"{sw} routes training to another backend that skips the pack's hooks, so {', '.join(users)} "
                "would be silently dropped; remove it or train without the pack's strategies" for sw in switches]
    dropped = [name for name in hooked if name not in RAY_SAFE]
    if on("USE_RAY") and (run.stage or dropped):
        what = ([f"stage {run.stage.name} would fail there (`Unknown task: {run.stage.name}`)"] if run.stage else []) + \
               ([f"{', '.join(dropped)} would be silently dropped"] if dropped else [])
        problems.append(f"environment variable USE_RAY={os.environ['USE_RAY']} trains in Ray workers, which the pack's "
                        f"run state does not reach: {' and '.join(what)}; unset USE_RAY (for several GPUs or machines "
                        "use torchrun: FORCE_TORCHRUN=1, NNODES, NODE_RANK, MASTER_ADDR) or train without the pack's "
                        "stages and strategies")
    return problems


def prepare_or_fail(raw):
    try:
        run = prepare(raw, source=recipe_source())
        missing = model_problems({**raw, **run.host_args})  # before the host's minutes of download retries
        if missing:
            raise UserError(missing, recipe_source())
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
                raw = argv_as_recipe(raw)
            if not isinstance(raw, dict) or "-h" in raw or not pack_uses(raw):
                set_current(Run(source=recipe_source(), extras={"host_only": True}))
                return original(args, callbacks)  # the host exactly as without the pack
            raw = recipe_relative_paths(raw, args)
            run = prepare_or_fail(raw)
            problems = backend_problems(run, raw)
            if problems:
                fail(UserError(problems, recipe_source()))
            lock = None
            if run.stage is None:  # host stage: the guard rides along, the folder is owned (pack stages do both)
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
            if run is not None and run.parsed.model_args is None:
                run.parsed = HostArgs(*parsed[:4], parsed[-1])  # the head's Megatron-Bridge path adds one
                warning = fa2_warning(run.parsed.model_args)
                if warning:
                    say(f"{PREFIX} warning: {warning}")
                before_training(run)
            return parsed

        return get_train_args

    def make_training_function(original):
        def _training_function(config):
            run = current()
            if run is None or run.stage is None:
                return original(config)
            return run_plugin_stage(tuner, run, config)

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
            raw = argv_as_recipe(read_args(args))
            stage, run_dir = stage_run(raw) if isinstance(raw, dict) and raw.get("stage") is None else (None, None)
            if stage is not None:  # e.g. the web UI's Export tab on a cls run: the stage exports what it trained
                print(f"{PREFIX} {stage.export_note(run_dir)}", file=sys.stderr)
                raw = {**raw, "stage": stage.name}
            if isinstance(raw, dict) and pack_uses(raw):
                raw = recipe_relative_paths(raw, args)
                run = prepare_or_fail(raw)
                if run.stage is not None:
                    return run.stage.export(run)
                return original(run.host_args)
            return original(args)  # the host exactly as without the pack

        return export_model

    # build every wrapper first, then assign them all: an error on the way leaves the host untouched
    plan = [(tuner, "run_exp", wrapper(tuner, "run_exp", make_run_exp)),
            (tuner, "get_train_args", wrapper(tuner, "get_train_args", make_get_train_args)),
            (tuner, "_training_function", wrapper(tuner, "_training_function", make_training_function)),
            (tuner, "export_model", wrapper(tuner, "export_model", make_export))]
    shared = wrapper(loader, "init_adapter", make_init_adapter)
    plan += [(loader, "init_adapter", shared), (adapter, "init_adapter", shared)]
    utils = importlib.import_module("llamafactory.train.trainer_utils")
    opt = wrapper(utils, "create_custom_optimizer", make_optimizer)
    plan.append((utils, "create_custom_optimizer", opt))
    plan += [(importlib.import_module(f"llamafactory.train.{m}.trainer"), "create_custom_optimizer", opt)
             for m in TRAINER_MODULES]
    for module, name, new in plan:
        setattr(module, name, new)



def before_training(run: Run) -> None:
    """Run ``lfx_before_training``. In a host-only run a failing plugin hook is reported and skipped."""
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
        say(f"{PREFIX} a plugin's before-training hook failed ({what}); "
             "this run uses no pack feature, so it goes on as the host's own")



def run_plugin_stage(tuner, run: Run, config: dict) -> None:
    import torch.distributed as dist

    args, callbacks = config.get("args"), config.get("callbacks") or []
    model_args, data_args, training_args, finetuning_args, generating_args = tuner.get_train_args(args)
    callbacks = list(callbacks) + trainer_callbacks(model_args, data_args, finetuning_args, generating_args, training_args)
    try:
        run.stage.run_stage(model_args, data_args, training_args, finetuning_args, generating_args, callbacks, run)
    except UserError as err:
        fail(err)
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass

