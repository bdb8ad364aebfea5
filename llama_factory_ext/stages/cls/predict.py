"""New texts for a finished cls run (``llamafactory-ext predict``): read and check the input file."""

from __future__ import annotations


def read_inputs(path: str, text_col: str, pair_col=None):
    import os

    from ...api import UserError
    from .records import bad_unicode, kind_of, read_records

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
    if not rows:
        raise UserError(f"file {path} has no rows")
    problems = []
    for col in [c for c in (text_col, pair_col) if c]:
        wrong = [(i, r[col]) for i, r in rows if r.get(col) is not None and not isinstance(r[col], str)]
        if wrong:
            problems.append(f"file {path} column `{col}`: text is {kind_of(wrong[0][1])}, not a string, in rows "
                            f"{', '.join(str(i) for i, _ in wrong[:5])}")
        broken = [i for i, r in rows if isinstance(r.get(col), str) and bad_unicode(r[col])]
        if broken:
            problems.append(f"file {path} column `{col}`: a lone surrogate character (not valid Unicode text) in rows "
                            f"{', '.join(map(str, broken[:5]))}")
    empty = [i for i, r in rows if r.get(text_col) is None or (isinstance(r[text_col], str) and not r[text_col].strip())]
    if empty:
        problems.append(f"file {path} column `{text_col}`: empty text in rows {', '.join(map(str, empty[:5]))}")
    base = os.path.basename(path)  # ids as in a training run's predictions.jsonl: the id column, else FILE:ROW
    ids, line_of = [], {}
    for i, r in rows:
        rid = r.get("id")
        if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int)) or
                                (isinstance(rid, str) and bad_unicode(rid))):
            problems.append(f"file {path} column `id`: row {i} has id {rid!r}; ids are strings or integers")
            rid = None
        rid = str(rid) if rid is not None else f"{base}:{i}"
        if rid in line_of:
            problems.append(f"file {path} column `id`: id {rid!r} is in row {line_of[rid]} and row {i}; ids name "
                            f"the predictions, so they must be unique")
        line_of.setdefault(rid, i)
        ids.append(rid)
    if problems:
        raise UserError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []))
    texts = [r[text_col] for _, r in rows]
    pairs = [r.get(pair_col) or "" for _, r in rows] if pair_col else None
    return ids, texts, pairs
