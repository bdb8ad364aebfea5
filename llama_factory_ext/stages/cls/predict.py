"""New texts for a finished cls run (``llamafactory-ext predict``): read and check the input file."""

from __future__ import annotations


def read_inputs(path: str, text_col: str, pair_col=None):
    import os

    from ...api import UserError
    from .data import read_records

    if path.endswith(".txt"):
        from ...safeio import DATA_LIMIT, read_text

        lines = read_text(path, DATA_LIMIT, "input file").splitlines()
        rows = [(i, {"text": t}) for i, t in enumerate(lines, 1) if t.strip()]
        text_col = "text"
    else:
        rows, columns = read_records(path)
        missing = [c for c in (text_col, pair_col) if c and c not in columns]
        if missing:
            raise UserError(f"file {path} has no column `{missing[0]}` (columns: {', '.join(columns)}); use --text-column")
    empty = [i for i, r in rows if not str(r.get(text_col) or "").strip()]
    if empty:
        raise UserError(f"file {path} column `{text_col}`: empty text in rows {', '.join(map(str, empty[:5]))}")
    if not rows:
        raise UserError(f"file {path} has no rows")
    base = os.path.basename(path)  # ids as in a training run's predictions.jsonl: the id column, else FILE:ROW
    ids = [str(r["id"]) if r.get("id") is not None else f"{base}:{i}" for i, r in rows]
    texts = [str(r[text_col]) for _, r in rows]
    pairs = [str(r.get(pair_col) or "") for _, r in rows] if pair_col else None
    return ids, texts, pairs
