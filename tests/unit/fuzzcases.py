"""The generative bad-input harness (issue 17): Hypothesis strategies per class of input, and one runner per class
that sorts a case into an outcome. The unit tests (tests/unit/test_fuzz_*.py) run a bounded slice of each;
scripts/fuzz_bad_input.py runs many more and writes docs/bad_input_fuzz.md.

Outcomes: ``clean error`` (a UserError whose every problem names a key, file, row or argument; argparse's exit 2
with one error line naming the argument), ``correct result`` (a value that holds the class's invariants),
``warning`` (a correct result with a documented warning), ``traceback`` (any other exception), ``other`` (an
error that names nothing, a result that breaks an invariant, code run from a recipe). Runners never raise.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import re
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes"
OK = ("clean error", "correct result", "warning")
OUTCOMES = OK + ("traceback", "other")


@dataclass
class Outcome:
    kind: str  # one of OUTCOMES
    detail: str = ""  # the message, or what went wrong (for a failing test's report)
    example: str = ""  # a short description of the case (for the doc)
    tags: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.kind in OK


def ci_settings(max_examples: int):
    """The unit tier's bounded, derandomized slice of a class (``@ci_settings(40)`` above ``@given``)."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _tb(exc: BaseException) -> Outcome:
    return Outcome("traceback", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-3000:])


# ====================================================================== shared value strategies

SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ODD_TEXT = st.sampled_from([
    "", " ", "\t", "nan", "NaN", "inf", "-inf", "-1", "0", "1e309", "null", "~", "yes", "no", "true", "0x10",
    "\u0301", "\u200b", "\ufeff", "\x00", "e\u0301", "\u00e9", "ｌｏｒａ", "a" * 5000, "../../etc/passwd", "{text}",
    "lora", "rslora", "cls", "cls_head", "rslora+cls_head", "sft", "ONLINE", "REMOTE:x", "balanced",
])
TEXT_OK = st.one_of(st.text(max_size=12), ODD_TEXT)
TEXT = st.one_of(TEXT_OK, st.text(st.characters(), max_size=6).map(lambda s: s + "\ud800"))  # + a lone surrogate
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=1_000),
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-300, 1e300, 0.5, 1.0, 2.5]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
# what a recipe file can hold: no lone surrogates (YAML is read as strict UTF-8; read_recipe refuses JSON's "\ud800")
RECIPE_SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT_OK)
VALUES = st.recursive(RECIPE_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(TEXT_OK, st.integers()), inner, max_size=3)), max_leaves=8)
ODD_VALUES = ({"a": 1}, [{"a": 1}], [[1]], {1: {"x": 2}}, 5, -1, 2.5, float("nan"), float("inf"), None, True, "", "x",
              [1, "a"], [], {}, 10**30, [None], "a" * 5000, "\u00e9\u0301 ")  # the sweep: every key gets each


# ====================================================================== recipes

class HostKeys(frozenset):
    """The release host's key names (short in a failing example's report)."""

    def __repr__(self) -> str:
        return f"<{len(self)} host keys>"


def release_host_keys() -> HostKeys:
    from llama_factory_ext.host.keys import SNAPSHOTS
    from unit.conftest import RELEASE_SNAPSHOT

    return HostKeys(json.loads((SNAPSHOTS / RELEASE_SNAPSHOT).read_text())["defaults"])


HOST_SAMPLE = ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
               "val_size", "max_samples", "lora_rank", "lora_alpha", "lora_target", "cutoff_len", "seed", "dataset",
               "eval_dataset", "dataset_dir", "output_dir", "stage", "finetuning_type", "do_train", "do_eval",
               "do_predict", "bf16", "fp16", "quantization_bit", "eval_strategy", "save_strategy", "template",
               "model_name_or_path", "max_steps", "warmup_steps", "weight_decay", "load_best_model_at_end",
               "overwrite_output_dir", "adapter_name_or_path", "deepspeed", "report_to", "lr_scheduler_type")
BASES = ("tiny_cls.yaml", "tiny_sft.yaml", "tiny_sft_rslora.yaml", "tiny_cls_layerwise.yaml", "llama3_cls_qlora.yaml",
         "tiny_cls_multilabel.yaml", "tiny_cls_score.yaml")


def pack_keys() -> list[str]:
    """Every key a built-in plugin owns (strategies, stages, key groups)."""
    from llama_factory_ext import plugins

    keys = set()
    for owner in list(plugins.strategies().values()) + list(plugins.stages().values()):
        keys.update(owner.args_model.model_fields if owner.args_model else ())
    for model in plugins.key_groups().values():
        keys.update(model.model_fields)
    return sorted(keys)


def _base_recipe(name: str) -> dict:
    from llama_factory_ext.recipe.load import read_recipe, resolve_paths

    path = RECIPES / name
    return resolve_paths(read_recipe(path), path)


@st.composite
def recipe_dicts(draw, keys: Optional[list] = None):
    """A bundled recipe (or nothing) with keys replaced, added and removed: (dict, data?)."""
    keys = keys if keys is not None else pack_keys()
    base = draw(st.sampled_from(BASES + ("",)))
    raw = _base_recipe(base) if base else {}
    for k in draw(st.lists(st.sampled_from(sorted(raw)), max_size=3)) if raw else []:
        raw.pop(k, None)
    key = st.one_of(st.sampled_from(keys), st.sampled_from(HOST_SAMPLE), TEXT_OK, st.integers(-2, 2))
    raw.update(draw(st.dictionaries(key, VALUES, max_size=4)))
    return raw, draw(st.booleans()) if base.startswith("tiny_cls") else False


_MARKER = "LFX_FUZZ_RAN"


def _bomb(depth: int) -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, depth):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _tags(marker: str) -> list[str]:
    return [f'x: !!python/object/apply:os.system ["touch {marker}"]\n',
            f'x: !!python/object/apply:subprocess.check_output [["touch", "{marker}"]]\n',
            f"x: !!python/object/new:type ['Z', [], {{'__init__': !!python/name:exec }}]\n",
            "x: !!python/name:os.system\n", "x: !!python/module:os\n", "x: !!binary aGVsbG8=\n",
            "x: !!set {a, b}\n", "x: !!timestamp 2001-12-14\n", "x: !custom thing\n", "x: !!str 5\n",
            "x: !!omap [a: 1, a: 2]\n", f"!!python/object/apply:os.system [\"touch {marker}\"]: 1\n"]


