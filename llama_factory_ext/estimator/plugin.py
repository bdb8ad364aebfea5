"""Hooks of the memory estimator: the ``memory_check`` key and the pre-flight check before weights load."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..hookspecs import hookimpl
from ..runtime import say

DEFAULT_MEMORY_CHECK = "warn"


class MemoryCheckArgs(BaseModel):
    """``memory_check``: before weights load, estimate peak GPU memory; ``error`` stops a run whose upper bound does
    not fit, ``warn`` prints the table and advice and goes on, ``off`` skips the estimate."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, defer_build=True)
    memory_check: Literal["error", "warn", "off"] = Field(DEFAULT_MEMORY_CHECK)
    """Before weights load: `error` stops a run whose estimated upper bound does not fit the GPU, `warn` prints the
    estimate and advice and goes on, `off` skips it."""

    @field_validator("memory_check", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        return "off" if v is False else v  # YAML 1.1 reads a bare `off` as false


@hookimpl
def lfx_register_keys(register):
    register("estimator", MemoryCheckArgs)


@hookimpl
def lfx_before_training(run):
    settings = run.settings.get("estimator")
    mode = getattr(settings, "memory_check", DEFAULT_MEMORY_CHECK)
    training_args = run.parsed.training_args
    if mode == "off" or (training_args is not None and not getattr(training_args, "do_train", True)):
        return
    host_only = bool(run.extras.get("host_only"))
    try:
        import torch

        from ..quiet import library_logs_quiet
        from . import estimate_run

        cuda = torch.cuda.is_available()
        memory = name = None
        if cuda:
            device = int(os.environ.get("LOCAL_RANK", "0") or 0)
            props = torch.cuda.get_device_properties(device)
            memory, name = int(props.total_memory), props.name
        with library_logs_quiet():
            est = estimate_run(run, gpu_memory=memory, gpu_name=name, advice=cuda)
    except Exception as exc:  # an estimator failure never stops training
        from ..api import UserError

        why = "; ".join(exc.problems) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        if host_only:  # a plain host recipe: no pack advice (`--config`, `memory_check`) applies to it
            say(f"llama-factory-ext: no memory estimate for this model ({why.split('; pass --config')[0]}); "
                "training goes on as the host's own")
        else:
            say(f"llama-factory-ext: memory estimate failed ({why}); training continues "
                "(set memory_check: off to skip it)")
        return
    try:  # the host is imported here anyway: later `llamafactory-ext estimate` calls start on the formula path
        from ..host.keys import cached_host_args, write_host_args_cache

        if cached_host_args() is None:
            write_host_args_cache()
    except Exception:  # a cache is only a speed-up
        pass
    if not cuda:
        say(est.summary_line() + "; no CUDA here, no verdict")
        return
    if est.verdict != "fits" and mode == "error":
        from ..api import UserError

        problems = [f"memory_check: {est.verdict}: estimated peak {est.peak_bytes / 2**30:.1f} GiB per GPU likely, up "
                    f"to {est.upper_bytes / 2**30:.1f} GiB, on {name} ({memory / 2**30:.1f} GiB); `error` stops a run "
                    "whose upper bound does not fit"]
        for o in est.advice:
            problems.append(f"option: {o.name}: {o.changes_text()} -> {o.peak_bytes / 2**30:.1f} GiB, up to "
                            f"{o.upper_bytes / 2**30:.1f} GiB{'' if o.fits else ' (still too big)'}")
        problems.append("run `llamafactory-ext estimate RECIPE.yaml` for the table; set memory_check: warn to train anyway")
        raise UserError(problems, run.source)
    if est.verdict == "fits":
        say(est.summary_line() + f"; {name}: fits (up to {100 * est.upper_bytes / memory:.0f}%)")
    else:
        say(est.render())
