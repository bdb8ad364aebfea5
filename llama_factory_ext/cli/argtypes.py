"""argparse ``type=`` callables for every number and path the ``llamafactory-ext`` commands take.

Each one returns the parsed value or raises ``argparse.ArgumentTypeError`` saying what was expected, so argparse
prints ``llamafactory-ext CMD: error: argument --batch-size: ...`` and exits with status 2 (no traceback).
Each carries ``expects`` (a short description); tests/unit/test_cli_argtypes.py checks that every numeric and path
argument of every command uses one of them.

Memory sizes (``--gpu-memory``): ``80GiB``/``80Gi``/``81920MiB`` are binary (1024-based), ``80GB``/``80G``/``80000MB``
are decimal (1000-based), ``B`` alone is bytes, and **a bare number is GiB** (``--gpu-memory 80`` is 80 GiB,
what a user of an 80 GB card means). Sizes under 1 MiB or over 64 TiB are refused.

Paths are returned as given (strings); only their kind is checked. An output path must not be something of the
other kind (a file where a folder is wanted, or the reverse), and its nearest existing ancestor must be a
writable folder (missing folders in between are created by the command).
"""

from __future__ import annotations

import argparse
import math
import os
import re

_KIB, _MIB, _GIB, _TIB = 1024, 1024**2, 1024**3, 1024**4
MEMORY_MIN, MEMORY_MAX = _MIB, 64 * _TIB


def _expects(text: str):
    """Mark a type callable with what it accepts (read by the error messages and the parser-walking test)."""
    def mark(fn):
        fn.expects = text
        return fn
    return mark


def _fail(expected: str, value, why: str = "") -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"expected {expected}, got {value!r}" + (f" ({why})" if why else ""))


# ------------------------------------------------------------------ numbers

def int_range(minimum: int, maximum: int | None = None, what: str | None = None):
    """A whole number in [minimum, maximum]."""
    what = what or (f"a whole number of at least {minimum}" if maximum is None
                    else f"a whole number from {minimum} to {maximum}")

    @_expects(what)
    def parse(value) -> int:
        try:
            n = int(str(value).strip())
        except ValueError:
            raise _fail(what, value) from None
        if n < minimum or (maximum is not None and n > maximum):
            raise _fail(what, value)
        return n

    parse.__name__ = "int"
    return parse


def float_range(low: float, high: float | None = None, low_open: bool = True, high_open: bool = False,
                what: str | None = None):
    """A finite number between ``low`` and ``high`` (open or closed at each end)."""
    if what is None:
        lo = f"{'above' if low_open else 'at least'} {low:g}"
        what = f"a number {lo}" + ("" if high is None else f" and {'below' if high_open else 'at most'} {high:g}")

    @_expects(what)
    def parse(value) -> float:
        try:
            x = float(str(value).strip())
        except ValueError:
            raise _fail(what, value) from None
        if not math.isfinite(x) or (x <= low if low_open else x < low) or (
                high is not None and (x >= high if high_open else x > high)):
            raise _fail(what, value)
        return x

    parse.__name__ = "float"
    return parse


positive_int = int_range(1, what="a whole number of at least 1")
non_negative_int = int_range(0, what="a whole number of at least 0")
positive_float = float_range(0.0, what="a positive number")
probability = float_range(0.0, 1.0, what="a probability above 0 and at most 1")


_MEMORY = re.compile(r"([0-9]*\.?[0-9]+)\s*(?:([kmgt])(i?)b?|(b))?", re.IGNORECASE)
_MEMORY_WHAT = "a memory size like 80GiB, 24GB or 81920MiB (a bare number is GiB)"


@_expects(_MEMORY_WHAT)
def memory_size(value) -> int:
    """``80`` (GiB), ``80GiB``, ``80GB``, ``24G``, ``81920MiB``, ``1073741824B`` -> bytes (an int)."""
    m = _MEMORY.fullmatch(str(value).strip())
    if not m:
        raise _fail(_MEMORY_WHAT, value)
    number, unit, binary, bytes_ = float(m.group(1)), (m.group(2) or "").upper(), m.group(3), m.group(4)
    if bytes_:
        size = number
    elif not unit:
        size = number * _GIB
    else:
        size = number * (1024 if binary else 1000) ** {"K": 1, "M": 2, "G": 3, "T": 4}[unit]
    if size < MEMORY_MIN:
        raise _fail(_MEMORY_WHAT, value, "less than 1MiB")
    if size > MEMORY_MAX:
        raise _fail(_MEMORY_WHAT, value, "more than 64TiB")
    return int(size)