@st.composite
def recipe_texts(draw):
    """Recipe file contents as bytes, with a file suffix: YAML/JSON features, limits, encodings. ``{marker}``
    in the text is replaced by a file that must never be created."""
    raw, _ = draw(recipe_dicts())
    import yaml

    try:
        text = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
    except Exception:  # a lone surrogate, a huge int YAML cannot dump: start from a small recipe
        text = "stage: cls\nfinetuning_type: [rslora, cls_head]\n"
    suffix = draw(st.sampled_from([".yaml", ".yaml", ".yml", ".json", ".txt", ""]))
    if suffix == ".json":
        text = draw(st.sampled_from([
            json.dumps({k: v for k, v in raw.items() if isinstance(k, str)}, default=str, ensure_ascii=False)
            if "\ud800" not in repr(raw) else "{}",
            '{"a": 1, "a": 2}', '{"learning_rate": NaN}', "[" * 3000 + "]" * 3000, '{"a": ' * 2000 + "1" + "}" * 2000,
            "[1, 2]", '"text"', "{", "", '{"stage": "cls", "x": Infinity}', '{"dataset_dir": "\\ud800"}',
            '{"output_dir": "x\\udc00", "stage": "cls"}', '{"\\ud800": 1}', '{"label_names": ["a", "\\udfff"]}']))
    mutation = draw(st.sampled_from(["none", "dup", "bomb", "tag", "deep", "huge", "bytes", "encoding", "alias",
                                     "merge", "undefined", "scalar_top", "junk"]))
    marker = "{marker}"
    if mutation == "dup":
        line = draw(st.sampled_from(["stage: sft\n", "learning_rate: 1\n", "cls_label_normalize: false\n"]))
        text += line + line
    elif mutation == "bomb":
        text = _bomb(draw(st.integers(2, 9))) + text
    elif mutation == "tag":
        text += draw(st.sampled_from(_tags(marker)))
    elif mutation == "deep":
        n = draw(st.sampled_from([50, 500, 5_000, 50_000]))
        text += draw(st.sampled_from(["x: " + "[" * n + "]" * n + "\n", "x: " + "{a: " * n + "1" + "}" * n + "\n",
                                      "".join("  " * i + f"k{i}:\n" for i in range(min(n, 2000))) + "  " * min(n, 2000) + "v\n"]))
    elif mutation == "huge":
        n = draw(st.sampled_from([10_000, 900_000, 1_200_000]))
        text += draw(st.sampled_from([f"x: {'a' * n}\n", f"x: {'9' * n}\n", f"{'k' * n}: 1\n",
                                      f"learning_rate: 1e{'9' * 50}\n"]))
    elif mutation == "alias":
        text += "x: &v 5\ny: *v\nlearning_rate: *v\n"
    elif mutation == "merge":
        text += "base: &b {stage: cls, seed: 1}\nother:\n  <<: *b\n  <<: *b\n"
    elif mutation == "undefined":
        text += "x: *nowhere\n"
    elif mutation == "scalar_top":
        text = draw(st.sampled_from(["5\n", "- a\n- b\n", "null\n", "~", "", "---\n...\n", "a: 1\n---\nb: 2\n"]))
    elif mutation == "junk":
        text += draw(st.sampled_from(["\t- x\n", "x: [1, 2\n", "x: 'unterminated\n", ": : :\n", "%YAML 9.9\n",
                                      "? [a, b]\n: 1\n", "x: {a: 1, a: 2}\n"]))
    data = text.encode("utf-8", "surrogatepass")
    if mutation == "bytes":
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(min_size=1, max_size=8)) + data[pos:]
    elif mutation == "encoding":
        enc = draw(st.sampled_from(["utf-8-sig", "utf-16", "utf-32", "latin-1", "cp1252"]))
        data = ("\u00e9t\u00e9: x\n" + text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")).encode(enc, "replace")
    return data, suffix, mutation


def names_a_key_or_file(problem: str, paths: tuple = ()) -> bool:
    """A problem line names a key (`` key `x` ``), an argument, a file (one of ``paths`` or the words file/dataset),
    or continues a list (``... and N more``)."""
    p = str(problem)
    return bool(re.search(r"\bkeys? `[^`]*`|\bfile \S|\bdataset \S|^\.\.\. and \d+ more|\bdataset_info\.json\b", p)
                or any(str(x) in p for x in paths if x))


def _user_error_outcome(err, paths=()) -> Outcome:
    where = (err.source,) if err.source else ()
    unnamed = [p for p in err.problems if not (where or names_a_key_or_file(p, paths))]
    if not err.problems or unnamed:
        return Outcome("other", f"a problem names no key or file: {unnamed or err.problems!r}")
    if any(re.search(r":\s*$", str(p).split("\n")[0]) for p in err.problems):
        return Outcome("other", f"a message that ends before saying what is wrong: {err.problems!r}")
    if any("Traceback (most recent call last)" in str(p) for p in err.problems):
        return Outcome("other", f"a traceback inside the message: {err.problems!r}")
    return Outcome("clean error", err.render())


def run_recipe_dict(raw: dict, data: bool, host_keys: set) -> Outcome:
    """``recipe.prepare`` on a dict: a Run, or a UserError naming keys."""
    from llama_factory_ext.api import Run, UserError
    from llama_factory_ext.recipe import prepare

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            run = prepare(dict(raw), host_keys=host_keys, data=data)
    except UserError as err:
        return _user_error_outcome(err)
    except Exception as exc:
        return _tb(exc)
    if not isinstance(run, Run) or not isinstance(run.host_args, dict):
        return Outcome("other", f"prepare returned {run!r}")
    return Outcome("correct result")


def run_recipe_file(data: bytes, suffix: str, mutation: str, host_keys: set, prepare_too: bool = True) -> Outcome:
    """``read_recipe`` on a file of these bytes (then ``prepare`` on what it read); a ``!!python`` tag never runs."""
    from llama_factory_ext.api import UserError
    from llama_factory_ext.recipe.load import read_recipe

    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, _MARKER)
        data = data.replace(b"{marker}", marker.encode())
        path = Path(tmp) / f"recipe{suffix}"
        path.write_bytes(data)
        try:
            raw = read_recipe(path)
        except UserError as err:
            out = _user_error_outcome(err, (str(path),))
        except Exception as exc:
            out = _tb(exc)
        else:
            if not isinstance(raw, dict):
                out = Outcome("other", f"read_recipe returned {type(raw).__name__}")
            elif b"!!python" in data:
                out = Outcome("other", f"a !!python tag was accepted: {raw!r}"[:500])
            else:
                out = run_recipe_dict(raw, False, host_keys) if prepare_too else Outcome("correct result")
        if os.path.exists(marker):
            out = Outcome("other", "a recipe ran code (the marker file was created)")
    out.tags = [mutation, suffix or "no suffix"]
    return out


# ====================================================================== cls data files

LABELS = st.one_of(
    st.sampled_from(["a", "b", "c", "a ", " a", "A", "B", "e\u0301", "\u00e9", "\t b\n", "ab", "spam", "Spam"]),
    st.sampled_from([0, 1, 2, -1, 10**30, True, False, None, float("nan"), float("inf"), 1.5, "", "  ",
                     ["a", "b"], [], {"x": 1}, "a\ud800", "\u200b"]),
    st.text(max_size=4),
)
CELL_TEXT = st.one_of(
    st.text(min_size=1, max_size=20), st.sampled_from(["", " ", "x\ud800y", "\x00", "a,b", 'say "hi"', "l1\nl2",
                                                       "\u00e9\u0301", "\ufeff", "x" * 3000]),
    st.sampled_from([None, 7, 1.5, float("nan"), True, ["a"], {"t": 1}]),
)
IDS = st.one_of(st.none(), st.sampled_from(["x", "y", "1", 1, 2, True, 1.5, ["i"], "x\ud800", ""]), st.text(max_size=3))


VARIANTS = ("a ", " a", "A", "a\t", "\u00e9", "e\u0301", "\u00c9", "b ", "B")  # normalisation and case


@st.composite
def cls_rows(draw, good_labels, min_size=0, max_size=30):
    """Rows of a cls file: well formed rows with a few faults (bad cells, label variants, repeated ids) injected."""
    n = draw(st.integers(min_size, max_size))
    with_ids = draw(st.booleans())
    rows = []
    for i in range(n):
        row = {"text": f"text {i} " + draw(st.text(max_size=8)), "label": good_labels[i % len(good_labels)]}
        if with_ids:
            row["id"] = f"r{i}" if i % 3 else i
        rows.append(row)
    if rows and draw(st.integers(0, 5)) == 0:  # a skewed file: one class dominates
        rows += [{"text": f"bulk {j}", "label": good_labels[0]} for j in range(draw(st.integers(1, 40)))]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3])) if rows else 0):
        r = rows[draw(st.integers(0, len(rows) - 1))]
        fault = draw(st.sampled_from(["label", "label", "variant", "variant", "text", "no_label", "no_text", "id",
                                      "dup_id", "extra"]))
        if fault == "label":
            r["label"] = draw(LABELS)
        elif fault == "variant":
            r["label"] = draw(st.sampled_from(VARIANTS))
        elif fault == "text":
            r["text"] = draw(CELL_TEXT)
        elif fault == "no_label":
            r.pop("label", None)
        elif fault == "no_text":
            r.pop("text", None)
        elif fault == "id":
            r["id"] = draw(IDS)
        elif fault == "dup_id":
            r["id"], rows[0]["id"] = "same", "same"
        else:
            r[draw(st.sampled_from(["extra", "", "text ", "Label"]))] = draw(SCALARS)
    return rows


def _csv_text(draw, rows: list[dict]) -> str:
    import csv

    cols = ["text", "label", "id"]
    if draw(st.integers(0, 10)) == 0:
        cols = draw(st.sampled_from([["text", "label", "text"], ["text"], ["label", "text", "extra"], [""]]))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        cells = ["" if r.get(c) is None else str(r.get(c)) for c in cols]
        if draw(st.integers(0, 40)) == 0:  # ragged: a field too many or too few
            cells = cells + ["extra"] if draw(st.booleans()) else cells[:-1]
        w.writerow(cells)
    text = buf.getvalue()
    if draw(st.integers(0, 25)) == 0:
        text += draw(st.sampled_from(['"unterminated,a\n', "a\x00b,c\n", "\n\n", "x;y;z\n"]))
    return text


