"""Training guard: stop a run that diverges (non-finite loss, loss far above its start, gradient-norm
explosion, collapse to one class) with a message saying what happened and what to try.

Keys (on by default): ``training_guard: true|false``, ``training_guard_loss_factor`` (stop when the
logged loss exceeds this many times its first value), ``training_guard_grad_norm`` (stop when the
gradient norm exceeds it).
"""

from __future__ import annotations

import math
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from .hookspecs import hookimpl

OWNER = "training_guard"


class GuardArgs(BaseModel):
    """YAML keys of the training guard."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, defer_build=True)

    training_guard: bool = True
    """Stop a diverging run (non-finite loss, loss far above its start, gradient explosion, collapse)."""
    training_guard_loss_factor: float = Field(5.0, gt=1.0)
    """Stop when a logged training loss exceeds this many times the first logged loss."""
    training_guard_grad_norm: float = Field(1.0e4, gt=0.0)
    """Stop when the gradient norm (before clipping) exceeds this."""


@hookimpl
def lfx_register_keys(register):
    register(OWNER, GuardArgs)


def settings_of(run) -> GuardArgs:
    opts = getattr(run, "settings", {}).get(OWNER) if run is not None else None
    return opts if isinstance(opts, GuardArgs) else GuardArgs()


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def advice(training_args) -> str:
    lr = getattr(training_args, "learning_rate", None)
    tips = [f"a lower learning_rate (now {lr:g}; try {lr / 10:g})" if isinstance(lr, (int, float)) else "a lower learning_rate"]
    if getattr(training_args, "fp16", False):
        tips.append("bf16: true instead of fp16 (fp16 overflows and underflows; needs an Ampere or newer GPU)")
    mgn = getattr(training_args, "max_grad_norm", None)
    if not mgn or mgn > 1.0:
        tips.append(f"max_grad_norm: 1.0 (gradient clipping; now {mgn})")
    warm = getattr(training_args, "warmup_ratio", 0) or getattr(training_args, "warmup_steps", 0)
    if not warm:
        tips.append("warmup_ratio: 0.1")
    return "; ".join(tips)


def guard_callbacks(run) -> list:
    """For host stages (sft, ...) of runs that use the pack: the guard as a callback that, once tripped, marks the
    run folder failed and raises a UserError at the end of training (before the host saves the diverged model)."""
    cb = make_callback(run, None, raise_at_end=True)
    return [cb] if cb is not None else []


def make_callback(run, training_args, loss_flag=None, raise_at_end: bool = False):
    """The guard's TrainerCallback for this run, or None when ``training_guard: false``."""
    from transformers import TrainerCallback

    opts = settings_of(run)
    if not opts.training_guard:
        return None

    class TrainingGuard(TrainerCallback):
        """Watches logs and evaluations; on divergence stops training without saving the bad state."""

        def __init__(self):
            self.first_loss: Optional[float] = None
            self.best_eval_loss: Optional[float] = None
            self.bad_grad_logs = 0
            self.reason: Optional[str] = None
            self.step: Optional[int] = None
            self.loss_flag = loss_flag  # objects with .nonfinite() (the cls trainer's per-step loss check)

        def _trip(self, state, control, reason: str) -> None:
            if self.reason is None:
                self.reason, self.step = reason, state.global_step
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if self.reason is not None:
                return
            if self.loss_flag is not None and self.loss_flag.nonfinite():
                return self._trip(state, control, "the training loss became non-finite (NaN or inf)")
            loss, gnorm = logs.get("loss"), logs.get("grad_norm")
            if loss is not None:
                if not _finite(loss):
                    return self._trip(state, control, f"the training loss is {loss}")
                loss = float(loss)
                if self.first_loss is None:
                    self.first_loss = max(loss, 1e-8)
                elif loss > opts.training_guard_loss_factor * self.first_loss:
                    return self._trip(state, control, f"the training loss rose to {loss:.4g}, over "
                                      f"{opts.training_guard_loss_factor:g} x its first value {self.first_loss:.4g}")
            if gnorm is not None:
                if not _finite(gnorm):
                    self.bad_grad_logs += 1
                    # fp16 loss scaling overflows a few steps while it calibrates; three logs in a row is not that
                    if not getattr(args, "fp16", False) or self.bad_grad_logs >= 3:
                        return self._trip(state, control, f"the gradient norm is {gnorm}")
                else:
                    self.bad_grad_logs = 0
                    if float(gnorm) > opts.training_guard_grad_norm:
                        return self._trip(state, control, f"the gradient norm exploded to {float(gnorm):.4g} "
                                          f"(limit training_guard_grad_norm: {opts.training_guard_grad_norm:g})")

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics = metrics or {}
            if self.reason is not None:
                control.should_save = False
                return
            eval_loss = metrics.get("eval_loss")
            if eval_loss is not None and not _finite(eval_loss):
                return self._trip(state, control, f"the evaluation loss is {eval_loss}")
            one_class = metrics.get("eval_pred_classes") == 1 and (metrics.get("eval_gold_classes") or 0) > 1
            worse = (eval_loss is not None and self.best_eval_loss is not None and eval_loss > 1.5 * self.best_eval_loss)
            if one_class and worse:
                return self._trip(state, control, f"the model collapsed to predicting one class for every evaluation "
                                  f"row (eval_loss {eval_loss:.4g}, best so far {self.best_eval_loss:.4g})")
            if eval_loss is not None:
                self.best_eval_loss = eval_loss if self.best_eval_loss is None else min(self.best_eval_loss, eval_loss)

        def on_train_end(self, args, state, control, **kwargs):
            if raise_at_end and self.reason is not None:
                from .api import UserError
                from .runfolder import mark_failed

                message = failure_message(self, args)
                if args.should_save:  # never raises: a full disk must not hide the guard's message
                    mark_failed(args.output_dir, self.reason, step=self.step, message=message)
                raise UserError(message)

    return TrainingGuard()


def last_checkpoint(output_dir: str) -> Optional[str]:
    import os
    import re

    if not os.path.isdir(output_dir):
        return None
    steps = [(int(m.group(1)), e) for e in os.listdir(output_dir) for m in [re.match(r"^checkpoint-(\d+)$", e)] if m]
    return os.path.join(output_dir, max(steps)[1]) if steps else None


def failure_message(guard, training_args) -> str:
    ckpt = last_checkpoint(training_args.output_dir)
    keep = (f"The last good checkpoint is {ckpt} (the last one saved before the guard stopped the run)." if ckpt
            else "No checkpoint was saved before the problem.")
    return (f"training guard stopped the run at step {guard.step}: {guard.reason}. {keep} "
            f"Try: {advice(training_args)}. The run folder {training_args.output_dir} is marked failed "
            f"(run_status.json). To turn the guard off: training_guard: false")
