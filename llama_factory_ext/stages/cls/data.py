"""Classification data: datasets registered in ``dataset_info.json``, resolved, read (:mod:`.records`), split
(:mod:`.split`) and checked before any weights load.

A cls dataset entry maps columns with ``"columns": {"text": ..., "label": ..., "text_pair": ...}``
(the alpaca names ``prompt`` / ``response`` / ``query`` are accepted as text / label / text_pair).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

from ...api import UserError
from ...safeio import JSON_LIMIT, read_text
from .records import (SUPPORTED_EXT, Example, Source, _fmt_rows, bad_unicode, duplicate_id_problems, kind_of,
                      label_warnings, normalize_label, read_records, row_id, scalar_label)
from .split import stratified_split, stratified_subset


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
        info = json.loads(read_text(path, JSON_LIMIT, "dataset list"))
    except (json.JSONDecodeError, RecursionError) as err:
        raise UserError(f"file {path}: invalid JSON ({err})") from None
    if not isinstance(info, dict):
        raise UserError(f"file {path}: expected a JSON object of dataset entries, got {kind_of(info)}")
    return info

def _entry_problems(name: str, entry, path: str) -> list[str]:
    """What makes a ``dataset_info.json`` entry unusable here (not an object, a file name or column that is not text)."""
    if not isinstance(entry, dict):
        return [f"file {path}: dataset {name} is {kind_of(entry)}; give an object such as {{\"file_name\": \"...\"}}"]
    problems = []
    for k in ("file_name", "folder"):
        if k in entry and not isinstance(entry[k], str):
            problems.append(f"file {path}: dataset {name}: `{k}` is {kind_of(entry[k])}, not a path")
    cols = entry.get("columns")
    if cols is not None and not isinstance(cols, dict):
        problems.append(f"file {path}: dataset {name}: `columns` is {kind_of(cols)}; give an object such as "
                        f"{{\"text\": \"...\", \"label\": \"...\"}}")
    elif cols:
        problems += [f"file {path}: dataset {name}: column `{k}` is mapped to {kind_of(v)}, not a column name"
                     for k, v in cols.items() if v is not None and not isinstance(v, str)]
    return problems

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
    problems = [p for n in names for p in _entry_problems(n, info[n], os.path.join(dataset_dir, "dataset_info.json"))]
    if problems:
        return [], problems
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
        sources.append(Source(name, files, text_col, label_col, pair_col, root=dataset_dir))
    return sources, problems

def load_source(src: Source, need_label: bool = True, normalize: bool = True) -> list[str]:
    """Read the files of a source into ``src.examples``; return problems (file, column, rows).

    Texts must be strings; labels strings or integers, compared after :func:`normalize_label` unless
    ``normalize`` is False; ids strings or integers. The forms each label was written in go to ``src.raw_labels``."""
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
                f"dataset {src.name}: file {path} has no column `{c}` (the {role} column; columns: {', '.join(map(str, columns))}); "
                f"map it with \"columns\": {{\"{role}\": ...}} in dataset_info.json"
            )
        if absent:
            continue
        where = f"dataset {src.name}: file {path}"
        bad: dict[tuple[str, str], list[int]] = {}  # (column, what is wrong) -> rows
        empty_text, no_label = [], []
        for row, r in records:
            text = r.get(src.text_col)
            if text is not None and not isinstance(text, str):
                bad.setdefault((src.text_col, f"the text is {kind_of(text)}, not a string"), []).append(row)
                text = ""
            elif text is None or not text.strip():
                empty_text.append(row)
                text = ""
            elif bad_unicode(text):
                bad.setdefault((src.text_col, "a lone surrogate character (not valid Unicode text)"), []).append(row)
            pair = r.get(src.pair_col) if src.pair_col else None
            if pair is not None and not isinstance(pair, str):
                bad.setdefault((src.pair_col, f"the text pair is {kind_of(pair)}, not a string"), []).append(row)
                pair = None
            elif pair is not None and bad_unicode(pair):
                bad.setdefault((src.pair_col, "a lone surrogate character (not valid Unicode text)"), []).append(row)
            label = None
            if need_label or src.label_col in r:
                label, why = scalar_label(r.get(src.label_col))
                if why:
                    bad.setdefault((src.label_col, f"the label is {why}"), []).append(row)
                elif label is not None:
                    raw = label
                    label = normalize_label(raw) if normalize else raw
                    if not label.strip():
                        label = None
                    else:
                        src.raw_labels.setdefault(label, set()).add(raw)
                if label is None and not why and need_label:
                    no_label.append(row)
            rid = r.get("id")
            if rid is None:
                rid = row_id(path, row, src.root)
            elif isinstance(rid, int) and not isinstance(rid, bool):
                rid = str(rid)
            elif not isinstance(rid, str):
                bad.setdefault(("id", f"the id is {kind_of(rid)}; ids are strings or integers"), []).append(row)
                rid = row_id(path, row, src.root)
            elif bad_unicode(rid):
                bad.setdefault(("id", "a lone surrogate character (not valid Unicode text)"), []).append(row)
            src.examples.append(Example(path, row, rid, text, pair, label))
        if empty_text:
            problems.append(f"{where} column `{src.text_col}`: empty text in {_fmt_rows(empty_text)} ({len(empty_text)} rows)")
        if no_label:
            problems.append(f"{where} column `{src.label_col}`: missing label in {_fmt_rows(no_label)} ({len(no_label)} rows)")
        for (col, what), rows in bad.items():
            problems.append(f"{where} column `{col}`: {what} in {_fmt_rows(rows)}")
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
            if isinstance(k, str) and normalize_label(k) in labels:
                hint = (f"; write it as {normalize_label(k)!r} (labels are compared NFC-normalised and stripped, "
                        f"`cls_label_normalize`)")
            else:
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

@dataclass
class ClsData:
    labels: list[str]
    train: list[Example]
    eval: list[Example]
    test: list[Example]
    sources: dict[str, list[str]]
    warnings: list[str] = field(default_factory=list)

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
        except (OSError, ValueError):  # absent, a name too long, not encodable: reading it will say
            stamp.append((path, None, None))
    return (repr(names), ddir, data_args.max_samples, float(data_args.val_size or 0), training_args.seed, bool(training_args.do_train),
            bool(getattr(training_args, "do_predict", True)), repr(getattr(opts, "label_names", None)),
            repr(getattr(opts, "class_weights", None)), getattr(opts, "cls_label_normalize", True), tuple(stamp))

def check_data(opts, host_args: dict) -> list[str]:
    """The data problems ``train`` would refuse, from the recipe's keys alone (no weights, no tokenizer)."""
    from types import SimpleNamespace

    data_args = SimpleNamespace(dataset=host_args.get("dataset"), eval_dataset=host_args.get("eval_dataset"),
                                dataset_dir=host_args.get("dataset_dir", "data"),
                                max_samples=host_args.get("max_samples"), val_size=host_args.get("val_size", 0.0))
    training_args = SimpleNamespace(do_train=bool(host_args.get("do_train", False)), seed=host_args.get("seed", 42),
                                    do_predict=bool(host_args.get("do_predict", False)))
    ddir = data_args.dataset_dir
    if not isinstance(ddir, str) or ddir == "ONLINE" or ddir.startswith("REMOTE:"):
        return []
    if not (data_args.dataset or data_args.eval_dataset or getattr(opts, "test_dataset", None)):
        return []  # no data named (export, or a recipe checked for its keys only)
    if _mistyped_keys(data_args, training_args):
        return []  # the recipe's type checks name these keys; reading data with them would mean nothing
    try:
        load_cls_data(data_args, training_args, opts)
    except UserError as err:
        return err.problems
    return []