@st.composite
def cls_file(draw, name: str, good_labels):
    """(file name, bytes) of one split: jsonl / json / csv in some encoding."""
    fmt = draw(st.sampled_from(["jsonl", "jsonl", "json", "json_lines_in_json", "csv"]))
    rows = draw(cls_rows(good_labels, min_size=draw(st.sampled_from([0, 2, 6, 6]))))
    ensure_ascii = draw(st.booleans())
    if fmt == "csv":
        text, ext = _csv_text(draw, rows), "csv"
    elif fmt == "json":
        text, ext = json.dumps(rows, ensure_ascii=ensure_ascii), "json"
    else:
        text = "".join(json.dumps(r, ensure_ascii=ensure_ascii) + "\n" for r in rows)
        ext = "jsonl" if fmt == "jsonl" else "json"
        if rows and draw(st.integers(0, 10)) == 0:
            text += draw(st.sampled_from(["{not json}\n", "[1, 2]\n", "5\n", '{"text": "x", "label": NaN}\n',
                                          "[" * 5000 + "\n", '{"text": "dup", "text": "x", "label": "a"}\n']))
    enc = draw(st.sampled_from(["utf-8"] * 6 + ["utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(enc, "surrogatepass" if enc.startswith("utf-8") else "replace")
    return f"{name}.{ext}", data, f"{fmt}/{enc}"


@st.composite
def cls_cases(draw):
    """A dataset folder (files, dataset_info.json) and the keys that read it."""
    good = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "\u00e9", "0", "1"]), min_size=1, max_size=5, unique=True))
    files = {"tr": draw(cls_file("tr", good))}
    if draw(st.booleans()):
        files["ev"] = draw(cls_file("ev", good))
    if draw(st.booleans()):
        files["te"] = draw(cls_file("te", good))
    info = {n: {"file_name": f[0]} for n, f in files.items()}
    if draw(st.integers(0, 20)) == 0:  # a damaged dataset_info entry
        info["tr"] = draw(st.sampled_from([{"file_name": 5}, "tr", {"file_name": files["tr"][0], "columns": "text"},
                                           {"file_name": "missing.jsonl"}, {"file_name": files["tr"][0],
                                                                            "columns": {"text": "nope"}}]))
    val_size = draw(st.one_of(st.just(0.0), st.just(0.0), st.just(0.0), st.floats(0.0, 1.0, exclude_max=True),
                              st.integers(1, 60), st.sampled_from([0.999, 1e-9, 2.5, 1.0]), st.none()))
    opts = {"cls_label_normalize": draw(st.booleans())}
    if draw(st.integers(0, 3)) == 0:
        opts["label_names"] = draw(st.one_of(
            st.permutations(good).map(lambda g: g + ["z"] if len(g) < 2 else g),
            st.lists(st.sampled_from(["a", "b", "c", "a ", "A", "e\u0301", "\u00e9", "0", "1"]), min_size=2, max_size=4)))
    if draw(st.integers(0, 4)) == 0:
        opts["class_weights"] = draw(st.sampled_from(["balanced", [1.0, 2.0], {"a": 2.0}, {"a ": 1.0}, [0.0, 1.0]]))
    if "te" in files and draw(st.booleans()):
        opts["test_dataset"] = "te"
    return SimpleNamespace(
        files=files, info=info, val_size=val_size, opts=opts,
        eval_dataset="ev" if "ev" in files and draw(st.booleans()) else None,
        max_samples=draw(st.one_of(st.none(), st.integers(1, 50))),
        do_train=draw(st.sampled_from([True, True, True, False])), do_predict=draw(st.booleans()),
        seed=draw(st.integers(0, 3)))


def run_cls_case(case, invariants=None) -> Outcome:
    """The cls stage's check (``validate``) and load (``train``) of one dataset folder. A problem must name its
    file (and row) or key; a result must have training rows, every label of every split in the label set, every
    label of the set (when read from the train split) in train, and unique ids where predictions are joined; a
    folder ``validate`` passes must load for ``train``; neither writes into the folder. ``invariants``: the rules
    of a loaded result (default: :func:`_cls_invariants`, single-label)."""
    from llama_factory_ext.api import UserError
    from llama_factory_ext.stages.cls import data as cls_data
    from llama_factory_ext.stages.cls.args import ClsArgs, metric_problem

    invariants = invariants or _cls_invariants
    tags = getattr(case, "tags", None) or sorted({f[2] for f in case.files.values()})
    try:
        opts = ClsArgs(**case.opts)
    except Exception:  # the recipe's own checks name these keys (a pydantic problem); not this class
        return Outcome("clean error", "options refused by the recipe check", tags=tags)
    with tempfile.TemporaryDirectory() as tmp:
        for fname, data, _ in case.files.values():
            Path(tmp, fname).write_bytes(data)
        Path(tmp, "dataset_info.json").write_text(getattr(case, "info_text", None) or json.dumps(case.info))
        before = _folder_bytes(tmp)
        host_args = {"dataset": "tr", "eval_dataset": case.eval_dataset, "dataset_dir": tmp, "do_train": case.do_train,
                     "do_predict": case.do_predict, "seed": case.seed, "max_samples": case.max_samples,
                     "val_size": case.val_size, "metric_for_best_model": getattr(case, "metric", None)}
        paths = (tmp,)
        cls_data._loaded.clear()
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                checked = cls_data.check_data(opts, host_args)
        except Exception as exc:
            return Outcome("traceback", _tb(exc).detail, tags=tags)
        unnamed = [p for p in checked if not names_a_key_or_file(p, paths)]
        if unnamed:
            return Outcome("other", f"validate's problem names no file or key: {unnamed}", tags=tags)
        data_args = SimpleNamespace(dataset="tr", eval_dataset=case.eval_dataset, dataset_dir=tmp,
                                    max_samples=case.max_samples, val_size=case.val_size or 0.0)
        training_args = SimpleNamespace(seed=case.seed, do_train=case.do_train, do_predict=case.do_predict)
        cls_data._loaded.clear()
        try:
            with contextlib.redirect_stderr(stderr):
                got = cls_data.load_cls_data(data_args, training_args, opts)
        except UserError as err:
            out = _user_error_outcome(err, paths)
            if out.kind == "clean error" and not checked:
                out = Outcome("other", f"validate passed, train refused: {err.render()}")
            if _folder_bytes(tmp) != before:
                out = Outcome("other", "the data folder changed: a file was written, removed or altered")
            out.tags = tags
            return out
        except Exception as exc:
            return Outcome("traceback", _tb(exc).detail, tags=tags)
        finally:
            cls_data._loaded.clear()
        if _folder_bytes(tmp) != before:
            return Outcome("other", "the data folder changed: a file was written, removed or altered", tags=tags)
        refused = metric_problem(getattr(case, "metric", None), got.problem_type)  # train's check (workflow.py)
        if refused:
            out = Outcome("clean error", refused, tags=tags) if checked == [refused] else \
                Outcome("other", f"train refuses {refused!r}; validate said {checked}", tags=tags)
            return out
        if checked:
            return Outcome("other", f"validate refused, train loaded: {checked}", tags=tags)
        wrong = invariants(got, case, opts)
        if wrong:
            return Outcome("other", wrong, tags=tags)
        return Outcome("warning" if got.warnings else "correct result", "; ".join(got.warnings), tags=tags)


def _folder_bytes(root: str) -> dict:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            out[os.path.join(d, f)] = Path(d, f).read_bytes()
    return out


def _cls_invariants(got, case, opts) -> str:
    labels = set(got.labels)
    if len(labels) < 2 or len(labels) != len(got.labels):
        return f"label set {got.labels!r}"
    if case.do_train and not got.train:
        return "no training rows"
    for split in ("train", "eval", "test"):
        outside = {e.label for e in getattr(got, split) if e.label is not None} - labels
        if outside:
            return f"{split} labels outside the label set: {outside}"
        bad_text = [e.row for e in getattr(got, split) if not isinstance(e.text, str) or not e.text.strip()]
        if bad_text:
            return f"{split} rows with no text: {bad_text}"
    if case.do_train and not opts.label_names and {e.label for e in got.train} != labels:
        return f"a label with no training row: {labels - {e.label for e in got.train}}"
    return _split_and_id_rules(got, case)


def _split_and_id_rules(got, case) -> str:
    """Every type: val_size holds out what it says; ids are strings, unique in the predicted split."""
    if case.do_train and case.val_size and not case.eval_dataset and case.val_size > 1e-6:
        n = len(got.train) + len(got.eval)
        want = int(case.val_size) if case.val_size >= 1 else max(1, round(n * case.val_size))
        if len(got.eval) != want:
            return f"val_size {case.val_size} held out {len(got.eval)} of {n} rows, not {want}"
    if case.do_predict:
        ids = [e.id for e in got.test]
        if len(ids) != len(set(ids)):
            return "repeated ids in the predicted split"
    if any(not isinstance(e.id, str) for s in ("train", "eval", "test") for e in getattr(got, s)):
        return "an id that is not a string"
    return ""


