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
from .records import (SUPPORTED_EXT, Example, Source, _fmt_rows, bad_unicode, cell_kind, duplicate_id_problems,
                      kind_of, label_warnings, mixed_kind_problems, multi_labels, normalize_label,
                      read_records, row_id, scalar_label, score_value)
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
    except (ValueError, RecursionError) as err:  # ValueError: JSON's errors, and an integer past 4300 digits
        raise UserError(f"file {path}: invalid JSON ({str(err).split(';')[0]})") from None
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

_ABSENT = object()  # a label cell of a file without a label column where none is needed


def load_source(src: Source, need_label: bool = True, normalize: bool = True) -> list[str]:
    """Read the files of a source into ``src.examples`` (label cells into ``src.cells``, read by :func:`parse_labels`
    once the problem type is known); return problems (file, column, rows). Texts must be strings; ids strings or
    integers."""
    problems = []
    src.need_label = need_label
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
        empty_text = []
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
            src.cells.append(r.get(src.label_col) if need_label or src.label_col in r else _ABSENT)
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
            src.examples.append(Example(path, row, rid, text, pair, None))
        if empty_text:
            problems.append(f"{where} column `{src.text_col}`: empty text in {_fmt_rows(empty_text)} ({len(empty_text)} rows)")
        for (col, what), rows in bad.items():
            problems.append(f"{where} column `{col}`: {what} in {_fmt_rows(rows)}")
    return problems

def parse_labels(src: Source, problem_type: str, delimiter=None, normalize: bool = True,
                 allow_empty: bool = True) -> list[str]:
    """Fill ``label`` / ``labels`` / ``score`` of ``src.examples`` from their cells; return problems (file, column,
    rows). Labels are strings or integers (lists of them for multi_label), compared after :func:`normalize_label`
    unless ``normalize`` is False; scores finite numbers. The forms each label was written in go to
    ``src.raw_labels``."""
    need_label = getattr(src, "need_label", True)
    bad: dict[tuple[str, str], list[int]] = {}
    missing: dict[str, list[int]] = {}
    empty: dict[str, list[int]] = {}

    def norm(raw: str):
        lab = normalize_label(raw) if normalize else raw
        if not lab.strip():
            return None
        src.raw_labels.setdefault(lab, set()).add(raw)
        return lab

    for ex, cell in zip(src.examples, src.cells):
        ex.label, ex.labels, ex.score = None, None, None
        if cell is _ABSENT:
            continue
        if problem_type == "multi_label":
            got, why = multi_labels(cell, delimiter)
            if got is not None:
                ex.labels = [lab for lab in (norm(x) for x in got) if lab is not None]
                ex.labels = list(dict.fromkeys(ex.labels))
                if not ex.labels and not allow_empty:
                    empty.setdefault(ex.path, []).append(ex.row)
            present = got is not None
        elif problem_type == "regression":
            ex.score, why = score_value(cell)
            present = ex.score is not None
        else:
            lab, why = scalar_label(cell)
            ex.label = norm(lab) if lab is not None and not why else None
            present = ex.label is not None
        if why:
            bad.setdefault((ex.path, f"the {'score' if problem_type == 'regression' else 'label'} is {why}"),
                           []).append(ex.row)
        elif not present and need_label:
            missing.setdefault(ex.path, []).append(ex.row)
    where = f"dataset {src.name}: file"
    col = src.label_col
    what = "score" if problem_type == "regression" else "label"
    problems = [f"{where} {path} column `{col}`: missing {what} in {_fmt_rows(rows)} ({len(rows)} rows)"
                for path, rows in missing.items()]
    problems += [f"{where} {path} column `{col}`: an empty label list in {_fmt_rows(rows)}, and "
                 f"`cls_allow_empty_labels` is false; give each row a label, or allow rows without one"
                 for path, rows in empty.items()]
    problems += [f"{where} {path} column `{col}`: {why} in {_fmt_rows(rows)}" for (path, why), rows in bad.items()]
    return problems

def cell_kinds(sources: list[Source], delimiter=None) -> dict[str, list[tuple[str, int]]]:
    """(file, row) of each kind of label cell (:func:`~.records.cell_kind`) in ``sources``."""
    kinds: dict[str, list[tuple[str, int]]] = {}
    for src in sources:
        for ex, cell in zip(src.examples, src.cells):
            kind = cell_kind(cell, delimiter) if cell is not _ABSENT else None
            if kind is not None:
                kinds.setdefault(kind, []).append((ex.path, ex.row))
    return kinds

