"""``llamafactory-ext validate PATH...`` (also ``recipes validate``): check recipe files without loading weights.

Validation loads no weights and needs no GPU: keys, types, ranges, combinations, datasets, columns.
"""

from __future__ import annotations

import json
import sys


def add_arguments(parser):
    parser.add_argument("paths", nargs="+", metavar="PATH|NAME|key=value",
                        help="recipe files or names; key=value overrides apply to all of them, as on the host's command line")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    from ..catalog import find
    from ..api import DISABLED_NOTE, UserError, pack_disabled
    from ..quiet import stdout_to_stderr
    from ..recipe.validate import validate_file

    overrides = [p for p in args.paths if "=" in p and not p.endswith((".yaml", ".yml"))]
    targets = [p for p in args.paths if p not in overrides]
    if not targets:
        raise UserError("name at least one recipe file")
    as_json = getattr(args, "json", False)
    if pack_disabled():
        print(DISABLED_NOTE, file=sys.stderr)
    if sys.stderr.isatty():  # the slow step says what it does (scripts and CI see only the verdicts)
        print("llamafactory-ext validate: checking with LLaMA-Factory's own argument parser (imports torch, "
              "transformers and the host: a few seconds)", file=sys.stderr, flush=True)
    with stdout_to_stderr(as_json):  # the host logs to stdout; keep --json output clean
        results = []
        for t in targets:
            try:
                path = find(t)
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