# ====================================================================== cls data folders: multi-label and regression

TAGS = ("a", "b", "c", "d", "\u00e9", "0", "1")
# one odd cell of a multi-label column, named by its form (the name becomes the case's tag)
TAG_CELLS = (
    ("empty list", []), ("empty list", "[]"), ("nested", [["a"], "b"]), ("nested", [["a", "b"]]), ("nested", '[["a"]]'),
    ("non-string items", [1, 2]), ("non-string items", [True, "a"]), ("non-string items", [None, "a"]),
    ("non-string items", [1.5]), ("non-string items", [{"x": 1}]), ("non-string items", [float("nan")]),
    ("non-string items", ["", "a"]), ("non-string items", ["  "]), ("non-string items", [10**30, "a"]),
    ("non-string items", ["a\ud800"]), ("non-string items", [-1, 0]),
    ("repeats in a row", ["a", "a", "b"]), ("repeats in a row", ["a", "a "]), ("repeats in a row", ["\u00e9", "e\u0301"]),
    ("repeats in a row", ["b", "B"]), ("list as text", '["a", "b"]'), ("list as text", "['a', 'b']"),
    ("list as text", "[a, b]"), ("list as text", "["), ("list as text", '{"a": 1}'), ("list as text", ' ["a"] '),
    ("joined", "a,b"), ("joined", "a|b"), ("joined", "a, b,"), ("joined", "|"), ("joined", ","), ("joined", "a||b"),
    ("scalar", "a"), ("scalar", 1), ("scalar", 2.5), ("scalar", True), ("scalar", None), ("scalar", {"a": 1}),
    ("scalar", ""), ("scalar", "  "), ("scalar", float("nan")), ("unknown label", ["zz"]), ("unknown label", ["a", "Z"]),
)
# one odd score cell of a regression column
SCORE_CELLS = (
    ("NaN", float("nan")), ("infinite", float("inf")), ("infinite", -float("inf")), ("text", "abc"), ("text", ""),
    ("text", "nan"), ("text", "1e999"), ("text", "-inf"), ("text", "4,5"), ("numeric text", "4.5"),
    ("numeric text", " 3 "), ("numeric text", "1_000"), ("numeric text", "+2"), ("numeric text", "\u0663"),
    ("boolean", True), ("boolean", False), ("missing", None), ("huge", 1e308), ("huge", 1.7e308), ("huge", -1.7e308),
    ("huge", 10**30), ("huge", 10**400), ("huge", -(10**400)), ("huge", "1" + "0" * 400), ("tiny", 5e-324),
    ("tiny", 1e-310), ("tiny", -0.0), ("list", [1.0]), ("list", []), ("list", [1.0, 2.0]), ("list", "[1.5]"),
    ("object", {"s": 1}),
)
SCORE_COLUMNS = ("fractions", "fractions", "integers", "numeric text", "huge", "tiny", "constant", "one row")
LABEL_COLUMNS = ("lists", "lists", "lists", "list text", "joined")


def _score_column(draw, style: str, n: int) -> list:
    if style == "one row":
        n = 1
    if style == "integers":
        return [draw(st.integers(1, 5)) for _ in range(n)]
    if style == "huge":
        return [draw(st.sampled_from([1e308, -1e308, 1.7e308, 1.5e308, 9e307])) for _ in range(n)]
    if style == "tiny":
        return [draw(st.sampled_from([5e-324, 1e-323, 2.5e-320, -5e-324, 0.0])) for _ in range(n)]
    if style == "constant":
        return [draw(st.sampled_from([2.5, 0.0, 1e308, 3]))] * n
    xs = [draw(st.floats(-100, 100, allow_nan=False, allow_infinity=False)) for _ in range(n)]
    return [repr(x) for x in xs] if style == "numeric text" else xs


def _label_cell(labels: list, style: str, delimiter: str):
    if style == "list text":
        return json.dumps(labels, ensure_ascii=False)
    if style == "joined":
        return delimiter.join(labels)
    return list(labels)


@st.composite
def typed_rows(draw, kind: str, good: list, style: str, delimiter: str, min_size: int):
    """Rows of a multi-label (label lists) or regression (scores) file, well formed in the column's style, with odd
    cells (:data:`TAG_CELLS`, :data:`SCORE_CELLS`), huge lists, skew and ragged rows injected; (rows, forms)."""
    n = draw(st.integers(min_size, max(min_size, draw(st.sampled_from([3, 8, 24])))))
    forms: list[str] = []
    if kind == "regression":
        cells = _score_column(draw, style, n)
    else:
        cells = [_label_cell([t for t in good if draw(st.integers(0, 2)) == 0] or [good[i % len(good)]], style,
                             delimiter) for i in range(n)]
    rows = [{"text": f"text {i} " + draw(st.text(max_size=4)), "label": c} for i, c in enumerate(cells)]
    if draw(st.booleans()):
        for i, r in enumerate(rows):
            r["id"] = f"r{i}"
    if rows and draw(st.integers(0, 4)) == 0:  # skewed: one label set / one score dominates
        rows += [{"text": f"bulk {j}", "label": rows[0]["label"]} for j in range(draw(st.integers(1, 40)))]
        forms.append("skewed")
    if rows and kind == "multi_label" and draw(st.integers(0, 8)) == 0:  # a huge list, or one label many times
        big = draw(st.sampled_from([[f"l{i}" for i in range(3000)], ["a"] * 5000, list(good) * 400]))
        rows[draw(st.integers(0, len(rows) - 1))]["label"] = _label_cell(big, style, delimiter)
        forms.append("huge list")
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3])) if rows else 0):
        r = rows[draw(st.integers(0, len(rows) - 1))]
        form, cell = draw(st.sampled_from(SCORE_CELLS if kind == "regression" else TAG_CELLS))
        if draw(st.integers(0, 9)) == 0:
            r.pop("label", None)
            form = "missing"
        else:
            r["label"] = cell
        forms.append(form)
    return rows, forms


@st.composite
def typed_file(draw, name: str, kind: str, good: list, style: str, delimiter: str, min_size: int):
    """(file name, bytes, forms) of one split of typed data: jsonl / json / csv, odd lines appended."""
    rows, forms = draw(typed_rows(kind, good, style, delimiter, min_size))
    fmt = draw(st.sampled_from(["jsonl", "jsonl", "json", "csv"]))
    if fmt == "csv":
        import csv

        buf = io.StringIO()
        w = csv.writer(buf)
        cols = ["text", "label", "id"] if any("id" in r for r in rows) else ["text", "label"]
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r.get(c) is None else json.dumps(r[c], ensure_ascii=False)
                        if isinstance(r[c], (list, dict)) else str(r[c]) for c in cols])
        text = buf.getvalue()
    elif fmt == "json":
        text = json.dumps(rows, ensure_ascii=False)
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if rows and draw(st.integers(0, 12)) == 0:  # what json.dumps cannot write
            text += draw(st.sampled_from([
                '{"text": "x", "label": NaN}\n', '{"text": "x", "label": -Infinity}\n',
                '{"text": "x", "label": ' + "9" * 5000 + "}\n", '{"text": "x", "label": 1e999}\n',
                '{"text": "x", "label": [' + "[" * 3000 + "]" * 3000 + "]}\n", '{"text": "x", "label": ["a", "a"]}\n',
                '{"text": "x", "label": ' + "1" * 400 + ".5}\n", '{"text": "x", "label": -' + "9" * 400 + "}\n"]))
            forms.append("raw JSON")
    return f"{name}.{'jsonl' if fmt == 'jsonl' else fmt}", text.encode("utf-8", "surrogatepass"), fmt, forms


PROBLEM_TYPES = ("single_label", "multi_label", "regression")