def resolve_problem_type(setting: str, sources: list[Source], delimiter=None) -> tuple[str, list[str]]:
    """The problem type (``cls_problem_type``, or inferred from the cells when ``auto``) and, for ``auto``, the
    mixed-types problems of files whose label column holds kinds it cannot read. ``auto`` goes with the kind most
    rows hold (lists, then numbers, on a tie; integers fit numbers and labels alike)."""
    if setting != "auto":
        return setting, []
    kinds = cell_kinds(sources, delimiter)
    n = {k: len(kinds.get(k, [])) for k in ("list", "number", "integer", "text")}
    if n["list"] and n["list"] >= n["number"] + n["integer"] + n["text"]:
        chosen = "multi_label"
    elif n["number"] and n["number"] + n["integer"] >= n["text"] and not n["list"]:
        chosen = "regression"
    else:
        chosen = "single_label"
    columns = {s.label_col for s in sources}
    return chosen, mixed_kind_problems({k: v for k, v in kinds.items() if k != "other"}, chosen,
                                       " / ".join(sorted(columns)))

def example_labels(ex: Example) -> list[str]:
    """The labels of a row: its list (multi_label) or its one label."""
    return ex.labels if ex.labels is not None else [ex.label] if ex.label is not None else []

def constant_label_problems(train: list[Example], labels: list[str]) -> list[str]:
    """multi_label: a label on every train row or on none leaves nothing to learn (a single class)."""
    counts = {lab: 0 for lab in labels}
    for ex in train:
        for lab in ex.labels or []:
            if lab in counts:
                counts[lab] += 1
    n = len(train)
    always = [lab for lab, c in counts.items() if c == n]
    never = [lab for lab, c in counts.items() if c == 0]
    out = []
    if always:
        out.append(f"key `dataset`: label{'s' * (len(always) > 1)} {', '.join(map(repr, always))} "
                   f"{'are' if len(always) > 1 else 'is'} on every one of the {n} train rows: a single class, "
                   f"nothing to learn; drop {'them' if len(always) > 1 else 'it'} from the data")
    if never:
        out.append(f"key `label_names`: label{'s' * (len(never) > 1)} {', '.join(map(repr, never))} "
                   f"{'are' if len(never) > 1 else 'is'} on none of the {n} train rows: a single class, nothing "
                   f"to learn; remove {'them' if len(never) > 1 else 'it'} or add train rows")
    return out

def check_labels(sources: list[Source], labels: list[str], split: str, label_origin: str) -> list[str]:
    known = set(labels)
    problems = []
    for src in sources:
        bad: dict[tuple[str, str], list[int]] = {}
        for ex in src.examples:
            for lab in example_labels(ex):
                if lab not in known:
                    bad.setdefault((ex.path, lab), []).append(ex.row)
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
    problem_type: str = "single_label"  # or multi_label / regression (``cls_problem_type``, resolved)
    score_mean: float = 0.0  # regression: mean and std of the train scores (targets are standardised with them)
    score_std: float = 1.0

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
            repr(getattr(opts, "class_weights", None)), getattr(opts, "cls_label_normalize", True),
            getattr(opts, "cls_problem_type", "auto"), getattr(opts, "cls_label_delimiter", None),
            getattr(opts, "cls_allow_empty_labels", True), tuple(stamp))

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
        data = load_cls_data(data_args, training_args, opts)
    except UserError as err:
        return err.problems
    from .args import metric_problem

    problem = metric_problem(host_args.get("metric_for_best_model"), data.problem_type)
    return [problem] if problem else []

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
    ddir = data_args.dataset_dir
    normalize = bool(getattr(opts, "cls_label_normalize", True))
    problems: list[str] = []
    train_names = _names(data_args.dataset) if training_args.do_train else []
    eval_names = _names(data_args.eval_dataset)
    test_names = _names(getattr(opts, "test_dataset", None))
    if training_args.do_train and not train_names:
        problems.append("key `dataset`: the cls stage needs a training dataset when `do_train` is true")

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
    delimiter = getattr(opts, "cls_label_delimiter", None)
    ptype, mixed = resolve_problem_type(getattr(opts, "cls_problem_type", "auto"), train_src or eval_src + test_src,
                                        delimiter)
    problems += mixed
    for s in train_src + eval_src + test_src:
        problems += parse_labels(s, ptype, delimiter, normalize, getattr(opts, "cls_allow_empty_labels", True))
    if not training_args.do_train and not getattr(opts, "label_names", None) and ptype != "regression":
        problems.append("key `label_names`: without `do_train` the label set must be given in order")
    if problems:
        raise UserError(problems)
    if ptype == "regression":
        return _regression_data(data_args, training_args, opts, train_src, eval_src, test_src,
                                {"train": train_names, "eval": eval_names, "test": test_names})

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
        labels = sorted({lab for s in train_src for ex in s.examples for lab in example_labels(ex)})
        origin = "taken from the train split"
        if len(labels) < 2:
            problems.append(f"key `dataset`: the train split has {len(labels)} distinct label(s); classification needs at least 2")
    if ptype == "multi_label" and len(labels) >= 2 and training_args.do_train:  # without: no train rows to judge
        problems += constant_label_problems([ex for s in train_src for ex in s.examples], labels)
    problems += check_labels(eval_src, labels, "eval", origin)
    problems += check_labels(test_src, labels, "test", origin)
    if len(labels) >= 2:
        problems += class_weight_problems(getattr(opts, "class_weights", None), labels)
    problems += _predicted_id_problems(data_args, training_args, train_src, eval_src, test_src)
    if problems:
        raise UserError(problems)
    train, evals, tests = _splits(data_args, training_args, train_src, eval_src, test_src, ptype)
    if ptype == "multi_label" and training_args.do_train and data_args.max_samples:
        cut = _cut_label_problems(train + (evals if not eval_src else []), labels, data_args.max_samples)
        if cut:
            raise UserError(cut)
    if not tests:
        tests = evals
    warnings = label_warnings(labels, raw_forms, normalize)
    for w in warnings:
        print(f"llama-factory-ext: warning: {w}", file=sys.stderr)
    return ClsData(labels, train, evals, tests,
                   {"train": train_names, "eval": eval_names, "test": test_names}, warnings, problem_type=ptype)

