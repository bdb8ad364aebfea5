"""Classification data: datasets registered in ``dataset_info.json``, checked before any weights load.

A cls dataset entry maps columns with ``"columns": {"text": ..., "label": ..., "text_pair": ...}``
(the alpaca names ``prompt`` / ``response`` / ``query`` are accepted as text / label / text_pair).
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import dataclass, field
from typing import Optional

from ...api import UserError
from ...safeio import DATA_LIMIT, JSON_LIMIT, check_size, read_text

SUPPORTED_EXT = {"json": "json", "jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}


@dataclass
class Example:
    path: str
    row: int  # 1-based row (line for JSONL) in its file
    id: str
    text: str
    text_pair: Optional[str]
    label: Optional[str]


@dataclass
class Source:
    name: str
    files: list[str]
    text_col: str
    label_col: str
    pair_col: Optional[str]
    examples: list[Example] = field(default_factory=list)


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
        import pyarrow.parquet as pq

        check_size(path, DATA_LIMIT, "data file")
        records = [(i, r) for i, r in enumerate(pq.read_table(path).to_pylist(), 1)]
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
        except csv.Error as err:
            raise UserError(f"file {path}: not valid CSV ({err})") from None
    bad = [i for i, r in records if not isinstance(r, dict)]
    if bad:
        raise UserError(f"file {path}: {_fmt_rows(bad)} are not objects")
    columns: list[str] = []
    for _, r in records:
        for k in r:
            if k not in columns:
                columns.append(k)
    return records, columns


def _files_of(dataset_dir: str, name: str) -> list[str]:
    path = os.path.join(dataset_dir, name)
    if os.path.isdir(path):
        return sorted(os.path.join(path, f) for f in os.listdir(path) if f.rsplit(".", 1)[-1].lower() in SUPPORTED_EXT)
    return [path]


def _dataset_info(dataset_dir: str) -> dict:
    path = os.path.join(dataset_dir, "dataset_info.json")
    if not os.path.exists(path):
        raise UserError(f"key `dataset_dir`: {path} does not exist")
    try:
        return json.loads(read_text(path, JSON_LIMIT, "dataset list"))
    except json.JSONDecodeError as err:
        raise UserError(f"file {path}: invalid JSON ({err})") from err


_HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


def _dataset_attrs(names: list[str], dataset_dir: str, info: dict) -> list:
    """The host's resolution of ``dataset_info.json`` entries. Before the host's data module is loaded (``estimate``,
    ``validate``), entries that only name local files resolve as the host documents them (``file_name``, ``folder``)
    without the second its import costs."""
    import sys
    from types import SimpleNamespace

    entries = [info[n] for n in names]
    if "llamafactory.data.parser" not in sys.modules and all(
            isinstance(e, dict) and isinstance(e.get("file_name"), str) and not any(k in e for k in _HUB_KEYS)
            for e in entries):
        return [SimpleNamespace(load_from="file", dataset_name=e["file_name"], folder=e.get("folder")) for e in entries]
    from ...host import calls as host

    return host.dataset_attrs(names, dataset_dir)


def resolve_sources(names: list[str], dataset_dir: str, key: str) -> tuple[list[Source], list[str]]:
    """Sources for dataset names (key `dataset` / `eval_dataset` / `test_dataset`), and problems."""
    info = _dataset_info(dataset_dir)
    problems, sources = [], []
    missing = [n for n in names if n not in info]
    if missing:
        return [], [f"key `{key}`: dataset {', '.join(missing)} not in {os.path.join(dataset_dir, 'dataset_info.json')}"]
    for attr, name in zip(_dataset_attrs(names, dataset_dir, info), names):
        if attr.load_from != "file":
            problems.append(f"key `{key}`: dataset {name} loads from {attr.load_from}; the cls stage reads local files only")
            continue
        cols = info[name].get("columns", {}) or {}
        text_col = cols.get("text") or cols.get("prompt") or "text"
        label_col = cols.get("label") or cols.get("response") or "label"
        pair_col = cols.get("text_pair") or cols.get("query")
        files = _files_of(dataset_dir, attr.dataset_name)
        if attr.folder:
            files = _files_of(dataset_dir, os.path.join(attr.dataset_name, attr.folder))
        sources.append(Source(name, files, text_col, label_col, pair_col))
    return sources, problems


def load_source(src: Source, need_label: bool = True) -> list[str]:
    """Read the files of a source into ``src.examples``; return problems (file, column, rows)."""
    problems = []
    for path in src.files:
        if not os.path.exists(path):
            problems.append(f"dataset {src.name}: file {path} does not exist")
            continue
        try:
            records, columns = read_records(path)
        except UserError as err:
            problems += err.problems
            continue
        if not records:
            problems.append(f"dataset {src.name}: file {path} has no rows")
            continue
        wanted = [("text", src.text_col)] + ([("label", src.label_col)] if need_label else [])
        if src.pair_col:
            wanted.append(("text_pair", src.pair_col))
        absent = [(role, c) for role, c in wanted if c not in columns]
        for role, c in absent:
            problems.append(
                f"dataset {src.name}: file {path} has no column `{c}` (the {role} column; columns: {', '.join(columns)}); "
                f"map it with \"columns\": {{\"{role}\": ...}} in dataset_info.json"
            )
        if absent:
            continue
        empty_text, no_label = [], []
        base = os.path.basename(path)
        for row, r in records:
            text = r.get(src.text_col)
            text = "" if text is None else str(text)
            if not text.strip():
                empty_text.append(row)
            label = r.get(src.label_col) if need_label or src.label_col in r else None
            if need_label and (label is None or str(label).strip() == ""):
                no_label.append(row)
            pair = r.get(src.pair_col) if src.pair_col else None
            rid = r.get("id")
            src.examples.append(
                Example(path, row, str(rid) if rid is not None else f"{base}:{row}", text,
                        None if pair is None else str(pair), None if label is None else str(label))
            )
        if empty_text:
            problems.append(f"dataset {src.name}: file {path} column `{src.text_col}`: empty text in {_fmt_rows(empty_text)} ({len(empty_text)} rows)")
        if no_label:
            problems.append(f"dataset {src.name}: file {path} column `{src.label_col}`: missing label in {_fmt_rows(no_label)} ({len(no_label)} rows)")
    return problems


def check_labels(sources: list[Source], labels: list[str], split: str, label_origin: str) -> list[str]:
    known = set(labels)
    problems = []
    for src in sources:
        bad: dict[tuple[str, str], list[int]] = {}
        for ex in src.examples:
            if ex.label is not None and ex.label not in known:
                bad.setdefault((ex.path, ex.label), []).append(ex.row)
        for (path, label), rows in bad.items():
            problems.append(
                f"{split} dataset {src.name}: file {path} column `{src.label_col}`: label '{label}' is not in the "
                f"label set ({label_origin}) in {_fmt_rows(rows)}"
            )
    return problems


def class_weight_problems(setting, labels: list[str]) -> list[str]:
    """`class_weights`: a list as long as the label set, a mapping of known labels, weights > 0."""
    if setting is None or setting == "balanced":
        return []
    problems = []
    if isinstance(setting, dict):
        unknown = [k for k in setting if k not in labels]
        for k in unknown:
            import difflib

            close = difflib.get_close_matches(str(k), labels, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (labels: {', '.join(labels)})"
            problems.append(f"key `class_weights`: '{k}' is not a label{hint}")
        values = list(setting.values())
    else:
        values = list(setting)
        if len(values) != len(labels):
            problems.append(f"key `class_weights`: {len(values)} weights for {len(labels)} labels "
                            f"({', '.join(labels)}); give one per label, in this order, or a mapping label: weight")
    bad = [v for v in values if not (isinstance(v, (int, float)) and v > 0 and v < float("inf"))]
    if bad:
        problems.append(f"key `class_weights`: weights must be finite numbers > 0, got {', '.join(map(str, bad))}")
    return problems


def stratified_subset(examples: list[Example], n: int, seed: int) -> list[Example]:
    """At most ``n`` examples (at least one per class), class shares kept, original order kept."""
    if n >= len(examples):
        return examples
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.label or "", []).append(i)
    n = max(n, len(groups))
    quota = {k: max(1, len(v) * n // len(examples)) for k, v in groups.items()}
    left = n - sum(quota.values())
    by_rest = sorted(groups, key=lambda k: (-(len(groups[k]) * n / len(examples) - quota[k]), k))
    for k in by_rest:
        if left <= 0:
            break
        if quota[k] < len(groups[k]):
            quota[k] += 1
            left -= 1
    rng = random.Random(seed)
    keep = []
    for k, idx in groups.items():
        keep += rng.sample(idx, min(quota[k], len(idx)))
    return [examples[i] for i in sorted(keep)]


def stratified_split(examples: list[Example], val_size: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out ``val_size`` (fraction or count) of the examples, stratified by label."""
    n_val = int(val_size) if val_size >= 1 else max(1, round(len(examples) * val_size))
    if n_val >= len(examples):
        raise UserError(f"key `val_size`: {val_size} leaves no training rows ({len(examples)} rows)")
    val = stratified_subset(examples, n_val, seed)
    val_ids = {id(e) for e in val}
    return [e for e in examples if id(e) not in val_ids], val