@st.composite
def cls_typed_cases(draw):
    """A multi-label or regression dataset folder and the recipe keys that read it: the problem type key agreeing
    with the data, `auto`, absent or another type; the delimiter, empty-label, label set, class weight and metric
    keys; the split keys (val_size, max_samples) on tiny and skewed data."""
    kind = draw(st.sampled_from(["multi_label", "regression"]))
    style = draw(st.sampled_from(SCORE_COLUMNS if kind == "regression" else LABEL_COLUMNS))
    delimiter = draw(st.sampled_from(["|", ",", ";"]))
    good = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=5, unique=True))
    min_size = draw(st.sampled_from([1, 2, 3, 6, 6, 12]))
    files, forms = {}, []
    for name in ["tr"] + [n for n in ("ev", "te") if draw(st.booleans())]:
        fname, data, fmt, got_forms = draw(typed_file(name, kind, good, style, delimiter, min_size))
        files[name] = (fname, data, fmt)
        forms += got_forms
    col = draw(st.sampled_from(["label", "label", "score"]))
    if col != "label":  # the label cells under another column name, mapped in dataset_info.json
        files = {n: (f, d.replace(b'"label"', b'"score"').replace(b"label", b"score", 1) if fmt == "csv"
                     else d.replace(b'"label"', b'"score"'), fmt) for n, (f, d, fmt) in files.items()}
    info = {n: {"file_name": f[0], **({"columns": {"label": col}} if col != "label" else {})} for n, f in files.items()}
    info_text = None
    if draw(st.sampled_from([False] * 20 + [True])):  # dataset_info.json with what JSON allows and Python cannot convert
        info_text = json.dumps(info)[:-1] + ', "x": {"n": ' + draw(st.sampled_from(["9" * 5000, "1e999", "-0"])) + "}}"
        forms.insert(0, "dataset_info.json numbers")
    key = draw(st.sampled_from([kind, kind, kind, "auto", None] + [t for t in PROBLEM_TYPES if t != kind]))
    opts: dict[str, Any] = {"cls_label_normalize": draw(st.booleans())}
    if key is not None:
        opts["cls_problem_type"] = key
    if style == "joined" and draw(st.integers(0, 5)):
        opts["cls_label_delimiter"] = delimiter
    elif draw(st.integers(0, 6)) == 0:
        opts["cls_label_delimiter"] = draw(st.sampled_from(["|", ",", " ", "", "a"]))
    if draw(st.booleans()):
        opts["cls_allow_empty_labels"] = draw(st.booleans())
    if draw(st.integers(0, 3 if kind == "multi_label" else 9)) == 0:
        opts["label_names"] = draw(st.one_of(
            st.permutations(good).map(lambda g: g + ["z"] if len(g) < 2 else g),
            st.permutations(good).map(lambda g: g + ["zz", "Z"]),
            st.lists(st.sampled_from(TAGS + ("a ", "A", "e\u0301")), min_size=2, max_size=4),
            st.just(["score", "other"])))
    if draw(st.integers(0, 4 if kind == "multi_label" else 9)) == 0:
        opts["class_weights"] = draw(st.sampled_from(["balanced", [1.0, 2.0], {"a": 2.0}, [0.0, 1.0], [1.0] * 5]))
    if draw(st.integers(0, 4)) == 0:
        opts["cls_regression_loss"] = draw(st.sampled_from(["mse", "huber"]))
    if "te" in files and draw(st.booleans()):
        opts["test_dataset"] = "te"
    val_size = draw(st.one_of(st.just(0.0), st.just(0.0), st.none(), st.floats(0.0, 1.0, exclude_max=True),
                              st.integers(1, 30), st.sampled_from([0.999, 1e-9, 0.5, 2.5, 1.0])))
    metric = draw(st.one_of(st.none(), st.none(), st.none(), st.sampled_from(
        ["mae", "rmse", "pearson", "micro_f1", "samples_f1", "exact_match", "accuracy", "eval_mae", "loss", "nope"])))
    tags = [f"{kind}: {forms[0] if forms else f'well formed ({style})'}"]
    return SimpleNamespace(
        files=files, info=info, info_text=info_text, val_size=val_size, opts=opts, metric=metric, kind=kind, tags=tags,
        eval_dataset="ev" if "ev" in files and draw(st.booleans()) else None,
        max_samples=draw(st.one_of(st.none(), st.none(), st.integers(1, 30))),
        do_train=draw(st.sampled_from([True, True, True, False])), do_predict=draw(st.booleans()),
        seed=draw(st.integers(0, 3)))


def run_cls_typed_case(case) -> Outcome:
    """:func:`run_cls_case` with the rules of the problem type the data loaded as (:func:`_typed_invariants`)."""
    out = run_cls_case(case, _typed_invariants)
    if out.kind == "clean error" and not case.do_train and re.search(r"\btrain (rows|split)\b", out.detail):
        return Outcome("other", f"refused for its train rows without `do_train`: {out.detail}", tags=out.tags)
    return out


def _typed_invariants(got, case, opts) -> str:
    """The rules of a loaded result by problem type: the type asked for (unless `auto`); single-label as
    :func:`_cls_invariants`; multi-label: every row a list of distinct labels of the set (no empty list when
    `cls_allow_empty_labels` is false), every label of a train-read set on a train row and on not every one;
    regression: every score a finite float, the train scores vary, mean and std finite, every standardised target
    finite. All: val_size holds out what it says, unique string ids in the predicted split, text in every row."""
    asked = opts.cls_problem_type
    if asked != "auto" and got.problem_type != asked:
        return f"cls_problem_type {asked} loaded as {got.problem_type}"
    if got.problem_type == "single_label":
        return _cls_invariants(got, case, opts)
    splits = {s: getattr(got, s) for s in ("train", "eval", "test")}
    if case.do_train and not got.train:
        return "no training rows"
    for split, rows in splits.items():
        bad_text = [e.row for e in rows if not isinstance(e.text, str) or not e.text.strip()]
        if bad_text:
            return f"{split} rows with no text: {bad_text}"
    if got.problem_type == "multi_label":
        labels = set(got.labels)
        if len(labels) < 2 or len(labels) != len(got.labels):
            return f"label set {got.labels!r}"
        for split, rows in splits.items():
            for e in rows:
                if not isinstance(e.labels, list) or e.label is not None or e.score is not None:
                    return f"{split} row {e.row}: labels {e.labels!r}, label {e.label!r}, score {e.score!r}"
                if len(set(e.labels)) != len(e.labels):
                    return f"{split} row {e.row}: a label twice in {e.labels!r}"
                if set(e.labels) - labels:
                    return f"{split} row {e.row}: labels outside the label set: {set(e.labels) - labels}"
                if not e.labels and not opts.cls_allow_empty_labels:
                    return f"{split} row {e.row}: an empty label list with cls_allow_empty_labels false"
        held_from_train = case.do_train and not case.eval_dataset and (case.val_size or 0) > 1e-6
        pool = got.train + (got.eval if held_from_train else [])  # the train rows before val_size
        if case.do_train:  # (val_size may then leave a label without a training row: "where the data allow")
            odd = [lab for lab in labels if sum(lab in e.labels for e in pool) in (0, len(pool))]
            if odd:
                return f"a label on no train row or on every one: {odd}"
    elif got.problem_type == "regression":
        if got.labels != ["score"]:
            return f"regression label set {got.labels!r}"
        for split, rows in splits.items():
            for e in rows:
                if type(e.score) is not float or not math.isfinite(e.score) or e.labels is not None:
                    return f"{split} row {e.row}: score {e.score!r}, labels {e.labels!r}"
        if not (math.isfinite(got.score_mean) and math.isfinite(got.score_std) and got.score_std > 0):
            return f"score mean {got.score_mean!r}, std {got.score_std!r}"
        with contextlib.suppress(OverflowError):
            if not all(math.isfinite((e.score - got.score_mean) / got.score_std) for r in splits.values() for e in r):
                return "a standardised score that is not finite"
        if case.do_train and len({e.score for e in got.train}) < 2:
            return f"train scores that do not vary: {sorted({e.score for e in got.train})[:3]}"
    else:
        return f"problem type {got.problem_type!r}"
    return _split_and_id_rules(got, case)


# ====================================================================== CLI arguments

@functools.lru_cache(maxsize=1)
def cli_commands() -> dict:
    """command path ('recipes copy') -> the sub-parser, for every ``llamafactory-ext`` command."""
    import argparse

    from llama_factory_ext.cli import build_parser

    out = {}

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())
                    out.setdefault(f"{path} {name}".strip(), sub)
    walk(build_parser(), "")
    return out


ARG_VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1", "16", "2.5", "1e3", "nan", "NaN", "inf", "-inf", "", " ", "1_000", "9" * 40,
                     "9" * 5000, "0x10", "١٢", "80", "80GiB", "80 gib", "1KiB", "65TiB", "81920MiB", "GiB", "1e309",
                     "H100", "h100", "nvidia a100", "svm", "logreg", "tiny_cls", "tiny_sft", "nope", "owner/name",
                     "a=1", "learning_rate=1e-4", "--", "-", "-x", "--help-ish", "\u00e9", "x\ud800", "\x00"]),
    st.text(max_size=10),
    st.integers().map(str),
    st.floats().map(str),
    st.sampled_from(["{file}", "{folder}", "{missing}", "{missing_deep}", "{file}/sub", "{yaml}", "{ro}",
                     "{folder}/new.yaml", "{missing}/out.yaml"]),
)


