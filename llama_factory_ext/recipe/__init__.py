"""A recipe: read it (:mod:`.load`), check it (:mod:`.checks`) and compose it (:mod:`.compose`).

``prepare`` is the one entry: every check, composition included, then the :class:`~llama_factory_ext.api.Run`.
"""

from __future__ import annotations

from typing import Optional

from ..api import Run, UserError

__all__ = ["prepare"]


def prepare(raw: dict, source: Optional[str] = None, host_keys: Optional[set[str]] = None, data: bool = True,
            host_types: bool = True) -> Run:
    """Validate ``raw`` (a recipe dict) and return the Run with ``host_args`` ready for the host.

    The checks are those of ``llamafactory-ext validate`` (module :mod:`.checks`), data included
    (``data=False``: keys only, for callers that hold a partial recipe). Raises :class:`UserError`
    listing every problem found.
    """
    from .checks import check  # loaded on first use: reading a recipe (.load) stays light

    run, problems = check(raw, source, host_keys, data=data, host_types=host_types)
    if problems:
        raise UserError(problems, source)
    return run
