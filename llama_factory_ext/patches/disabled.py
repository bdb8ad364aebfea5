"""With ``LLAMA_FACTORY_EXT_DISABLE=1`` the pack patches nothing; this only watches the host's ``read_args``
so that a recipe needing the pack stops with one message instead of the host's tracebacks."""

from __future__ import annotations

import sys

from ..api import DISABLE_ENV
from ..host.keys import host_arg_names
from ..recipe.uses import pack_parts


def wrap_read_args(tuner) -> None:
    original = getattr(tuner, "read_args", None)
    if original is None:
        return

    def read_args(args=None):
        raw = original(args)
        if isinstance(raw, dict):
            try:
                parts = pack_parts(raw, host_arg_names())
            except Exception:
                parts = []
            if parts:
                print(f"llama-factory-ext is disabled ({DISABLE_ENV} is set), and this recipe needs it for "
                      f"{', '.join(parts)}. Unset {DISABLE_ENV} to run it with the pack, or remove those keys "
                      f"to train with the plain host.", file=sys.stderr, flush=True)
                raise SystemExit(2)
        return raw

    read_args.__wrapped__ = original
    tuner.read_args = read_args
