"""Rows of cls data files: reading JSON / JSONL / CSV / Parquet with row-level checks (types, encodings, ragged
rows), label normalisation and its warnings, row ids and duplicate ids."""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from dataclasses import dataclass, field
from typing import Optional

from ...api import UserError
from ...safeio import DATA_LIMIT, check_size, read_text


SUPPORTED_EXT = {"json": "json", "jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}
SCORE_LIMIT = 3.4028234663852886e38  # the largest float32: scores past it are infinite in the model

@dataclass
class Example:
    path: str
    row: int  # 1-based row (line for JSONL) in its file
    id: str
    text: str
    text_pair: Optional[str]
    label: Optional[str]
    labels: Optional[list[str]] = None  # multi_label: the row's labels (normalised like `label`), [] for none
    score: Optional[float] = None  # regression: the row's number

@dataclass
class Source:
    name: str
    files: list[str]
    text_col: str
    label_col: str
    pair_col: Optional[str]
    examples: list[Example] = field(default_factory=list)
    root: Optional[str] = None  # dataset_dir: FILE:ROW ids name the file relative to it (else its base name)
    raw_labels: dict[str, set[str]] = field(default_factory=dict)  # label -> the forms it was written in
    cells: list = field(default_factory=list)  # the label cell of each example, parsed once the problem type is known

def normalize_label(label: str) -> str:
    """The form labels are compared in (``cls_label_normalize``): Unicode NFC, surrounding whitespace stripped."""
    return unicodedata.normalize("NFC", label).strip()

def kind_of(value) -> str:
    """How a cell's value is named in a message."""
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "NaN" if value != value else "a float"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int):
        return "a number"
    return f"a {type(value).__name__}"

def bad_unicode(text: str) -> bool:
    """True for a string that is not valid Unicode text (a lone surrogate, e.g. from a broken ``\\ud800`` escape)."""
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True

def scalar_label(value) -> tuple[Optional[str], Optional[str]]:
    """(label as text, None) for a string or integer cell, (None, None) for an absent one, (None, why) otherwise."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, ("a lone surrogate character (not valid Unicode)" if bad_unicode(value) else None)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    if isinstance(value, (list, tuple)):
        return None, "a list: several labels per row are multi-label classification; set `cls_problem_type: multi_label`"
    return None, f"{kind_of(value)}; labels are strings or integers"

def _number_text(value: str) -> Optional[float]:
    """The number a text cell writes (CSV scores), or None."""
    try:
        return float(value.strip())
    except ValueError:
        return None

def cell_kind(value, delimiter: Optional[str] = None) -> Optional[str]:
    """What a label cell holds, for ``cls_problem_type: auto``: 'list', 'number' (a float, or a text such as '4.5'
    with a fractional part), 'integer', 'text', 'other'; None when absent."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, bool):
        return "other"
    if isinstance(value, float):
        return "number"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        if delimiter is not None or _json_list(value) is not None:
            return "list"
        if value.strip().lstrip("+-").isdigit():
            return "integer"  # a CSV cell: an integer fits labels and scores alike
        x = _number_text(value)
        return "number" if x is not None and x == x and abs(x) != float("inf") else "text"
    return "other"

KIND_NAMES = {"list": "a list of labels", "number": "a number", "integer": "an integer", "text": "text",
              "other": "another type"}
def mixed_kind_problems(kinds: dict[str, list[tuple[str, int]]], chosen: str, column: str) -> list[str]:
    """One problem per file whose label column holds kinds that ``chosen`` cannot read (e.g. lists and texts)."""
    fits = {"multi_label": {"list"}, "regression": {"number", "integer"}, "single_label": {"text", "integer"}}[chosen]
    wrong = {k: rows for k, rows in kinds.items() if k not in fits and rows}
    if not wrong:
        return []
    main = max((k for k in kinds if k in fits), key=lambda k: len(kinds[k]), default=None)
    per_file: dict[str, list[str]] = {}
    for k, rows in wrong.items():
        for path in dict.fromkeys(p for p, _ in rows):
            per_file.setdefault(path, []).append(f"{KIND_NAMES[k]} in {_fmt_rows([r for p, r in rows if p == path])}")
    return [f"file {path} column `{column}`: mixed types in one column: {'; '.join(parts)}, but "
            f"{KIND_NAMES.get(main, 'other values')} elsewhere (read as {chosen} by `cls_problem_type: auto`); "
            f"write every label alike, or set `cls_problem_type`" for path, parts in per_file.items()]

