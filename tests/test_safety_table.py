"""Bad input -> what the user sees: one test per row of docs/safety_table.md (rows in tests/safety_rows.py),
through the real CLIs. The tests write nothing tracked; scripts/render_safety_table.py writes the doc."""

from __future__ import annotations

import pytest

from safety_rows import ROWS, Context, run_row

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ctx(tiny_llama, tmp_path_factory) -> Context:
    return Context(tmp_path_factory.mktemp("safety"), tiny_llama)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(ctx, row):
    outcome, seen = run_row(ctx, row)
    assert outcome == row.expected, f"{row.bad} / {row.command}: {outcome}, user sees: {seen}\n{ctx.last_output[-3000:]}"
