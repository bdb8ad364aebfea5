"""Scoped quieting of library messages that the pack's own calls trigger and that mislead users.

Each filter acts on one named logger, only around the pack's own call, and lets every other message through.
``stdout_to_stderr`` keeps a command's stdout for its own output (JSON, predictions) while the host logs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
LOAD_LOGGER = "transformers.modeling_utils"
CONFIG_LOGGER = "transformers.configuration_utils"


class _Drop(logging.Filter):
    def __init__(self, test, held=None):
        super().__init__()
        self.test = test
        self.held = held

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            drop = self.test(record.getMessage())
        except Exception:  # a record we cannot format is not ours to judge
            return True
        if drop and self.held is not None:
            self.held.append(record)
        return not drop


@contextlib.contextmanager
def _filtered(logger_name: str, test, held=None):
    logger = logging.getLogger(logger_name)
    f = _Drop(test, held)
    logger.addFilter(f)
    try:
        yield held
    finally:
        logger.removeFilter(f)


def import_bitsandbytes_quietly() -> None:
    """Import bitsandbytes (if installed) without its CPU notice "Failed to load CPU gemm_4bit_forward from
    kernels-community: No module named 'kernels'" (bitsandbytes >= 0.49 on AVX512-BF16 CPUs looks for an optional
    faster CPU 4-bit kernel; without it the built-in CPU path runs). It prints once per process, at import, which
    PEFT triggers when it builds LoRA layers; importing first keeps later imports silent. Other messages pass."""
    if "bitsandbytes" in sys.modules or importlib.util.find_spec("bitsandbytes") is None:
        return
    with _filtered(BNB_CPU_LOGGER, lambda m: "gemm_4bit_forward" in m and "kernels" in m):
        try:
            import bitsandbytes  # noqa: F401
        except Exception:  # a broken install: whoever needs it reports it
            pass


@contextlib.contextmanager
def library_logs_quiet(names=("transformers", "llamafactory", "peft")):
    """Within the block, the named libraries log errors only: the estimator's meta model must not repeat the
    host's config and GenerationConfig dumps (the host raises transformers to INFO on rank 0)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.ERROR))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def config_printed_once():
    """Within the block, transformers prints each distinct "Model config ..." dump once (the host's loaders,
    the tokenizer and PEFT's saves each reload the same config)."""
    seen: set[str] = set()

    def repeat(msg: str) -> bool:
        if not msg.startswith("Model config"):
            return False
        if msg in seen:
            return True
        seen.add(msg)
        return False

    with _filtered(CONFIG_LOGGER, repeat):
        yield


@contextlib.contextmanager
def held_load_report():
    """Hold back transformers' weight-loading report ("LOAD REPORT" in 5.x, "Some weights ... newly initialized"
    in 4.x) of the pack's own ``from_pretrained``; pass the held records to :func:`settle_load_report`."""
    markers = ("LOAD REPORT", "were not initialized from the model checkpoint", "were not used when initializing")
    held: list = []
    try:
        with _filtered(LOAD_LOGGER, lambda m: any(x in m for x in markers), held=held):
            yield held
    except BaseException:  # the load failed (e.g. transformers raises after its report): show the report
        _emit(held)
        raise


def _emit(records: list) -> None:
    logger = logging.getLogger(LOAD_LOGGER)
    for record in records:
        logger.handle(record)
    records.clear()


def unexplained_keys(info: dict, heads: list[str]) -> list[str]:
    """Keys of a ``from_pretrained(..., output_loading_info=True)`` report that a new classification head does not
    explain: missing keys outside the head, unexpected keys other than a pretraining head, any size mismatch."""
    def in_heads(key: str) -> bool:
        return any(key == h or key.startswith(h + ".") for h in heads)

    pretraining_heads = ("lm_head.", "cls.", "pooler.", "vocab_", "lm_loss")
    out = [k for k in info.get("missing_keys") or () if not in_heads(k)]
    out += [k for k in info.get("unexpected_keys") or () if not k.startswith(pretraining_heads)]
    out += [str(k[0] if isinstance(k, (tuple, list)) else k) for k in info.get("mismatched_keys") or ()]
    return out


def settle_load_report(held: list, info: dict, heads: list[str]) -> bool:
    """Re-emit the held report when it shows keys a new classification head does not explain; True if it did."""
    if not held or not unexplained_keys(info, heads):
        return False
    _emit(held)
    return True


@contextlib.contextmanager
def stdout_to_stderr(active: bool = True):
    """Send stdout to stderr within the block, at file-descriptor level too: the host's loggers hold the
    ``sys.stdout`` they found at import, so only moving fd 1 keeps a command's own stdout clean."""
    if not active:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (a closed stdout): Python-level only
        saved = None
    if saved is not None:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