@_expects("a GPU name (H100, A100-40GB, L4, ...)")
def gpu_name(value) -> str:
    """A GPU the estimator knows the memory of (the name is returned as given)."""
    from ..estimator.core import GPU_MEMORY

    key = str(value).upper().replace(" ", "").replace("NVIDIA", "")
    if key not in GPU_MEMORY:
        raise argparse.ArgumentTypeError(f"expected a known GPU name ({', '.join(sorted(GPU_MEMORY))}), got "
                                         f"{value!r}; or give --gpu-memory 80GiB")
    return value


# ------------------------------------------------------------------ paths

def _nonempty(value, what: str) -> str:
    text = str(value)
    if not text.strip() or "\0" in text:
        raise _fail(what, value)
    return text


def _existing(value, what: str, is_kind, is_other, other: str, missing: str) -> str:
    path = _nonempty(value, what)
    if is_other(path):
        raise _fail(what, value, f"it is a {other}")
    if not is_kind(path):
        raise _fail(what, value, missing)
    return path


@_expects("an existing file")
def existing_file(value) -> str:
    return _existing(value, "an existing file", os.path.isfile, os.path.isdir, "folder", "no such file")


@_expects("an existing folder")
def existing_folder(value) -> str:
    return _existing(value, "an existing folder", os.path.isdir, os.path.isfile, "file", "no such folder")


@_expects("the output_dir of a finished run")
def run_folder(value) -> str:
    """An existing run folder whose run is not running, interrupted (killed: still marked running) or failed."""
    from ..runfolder import unfinished_problem

    path = existing_folder(value)
    problem = unfinished_problem(os.path.expanduser(path))
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return path


def _writable_ancestor(path: str, what: str, value) -> None:
    """The nearest existing ancestor of ``path`` is a folder we may write in."""
    parent = os.path.dirname(os.path.abspath(os.path.expanduser(path)))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise _fail(what, value, f"{parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _fail(what, value, f"no permission to write in {parent}")


def output_path(kind: str):
    """A path the command writes: ``kind`` is ``file``, ``folder`` or ``either`` (a folder, or a .yaml file)."""
    what = {"file": "a file path to write", "folder": "a folder to write in (new or existing)",
            "either": "a folder or a .yaml file path to write"}[kind]

    @_expects(what)
    def parse(value) -> str:
        path = _nonempty(value, what)
        full = os.path.expanduser(path)
        want_dir = kind == "folder" or (kind == "either" and not full.endswith((".yaml", ".yml")))
        if os.path.exists(full):
            if want_dir and not os.path.isdir(full):
                raise _fail(what, value, "it is a file")
            if not want_dir and os.path.isdir(full):
                raise _fail(what, value, "it is a folder")
            if not os.access(full if want_dir else os.path.dirname(os.path.abspath(full)), os.W_OK):
                raise _fail(what, value, "no permission to write there")
            return path
        _writable_ancestor(full, what, value)
        return path

    parse.__name__ = f"output_{kind}"
    return parse


output_file = output_path("file")
output_folder = output_path("folder")
output_file_or_folder = output_path("either")

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@_expects("a model folder or a Hugging Face Hub id (owner/name)")
def model_path(value) -> str:
    """An existing model folder, or (when nothing of that name exists) a Hub id like ``owner/name``."""
    what = "a model folder or a Hugging Face Hub id (owner/name)"
    path = _nonempty(value, what)
    full = os.path.expanduser(path)
    if os.path.isdir(full):
        return path
    if os.path.exists(full):
        raise _fail(what, value, "it is a file")
    if _HUB_ID.fullmatch(path) and not path.endswith("/"):
        return path
    raise _fail(what, value, "no such folder")


@_expects("a recipe file (.yaml) or a recipe name (see `llamafactory-ext recipes list`)")
def recipe(value) -> str:
    """A recipe file or a registered recipe name; returned as the file's path."""
    from ..api import UserError
    from ..catalog import find

    path = _nonempty(value, "a recipe file or name")
    if os.path.isdir(path):
        raise _fail("a recipe file (.yaml) or a recipe name", value, "it is a folder")
    try:
        return str(find(path))
    except UserError as err:
        raise argparse.ArgumentTypeError(err.problems[0]) from None


@_expects("the name of a bundled recipe")
def bundled_recipe(value) -> str:
    """A recipe shipped with the pack, by name (``tiny_cls``)."""
    from ..resources import builtin_dir

    names = sorted(p.stem for p in builtin_dir().glob("*.yaml"))
    if value not in names:
        raise argparse.ArgumentTypeError(f"expected the name of a bundled recipe ({', '.join(names)}), got {value!r}")
    return value
