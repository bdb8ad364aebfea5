"""``llamafactory-ext recipes list|show|copy|validate``."""

from __future__ import annotations

import sys

from .. import catalog
from . import argtypes, validate


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="recipes of this package and installed plugin packs")
    p = sub.add_parser("show", help="print a recipe")
    p.add_argument("name", type=argtypes.recipe,
                   help="recipe name (see `recipes list`; pack:name when two packs share it) or a path")
    p = sub.add_parser("copy", help="copy a recipe with its data folder to DEST (dataset_dir: data, next to the copy)")
    p.add_argument("name", type=argtypes.recipe,
                   help="recipe name (see `recipes list`; pack:name when two packs share it) or a path")
    p.add_argument("dest", type=argtypes.output_file_or_folder, help="a folder (created) or a .yaml path")
    p = sub.add_parser("validate", help="check recipe files without loading weights")
    validate.add_arguments(p)


def run(args) -> int:
    action = getattr(args, "action", None)
    if action == "list" or action is None:
        return _list()
    if action == "show":
        print(catalog.find(args.name).read_text(), end="")
        return 0
    if action == "copy":
        return _copy(args)
    return validate.run(args)


def _copy(args) -> int:

    from ..tiny import model_hint

    target, left_out = catalog.copy_recipe(args.name, args.dest)
    for item in left_out:
        print(f"left out: {item}", file=sys.stderr)
    run_line = catalog.read_header(target)["run"]
    extra = run_line.split(".yaml", 1)[1].strip() if ".yaml" in run_line else ""
    hint = model_hint(target)
    print(f"copied to {target}" + (f"\n{hint}" if hint else "")
          + f"\nrun it: llamafactory-cli train {target} {extra}".rstrip())
    return 0


def _list() -> int:

    rows = [("NAME", "TASK", "MODEL", "METHOD", "PEAK/GPU", "PACK")]
    for info in catalog.all_recipes().values():
        if info.error:
            rows.append((info.name, "?", "?", f"unreadable: {info.error}", "-", info.pack))
            continue
        rows.append((info.name, info.task, info.model, info.method, info.memory_short, info.pack))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
