"""Copy a recipe with its data folder (``llamafactory-ext recipes copy``); to be merged into the catalog."""

from __future__ import annotations

import os
from pathlib import Path

from .api import UserError


def copy_recipe(name: str, dest: str) -> tuple[Path, list[str]]:
    """Copy a recipe and its data folder; ``dataset_dir`` rewritten relative to the copy.

    Only files inside the recipe's own folder tree are copied: a ``dataset_dir`` outside it, and symlinks
    leading out of it, are left out (returned as reasons). Never overwrites: an existing file with other
    content is refused; identical data files are shared.
    """
    import filecmp
    import shutil

    from . import recipes

    src = recipes.find(name)
    root = src.parent.resolve()
    dest_path = Path(dest)
    target = dest_path if dest_path.suffix in (".yaml", ".yml") else dest_path / src.name
    raw = recipes.load_yaml(src)
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
