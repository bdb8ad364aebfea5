"""One home for recipe checks: ``train`` (through :func:`llama_factory_ext.recipe.prepare`) and
``llamafactory-ext validate`` run the same checks with the same messages, before any weights load: keys, types,
ranges, combinations, datasets and (for plugin stages) the data itself."""

from __future__ import annotations

import json
import os
import re
import typing
from pathlib import Path
from typing import Optional

from ..api import Run, UserError
from ..safeio import DATA_LIMIT, read_text, utf8_problem
from .compose import compose
from .load import dataset_info

# host keys that the host splits on commas, so a YAML list is fine too
LIST_OK = {"dataset", "eval_dataset", "lora_target", "additional_target", "freeze_trainable_modules",
           "freeze_extra_modules", "report_to", "label_names"}
# (key, lowest, highest, lowest allowed?, highest allowed?)
RANGES = [
    ("learning_rate", 0, 1, False, True),
    ("per_device_train_batch_size", 1, None, True, None),
    ("per_device_eval_batch_size", 1, None, True, None),
    ("gradient_accumulation_steps", 1, None, True, None),
    ("num_train_epochs", 0, None, False, None),
    ("warmup_ratio", 0, 1, True, False),
    ("weight_decay", 0, None, True, None),
    ("lora_rank", 1, None, True, None),
    ("lora_alpha", 0, None, False, None),
    ("lora_dropout", 0, 1, True, False),
    ("cutoff_len", 1, None, True, None),
    ("max_samples", 1, None, True, None),
    ("val_size", 0, None, True, None),
    ("eval_steps", 0, None, False, None),
    ("save_steps", 0, None, False, None),
    ("logging_steps", 0, None, False, None),
    ("max_grad_norm", 0, None, True, None),
]
QUANT_BITS = (2, 3, 4, 5, 6, 8)
ROWS_TO_READ = 20



def check(raw: dict, source: Optional[str] = None, host_keys: Optional[set[str]] = None,
          host_parse: bool = False, data: bool = True, host_types: bool = True) -> tuple[Run, list[str]]:
    """(run, problems) for a recipe dict. ``host_parse`` (``validate``) also runs the host's own argument
    parser and its completeness checks; under ``train`` the host does both itself right after.
    ``host_types=False`` skips the type check of host keys (it imports the host; the estimate's formula path
    falls back to the full check when a value has the wrong type)."""
    run, problems = compose(raw, source, host_keys)
    host_args = run.host_args
    plugin_stage = run.stage is not None
    problems = list(problems)
    said = _keys_named(problems)  # a key an owner already complained about gets one message
    typed = _type_problems({k: v for k, v in host_args.items() if not (plugin_stage and k == "stage")}) if host_types else []
    problems += [p for p in typed + _range_problems(raw, host_args) if not (_keys_named([p]) & said)]
    problems += _combination_problems(raw, host_args, complete=host_parse)
    if host_parse:
        problems += _host_parse_problems(host_args, _keys_named(problems))
    if not data:
        pass
    elif plugin_stage and (run.stage_opts is not None or run.stage.args_model is None):
        problems += run.stage.check_data(run.stage_opts, {**{k: v for k, v in raw.items() if k in ("dataset_dir",)},
                                                          **host_args}, run)
    elif not plugin_stage:
        problems += _dataset_problems(raw, host_args)
    return run, _dedupe(problems)



def _keys_named(problems: list[str]) -> set[str]:
    return {m.group(1) for p in problems for m in [re.match(r"keys? `(\w+)`", p)] if m}