@st.composite
def cli_argvs(draw, commands: Optional[list] = None):
    """(command path, argv) with arguments of the command (its own options and positionals) and strays."""
    import argparse

    cmds = commands or sorted(cli_commands())
    cmd = draw(st.sampled_from(cmds))
    parser = cli_commands()[cmd]
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    argv = list(cmd.split())
    for _ in range(draw(st.integers(0, 4))):
        argv.append(draw(ARG_VALUES))  # positionals
    for _ in range(draw(st.integers(0, 4))):
        a = draw(st.sampled_from(options)) if options else None
        if a is None:
            break
        argv.append(draw(st.sampled_from(a.option_strings)))
        if a.nargs != 0:
            if draw(st.integers(0, 8)):
                argv.append(draw(ARG_VALUES))
    if draw(st.integers(0, 6)) == 0:
        argv.append(draw(st.sampled_from(["--nope", "--batch-size=3", "--gpu-memory=-1", "-h0"])))
    return cmd, argv


def _fill(argv: list, tmp: str) -> list:
    places = {"{file}": os.path.join(tmp, "a_file.txt"), "{folder}": os.path.join(tmp, "a_folder"),
              "{missing}": os.path.join(tmp, "missing"), "{missing_deep}": os.path.join(tmp, "no", "such", "dir"),
              "{yaml}": os.path.join(tmp, "r.yaml"), "{ro}": os.path.join(tmp, "ro")}
    out = []
    for a in argv:
        for k, v in places.items():
            a = a.replace(k, v)
        out.append(a)
    return out


def _make_places(tmp: str) -> None:
    Path(tmp, "a_file.txt").write_text("x")
    Path(tmp, "a_folder").mkdir()
    Path(tmp, "r.yaml").write_text("stage: cls\n")
    Path(tmp, "ro").mkdir()
    os.chmod(Path(tmp, "ro"), 0o555)


def _validated(cmd: str, ns) -> str:
    """What is wrong with a parsed namespace (empty when every value is a checked value)."""
    for k, v in vars(ns).items():
        if isinstance(v, float) and not math.isfinite(v):
            return f"{k} = {v}"
        if k in ("batch_size", "gpus") and v is not None and v < 1:
            return f"{k} = {v}"
        if k in ("examples",) and v is not None and v < 0:
            return f"{k} = {v}"
        if k == "gpu_memory" and v is not None and not (2**20 <= v <= 64 * 2**40):
            return f"{k} = {v}"
        if k in ("C",) and v is not None and not v > 0:
            return f"{k} = {v}"
        if k == "confident" and v is not None and not 0 < v <= 1:
            return f"{k} = {v}"
        if isinstance(v, str) and "\0" in v:
            return f"{k} holds a NUL"
    return ""


def run_cli_argv(cmd: str, argv: list) -> Outcome:
    """``build_parser().parse_args(argv)``: exit 2 with one ``error:`` line naming the argument, exit 0 for help,
    or a namespace of checked values."""
    from llama_factory_ext.cli import build_parser

    with tempfile.TemporaryDirectory() as tmp:
        _make_places(tmp)
        real = _fill(argv, tmp)
        err, out = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        try:
            os.chdir(tmp)  # a relative output path lands in the case's folder
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                ns = build_parser().parse_args(real)
        except SystemExit as exc:
            code = exc.code
            lines = [x for x in err.getvalue().splitlines() if "error:" in x]
            if code == 0:
                return Outcome("correct result", "help", tags=[cmd])
            if code != 2:
                return Outcome("other", f"exit {code}: {err.getvalue()[-500:]}", tags=[cmd])
            if len(lines) != 1 or "Traceback" in err.getvalue():
                return Outcome("other", f"not one error line: {err.getvalue()[-800:]}", tags=[cmd])
            line = lines[0]
            if not re.search(r"error: (argument \S|unrecognized arguments|the following arguments are required|"
                             r"invalid choice|one of the arguments|ambiguous option|expected one argument|"
                             r"argument COMMAND)", line):
                return Outcome("other", f"the error names no argument: {line}", tags=[cmd])
            return Outcome("clean error", line, tags=[cmd])
        except Exception as exc:
            return Outcome("traceback", _tb(exc).detail, tags=[cmd])
        finally:
            os.chdir(cwd)
            with contextlib.suppress(OSError):
                os.chmod(Path(tmp, "ro"), 0o755)
        wrong = _validated(cmd, ns)
        return Outcome("other", wrong, tags=[cmd]) if wrong else Outcome("correct result", tags=[cmd])


# ====================================================================== the pack's llamafactory-cli keys

PACK_BASES = ("tiny_cls.yaml", "tiny_cls_layerwise.yaml", "tiny_sft_rslora.yaml", "tiny_sft.yaml")
OVERRIDE_TEXT = st.sampled_from(["", "nan", "inf", "-1", "0", "1e400", "null", "~", "[]", "{}", "[a, b]", "{a: 1}",
                                 "true", "maybe", "balanced", "a,b", "'x'", "\"\"", "0x10", "1_000", "\u00e9",
                                 "[1, [2]]", "{a: {b: c}}", "${oc.env:HOME}", "${x}", "??? "])


@st.composite
def pack_key_cases(draw):
    """One or two pack keys (``cls_*``, stage and strategy keys) with generated bad values, in a bundled recipe file
    or as ``key=value`` on the command line (``llamafactory-cli train recipe.yaml key=value``)."""
    keys = pack_keys()
    base = draw(st.sampled_from(PACK_BASES))
    yaml_keys = draw(st.dictionaries(st.sampled_from(keys), VALUES, max_size=2))
    overrides = []
    for key in draw(st.lists(st.sampled_from(keys), max_size=2)):
        value = draw(st.one_of(OVERRIDE_TEXT, st.text(max_size=8), NUMBERS.map(str)))
        overrides.append(f"{key}={value}")
    return base, yaml_keys, overrides


def run_pack_key_case(base: str, yaml_keys: dict, overrides: list, host_keys: set) -> Outcome:
    """A recipe file through the real reader (``read_recipe``, ``with_overrides``, ``resolve_paths``) and the checks of
    ``validate`` (without the host's own parser, which the unit tier lacks), then ``prepare`` as ``train`` does:
    problems name a key or the file; what validate passes, train's prepare accepts."""
    import yaml

    from llama_factory_ext.api import UserError
    from llama_factory_ext.recipe import prepare
    from llama_factory_ext.recipe.checks import check
    from llama_factory_ext.recipe.load import cli_override_keys, read_recipe, resolve_paths, with_overrides

    tags = sorted({k.split("_")[0] for k in list(yaml_keys) + [o.split("=")[0] for o in overrides]}) or ["none"]
    raw = _base_recipe(base)
    raw.update(yaml_keys)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(RECIPES / "data", Path(tmp) / "data")
        path = Path(tmp) / base
        try:
            text = yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)
        except Exception:
            return Outcome("correct result", "not representable in YAML", tags=tags + ["skipped"])
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                recipe = with_overrides(read_recipe(path), overrides)
                recipe = resolve_paths(recipe, path, keep=cli_override_keys(overrides))
                _, problems = check(recipe, str(path), host_keys=host_keys, data=True)
        except UserError as err:
            out = _user_error_outcome(err, (str(path),))
            out.tags = tags
            return out
        except Exception as exc:
            return _tag_tb(exc, tags)
        unnamed = [p for p in problems if not names_a_key_or_file(p, (str(path),))]
        if unnamed:
            return Outcome("other", f"a problem names no key: {unnamed}", tags=tags)
        if problems:
            return Outcome("clean error", "\n".join(problems), tags=tags)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                prepare(dict(recipe), host_keys=host_keys, data=True)
        except UserError as err:
            return Outcome("other", f"validate passed, train's prepare refused: {err.render()}", tags=tags)
        except Exception as exc:
            return _tag_tb(exc, tags)
    return Outcome("correct result", tags=tags)


# ====================================================================== run folders and file-system faults

DEAD_PID = 4_194_399  # above the largest pid_max Linux allows (2**22): never a live process
RUN_NAMES = ("adapter_model.safetensors", "cls_run.json", "label_map.json", "trainer_state.json", "all_results.json",
             "predictions.jsonl", "README.md", "trainer_log.jsonl")