def _json_list(value: str) -> Optional[list]:
    """A JSON list written as text (a CSV cell such as '["a", "b"]'), or None."""
    if not value.lstrip().startswith("["):
        return None
    try:
        out = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return out if isinstance(out, list) else None

def multi_labels(value, delimiter: Optional[str] = None) -> tuple[Optional[list[str]], Optional[str]]:
    """(labels, None) for a multi-label cell (a JSON list, or a string cut at ``delimiter``), (None, None) when
    absent, (None, why) otherwise. Items are strings or integers; repeats count once."""
    if value is None:
        return None, None
    if isinstance(value, str):
        listed = _json_list(value)
        if listed is not None:
            value = listed
        elif delimiter is not None:
            value = [x for x in value.split(delimiter) if x.strip()]
        else:
            return None, ("a single string; multi-label rows carry a JSON list of labels, or set "
                          "`cls_label_delimiter` for labels joined in one string")
    if not isinstance(value, (list, tuple)):
        return None, f"{kind_of(value)}; multi-label rows carry a list of labels"
    out: list[str] = []
    for item in value:
        lab, why = scalar_label(item)
        if why or lab is None or not lab.strip():
            what = ("null" if item is None else "a lone surrogate character (not valid Unicode)" if why and
                    isinstance(item, str) else "an empty string" if isinstance(item, str) else kind_of(item))
            return None, f"a list holding {what}; list items are non-empty labels (strings or integers)"
        if lab not in out:
            out.append(lab)
    return out, None

def score_value(value) -> tuple[Optional[float], Optional[str]]:
    """(score, None) for a finite number within ±:data:`SCORE_LIMIT` (or a text that writes one), (None, None) when
    absent, (None, why)."""
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None, f"{kind_of(value)}; scores are numbers"
    beyond = f"beyond ±{SCORE_LIMIT:.2g} (float32, which the model computes in); scores are finite numbers in that range"
    try:
        x = _number_text(value) if isinstance(value, str) else float(value)
    except OverflowError:  # an integer past the largest float (JSON allows any number of digits)
        return None, beyond
    if x is None:
        return None, f"not a number ({value!r}); scores are numbers"
    if x != x:
        return None, "NaN; scores are finite numbers"
    if abs(x) == float("inf"):
        return None, "infinite; scores are finite numbers"
    if abs(x) > SCORE_LIMIT:  # finite here, infinite in the model's float32 (and its mean and std past float64)
        return None, beyond
    return x, None

