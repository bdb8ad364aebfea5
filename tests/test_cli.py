"""`llamafactory-ext` has one home: `llama_factory_ext/cli/`, one module per command, one convention."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import llama_factory_ext
from llama_factory_ext.cli import COMMANDS

PKG = Path(llama_factory_ext.__file__).resolve().parent
CLI = PKG / "cli"


def test_every_command_module_is_listed_and_has_add_arguments_and_run():
    helpers = {"argtypes"}  # argparse types shared by the commands, not a command
    files = {f"llama_factory_ext.cli.{p.stem}" for p in CLI.glob("*.py")
             if not p.name.startswith("__") and p.stem not in helpers}
    listed = {module for module, _ in COMMANDS.values()}
    assert files == listed
    for module in sorted(listed):
        mod = importlib.import_module(module)
        assert callable(getattr(mod, "add_arguments", None)), module
        assert callable(getattr(mod, "run", None)), module


def _module_name(py: Path) -> str:
    parts = list(py.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(py: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module an import in ``py`` may load, function-level ones included."""
    name = _module_name(py)
    package = name if py.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names]  # `from .. import cli`
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            out.append((node.lineno, node.args[0].value))
    return out


def test_nothing_outside_cli_imports_it():
    offenders = []
    for py in sorted(PKG.rglob("*.py")):
        if py.is_relative_to(CLI):
            continue
        for line, target in _imported(py):
            if target == "llama_factory_ext.cli" or target.startswith("llama_factory_ext.cli."):
                offenders.append(f"{py.relative_to(PKG)}:{line}: {target}")
    assert offenders == []


def test_import_reader_resolves_relative_imports():
    probe = CLI / "recipes.py"  # `from . import validate` and `from .. import catalog`
    targets = {t for _, t in _imported(probe)}
    assert {"llama_factory_ext.cli.validate", "llama_factory_ext.catalog"} <= targets


def test_python_m_cli_prints_help():
    out = subprocess.run([sys.executable, "-m", "llama_factory_ext.cli", "-h"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: llamafactory-ext") and "tiny-model" in out.stdout


def test_stdout_to_stderr_catches_loggers_bound_to_stdout():
    code = ("import logging, sys\n"
            "log = logging.getLogger('x'); log.addHandler(logging.StreamHandler(sys.stdout)); log.propagate = False\n"
            "from llama_factory_ext.quiet import stdout_to_stderr\n"
            "with stdout_to_stderr():\n"
            "    log.warning('from a logger'); print('from print')\n"
            "with stdout_to_stderr(False):\n"
            "    pass\n"
            "print('after')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "after\n"
    assert "from a logger" in out.stderr and "from print" in out.stderr


def test_doctor_names_torch_cuda_build_driver_and_the_index_fix(tmp_path, monkeypatch):
    """No GPU here: with no driver, CUDA is info with how to install; with a driver torch cannot use, a failure
    naming torch's CUDA build, the driver, and PyTorch's per-CUDA index."""
    import torch

    from llama_factory_ext.cli.doctor import DRIVER_FOR_CUDA, _cuda_check

    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    name, ok, value, fix = _cuda_check()
    assert name == "CUDA" and ok is None and "no NVIDIA driver found" in value and "download.pytorch.org/whl/cu126" in fix
    build = torch.version.cuda
    assert (f"built for CUDA {build}" if build else "CPU-only build") in value
    smi = tmp_path / "nvidia-smi"  # a driver that answers, on a machine where torch sees no GPU
    smi.write_text("#!/bin/sh\necho 550.54.15\n")
    smi.chmod(0o755)
    name, ok, value, fix = _cuda_check()
    assert ok is False and "driver 550.54.15" in value and "torch sees no GPU" in value
    assert "--index-url https://download.pytorch.org/whl/cu126" in fix and "torch==2.11.0" in fix
    if build:
        assert f"needs NVIDIA driver >= {DRIVER_FOR_CUDA[build.split('.')[0]]}" in value
    from conftest import REPO

    from llama_factory_ext.cli.doctor import TORCH_PIN

    assert f"pip install {TORCH_PIN}" in (REPO / "README.md").read_text()  # the fix installs the README's pin