def _mistyped_keys(data_args, training_args) -> list[str]:
    """Keys check_data reads whose value has a type it cannot use."""
    def names_ok(v):
        return v is None or isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v))

    def number(v, kinds):
        return isinstance(v, kinds) and not isinstance(v, bool)

    checks = {"dataset": names_ok(data_args.dataset), "eval_dataset": names_ok(data_args.eval_dataset),
              "max_samples": data_args.max_samples is None or number(data_args.max_samples, int),
              "val_size": data_args.val_size is None or number(data_args.val_size, (int, float)),
              "seed": number(training_args.seed, int)}
    return [k for k, ok in checks.items() if not ok]

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
    normalize = bool(getattr(opts, "cls_label_normalize", True))
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
            problems.extend(load_source(s, need_label, normalize))
        return srcs

    train_src = gather(train_names, "dataset")
    eval_src = gather(eval_names, "eval_dataset")
    test_src = gather(test_names, "test_dataset")
    if problems:
        raise UserError(problems)

    raw_forms: dict[str, set[str]] = {}
    for s in train_src + eval_src + test_src:
        for lab, forms in s.raw_labels.items():
            raw_forms.setdefault(lab, set()).update(forms)
    if opts.label_names:
        labels = []
        for x in opts.label_names:
            lab = normalize_label(str(x)) if normalize else str(x)
            raw_forms.setdefault(lab, set()).add(str(x))
            if lab in labels:
                same = [repr(r) for r in opts.label_names if (normalize_label(str(r)) if normalize else str(r)) == lab]
                raise UserError(f"key `label_names`: {' and '.join(same)} are the same label"
                                + (" after normalisation (NFC, surrounding whitespace stripped; "
                                   "`cls_label_normalize: false` keeps them apart)" if len(set(same)) > 1 else ""))
            labels.append(lab)
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
    if getattr(training_args, "do_predict", True):  # predictions.jsonl is joined by id (compare)
        split = bool(training_args.do_train and data_args.val_size and data_args.val_size > 1e-6)
        pool, key = ((test_src, "test_dataset") if test_src else (eval_src, "eval_dataset") if eval_src
                     else (train_src if split else [], "dataset"))
        problems += duplicate_id_problems([ex for s in pool for ex in s.examples], key)
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
    warnings = label_warnings(labels, raw_forms, normalize)
    for w in warnings:
        print(f"llama-factory-ext: warning: {w}", file=sys.stderr)
    return ClsData(labels, train, evals, tests,
                   {"train": train_names, "eval": eval_names, "test": test_names}, warnings)