def _fmt_rows(rows: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"

def read_records(path: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """(row number, record) pairs and the column names of one JSON / JSONL / CSV / parquet file."""
    ext = path.rsplit(".", 1)[-1].lower()
    if ext not in SUPPORTED_EXT:
        raise UserError(f"file {path}: unsupported type .{ext} (use {', '.join('.' + e for e in SUPPORTED_EXT)})")
    records: list[tuple[int, dict]] = []
    if ext == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        check_size(path, DATA_LIMIT, "data file")
        try:
            records = [(i, r) for i, r in enumerate(pq.read_table(path).to_pylist(), 1)]
        except (pa.ArrowException, OSError) as err:
            raise UserError(f"file {path}: not a readable parquet file ({err})") from None
    else:
        text = read_text(path, DATA_LIMIT, "data file")
        line = 0
        try:
            if ext == "jsonl" or (ext == "json" and text.lstrip()[:1] == "{"):
                for line, row in enumerate(text.splitlines(), 1):
                    if row.strip():
                        records.append((line, json.loads(row)))
            elif ext == "json":
                data = json.loads(text)
                if not isinstance(data, list):
                    raise UserError(f"file {path}: expected a JSON list of objects, got {type(data).__name__}")
                records = [(i, r) for i, r in enumerate(data, 1)]
            else:
                records = [(i, dict(r)) for i, r in enumerate(csv.DictReader(io.StringIO(text, newline="")), 1)]
        except json.JSONDecodeError as err:
            where = f"row {line}" if line else f"line {err.lineno}"
            raise UserError(f"file {path}: {where} is not valid JSON ({err.msg})") from None
        except ValueError as err:  # past JSON's grammar: an integer of more digits than Python converts (4300)
            where = f"row {line}" if line else "its JSON"
            raise UserError(f"file {path}: {where} holds a number too long to read ({str(err).split(';')[0]})") from None
        except csv.Error as err:
            raise UserError(f"file {path}: not valid CSV ({err})") from None
        except RecursionError:
            raise UserError(f"file {path}: {f'row {line}' if line else 'its JSON'} is nested too deeply") from None
        if ext == "csv":
            _check_csv(path, text)
    bad = [i for i, r in records if not isinstance(r, dict)]
    if bad:
        raise UserError(f"file {path}: {_fmt_rows(bad)} are not objects")
    columns: list[str] = []
    for _, r in records:
        for k in r:
            if k not in columns:
                columns.append(k)
    return records, columns

def _check_csv(path: str, text: str) -> None:
    """Refuse a CSV whose header repeats a column or whose rows have more or fewer fields than the header."""
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None:
        return
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise UserError(f"file {path}: the header repeats column {', '.join(repr(c) for c in repeated)}")
    ragged: dict[int, list[int]] = {}
    i = 0
    for row in rows:
        if not row:
            continue  # a blank line: DictReader skips it too, so rows are numbered alike
        i += 1
        if len(row) != len(header):
            ragged.setdefault(len(row), []).append(i)
    if ragged:
        raise UserError([f"file {path}: {_fmt_rows(r)} {'have' if len(r) > 1 else 'has'} {n} field{'s' * (n != 1)}, "
                         f"the header has {len(header)} (a missing or extra delimiter; quote fields that hold commas)"
                         for n, r in sorted(ragged.items())])

def row_id(path: str, row: int, root: Optional[str] = None) -> str:
    """The id of a row without an ``id`` column: FILE:ROW, FILE relative to ``root`` (dataset_dir), else its base name.

    Relative paths keep two files of one name in different folders apart; a file directly in dataset_dir gets
    the same id as ``llamafactory-ext predict`` gives a file of that name."""
    name = os.path.relpath(path, root).replace(os.sep, "/") if root else os.path.basename(path)
    return f"{name}:{row}"

def duplicate_id_problems(examples: list[Example], key: str, limit: int = 5) -> list[str]:
    """One problem per id that two rows share (first ``limit``), naming both rows; predictions are joined by id."""
    first: dict[str, Example] = {}
    problems: list[str] = []
    count = 0
    for ex in examples:
        seen = first.setdefault(ex.id, ex)
        if seen is not ex:
            count += 1
            if count <= limit:
                problems.append(f"key `{key}`: id {ex.id!r} is used twice: file {seen.path} row {seen.row} and file "
                                f"{ex.path} row {ex.row}; predictions are matched by id (`llamafactory-ext compare`), "
                                f"so ids must be unique")
    if count > limit:
        problems.append(f"key `{key}`: ... and {count - limit} more repeated ids")
    return problems

def _listed(groups: list[list[str]], limit: int = 5) -> str:
    shown = "; ".join(" and ".join(repr(x) for x in sorted(g)) for g in groups[:limit])
    return shown + (f"; and {len(groups) - limit} more" if len(groups) > limit else "")

def label_warnings(labels: list[str], raw_forms: dict[str, set[str]], normalize: bool) -> list[str]:
    """One line per kind: labels that normalisation merged (or, kept raw, would merge), labels that differ only by case."""
    out = []
    if normalize:
        merged = [sorted(forms) for lab, forms in sorted(raw_forms.items()) if len(forms) > 1]
        if merged:
            out.append(f"labels written differently count as one class after normalisation (NFC, surrounding "
                       f"whitespace stripped): {_listed(merged)}; set `cls_label_normalize: false` to keep them apart")
    else:
        by_norm: dict[str, list[str]] = {}
        for lab in labels:
            by_norm.setdefault(normalize_label(lab), []).append(lab)
        apart = [g for g in by_norm.values() if len(g) > 1]
        if apart:
            out.append(f"labels that differ only by surrounding whitespace or Unicode form stay separate classes "
                       f"(`cls_label_normalize: false`): {_listed(apart)}")
    by_case: dict[str, list[str]] = {}
    for lab in labels:
        by_case.setdefault(normalize_label(lab).casefold(), []).append(lab)
    cased = [g for g in by_case.values() if len({normalize_label(x) for x in g}) > 1]
    if cased:
        out.append(f"labels that differ only by case are separate classes: {_listed(cased)}; "
                   f"fix the data if they mean the same")
    return out