FOREIGN = ("notes.txt", "my_data.jsonl", "sub/keep.bin", ".hidden", "checkpoint-x", "run_status.json.bak")
FS_FAULTS = ("none", "none", "none", "read-only", "size limit", "full disk")


def _owner(kind: str) -> Optional[dict]:
    import socket

    from llama_factory_ext.runfolder import _proc_start

    me = socket.gethostname()
    return {"live": {"pid": 1, "host": me, "started": "t", "pid_start": _proc_start(1)},
            "dead": {"pid": DEAD_PID, "host": me, "started": "t"},
            "reused": {"pid": 1, "host": me, "started": "t", "pid_start": "1"},
            "other host": {"pid": 7, "host": "lfx-other-machine", "started": "t"},
            "no pid": {"host": me, "started": "t"}}.get(kind)


@st.composite
def run_folder_cases(draw):
    """A run folder as runs, users and faults leave it: a previous run (finished, failed, killed), a lock (live,
    dead, another host's, stale, damaged), checkpoints (complete, incomplete, a file), foreign files, inputs of the
    new run inside it, output_dir as a file or under one, and a file-system fault (read-only, a size limit, full)."""
    shape = draw(st.sampled_from(["absent", "empty", "previous run", "previous run", "foreign", "previous + foreign",
                                  "a file", "under a file", "symlink", "dangling symlink"]))
    status = draw(st.sampled_from(["none", "running", "finished", "failed", "damaged", "a folder", "a list"]))
    status_owner = draw(st.sampled_from(["live", "dead", "reused", "other host", "no pid"]))
    lock = draw(st.sampled_from(["none", "none", "live", "dead", "reused", "other host", "other host stale",
                                 "damaged", "empty", "a folder"]))
    checkpoints = draw(st.lists(st.sampled_from(["complete", "incomplete", "empty", "a file", "bad state"]), max_size=3))
    inputs = draw(st.lists(st.sampled_from(["adapter = output_dir", "adapter in a checkpoint", "dataset inside",
                                            "model inside (foreign)", "deepspeed file inside", "adapter elsewhere"]),
                           max_size=2, unique=True))
    resume = draw(st.sampled_from([None, None, "newest", "checkpoint-1", "missing", "outside incomplete"]))
    return {"shape": shape, "status": status, "status_owner": status_owner, "lock": lock,
            "checkpoints": checkpoints, "inputs": inputs, "resume": resume,
            "overwrite": draw(st.booleans()), "fault": draw(st.sampled_from(FS_FAULTS)),
            "limit": draw(st.sampled_from([0, 1, 64, 300, 5000])), "write_mb": draw(st.sampled_from([0, 1, 8]))}


def _build_run_folder(root: Path, case: dict) -> tuple[str, dict, dict]:
    """(output_dir, the new run's input keys, {path: bytes} of what must survive) for a case."""
    from llama_factory_ext.runfolder import LOCK, STALE_S, STATUS

    out = root / "run"
    keep: dict = {}
    shape = case["shape"]
    if shape == "a file":
        out.write_text("not a folder")
        return str(out), {}, {str(out): b"not a folder"}
    if shape == "under a file":
        (root / "afile").write_text("x")
        return str(root / "afile" / "run"), {}, {str(root / "afile"): b"x"}
    if shape == "absent":
        return str(out), {}, {}
    if shape == "dangling symlink":
        out.symlink_to(root / "nowhere")
        return str(out), {}, {}
    target = root / "real_run" if shape == "symlink" else out
    target.mkdir()
    if shape == "symlink":
        out.symlink_to(target)
    if "previous" in shape:
        for name in RUN_NAMES:
            (target / name).write_text(json.dumps({"from": "the previous run"}) if name.endswith(".json") else "w")
    if "foreign" in shape:
        for name in FOREIGN:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(b"user's " + name.encode())
            keep[str(target / name)] = b"user's " + name.encode()
    for i, kind in enumerate(case["checkpoints"], 1):
        ck = target / f"checkpoint-{i}"
        if kind == "a file":
            ck.write_text("x")
            continue
        ck.mkdir()
        if kind in ("complete", "bad state"):
            (ck / "trainer_state.json").write_text("{}" if kind == "complete" else "{half")
            (ck / "adapter_model.safetensors").write_text("w")
        elif kind == "incomplete":
            (ck / "adapter_model.safetensors").write_text("w")
    status, owner = case["status"], _owner(case["status_owner"]) or {}
    if status in ("running", "finished", "failed"):
        (target / STATUS).write_text(json.dumps({"status": status, **owner, "reason": "loss is nan"}))
    elif status == "damaged":
        (target / STATUS).write_bytes(b"{\"status\": \"runn\xff")
    elif status == "a folder":
        (target / STATUS).mkdir()
    elif status == "a list":
        (target / STATUS).write_text('["running"]')
    lock = case["lock"]
    if lock in ("live", "dead", "reused", "other host", "other host stale"):
        (target / LOCK).write_text(json.dumps(_owner(lock.replace(" stale", ""))))
        if lock.endswith("stale"):
            old = time_now() - STALE_S - 120
            os.utime(target / LOCK, (old, old))
    elif lock == "damaged":
        (target / LOCK).write_bytes(b"{\xff")
    elif lock == "empty":
        (target / LOCK).write_bytes(b"")
    elif lock == "a folder":
        (target / LOCK).mkdir()
    inputs = {}
    for what in case["inputs"]:
        if what == "adapter = output_dir":
            inputs["adapter_name_or_path"] = str(out)
        elif what == "adapter in a checkpoint":
            inputs["adapter_name_or_path"] = str(out / "checkpoint-1")
        elif what == "dataset inside":
            data = target / "data"
            data.mkdir(exist_ok=True)
            (data / "dataset_info.json").write_text(json.dumps({"tr": {"file_name": "tr.jsonl"}}))
            (data / "tr.jsonl").write_text('{"text": "x", "label": "a"}\n')
            inputs.update(dataset="tr", dataset_dir=str(out / "data"))
            keep.update({str(data / "dataset_info.json"): (data / "dataset_info.json").read_bytes(),
                         str(data / "tr.jsonl"): (data / "tr.jsonl").read_bytes()})
        elif what == "model inside (foreign)":
            (target / "base").mkdir(exist_ok=True)
            (target / "base" / "config.json").write_text("{}")
            inputs["model_name_or_path"] = str(out / "base")
            keep[str(target / "base" / "config.json")] = b"{}"
        elif what == "deepspeed file inside":
            (target / "ds.json").write_text("{}")
            inputs["deepspeed"] = str(out / "ds.json")
            keep[str(target / "ds.json")] = b"{}"
        else:
            (root / "adapter").mkdir(exist_ok=True)
            inputs["adapter_name_or_path"] = str(root / "adapter")
    for key, path in list(inputs.items()):  # what the run reads survives (output_dir itself: the run saves there)
        if key in ("adapter_name_or_path", "model_name_or_path") and os.path.isdir(path) and path != str(out):
            for f in sorted(Path(path).glob("*"))[:6]:
                if f.is_file():
                    keep.setdefault(str(f), f.read_bytes())
    return str(out), inputs, keep


def time_now() -> float:
    import time

    return time.time()


def _resume_arg(out: str, case: dict, root: Path) -> Optional[str]:
    r = case["resume"]
    if r is None:
        return None
    if r == "newest":
        return os.path.join(out, "checkpoint-9")  # the host names the newest; the pack checks it
    if r == "missing":
        return os.path.join(out, "checkpoint-77")
    if r == "outside incomplete":
        (root / "elsewhere" / "checkpoint-3").mkdir(parents=True, exist_ok=True)
        return str(root / "elsewhere" / "checkpoint-3")
    return os.path.join(out, r)


def new_run_in(out: str, inputs: dict, overwrite: bool, resume: Optional[str], write_mb: int) -> Optional[str]:
    """A new training run's steps on its folder, in the order of the cls workflow (stages/cls/workflow.py
    ``run_cls`` / ``_prepare_folder``): take the lock, clear a previous run (overwrite) or pick a complete checkpoint
    (resume), mark it running, save weights, mark it finished; on an error mark it failed and turn a write fault
    into one message. Returns the checkpoint resumed from."""
    from llama_factory_ext.api import UserError
    from llama_factory_ext.runfolder import (RunLock, clear_previous_run, mark_failed, read_status,
                                             usable_checkpoint, write_status)
    from llama_factory_ext.safeio import atomic_write, is_write_fault, os_error_text

    lock = RunLock(out).acquire()
    try:
        if overwrite:
            clear_previous_run(out, inputs)
        if resume:
            resume = usable_checkpoint(out, resume)
        write_status(out, "running")
        with atomic_write(os.path.join(out, "adapter_model.safetensors"), "wb") as f:  # the trainer's save
            f.write(b"\0" * (write_mb * 2**20 + 10))
        write_status(out, "finished")
        return resume
    except BaseException as exc:
        status = read_status(out) or {}
        if lock.held and status.get("status") == "running" and status.get("pid") == os.getpid():
            mark_failed(out, str(exc))
        if isinstance(exc, OSError) and is_write_fault(exc):
            raise UserError(f"key `output_dir`: the run stopped writing {exc.filename or out}: {os_error_text(exc)}") from exc
        raise
    finally:
        lock.release()


