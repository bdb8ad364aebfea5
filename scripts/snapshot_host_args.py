"""Write the installed host's argument names and defaults into llama_factory_ext/host/snapshots/ (run with each
tested host's venv: `.venv/bin/python scripts/snapshot_host_args.py`); tests/test_estimator.py checks the snapshot
against the host CI installs."""

import contextlib
import sys
from pathlib import Path

from llama_factory_ext.host.keys import cache_path, write_host_args_cache

target = Path(__file__).resolve().parents[1] / "llama_factory_ext" / "host" / "snapshots" / cache_path().name
with contextlib.redirect_stdout(sys.stderr):
    write_host_args_cache(target)
print(f"wrote {target}")
