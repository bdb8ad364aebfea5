"""Run every row of tests/safety_rows.py through the real CLIs and write docs/safety_table.md (atomically).

Run it with the Python of the environment under test (several minutes on CPU):
    python scripts/render_safety_table.py [--out docs/safety_table.md]
Exit code 1 when a row's outcome is not the expected one (the doc is written anyway and shows it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from safety_rows import RECIPES, ROWS, Context, render, run_row  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "safety_table.md"))
    args = parser.parse_args()

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
        f.write(render(results))
    print(f"wrote {args.out}" + (f"; unexpected outcome: {', '.join(wrong)}" if wrong else ""), file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
