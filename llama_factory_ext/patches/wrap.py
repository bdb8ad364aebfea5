"""Replace a host function by the pack's wrapper, keeping the original reachable (``_lfx_original``)."""

from __future__ import annotations

import functools


def wrapper(module, name, make):
    """The wrapper ``make(original)`` would install for ``module.name``, not yet installed."""
    original = getattr(module, name)
    original = getattr(original, "_lfx_original", original)
    new = functools.wraps(original)(make(original))
    new._lfx_original = original
    return new


def wrap(module, name, make):
    new = wrapper(module, name, make)
    setattr(module, name, new)
    return new
