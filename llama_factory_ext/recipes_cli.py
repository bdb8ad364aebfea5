"""``llamafactory-ext recipes list|show|copy|validate`` and ``llamafactory-ext validate PATH...``.

Validation loads no weights and needs no GPU: keys, types, ranges, combinations, datasets, columns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .api import UserError
from .validation import validate_file

# ------------------------------------------------------------------ argparse

def add_arguments_recipes(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="recipes of this package and installed plugin packs")
    p = sub.add_parser("show", help="print a recipe")
    p.add_argument("name", help="recipe name (see `recipes list`; pack:name when two packs share it) or a path")
    p = sub.add_parser("copy", help="copy a recipe with its data folder to DEST (dataset_dir: data, next to the copy)")
    p.add_argument("name", help="recipe name (see `recipes list`; pack:name when two packs share it) or a path")
    p.add_argument("dest", help="a folder (created) or a .yaml path")
    p = sub.add_parser("validate", help="check recipe files without loading weights")
    add_arguments_validate(p)


def add_arguments_validate(parser):
    parser.add_argument("paths", nargs="+", metavar="PATH|NAME|key=value",
                        help="recipe files or names; key=value overrides apply to all of them, as on the host's command line")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_recipes(args) -> int:
    action = getattr(args, "action", None)
    if action == "list" or action is None:
        return _list()
    if action == "show":
        from . import recipes

        print(recipes.find(args.name).read_text(), end="")
        return 0
    if action == "copy":
        from . import recipes

        target, left_out = copy_recipe(args.name, args.dest)
        for item in left_out:
            print(f"left out: {item}", file=__import__("sys").stderr)
        run = recipes.read_header(target)["run"]
        extra = run.split(".yaml", 1)[1].strip() if ".yaml" in run else ""
        from .commands.tiny_model import model_hint

        hint = model_hint(target)
        print(f"copied to {target}" + (f"\n{hint}" if hint else "")
              + f"\nrun it: llamafactory-cli train {target} {extra}".rstrip())
        return 0
    return run_validate(args)


def run_validate(args) -> int:
    from . import recipes

    overrides = [p for p in args.paths if "=" in p and not p.endswith((".yaml", ".yml"))]
    targets = [p for p in args.paths if p not in overrides]
    if not targets:
        raise UserError("name at least one recipe file")
    as_json = getattr(args, "json", False)
    from .api import DISABLED_NOTE, pack_disabled

    if pack_disabled():
        import sys

        print(DISABLED_NOTE, file=sys.stderr)
    import sys

    if sys.stderr.isatty():  # the slow step says what it does (scripts and CI see only the verdicts)
        print("llamafactory-ext validate: checking with LLaMA-Factory's own argument parser (imports torch, "
              "transformers and the host: a few seconds)", file=sys.stderr, flush=True)
    with _stdout_to_stderr(as_json):  # the host logs to stdout; keep --json output clean
        results = []
        for t in targets:
            try:
                path = recipes.find(t)
            except UserError as err:
                results.append({"file": t, "problems": err.problems, "notes": []})
                continue
            problems, notes = validate_file(path, overrides)
            results.append({"file": str(path), "problems": problems, "notes": notes})
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["problems"]:
                print(f"{r['file']}: {len(r['problems'])} problem(s)")
                for p in r["problems"]:
                    print(f"  - {p}")
            else:
                print(f"{r['file']}: OK")
            for n in r["notes"]:
                print(f"  {n}")
    return 1 if any(r["problems"] for r in results) else 0


class _stdout_to_stderr:
    """Send file descriptor 1 to 2 while active (catches loggers bound to sys.stdout)."""

    def __init__(self, active: bool):
        self.active = active

    def __enter__(self):
        if self.active:
            import sys

            sys.stdout.flush()
            self.saved = os.dup(1)
            os.dup2(2, 1)

    def __exit__(self, *exc):
        if self.active:
            import sys

            sys.stdout.flush()
            os.dup2(self.saved, 1)
            os.close(self.saved)


def _list() -> int:
    from . import recipes

    rows = [("NAME", "TASK", "MODEL", "METHOD", "PEAK/GPU", "PACK")]
    for info in recipes.all_recipes().values():
        if info.error:
            rows.append((info.name, "?", "?", f"unreadable: {info.error}", "-", info.pack))
            continue
        rows.append((info.name, info.task, info.model, info.method, info.memory_short, info.pack))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


# ------------------------------------------------------------------ copy

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