def _cut_label_problems(kept: list[Example], labels: list[str], max_samples: int) -> list[str]:
    """multi_label: labels that the train rows ``max_samples`` keeps (before ``val_size``) carry on none of them or
    on every one, though the whole train split has them on some (:func:`constant_label_problems` passed)."""
    odd = [lab for lab in labels if sum(lab in (ex.labels or ()) for ex in kept) in (0, len(kept))]
    if not odd:
        return []
    return [(f"key `max_samples`: the {len(kept)} train row{'s' * (len(kept) != 1)} it keeps carry label"
             f"{'s' * (len(odd) > 1)} {', '.join(map(repr, odd))} on none or on every one of them: a single class, "
             f"nothing to learn; raise `max_samples`")]

def _predicted_id_problems(data_args, training_args, train_src, eval_src, test_src) -> list[str]:
    """Repeated ids in the split ``do_predict`` writes (predictions.jsonl is joined by id in ``compare``)."""
    if not getattr(training_args, "do_predict", True):
        return []
    split = bool(training_args.do_train and data_args.val_size and data_args.val_size > 1e-6)
    pool, key = ((test_src, "test_dataset") if test_src else (eval_src, "eval_dataset") if eval_src
                 else (train_src if split else [], "dataset"))
    return duplicate_id_problems([ex for s in pool for ex in s.examples], key)

def _splits(data_args, training_args, train_src, eval_src, test_src, problem_type) -> tuple[list[Example], ...]:
    """train / eval / test examples: ``max_samples`` of each source, eval held out of train by ``val_size``
    (stratified by the problem type)."""
    def take(srcs):
        out = []
        for s in srcs:
            out += (stratified_subset(s.examples, data_args.max_samples, training_args.seed, problem_type)
                    if data_args.max_samples else s.examples)
        return out

    train, evals, tests = take(train_src), take(eval_src), take(test_src)
    if not evals and training_args.do_train and data_args.val_size and data_args.val_size > 1e-6:
        train, evals = stratified_split(train, data_args.val_size, training_args.seed, problem_type)
    return train, evals, tests

def _regression_data(data_args, training_args, opts, train_src, eval_src, test_src, names) -> ClsData:
    """The splits of a regression run: every score finite (checked), train scores that vary; mean and std of the
    train scores standardise the targets."""
    import statistics

    problems = []
    if getattr(opts, "label_names", None):
        problems.append("key `label_names`: a regression run predicts a number, not labels; remove the key")
    if getattr(opts, "class_weights", None) is not None:
        problems.append("key `class_weights`: a regression run has no classes to weight; remove the key")
    problems += _predicted_id_problems(data_args, training_args, train_src, eval_src, test_src)
    train, evals, tests = _splits(data_args, training_args, train_src, eval_src, test_src, "regression")
    scores = [ex.score for ex in train if ex.score is not None]
    if training_args.do_train and len(set(scores)) < 2:
        problems.append(f"key `dataset`: the train split has {len(set(scores))} distinct score(s)"
                        + (f" (every score is {scores[0]:g})" if scores else "")
                        + "; regression needs scores that vary")
    if problems:
        raise UserError(problems)
    mean = statistics.fmean(scores) if scores else 0.0
    std = statistics.pstdev(scores) if len(scores) > 1 else 1.0
    return ClsData(["score"], train, evals, tests or evals, names, [], problem_type="regression",
                   score_mean=mean, score_std=std or 1.0)
