"""The docs quote the generative harness's last run (docs/bad_input_fuzz.json, written by scripts/fuzz_bad_input.py):
the class table of docs/safety_table.md and README's safety summary, not numbers from memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _summary() -> dict:
    return json.loads((REPO / "docs" / "bad_input_fuzz.json").read_text(encoding="utf-8"))


def test_safety_table_classes_match_the_last_fuzz_run():
    summary = _summary()
    text = (REPO / "docs" / "safety_table.md").read_text(encoding="utf-8")
    outcomes = summary["outcomes"]
    for c in summary["classes"]:
        row = f"| {c['class']} | {sum(c['counts'].values())} | " + " | ".join(str(c["counts"][o]) for o in outcomes)
        assert row in text, f"docs/safety_table.md lacks the counts of {c['class']!r}: run " \
                            "scripts/render_safety_table.py --classes-only"
    total = sum(sum(c["counts"].values()) for c in summary["classes"])
    assert f"**Total**: {total} cases" in text


def test_readme_quotes_the_last_fuzz_run():
    summary = _summary()
    total = sum(sum(c["counts"].values()) for c in summary["classes"])
    tracebacks = sum(c["counts"]["traceback"] for c in summary["classes"])
    text = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert f"{total:,} cases, {tracebacks} tracebacks" in text
    assert f"| {total} |" not in text  # the README quotes; the tables live in docs/


def test_readme_and_counts_line_quote_the_listed_rows_of_the_safety_table():
    """README's "N listed cases" and the table's **Counts** line agree with the rows docs/safety_table.md lists."""
    text = (REPO / "docs" / "safety_table.md").read_text(encoding="utf-8")
    rows = [ln for ln in text.split("## Listed bad inputs, through the real CLIs", 1)[1].splitlines()
            if ln.startswith("| ") and not ln.startswith("| bad input |")]
    counts = re.search(r"\*\*Counts\*\*: (.*)\.", text.split("## Listed bad inputs", 1)[1]).group(1)
    assert sum(int(n) for n in re.findall(r" (\d+)", counts)) == len(rows)
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert f"and {len(rows)} listed cases through the real CLIs" in readme


def test_every_harness_class_is_in_the_summary():
    summary = _summary()
    names = [c["class"] for c in summary["classes"]]
    for cls in ("run folders and file-system faults", "pack keys (llamafactory-cli)", "cls data folders",
                "cls multi-label and regression data",
                "llamafactory-ext arguments", "recipe files (YAML/JSON)", "recipe keys and values (dict)"):
        assert cls in names
    assert not summary["findings"] or re.search(r"Findings", (REPO / "docs" / "bad_input_fuzz.md").read_text())
