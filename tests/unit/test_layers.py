"""The package's shape, read from its own imports with ``ast`` (function-level imports included): no import cycle,
every module imports only from its own floor or below, and only the host adapter touches LLaMA-Factory or gradio."""

from __future__ import annotations

import ast
from pathlib import Path

PKG_DIR = Path(__file__).resolve().parents[2] / "llama_factory_ext"
PKG = "llama_factory_ext"

# bottom to top; a module may import from its own floor or any floor below it
FLOORS = (
    ("api", "hookspecs", "resources", "safeio", "saferegex", "quiet", ""),
    ("host", "runtime"),
    ("plugins",),
    ("recipe",),
    ("strategies", "stages", "estimator", "guard", "catalog", "runfolder", "tiny"),
    ("board", "serving"),
    ("patches", "cli"),
    ("_activate",),
)
HOST_ADAPTER = ("host", "patches")  # the only ones that import llamafactory or gradio


def modules() -> dict[str, Path]:
    out = {}
    for py in sorted(PKG_DIR.rglob("*.py")):
        parts = list(py.relative_to(PKG_DIR).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PKG, *parts])] = py
    return out


def imports(name: str, path: Path, known: dict) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, at any depth."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:  # `from pkg import module` names a module
                sub = f"{mod}.{alias.name}"
                found.append((sub if sub in known else mod, node.lineno))
    return found


def floor_of(module: str) -> int:
    top = module[len(PKG) + 1:].split(".")[0] if module != PKG else ""
    for i, names in enumerate(FLOORS):
        if top in names:
            return i
    raise AssertionError(f"{module} is on no floor: add it to FLOORS in {__file__}")


def graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[str, int]]]]:
    known = modules()
    edges, raw = {}, {}
    for name, path in known.items():
        raw[name] = imports(name, path, known)
        edges[name] = {m for m, _ in raw[name] if m in known and m != name}
    return edges, raw


def test_every_module_is_on_a_floor():
    for name in modules():
        floor_of(name)


def test_no_import_cycle():
    edges, _ = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []


def test_modules_import_only_their_floor_or_below():
    edges, _ = graph()
    upward = [f"{a} (floor {floor_of(a)}) imports {b} (floor {floor_of(b)})"
              for a, targets in edges.items() for b in sorted(targets) if floor_of(b) > floor_of(a)]
    assert upward == []


def test_only_the_host_adapter_imports_llamafactory_or_gradio():
    _, raw = graph()
    offenders = []
    for name, found in raw.items():
        top = name[len(PKG) + 1:].split(".")[0] if name != PKG else ""
        if top in HOST_ADAPTER:
            continue
        offenders += [f"{name}:{line} imports {mod}" for mod, line in found
                      if mod.split(".")[0] in ("llamafactory", "gradio")]
    assert offenders == []


def test_nothing_but_the_import_hook_imports_patches_and_nothing_imports_the_cli():
    edges, _ = graph()
    bad = []
    for a, targets in edges.items():
        for b in targets:
            if b.startswith(f"{PKG}.patches") and not (a.startswith(f"{PKG}.patches") or a == f"{PKG}._activate"):
                bad.append(f"{a} imports {b}")
            if b.startswith(f"{PKG}.cli") and not a.startswith(f"{PKG}.cli"):
                bad.append(f"{a} imports {b}")
    assert bad == []


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The reader itself: an import inside a function, relative at two levels, `from pkg import module`."""
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("def f():\n    from ..b import x\n    from . import c\n")
    known = {"p.sub.a": None, "p.b": None, "p.sub.c": None, "p.sub": None}
    found = [m for m, _ in imports("p.sub.a", pkg / "sub" / "a.py", known)]
    assert found == ["p.b", "p.sub.c"]
