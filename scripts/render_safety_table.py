"""Write docs/safety_table.md (atomically): the generative harness's classes (counts per class and outcome, and what
the user sees, from docs/bad_input_fuzz.json, the last run of scripts/fuzz_bad_input.py), then every row of
tests/safety_rows.py run through the real CLIs.

Run it with the Python of the environment under test (several minutes on CPU):
    python scripts/render_safety_table.py [--out docs/safety_table.md]
    python scripts/render_safety_table.py --classes-only   # after a fuzz run: the rows part is kept as it is
Exit code 1 when a row's outcome is not the expected one (the doc is written anyway and shows it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from safety_rows import RECIPES, ROWS, ROWS_HEADING, Context, render, render_classes, run_row  # noqa: E402

FUZZ_JSON = REPO / "docs" / "bad_input_fuzz.json"


def fuzz_summary() -> dict | None:
    import json

    try:
        return json.loads(FUZZ_JSON.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        print(f"no {FUZZ_JSON.name}: run scripts/fuzz_bad_input.py first; the classes are left out", file=sys.stderr)
        return None


def classes_only(out: str) -> int:
    """Re-render the classes part; keep the rows part of the current doc (no CLI runs)."""
    from llama_factory_ext.safeio import atomic_write

    summary = fuzz_summary()
    current = Path(out).read_text(encoding="utf-8")
    if summary is None or ROWS_HEADING not in current:
        print(f"cannot re-render the classes: {'no fuzz summary' if summary is None else 'no rows part in ' + out}",
              file=sys.stderr)
        return 1
    head = current.split("## Generated bad input, by class")[0].split(ROWS_HEADING)[0].rstrip("\n") + "\n\n"
    with atomic_write(out) as f:
        f.write(head + "\n".join(render_classes(summary)) + "\n\n" + ROWS_HEADING + current.split(ROWS_HEADING, 1)[1])
    print(f"wrote {out} (classes re-rendered, rows kept)", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "safety_table.md"))
    parser.add_argument("--classes-only", action="store_true",
                        help="re-render only the generated classes from docs/bad_input_fuzz.json (no CLI runs)")
    args = parser.parse_args()
    if args.classes_only:
        return classes_only(args.out)

    from llama_factory_ext.safeio import atomic_write
    from llama_factory_ext.tiny import build_tiny_llama, read_texts

    results, wrong = [], []
    with tempfile.TemporaryDirectory(prefix="lfx_safety_") as base:
        tiny = build_tiny_llama(Path(base) / "tiny_llama0", texts=read_texts(RECIPES / "data" / "debian_sample_train.jsonl"))
        ctx = Context(Path(base) / "safety0", tiny)
        for n, row in enumerate(ROWS, 1):
            outcome, seen = run_row(ctx, row)
            results.append((row, outcome, seen))
            print(f"[{n}/{len(ROWS)}] {row.id}: {outcome}", file=sys.stderr, flush=True)
            if outcome != row.expected:
                wrong.append(row.id)
    with atomic_write(args.out) as f:
        f.write(render(results, fuzz_summary()))
    print(f"wrote {args.out}" + (f"; unexpected outcome: {', '.join(wrong)}" if wrong else ""), file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
