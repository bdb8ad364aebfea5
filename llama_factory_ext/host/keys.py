"""The host's train-argument names and defaults: from the host itself, a shipped snapshot of a tested host, or a
cache written the first time the host is imported (per llamafactory / transformers version and argument files)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
from pathlib import Path
from typing import Optional

SNAPSHOTS = Path(__file__).parent / "snapshots"  # shipped: the tested hosts with the transformers they install


@functools.lru_cache(maxsize=None)  # reads the host's argument files: once per process
def _versions() -> str:
    """llamafactory and transformers versions, and a digest of the host's argument files (a source install keeps
    its version across commits)."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("llamafactory", "transformers"):
        try:
            out.append(version(dist))
        except PackageNotFoundError:
            out.append("none")
    digest = hashlib.sha1()
    try:
        from importlib.util import find_spec

        spec = find_spec("llamafactory")
        hparams = Path(spec.origin).parent / "hparams" if spec and spec.origin else None
        for f in sorted(hparams.glob("*.py")) if hparams else ():
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
    except (OSError, ValueError, ImportError):
        pass
    out.append(digest.hexdigest()[:12])
    return "-".join(out)


def cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "llama_factory_ext" / f"host_args-{_versions()}.json"


def cached_host_args() -> Optional[dict]:
    """{key: default} of the host's train arguments (the user's cache, else a shipped snapshot of a tested host),
    or None before the first slow run."""
    path = cache_path()
    for candidate in (path, SNAPSHOTS / path.name):
        try:
            return json.loads(candidate.read_text())["defaults"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def host_args_now() -> dict:
    """{key: plain default or None} of the installed host's train arguments (imports the host)."""
    from .calls import train_arg_classes

    defaults = {name: None for name in host_arg_names()}
    for cls in train_arg_classes():
        for f in dataclasses.fields(cls):
            if f.init and f.default is not dataclasses.MISSING:
                v = getattr(f.default, "value", f.default)
                defaults[f.name] = v if isinstance(v, (str, int, float, bool, type(None))) else None
    return dict(sorted(defaults.items()))


def write_host_args_cache(path: Optional[Path] = None) -> Path:
    """Record the host's train argument names and plain defaults (called after the host is imported anyway)."""
    path = path or cache_path()
    write_cache(path, {"versions": _versions(), "defaults": host_args_now()})
    return path


def write_cache(path: Path, data) -> None:
    """Write a JSON cache file atomically; a read-only home only costs speed."""
    from ..safeio import atomic_write

    try:
        with atomic_write(path) as f:
            f.write(json.dumps(data, indent=0))
    except OSError:
        pass  # a read-only home only costs speed



def host_arg_names() -> set[str]:
    """Every key the host's train parser accepts (imports the host)."""
    from llamafactory.hparams.training_args import RayArguments

    from .calls import train_arg_classes

    names = set()
    for cls in train_arg_classes() + [RayArguments]:
        names.update(f.name for f in dataclasses.fields(cls) if f.init)
    return names


def known_host_keys() -> set[str]:
    """The host's argument names without importing the host when a snapshot or the cache has them; empty when no
    usable host is installed (the gate says so)."""
    cached = cached_host_args()
    if cached is not None:
        return set(cached)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the host logs to stdout as it loads; keep stdout clean
            return host_arg_names()
    except Exception:
        return set()
