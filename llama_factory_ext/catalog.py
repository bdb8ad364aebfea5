"""Recipe catalog: the bundled recipes and those of installed plugin packs (hook ``lfx_recipe_dirs``), listed
with their header comments, found by name and copied with their data. Reading a recipe is :mod:`.recipe.load`'s job.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .api import UserError
from .hookspecs import hookimpl
from .recipe.load import read_recipe
from .resources import builtin_dir

# header lines written by scripts/update_recipe_headers.py
HEADER_RUN = "# Run: "
HEADER_HARDWARE = "# Hardware: "
HEADER_MEMORY = "# Predicted peak memory: "


@hookimpl
def lfx_recipe_dirs():
    return [builtin_dir()]


@dataclass
class RecipeInfo:
    name: str
    path: Path
    pack: str
    purpose: str = ""
    run: str = ""
    hardware: str = ""
    memory: str = ""
    args: dict = field(default_factory=dict)
    error: str = ""

    @property
    def task(self) -> str:
        return str(self.args.get("stage", "sft"))

    @property
    def model(self) -> str:
        return str(self.args.get("model_name_or_path", ""))

    @property
    def method(self) -> str:
        ft = self.args.get("finetuning_type", "lora")
        text = "+".join(map(str, ft)) if isinstance(ft, (list, tuple)) else str(ft)
        if self.args.get("quantization_bit"):
            text += f" ({self.args['quantization_bit']}-bit)"
        return text

    @property
    def memory_short(self) -> str:
        m = re.match(r"\s*([0-9.]+\s*[GMK]i?B)", self.memory)
        return m.group(1) if m else (self.memory.split("(")[0].strip() or "-")


def read_header(path: os.PathLike) -> dict:
    """The leading comment block: purpose, run command, hardware, predicted memory."""
    out = {"purpose": "", "run": "", "hardware": "", "memory": "", "lines": []}
    for line in Path(path).read_text().splitlines():
        if not line.startswith("#"):
            break
        out["lines"].append(line)
        for key, prefix in (("run", HEADER_RUN), ("hardware", HEADER_HARDWARE), ("memory", HEADER_MEMORY)):
            if line.startswith(prefix):
                out[key] = line[len(prefix):].strip()
                break
        else:
            if not out["purpose"] and ":" in line:
                out["purpose"] = line.split(":", 1)[1].strip()
    return out


def _pack_of(plugin_name: str) -> str:
    if plugin_name.startswith("llama_factory_ext."):
        return "llama-factory-ext"
    from .plugins import get_plugin_manager

    dist = getattr(get_plugin_manager(), "_lfx_dists", {}).get(plugin_name)
    return dist.name if dist else plugin_name


def recipe_dirs() -> list[tuple[str, Path]]:
    """(pack, folder) for every folder contributed through ``lfx_recipe_dirs``, built-in first."""
    from .plugins import get_plugin_manager

    out: list[tuple[str, Path]] = []
    impls = get_plugin_manager().hook.lfx_recipe_dirs.get_hookimpls()
    impls = sorted(impls, key=lambda i: not i.plugin_name.startswith("llama_factory_ext."))
    for impl in impls:
        for d in impl.function() or []:
            d = Path(d)
            if d.is_dir() and all(d != seen for _, seen in out):
                out.append((_pack_of(impl.plugin_name), d))
    return out


def all_recipes() -> dict[str, RecipeInfo]:
    """name -> RecipeInfo; a name a later pack repeats is listed as ``pack:name``."""
    found: dict[str, RecipeInfo] = {}
    for pack, folder in recipe_dirs():
        for path in sorted(folder.glob("*.y*ml")):
            header = read_header(path)
            info = RecipeInfo(path.stem, path, pack, header["purpose"], header["run"], header["hardware"], header["memory"])
            try:
                info.args = read_recipe(path)
            except UserError as err:
                info.error = "; ".join(err.problems)
            name = info.name if info.name not in found else f"{pack}:{info.name}"
            info.name = name
            found[name] = info
    return found


def find(name_or_path: str) -> Path:
    """A recipe file from a registered name or a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    recipes = all_recipes()
    if name_or_path in recipes:
        return recipes[name_or_path].path
    import difflib

    close = difflib.get_close_matches(name_or_path, list(recipes), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else f" (have: {', '.join(sorted(recipes))})"
    raise UserError(f"no recipe named '{name_or_path}' and no such file{hint}")


def copy_recipe(name: str, dest: str) -> tuple[Path, list[str]]:
    """Copy a recipe and its data folder; ``dataset_dir`` rewritten relative to the copy.

    Only files inside the recipe's own folder tree are copied: a ``dataset_dir`` outside it, and symlinks
    leading out of it, are left out (returned as reasons). Never overwrites: an existing file with other
    content is refused; identical data files are shared.
    """
    import filecmp
    import shutil

    src = find(name)
    root = src.parent.resolve()
    dest_path = Path(dest)
    target = dest_path if dest_path.suffix in (".yaml", ".yml") else dest_path / src.name
    raw = read_recipe(src)
    dataset_dir = raw.get("dataset_dir", "data")
    data_src = None
    left_out: list[str] = []
    if isinstance(dataset_dir, str) and not os.path.isabs(dataset_dir) and (src.parent / dataset_dir).is_dir():
        resolved = (src.parent / dataset_dir).resolve()
        if resolved.is_relative_to(root):
            data_src = resolved
        else:
            left_out.append(f"dataset_dir {dataset_dir} ({resolved}): not inside the recipe's own folder "
                            f"{root}; copy the data you need by hand")
    elif isinstance(dataset_dir, str) and os.path.isabs(dataset_dir):
        left_out.append(f"dataset_dir {dataset_dir}: an absolute path; the copy keeps pointing at it")
    data_dst = target.parent / "data"
    plan, clashes = [], []
    if target.exists():
        clashes.append(target)
    if data_src is not None:
        for folder, dirs, files in os.walk(data_src, followlinks=False):
            for d in list(dirs):
                p = Path(folder) / d
                if p.is_symlink():
                    dirs.remove(d)
                    left_out.append(f"{p}: a symlinked folder (not followed)")
            for fname in sorted(files):
                f = Path(folder) / fname
                if f.is_symlink() and not f.resolve().is_relative_to(root):
                    left_out.append(f"{f}: a symlink to {f.resolve()}, outside the recipe's folder")
                    continue
                if not f.is_file():
                    continue
                to = data_dst / f.relative_to(data_src)
                if not to.exists():
                    plan.append((f, to))
                elif not filecmp.cmp(f, to, shallow=False):
                    clashes.append(to)
    if clashes:
        raise UserError([f"{p} exists; refusing to overwrite (pick another DEST or remove it)" for p in clashes])
    target.parent.mkdir(parents=True, exist_ok=True)
    for f, to in sorted(plan):
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, to)
    text = src.read_text(encoding="utf-8")
    if data_src is not None:
        text = _set_key_line(text, "dataset_dir", "data")
    from .safeio import atomic_write

    with atomic_write(target) as out:
        out.write(text)
    return target, left_out


def _set_key_line(text: str, key: str, value):
    """Replace the value of a top-level ``key:`` line, keeping comments and layout."""
    if value is None:
        return text
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith(f"{key}:"):
            lines[i] = f"{key}: {value}\n"
            return "".join(lines)
    return text.rstrip("\n") + f"\n{key}: {value}\n"