def _dedupe(items):
    seen, out = set(), []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def _host_fields() -> dict[str, object]:
    from ..host.calls import train_arg_classes

    hints = {}
    for cls in train_arg_classes():
        hints.update(typing.get_type_hints(cls))
    return hints


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string", dict: "a mapping", list: "a list"}
    if isinstance(tp, type) and issubclass(tp, __import__("enum").Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return names.get(origin or tp, getattr(tp, "__name__", str(tp)))


def _matches(value, tp) -> bool:
    import enum
    import types

    if tp is typing.Any:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value in {m.value for m in tp} or isinstance(value, tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True


def _type_problems(host_args: dict) -> list[str]:
    hints = _host_fields()
    problems = []
    for key, value in host_args.items():
        tp = hints.get(key)
        if tp is None or value is None:
            continue
        if key in LIST_OK and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            continue
        if not _matches(value, tp):
            problems.append(f"key `{key}`: expected {_describe(tp)}, got {value!r} ({type(value).__name__})")
    return problems


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _range_problems(raw: dict, host_args: dict) -> list[str]:
    problems = []
    merged = {**host_args, **{k: v for k, v in raw.items() if k not in host_args}}
    for key, lo, hi, lo_ok, hi_ok in RANGES:
        v = _num(merged.get(key))
        if v is None:
            continue
        if lo is not None and (v < lo or (v == lo and not lo_ok)):
            problems.append(f"key `{key}`: {v} is out of range (must be {'>=' if lo_ok else '>'} {lo})")
        elif hi is not None and (v > hi or (v == hi and not hi_ok)):
            problems.append(f"key `{key}`: {v} is out of range (must be {'<=' if hi_ok else '<'} {hi})")
    q = merged.get("quantization_bit")
    if q is not None and q not in QUANT_BITS:
        problems.append(f"key `quantization_bit`: {q!r} is not one of {', '.join(map(str, QUANT_BITS))}")
    return problems


def _combination_problems(raw: dict, host_args: dict, complete: bool = True) -> list[str]:
    problems = []
    a = {**raw, **host_args}
    has_eval = bool(a.get("eval_dataset")) or (_num(a.get("val_size")) or 0) > 1e-6
    if a.get("eval_dataset") and (_num(a.get("val_size")) or 0) > 1e-6:
        problems.append("keys `val_size` and `eval_dataset`: the host refuses both; keep one")
    if str(a.get("eval_strategy", "no")) not in ("no", "None") and not has_eval:
        problems.append("key `eval_strategy`: evaluation needs `eval_dataset` or `val_size`")
    if a.get("do_eval") and not has_eval:
        problems.append("key `do_eval`: evaluation needs `eval_dataset` or `val_size`")
    if a.get("do_predict") and not has_eval:  # the host's rule, also for stage: cls with test_dataset
        problems.append("key `do_predict`: LLaMA-Factory needs `eval_dataset` or `val_size` with `do_predict`")
    if a.get("bf16") and a.get("fp16"):
        problems.append("keys `bf16` and `fp16`: pick one")
    if a.get("quantization_bit") is not None and host_args.get("finetuning_type", "lora") not in ("lora", "oft"):
        problems.append(f"key `quantization_bit`: quantized training works with LoRA only, not `{host_args.get('finetuning_type')}`")
    if a.get("load_best_model_at_end") and str(a.get("save_strategy", "steps")) != str(a.get("eval_strategy", "no")):
        problems.append("key `load_best_model_at_end`: needs `save_strategy` equal to `eval_strategy`")
    if complete and a.get("do_train") and not a.get("dataset"):
        problems.append("key `dataset`: training needs a dataset")
    if complete and not a.get("model_name_or_path"):
        problems.append("key `model_name_or_path`: missing")
    return problems


def _host_parse_problems(host_args: dict, reported: set) -> list[str]:
    """Run the host's HfArgumentParser.parse_dict; each error becomes a message naming its key."""
    import re

    from transformers import HfArgumentParser

    from ..host.calls import train_arg_classes

    hp = HfArgumentParser(train_arg_classes())
    args = {k: v for k, v in host_args.items() if k not in reported}
    args["use_cpu"] = True  # hardware checks (bf16 on this machine...) belong to `doctor`, not to the recipe
    args.setdefault("output_dir", os.path.join(os.path.expanduser("~"), ".cache", "lfx_validate_unused"))
    keys = sorted(set(args) | set(reported), key=len, reverse=True)
    problems = []
    for _ in range(20):
        try:
            hp.parse_dict(args, allow_extra_keys=False)
            return problems
        except Exception as exc:  # the host's checks raise ValueError/AssertionError/...
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            named = next((k for k in keys if re.search(rf"(?<![\w]){re.escape(k)}(?![\w])", msg)), None)
            if named is None:  # e.g. "cosinex is not a valid SchedulerType": find the key by its value
                named = next((k for k, v in args.items() if isinstance(v, str) and len(v) > 2
                              and re.search(rf"(?<![\w]){re.escape(v)}(?![\w])", msg)), None)
            if named in reported:
                return problems  # said already; this is the host reacting to it
            if named is None or named not in args or named == "use_cpu":
                problems.append(f"host check: {msg}")
                return problems
            problems.append(f"key `{named}`: {msg}")
            args.pop(named)
    return problems


def _split(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    if not isinstance(v, (list, tuple)):  # a number or a mapping: named as a dataset that is not there
        return [str(v)]
    return [str(s).strip() for s in v]


def _dataset_problems(raw: dict, host_args: dict) -> list[str]:
    a = {**raw, **host_args}
    names = [("dataset", n) for n in _split(a.get("dataset"))] + [("eval_dataset", n) for n in _split(a.get("eval_dataset"))] \
        + [("test_dataset", n) for n in _split(a.get("test_dataset"))]
    if not names:
        return []
    ddir = a.get("dataset_dir", "data")
    if not isinstance(ddir, str) or ddir == "ONLINE" or ddir.startswith("REMOTE:"):
        return []
    try:
        info = dataset_info(ddir)
    except UserError as err:
        if not os.path.isabs(ddir):
            return [f"key `dataset_dir`: no {ddir}/dataset_info.json next to the recipe nor in the working directory"]
        return err.problems
    problems = []
    for key, name in names:
        if name not in info:
            import difflib

            close = difflib.get_close_matches(name, list(info), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f" (defined: {', '.join(sorted(info)) or 'none'})"
            problems.append(f"key `{key}`: dataset '{name}' is not in {Path(ddir) / 'dataset_info.json'}{hint}")
            continue
        problems += _entry_problems(key, name, info[name], Path(ddir), a)
    return problems


def _entry_problems(key: str, name: str, entry: dict, ddir: Path, a: dict) -> list[str]:
    where = f"key `{key}`: dataset '{name}'"
    if not isinstance(entry, dict):
        return [f"{where}: its dataset_info.json entry is not a mapping"]
    if "script_url" in entry:
        return [f"{where}: loading scripts (`script_url`) are refused; a recipe's data must be files"]
    if any(k in entry for k in ("hf_hub_url", "ms_hub_url", "om_hub_url", "cloud_file_name")):
        return []  # remote data: not checked offline
    file_name = entry.get("file_name")
    if not file_name:
        return [f"{where}: its dataset_info.json entry has no `file_name`"]
    path = ddir / file_name
    if not path.exists():
        return [f"{where}: file {path} does not exist"]
    try:
        rows = _first_rows(path)
    except UserError as err:
        return [f"{where}: {p}" for p in err.problems]
    except Exception as exc:
        return [f"{where}: cannot read {path}: {exc}"]
    if not rows:
        return [f"{where}: {path} has no rows"]
    present = set().union(*[set(r) for r in rows if isinstance(r, dict)])
    formatting = entry.get("formatting", "alpaca")
    columns = dict(entry.get("columns") or {})
    if not columns and formatting == "alpaca":
        columns = {"prompt": "instruction", "response": "output"}
    elif not columns and formatting == "sharegpt":
        columns = {"messages": "conversations"}
    problems = []
    for role, col in columns.items():
        if isinstance(col, str) and col not in present:
            problems.append(
                f"{where}: column `{col}` (mapped as `{role}`) is not in the first rows of {path.name} "
                f"(they have: {', '.join(sorted(present))})"
            )
    return problems


def _first_rows(path: Path, n: int = ROWS_TO_READ) -> list:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl", ".csv"))
        return _first_rows(files[0], n) if files else []
    if path.suffix in (".json", ".jsonl", ".csv"):
        bad = utf8_problem(path)
        if bad is not None:
            raise bad
    if path.suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as f:
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"line {i + 1} is not JSON ({exc.msg})") from None
                if len(rows) >= n:
                    break
        return rows
    if path.suffix == ".json":
        data = json.loads(read_text(path, DATA_LIMIT, "data file"))
        if isinstance(data, list):
            first = data[:n]
            if first and first[0] and not isinstance(first[0], dict):
                raise ValueError("rows must be JSON objects")
            return first
        # maybe json lines with a .json suffix
        return [data]
    if path.suffix == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8") as f:
            return [r for _, r in zip(range(n), csv.DictReader(f))]
    return [{}]  # other formats (parquet, arrow): columns not checked


# --- is the model there? (validate warns; train stops before weights load) -------------------------------------

OFFLINE_ENVS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
HUB_PROBE_TIMEOUT_S = 5.0


def _env_on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_id(model) -> Optional[str]:
    """``org/name`` (or ``name``) that the host would look up on the Hugging Face hub, else None."""
    if not isinstance(model, str) or not model or model.startswith((".", "/", "~")) or "\\" in model:
        return None
    if os.path.exists(model) or model.count("/") > 1:
        return None
    return model if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", model) else None


def _in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed cache or id: not found
        return False


def model_problems(a: dict) -> list[str]:
    """One message when ``model_name_or_path`` cannot resolve here: a hub id that is neither a local folder nor in
    the Hugging Face cache, in offline mode; online, a cheap hub probe (``HUB_PROBE_TIMEOUT_S``) that reports only
    a definite answer (gated without access, or no such repository); a network error says nothing."""
    model = a.get("model_name_or_path")
    repo = _hub_id(model)
    if repo is None or a.get("use_modelscope_hub") or a.get("use_openmind_hub") \
            or _env_on("USE_MODELSCOPE_HUB") or _env_on("USE_OPENMIND_HUB") or _in_hf_cache(repo):
        return []
    copy = "point at a local copy (model_name_or_path=/path/to/model)"
    login = f"`huggingface-cli login` (or HF_TOKEN) and, for a gated model, accepting the licence on https://huggingface.co/{repo}"
    offline = [e for e in OFFLINE_ENVS if _env_on(e)]
    if offline:
        return [f"key `model_name_or_path`: '{repo}' is neither a local folder nor in the Hugging Face cache, and "
                f"{offline[0]} is set, so it cannot load; {copy}, or download it once with {offline[0]} unset, "
                f"after {login}"]
    why = _hub_refusal(repo)
    return [f"key `model_name_or_path`: '{repo}' {why}; fix: {login}, or {copy}"] if why else []


def _hub_refusal(repo: str) -> Optional[str]:
    """Why the hub refuses ``repo`` to this user, or None (allowed, or no definite answer within the timeout)."""
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        return None
    try:  # one HEAD request for config.json, as the host's first download would make
        get_hf_file_metadata(hf_hub_url(repo, "config.json"), timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError:
        return "is gated and this account has no access to it yet"
    except RepositoryNotFoundError:
        return "is not on the Hugging Face hub for this account (a typo, a private repository, or not logged in)"
    except Exception:  # network down, proxy, rate limit: no definite answer, never a failed run
        return None
    return None


# --- does evaluation / saving ever happen? (validate warns) -----------------------------------------------------

def _count_rows(path: Path) -> Optional[int]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl", ".csv"))
        counts = [_count_rows(f) for f in files]
        return sum(counts) if files and None not in counts else None
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8", errors="replace") as f:
            return sum(1 for line in f if line.strip())
    if path.suffix == ".json":
        data = json.loads(read_text(path, DATA_LIMIT, "data file"))
        return len(data) if isinstance(data, list) else None
    if path.suffix == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8", errors="replace") as f:
            return sum(1 for _ in csv.DictReader(f))
    return None


def _train_rows(a: dict) -> Optional[int]:
    """Training rows the recipe's local files hold (``max_samples`` per dataset, minus ``val_size``), or None."""
    names, ddir = _split(a.get("dataset")), a.get("dataset_dir", "data")
    if not names or not isinstance(ddir, str):
        return None
    try:
        info = dataset_info(ddir)
        total = 0
        for name in names:
            entry = info.get(name)
            if not isinstance(entry, dict) or not entry.get("file_name") or "hf_hub_url" in entry:
                return None
            n = _count_rows(Path(ddir) / entry["file_name"])
            if n is None:
                return None
            cap = _num(a.get("max_samples"))
            total += min(n, int(cap)) if cap else n
    except Exception:  # unreadable data is reported by the data checks; here it only means "unknown"
        return None
    val = _num(a.get("val_size")) or 0
    return max(0, total - (int(total * val) if val < 1 else int(val)))


def schedule_notes(raw: dict, host_args: dict) -> list[str]:
    """A step-based evaluation or save schedule that never fires for this data: its steps exceed the run's total
    optimizer steps (counted for one GPU, the most steps the run can have)."""
    import math

    a = {**raw, **host_args}
    if not a.get("do_train"):
        return []
    steps, what = _num(a.get("max_steps")), None
    if not steps or steps <= 0:
        rows = _train_rows(a)
        if rows is None:
            return []
        batch = int(_num(a.get("per_device_train_batch_size")) or 8)
        accum = int(_num(a.get("gradient_accumulation_steps")) or 1)
        epochs = _num(a.get("num_train_epochs"))
        epochs = 3.0 if epochs is None else epochs
        steps = max(1, math.ceil(math.ceil(rows / batch) / accum * epochs)) if rows else 0
        what = f"{rows:,} training rows, {batch} per step x {accum} accumulation, {epochs:g} epoch(s), on 1 GPU"
    where = f"the run has {steps:,} optimizer steps" + (f" ({what})" if what else " (max_steps)")
    fix = "use a fraction of the run (e.g. 0.1 = every tenth of the steps) or `{0}: epoch`"
    notes = []
    for key, strategy, result in (("eval_steps", "eval_strategy", "evaluation never runs during training"),
                                  ("save_steps", "save_strategy", "no checkpoint is saved during training (a crash "
                                                                  "loses the run)")):
        n = _num(a.get(key))
        if str(a.get(strategy, "steps" if key == "save_steps" else "no")) == "steps" and n is not None and n >= 1 \
                and n > steps:
            best = "; load_best_model_at_end has nothing to choose from" if a.get("load_best_model_at_end") else ""
            notes.append(f"key `{key}`: {n:g} > {where}: {result}{best}; {fix.format(strategy)}")
    return notes