def _fault_on(root: Path, case: dict):
    """Make ``root`` read-only or full for the case (tmpfs where root may mount; chmod otherwise). Returns an undo
    callable, or None when this machine cannot make the fault (the case then runs without it)."""
    import subprocess

    fault = case["fault"]
    if fault == "read-only":
        if os.geteuid() != 0:
            for d, _, _ in os.walk(root):
                os.chmod(d, 0o555)
            return lambda: [os.chmod(d, 0o755) for d, _, _ in os.walk(root)]
        ok = subprocess.run(["mount", "-o", "remount,ro", str(root)], capture_output=True).returncode == 0
        return (lambda: None) if ok else None
    if fault == "full disk":  # only on the case's own small tmpfs (see run_run_folder_case)
        filler = root / ".filler"
        try:
            with open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass
        return lambda: filler.unlink(missing_ok=True)
    return lambda: None


@contextlib.contextmanager
def fault_root(case: dict):
    """A temporary folder for a case; a small tmpfs of its own when the case needs a read-only or full file system and
    this process may mount (root); ``None`` root when the fault cannot be made here."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fs"
        root.mkdir()
        mounted = False
        if case["fault"] in ("read-only", "full disk") and os.geteuid() == 0:
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "lfxfuzz", str(root)],
                                     capture_output=True).returncode == 0
        try:
            yield root, mounted
        finally:
            if mounted:
                subprocess.run(["umount", "-l", str(root)], capture_output=True)


def _snapshot(keep: dict) -> list[str]:
    lost = []
    for path, data in keep.items():
        try:
            if Path(path).read_bytes() != data:
                lost.append(f"{path} changed")
        except OSError:
            lost.append(f"{path} is gone")
    return lost


def run_run_folder_case(case: dict) -> Outcome:
    """Readers (``run_state``, ``unfinished_problem``, the ``run_folder`` argument type) and a new run (see
    :func:`new_run_in`) on a generated folder. Ok: readers never raise and call a folder interrupted only when its
    owner is gone; the run ends finished (status ``finished``, lock released, a complete checkpoint or none resumed)
    or with a UserError naming ``output_dir`` or a key (status not ``running`` or ``finished`` from this run);
    foreign files and the run's inputs survive byte for byte; never another exception."""
    tags = [case["fault"] if case["fault"] != "none" else case["shape"]]
    if case["fault"] == "size limit":
        return _in_child(case, tags)
    with fault_root(case) as (root, mounted):
        if case["fault"] == "full disk" and not mounted:  # never fill a shared disk: a size limit stands in
            return _in_child({**case, "fault": "size limit"}, ["full disk (size limit)"])
        if case["fault"] == "read-only" and os.geteuid() == 0 and not mounted:
            return Outcome("correct result", "fault not available here (root without mount)", tags=tags + ["skipped"])
        return _run_folder_case_in(root, case, tags)


def _run_folder_case_in(root: Path, case: dict, tags: list, limit: Optional[int] = None) -> Outcome:
    import argparse

    from llama_factory_ext.api import UserError
    from llama_factory_ext.cli import argtypes
    from llama_factory_ext.runfolder import LOCK, read_status, run_state, unfinished_problem

    out, inputs, keep = _build_run_folder(root, case)
    resume = _resume_arg(out, case, root)
    undo = _fault_on(root, case)
    if undo is None:
        return Outcome("correct result", "fault not available here", tags=tags + ["skipped"])
    try:
        try:
            state, why = run_state(out)
            problem = unfinished_problem(out)
            try:
                argtypes.run_folder(out)
            except argparse.ArgumentTypeError as err:
                if "\n" in str(err):
                    return Outcome("other", f"a reader's message spans lines: {err}", tags=tags)
        except Exception as exc:
            return _tag_tb(exc, tags)
        owner_dead = case["status_owner"] in ("dead", "reused", "no pid") or case["lock"] in ("dead", "reused",
                                                                                          "other host stale")
        unreadable_lock = case["lock"] in ("none", "damaged", "empty", "a folder")
        if state == "interrupted" and not (owner_dead or case["status"] == "running" and unreadable_lock):
            return Outcome("other", f"interrupted while its owner may live: {why}", tags=tags)
        if state == "running" and case["lock"] in ("dead", "reused"):
            return Outcome("other", f"running with a dead lock owner: {why}", tags=tags)
        if state in ("running", "interrupted", "failed") and not problem:
            return Outcome("other", f"a {state} folder passes as finished", tags=tags)
        if limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        try:
            with contextlib.redirect_stderr(io.StringIO()) as said:
                got = new_run_in(out, inputs, case["overwrite"], resume, case["write_mb"])
        except UserError as err:
            outcome = _user_error_outcome(err, (out,))
            if outcome.kind == "clean error":
                after = run_state(out)[0] if os.path.isdir(out) else "none"
                mine = (read_status(out) or {}).get("pid") == os.getpid()
                if after == "running" and mine:
                    outcome = Outcome("other", f"left `running` after: {err.render()}")
                if after == "finished" and mine:
                    outcome = Outcome("other", f"`finished` after an error: {err.render()}")
        except Exception as exc:
            return _tag_tb(exc, tags)
        else:
            after, why = run_state(out)
            if after != "finished":
                outcome = Outcome("other", f"a run that ended well leaves {after} ({why})")
            elif os.path.lexists(os.path.join(out, LOCK)):
                outcome = Outcome("other", "the lock was left behind")
            elif got is not None and not os.path.isfile(os.path.join(got, "trainer_state.json")):
                outcome = Outcome("other", f"resumed from {got}, not a complete checkpoint")
            else:
                outcome = Outcome("warning" if "warning" in said.getvalue() else "correct result", said.getvalue())
        finally:
            if limit is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        lost = _snapshot(keep)
        if lost:
            outcome = Outcome("other", f"data lost: {lost[:3]}")
        outcome.tags = tags
        return outcome
    finally:
        undo()


def _tag_tb(exc: BaseException, tags: list) -> Outcome:
    out = _tb(exc)
    out.tags = tags
    return out


CHILD = r"""
import json, sys
sys.path[:0] = sys.argv[2:4]
from pathlib import Path
import tempfile
from unit import fuzzcases as fc
case = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    out = fc._run_folder_case_in(Path(tmp), case, [], limit=case["limit"])
print("OUTCOME " + json.dumps([out.kind, out.detail]))
"""


def _in_child(case: dict, tags: list) -> Outcome:
    """A size-limit case (RLIMIT_FSIZE: EFBIG stands for a full disk) in a child process, so the limit and its
    signal stay there."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case), str(REPO), str(REPO / "tests")],
                          capture_output=True, text=True, timeout=120)
    line = [x for x in proc.stdout.splitlines() if x.startswith("OUTCOME ")]
    if proc.returncode != 0 or not line:
        return Outcome("traceback", f"child exit {proc.returncode}: {proc.stderr[-2000:]}", tags=tags)
    kind, detail = json.loads(line[-1][8:])
    return Outcome(kind, detail, tags=tags)


# ====================================================================== the unit tier's host stand-in (for the script)

@contextlib.contextmanager
def source_host():
    """What tests/unit/conftest.py's ``source_host`` fixture sets, outside pytest: the release host's key snapshot in a
    private cache, the built-in plugins only, no host value types."""
    from llama_factory_ext import plugins
    from llama_factory_ext.host import keys
    from llama_factory_ext.recipe import checks

    from unit.conftest import RELEASE_SNAPSHOT

    saved = (os.environ.get("XDG_CACHE_HOME"), checks._host_fields, plugins.entry_points)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        target = keys.cache_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(keys.SNAPSHOTS / RELEASE_SNAPSHOT, target)
        checks._host_fields = dict
        plugins.entry_points = lambda group: []
        plugins.reset()
        try:
            yield release_host_keys()
        finally:
            plugins.reset()
            if saved[0] is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = saved[0]
            checks._host_fields, plugins.entry_points = saved[1], saved[2]