@dataclass
class ClsData:
    labels: list[str]
    train: list[Example]
    eval: list[Example]
    test: list[Example]
    sources: dict[str, list[str]]


def _names(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


_loaded: dict = {}


def _cache_key(data_args, training_args, opts) -> tuple:
    ddir = os.path.abspath(str(data_args.dataset_dir))
    names = [_names(v) for v in (data_args.dataset, data_args.eval_dataset, getattr(opts, "test_dataset", None))]
    try:
        info = _dataset_info(ddir)
    except UserError:
        info = {}
    files = [str((info.get(n) or {}).get("file_name", n)) if isinstance(info.get(n), dict) else n for v in names for n in v]
    stamp = []
    for path in [os.path.join(ddir, "dataset_info.json")] + [os.path.join(ddir, f) for f in files]:
        try:
            st = os.stat(path)
            stamp.append((path, st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append((path, None, None))
    return (repr(names), ddir, data_args.max_samples, float(data_args.val_size or 0), training_args.seed, bool(training_args.do_train),
            repr(getattr(opts, "label_names", None)), repr(getattr(opts, "class_weights", None)), tuple(stamp))


def check_data(opts, host_args: dict) -> list[str]:
    """The data problems ``train`` would refuse, from the recipe's keys alone (no weights, no tokenizer)."""
    from types import SimpleNamespace

    data_args = SimpleNamespace(dataset=host_args.get("dataset"), eval_dataset=host_args.get("eval_dataset"),
                                dataset_dir=host_args.get("dataset_dir", "data"),
                                max_samples=host_args.get("max_samples"), val_size=host_args.get("val_size", 0.0))
    training_args = SimpleNamespace(do_train=bool(host_args.get("do_train", False)), seed=host_args.get("seed", 42))
    ddir = data_args.dataset_dir
    if not isinstance(ddir, str) or ddir == "ONLINE" or ddir.startswith("REMOTE:"):
        return []
    if not (data_args.dataset or data_args.eval_dataset or getattr(opts, "test_dataset", None)):
        return []  # no data named (export, or a recipe checked for its keys only)
    try:
        load_cls_data(data_args, training_args, opts)
    except UserError as err:
        return err.problems
    except (TypeError, ValueError):  # a key of the wrong type: the type checks name it
        return []
    return []


def load_cls_data(data_args, training_args, opts) -> ClsData:
    """Read and check every split; raise one UserError listing all problems (a result is cached per inputs)."""
    key = _cache_key(data_args, training_args, opts)
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = _load_cls_data(data_args, training_args, opts)
    return _loaded[key]


def _load_cls_data(data_args, training_args, opts) -> ClsData:
    seed = training_args.seed
    ddir = data_args.dataset_dir
    problems: list[str] = []
    train_names = _names(data_args.dataset) if training_args.do_train else []
    eval_names = _names(data_args.eval_dataset)
    test_names = _names(getattr(opts, "test_dataset", None))
    if training_args.do_train and not train_names:
        problems.append("key `dataset`: the cls stage needs a training dataset when `do_train` is true")
    if not training_args.do_train and not getattr(opts, "label_names", None):
        problems.append("key `label_names`: without `do_train` the label set must be given in order")

    def gather(names, key, need_label=True):
        if not names:
            return []
        srcs, errs = resolve_sources(names, ddir, key)
        problems.extend(errs)
        for s in srcs:
            problems.extend(load_source(s, need_label))
        return srcs

    train_src = gather(train_names, "dataset")
    eval_src = gather(eval_names, "eval_dataset")
    test_src = gather(test_names, "test_dataset")
    if problems:
        raise UserError(problems)

    if opts.label_names:
        labels = [str(x) for x in opts.label_names]
        if len(set(labels)) != len(labels):
            raise UserError("key `label_names`: a label is repeated")
        origin = "key `label_names`"
        problems += check_labels(train_src, labels, "train", origin)
    else:
        labels = sorted({ex.label for s in train_src for ex in s.examples if ex.label is not None})
        origin = "taken from the train split"
        if len(labels) < 2:
            problems.append(f"key `dataset`: the train split has {len(labels)} distinct label(s); classification needs at least 2")
    problems += check_labels(eval_src, labels, "eval", origin)
    problems += check_labels(test_src, labels, "test", origin)
    if len(labels) >= 2:
        problems += class_weight_problems(getattr(opts, "class_weights", None), labels)
    if problems:
        raise UserError(problems)

    def take(srcs):
        out = []
        for s in srcs:
            exs = s.examples
            if data_args.max_samples:
                exs = stratified_subset(exs, data_args.max_samples, seed)
            out += exs
        return out

    train, evals, tests = take(train_src), take(eval_src), take(test_src)
    if not evals and training_args.do_train and data_args.val_size and data_args.val_size > 1e-6:
        train, evals = stratified_split(train, data_args.val_size, seed)
    if not tests:
        tests = evals
    return ClsData(labels, train, evals, tests,
                   {"train": train_names, "eval": eval_names, "test": test_names})
