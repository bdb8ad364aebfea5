"""The pack's state in this process: the current run, its strategies' hooks, and how it speaks (one line on stderr,
once per node; a clean stop under the CLI)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Optional

from .api import Run, UserError

PREFIX = "llama-factory-ext:"
_current: Optional[Run] = None


def current() -> Optional[Run]:
    return _current


def set_current(run: Optional[Run]) -> None:
    global _current
    _current = run


@contextlib.contextmanager
def using(run: Optional[Run]):
    """``run`` is the current run inside the block; the previous one comes back after it."""
    previous = current()
    set_current(run)
    try:
        yield run
    finally:
        set_current(previous)


def is_main_process() -> bool:
    """Rank 0 of all processes (torchrun, DeepSpeed, accelerate set RANK); True outside a launcher."""
    return os.environ.get("RANK", "0") in ("", "0")


def is_local_main_process() -> bool:
    """Rank 0 on this node (LOCAL_RANK, else RANK)."""
    return os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) in ("", "0")


def say(message: str) -> None:
    """One line on stderr, once per node (local rank 0); ``message`` carries the pack's prefix."""
    if is_local_main_process():
        print(message, file=sys.stderr, flush=True)


def report(text: str) -> None:
    """A report for the run's log (stdout, once per job: rank 0), with the pack's prefix."""
    if is_main_process():
        print(f"{PREFIX} {text}", flush=True)


def under_cli() -> bool:
    prog = os.path.basename(sys.argv[0]) if sys.argv else ""
    return prog in ("llamafactory-cli", "lmf", "launcher.py") or prog.endswith("launcher.py")


def fail(err: Exception) -> None:
    """Stop with one message: SystemExit under the CLI, the exception in Python code (and in the web UI's threads)."""
    message = err.render() if isinstance(err, UserError) else str(err)
    if under_cli() and threading.current_thread() is threading.main_thread():
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(2)
    raise err


def recipe_source() -> Optional[str]:
    """The recipe file of ``llamafactory-cli train RECIPE.yaml``, if that is how this process started."""
    if len(sys.argv) > 1 and sys.argv[1].endswith((".yaml", ".yml", ".json")):
        return sys.argv[1]
    return None


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
