"""Bad input -> what the user sees: the rows of docs/safety_table.md, each run through the real CLI
(`llamafactory-ext`, `llamafactory-cli`) on the tiny local Llama.

Used by tests/test_safety_table.py (one test per row) and scripts/render_safety_table.py (writes the doc).
Rows share one work folder; a row builds what it needs (a trained run, a diverged run) on first use, so any
row runs alone, and the full list in order gives the doc.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from conftest import BIN, RECIPES, env

HANG_S = 180
OUTCOMES = ("clean error", "clean", "traceback", "silent accept", "unclear error", "data lost", "hang")


# ---------------------------------------------------------------- what the user sees, and its class

def seen_line(out: str, expect: str = "") -> str:
    """The pack's message as the user sees it (the line with the expected text, else the first
    llama-factory-ext line, else the last line)."""
    lines = [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("[WARNING|") and "INFO" not in ln[:30]]
    if expect and any(expect in ln for ln in lines):
        return next(ln for ln in lines if expect in ln)
    lines = [ln for ln in lines if "memory estimate" not in ln]
    for i, ln in enumerate(lines):
        if ln.startswith("llama-factory-ext") or ln.startswith("tiny") or ln.startswith("left out"):
            text = ln
            if ln.endswith(":") and i + 1 < len(lines):
                text += " " + lines[i + 1]
            return text
    return lines[-1] if lines else ""


def classify(rc, out, hung, expect: str, refuse: bool = True) -> str:
    if hung:
        return "hang"
    if "Traceback (most recent call last)" in out:
        return "traceback"
    if refuse and rc == 0:
        return "silent accept"
    if expect and expect not in out:
        return "unclear error" if refuse else "silent accept"
    return "clean error" if refuse else "clean"


def _left_out(out: str) -> str:
    return next((ln for ln in out.splitlines() if "left out" in ln), seen_line(out))


# ---------------------------------------------------------------- the shared work folder

def _rows_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _latin(split, rows):
    if split == "test":
        rows = [{k: v.encode("ascii", "ignore").decode() for k, v in r.items()} for r in rows]
        rows[4]["text"] = "fortune: un café, s'il vous plaît"
        return rows


def _empty_text(split, rows):
    if split == "train":
        rows[9]["text"] = ""


def _no_label(split, rows):
    if split == "train":
        del rows[11]["label"]


def _unseen(split, rows):
    if split == "test":
        rows[2]["label"] = "astrology"


def _tags_mixed(split, rows):
    if split == "train":
        rows[4]["labels"] = "devel::library"  # a string among lists


def _bad_scores(split, rows):
    if split == "train":
        rows[2]["score"], rows[4]["score"], rows[6]["score"] = float("nan"), float("inf"), "large"


def _constant_scores(split, rows):
    if split == "train":
        for r in rows:
            r["score"] = 2.5


# name -> (edit of the train / test rows, encoding, file stem in recipes/data)
DATA_EDITS = {"latin": (_latin, "latin-1", "debian_sample"), "empty": (_empty_text, "utf-8", "debian_sample"),
              "nolabel": (_no_label, "utf-8", "debian_sample"), "unseen": (_unseen, "utf-8", "debian_sample"),
              "tags_mixed": (_tags_mixed, "utf-8", "debian_tags_sample"),
              "bad_scores": (_bad_scores, "utf-8", "debian_size_sample"),
              "constant_scores": (_constant_scores, "utf-8", "debian_size_sample")}
MULTI, SCORE = "tiny_cls_multilabel.yaml", "tiny_cls_score.yaml"


class Context:
    """The work folder (a copy of recipes/), the tiny model, and what rows built there."""

    def __init__(self, tmp: Path, tiny: Path):
        self.tmp, self.tiny = Path(tmp), Path(tiny)
        self.work = self.tmp / "recipes"
        if not self.work.exists():
            shutil.copytree(RECIPES, self.work)
        self.prefixes = sorted((str(p) for p in (self.work, self.tiny.parent, self.tmp)), key=len, reverse=True)
        self.last_output = ""
        self._done: dict = {}

    def run(self, args, timeout=HANG_S, **extra):
        """-> (returncode or None, stdout + stderr, seconds, hung)"""
        start = time.monotonic()
        try:
            p = subprocess.run([str(BIN / args[0]), *map(str, args[1:])], cwd=str(self.work), env=env(**extra),
                               capture_output=True, text=True, timeout=timeout)
            self.last_output = p.stdout + p.stderr
            return p.returncode, self.last_output, time.monotonic() - start, False
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            self.last_output = out
            return None, out, time.monotonic() - start, True

    def readable(self, seen: str) -> str:
        """Paths relative to the work folders, `|` escaped, cut at 220 characters (as in the table)."""
        for p in self.prefixes:
            seen = seen.replace(p + os.sep, "").replace(p, ".")
        return seen.replace("|", "\\|")[:220]

    def cls_recipe(self, name: str, recipe: str = "tiny_cls.yaml", **keys) -> Path:
        base = yaml.safe_load((self.work / recipe).read_text())
        base.update(model_name_or_path=str(self.tiny), output_dir=str(self.work / "runs" / name), max_steps=4,
                    eval_steps=2, save_steps=2)
        base.update(keys)
        for k in [k for k, v in keys.items() if v is None]:
            base.pop(k)
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(base, sort_keys=False))
        return path

    def data_copy(self, name: str) -> str:
        """recipes/data copied to data_NAME with one edit (DATA_EDITS), once."""
        d = self.work / f"data_{name}"
        if not d.exists():
            edit, encoding, stem = DATA_EDITS[name]
            shutil.copytree(self.work / "data", d)
            for split in ("train", "test"):
                f = d / f"{stem}_{split}.jsonl"
                rows = _rows_of(f)
                rows = edit(split, rows) or rows
                f.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(encoding, "replace"))
        return str(d)

    def key_recipe(self, i: int) -> Path:
        _, keys, data, _ = KEY_ROWS[i]
        keys = dict(keys)
        if data:
            keys["dataset_dir"] = self.data_copy(data)
        return self.cls_recipe(f"bad{i}", **keys)  # a `recipe` key names the bundled recipe it starts from

    def plugin_site(self, name: str, keys: list[str]) -> Path:
        site = self.tmp / f"site_{name}"
        dist = site / f"lfx_{name}-0.0.1.dist-info"
        if not dist.exists():
            dist.mkdir(parents=True)
            (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lfx-{name}\nVersion: 0.0.1\n")
            (dist / "entry_points.txt").write_text(f"[llama_factory_ext]\n{name} = lfx_{name}\n")
            fields = "\n".join(f"    {k}: float = 0.0" for k in keys)
            (site / f"lfx_{name}.py").write_text(
                "import pluggy\nfrom pydantic import BaseModel\nhookimpl = pluggy.HookimplMarker('llama_factory_ext')\n"
                f"class Keys(BaseModel):\n{fields}\n"
                f"@hookimpl\ndef lfx_register_keys(register):\n    register('{name}', Keys)\n")
        return site

    def good(self) -> Path:
        """runs/good: a finished cls run (trained once)."""
        if "good" not in self._done:
            recipe = self.cls_recipe("good")
            rc, out, _, _ = self.run(["llamafactory-cli", "train", recipe.name])
            assert rc == 0, out[-3000:]
            self._done["good"] = self.work / "runs" / "good"
        return self._done["good"]

    def diverged(self):
        """runs/diverge: a run stopped by the training guard (run once) -> (rc, out, hung)."""
        if "diverge" not in self._done:
            div = self.cls_recipe("diverge", learning_rate=1.0, max_steps=30, logging_steps=1, save_steps=1,
                                  eval_strategy="no", load_best_model_at_end=False, do_eval=False, do_predict=False)
            rc, out, _, hung = self.run(["llamafactory-cli", "train", div.name])
            self._done["diverge"] = (rc, out, hung)
        return self._done["diverge"]


# ---------------------------------------------------------------- the rows

@dataclass
class Row:
    id: str  # test id
    bad: str  # the bad input
    command: str  # as the table shows it
    expected: str  # "clean error" (refused with the message) or "clean" (goes on, nothing lost)
    check: Callable[[Context], tuple]  # -> (outcome, what the user sees)


# (bad input, recipe keys, data edit of DATA_EDITS or None, expected text): validate and train refuse alike
KEY_ROWS = [
    ("`learning_rate: -1`", {"learning_rate": -1}, None, "key `learning_rate`"),
    ("`learning_rate: 10`", {"learning_rate": 10}, None, "key `learning_rate`"),
    ("`stage: [cls]` (a list)", {"stage": ["cls"]}, None, "key `stage`"),
    ("`class_weights` list of the wrong length", {"class_weights": [1, 2]}, None, "key `class_weights`"),
    ("`class_weights` with a misspelt label", {"class_weights": {"gmaes": 2.0}}, None, "did you mean 'games'"),
    ("`class_weights` with a negative weight", {"class_weights": {"games": -1.0}}, None, "key `class_weights`"),
    ("`layerwise_lr_overrides: {\"(.+)+Z\": 1e-3}`",
     {"layerwise_lr_overrides": {"(.+)+Z": 1e-3}, "finetuning_type": ["rslora", "cls_head", "layerwise_lr"]}, None,
     "nests repetition"),
    ("unknown key `learnig_rate`", {"learnig_rate": 1e-4}, None, "did you mean `learning_rate`"),
    ("Latin-1 data file (\"café\")", {}, "latin", "iconv -f latin-1"),
    ("empty text in a train row", {}, "empty", "empty text in row 10"),
    ("missing label in a train row", {}, "nolabel", "missing label in row 12"),
    ("test label unseen in train", {}, "unseen", "label 'astrology'"),
    ("multi-label column with a string among the lists (`cls_problem_type: auto`)",
     {"recipe": MULTI, "cls_problem_type": "auto"}, "tags_mixed", "mixed types in one column"),
    ("NaN, infinite and non-numeric scores", {"recipe": SCORE}, "bad_scores", "the score is NaN"),
    ("empty label lists with `cls_allow_empty_labels: false`", {"recipe": MULTI, "cls_allow_empty_labels": False},
     None, "an empty label list in rows"),
    ("`cls_problem_type: multi_label` on score data", {"recipe": SCORE, "cls_problem_type": "multi_label"}, None,
     "multi-label rows carry a list of labels"),
    ("every train score the same (nothing to regress)", {"recipe": SCORE}, "constant_scores",
     "regression needs scores that vary"),
]
KEY_IDS = ["lr_negative", "lr_10", "stage_list", "class_weights_length", "class_weights_misspelt",
           "class_weights_negative", "regex_nested_repetition", "unknown_key", "latin1_data", "empty_text",
           "missing_label", "unseen_test_label", "mixed_label_types", "bad_scores", "empty_label_lists",
           "problem_type_disagrees", "constant_scores"]
LATIN = KEY_IDS.index("latin1_data")


def _key_row(i: int, cmd: str):
    def check(ctx: Context):
        recipe = ctx.key_recipe(i)
        rc, out, _, hung = ctx.run([*cmd.split(), recipe.name])
        outcome = classify(rc, out, hung, KEY_ROWS[i][3])
        if cmd == "llamafactory-cli train" and (ctx.work / "runs" / f"bad{i}").exists():
            outcome = "data lost" if outcome == "clean error" else outcome  # nothing may be written on bad input
        return outcome, seen_line(out)
    return check


def _latin_baseline(ctx):
    rc, out, _, hung = ctx.run(["llamafactory-ext", "baseline", ctx.key_recipe(LATIN).name])
    return classify(rc, out, hung, "iconv -f latin-1"), seen_line(out)


def _big_yaml(cmd: str):
    def check(ctx):
        big = ctx.work / "big.yaml"
        if not big.exists():
            big.write_text("".join(f"key_{i}: {i}\n" for i in range(700_000)))
        rc, out, _, hung = ctx.run([*cmd.split(), big.name], timeout=120)
        return classify(rc, out, hung, "over the limit"), seen_line(out)
    return check


def _plugin_host_keys(ctx):
    site = ctx.plugin_site("hostkeys", ["learning_rate", "lora_rank"])
    sft = yaml.safe_load((ctx.work / "tiny_sft.yaml").read_text())
    sft.update(model_name_or_path=str(ctx.tiny), output_dir=str(ctx.work / "runs" / "sft_plugin"), max_steps=2,
               learning_rate=0.05, logging_steps=1, overwrite_output_dir=True)
    (ctx.work / "sft_plugin.yaml").write_text(yaml.safe_dump(sft))
    rc, out, _, hung = ctx.run(["llamafactory-cli", "train", "sft_plugin.yaml"], PYTHONPATH=str(site))
    log_file = ctx.work / "runs" / "sft_plugin" / "trainer_log.jsonl"
    log = [json.loads(x) for x in log_file.read_text().splitlines()] if rc == 0 else []
    took = not log or not any(r.get("lr", 0) > 1e-3 for r in log)
    outcome = "silent accept" if took else classify(rc, out, hung, "claims LLaMA-Factory keys `learning_rate`, `lora_rank`",
                                                    refuse=False)
    return outcome, _left_out(out)


def _plugin_other_owner(ctx):
    site = ctx.plugin_site("decay", ["layerwise_lr_decay"])
    rc, out, _, hung = ctx.run(["llamafactory-ext", "validate", "tiny_cls_layerwise.yaml"], PYTHONPATH=str(site))
    ok = rc == 0 and "left out" in out and "strategy 'layerwise_lr'" in out
    return ("clean" if ok else classify(rc, out, hung, "strategy 'layerwise_lr'", refuse=False)), _left_out(out)


def _disabled(cmd: str):
    def check(ctx):
        rc, out, _, hung = ctx.run([*cmd.split(), ctx.cls_recipe("good").name], LLAMA_FACTORY_EXT_DISABLE="1")
        return classify(rc, out, hung, "llama-factory-ext is disabled"), seen_line(out)
    return check


def _plugins_disabled(ctx):
    rc, out, _, hung = ctx.run(["llamafactory-ext", "plugins"], LLAMA_FACTORY_EXT_DISABLE="1")
    return ("clean" if "llama-factory-ext is disabled" in out else "silent accept"), seen_line(out)


def _diverges(ctx):
    rc, out, hung = ctx.diverged()
    ctx.last_output = out
    status_file = ctx.work / "runs" / "diverge" / "run_status.json"
    status = json.loads(status_file.read_text()) if status_file.exists() else {}
    outcome = classify(rc, out, hung, "training guard stopped the run")
    if outcome == "clean error" and (status.get("status") != "failed" or "Try:" not in out):
        outcome = "unclear error"
    return outcome, seen_line(out, "training guard")


def _folder_in_use(ctx):
    good_out = ctx.good()
    first_preds = (good_out / "predictions.jsonl").read_text()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    owner = f"pid {sleeper.pid} on {socket.gethostname()}"
    try:
        (good_out / ".lfx_run.lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                            "started": "now"}))
        rc, out, _, hung = ctx.run(["llamafactory-cli", "train", "good.yaml"])
        outcome = classify(rc, out, hung, "is in use by another run")
        if (good_out / "predictions.jsonl").read_text() != first_preds:
            outcome = "data lost"
    finally:
        sleeper.kill()
        sleeper.wait()
    return outcome, seen_line(out, "in use").replace(owner, "pid PID on HOST")  # the same table on every machine


def _rerun_no_overwrite(ctx):
    ctx.good()
    rc, out, _, hung = ctx.run(["llamafactory-cli", "train", "good.yaml", "overwrite_output_dir=false"])
    return classify(rc, out, hung, "holds a finished run"), seen_line(out, "holds a finished run")


def _rerun_overwrite(ctx):
    good_out = ctx.good()
    rc, out, _, hung = ctx.run(["llamafactory-cli", "train", "good.yaml", "do_predict=false"])
    results = json.loads((good_out / "all_results.json").read_text()) if rc == 0 else {}
    mixed = (good_out / "predictions.jsonl").exists() or any(k.startswith("predict_") for k in results)
    return ("data lost" if mixed or rc != 0 else "clean"), "previous run's outputs removed first; no stale predictions"


def _export(dest: str, expect: str):
    def check(ctx):
        good_out = ctx.good()
        if dest == "diverge":
            ctx.diverged()
        target = {"base": ctx.tiny, "diverge": ctx.work / "runs" / "diverge", "data": ctx.work / "data"}[dest]
        before = sorted(os.listdir(ctx.tiny))
        rc, out, _, hung = ctx.run(["llamafactory-ext", "export", good_out, "--out", target])
        outcome = classify(rc, out, hung, expect)
        if sorted(os.listdir(ctx.tiny)) != before:
            outcome = "data lost"
        return outcome, seen_line(out)
    return check


def _predict_latin(ctx):
    good_out = ctx.good()
    old = ctx.work / "old_preds.jsonl"
    old.write_text("previous\n")
    rc, out, _, hung = ctx.run(["llamafactory-ext", "predict", good_out, "--input",
                                Path(ctx.data_copy("latin")) / "debian_sample_test.jsonl", "--output", old])
    outcome = classify(rc, out, hung, "iconv -f latin-1")
    return ("data lost" if old.read_text() != "previous\n" else outcome), seen_line(out)


def _resume_cut_checkpoint(ctx):
    part = ctx.good() / "checkpoint-99"
    part.mkdir(exist_ok=True)
    (part / "adapter_model.safetensors").write_bytes(b"half")
    rc, out, _, hung = ctx.run(["llamafactory-cli", "train", "good.yaml", "overwrite_output_dir=false",
                                "resume_from_checkpoint=" + str(part)])
    return classify(rc, out, hung, "is incomplete", refuse=False), \
        next((ln for ln in out.splitlines() if "is incomplete" in ln), seen_line(out))


def _recipes_copy(ctx):
    shared = ctx.tmp / "shared" / "r"
    shared.mkdir(parents=True, exist_ok=True)
    (shared / "r.yaml").write_text("model_name_or_path: x\ndataset_dir: ../../..\n")
    dest = ctx.tmp / "copied"
    shutil.rmtree(dest, ignore_errors=True)
    rc, out, _, hung = ctx.run(["llamafactory-ext", "recipes", "copy", shared / "r.yaml", dest])
    copied = list(dest.rglob("*"))
    return ("clean" if rc == 0 and len(copied) == 1 and "left out" in out else "data lost"), seen_line(out)


ROWS: list[Row] = []
for _i, (_bad, *_) in enumerate(KEY_ROWS):
    for _cmd in ("llamafactory-ext validate", "llamafactory-cli train"):
        ROWS.append(Row(f"{KEY_IDS[_i]}-{_cmd.split()[1]}", _bad, _cmd, "clean error", _key_row(_i, _cmd)))
ROWS += [
    Row("latin1_data-baseline", "Latin-1 data file", "llamafactory-ext baseline", "clean error", _latin_baseline),
    Row("big_yaml-estimate", "10 MB YAML of keys", "llamafactory-ext estimate", "clean error",
        _big_yaml("llamafactory-ext estimate")),
    Row("big_yaml-validate", "10 MB YAML of keys", "llamafactory-ext validate", "clean error",
        _big_yaml("llamafactory-ext validate")),
    Row("plugin_host_keys", "plugin registering host keys `learning_rate`, `lora_rank`",
        "llamafactory-cli train (host-only recipe)", "clean", _plugin_host_keys),
    Row("plugin_other_owners_key", "plugin claiming `layerwise_lr_decay` (another owner's key)",
        "llamafactory-ext validate (bundled recipe)", "clean", _plugin_other_owner),
    Row("disabled-train", "pack recipe with `LLAMA_FACTORY_EXT_DISABLE=1`", "llamafactory-cli train", "clean error",
        _disabled("llamafactory-cli train")),
    Row("disabled-validate", "pack recipe with `LLAMA_FACTORY_EXT_DISABLE=1`", "llamafactory-ext validate",
        "clean error", _disabled("llamafactory-ext validate")),
    Row("disabled-plugins", "`plugins` with `LLAMA_FACTORY_EXT_DISABLE=1`", "llamafactory-ext plugins", "clean",
        _plugins_disabled),
    Row("training_diverges", "`learning_rate: 1.0` (training diverges)", "llamafactory-cli train", "clean error",
        _diverges),
    Row("folder_in_use", "a second training into a folder in use", "llamafactory-cli train", "clean error",
        _folder_in_use),
    Row("rerun_no_overwrite", "re-run over a finished run, `overwrite_output_dir: false`", "llamafactory-cli train",
        "clean error", _rerun_no_overwrite),
    Row("rerun_overwrite", "re-run over a finished run, `overwrite_output_dir: true`, `do_predict: false`",
        "llamafactory-cli train", "clean", _rerun_overwrite),
    Row("export_to_base_model", "`export --out` the base model folder", "llamafactory-ext export", "clean error",
        _export("base", "is the base model")),
    Row("export_to_run_folder", "`export --out` another run folder", "llamafactory-ext export", "clean error",
        _export("diverge", "training run folder")),
    Row("export_to_non_empty", "`export --out` a non-empty folder", "llamafactory-ext export", "clean error",
        _export("data", "--force")),
    Row("predict_latin1_over_output", "`predict --input` a Latin-1 file over an existing `--output`",
        "llamafactory-ext predict", "clean error", _predict_latin),
    Row("resume_cut_checkpoint", "resume from a checkpoint cut short while saving", "llamafactory-cli train", "clean",
        _resume_cut_checkpoint),
    Row("recipes_copy_outside", "`recipes copy` of a recipe with `dataset_dir: ../../..`", "llamafactory-ext recipes copy",
        "clean", _recipes_copy),
]


def run_row(ctx: Context, row: Row) -> tuple[str, str]:
    """-> (outcome, what the user sees, as the table shows it)"""
    outcome, seen = row.check(ctx)
    return outcome, ctx.readable(seen)


ROWS_HEADING = "## Listed bad inputs, through the real CLIs"


def render_classes(summary: dict) -> list[str]:
    """The generated classes (docs/bad_input_fuzz.json, the harness's last run): counts per class and outcome, and
    what the user sees for the first case of each outcome."""
    outcomes = summary["outcomes"]
    total = {o: sum(c["counts"][o] for c in summary["classes"]) for o in outcomes}
    lines = [
        "## Generated bad input, by class",
        "",
        "From the generative harness's last run (`scripts/fuzz_bad_input.py`, written to "
        "[bad_input_fuzz.md](bad_input_fuzz.md) with every kind of input and finding; a bounded slice runs in the unit "
        "tier, `tests/unit/test_fuzz_*.py`). Each case is sorted automatically: **clean error** (one message naming "
        "the key, file, row, argument or output_dir; no traceback), **correct result** (accepted, and the class's "
        "rules hold: nothing foreign or read by the run lost, no `running`/`finished` left by a failed run, ...), "
        "**warning** (a correct result with a documented warning), **traceback**, **other** (a message naming "
        "nothing, a broken rule, a hang).",
        "",
        f"**Total**: {sum(total.values())} cases; " + ", ".join(f"{o} {total[o]}" for o in outcomes) + ".",
        "",
        "| class | cases | " + " | ".join(outcomes) + " | what the user sees (first clean error) |",
        "|---|---:|" + "---:|" * len(outcomes) + "---|",
    ]
    for c in summary["classes"]:
        seen = c["examples"].get("clean error") or c["examples"].get("correct result") or "-"
        lines.append(f"| {c['class']} | {sum(c['counts'].values())} | "
                     + " | ".join(str(c["counts"][o]) for o in outcomes) + f" | {seen.replace('|', '/')} |")
    lines += ["", "What is generated per class:", ""]
    lines += [f"- **{c['class']}**: {c['what']}" for c in summary["classes"]]
    return lines


def render(results: list[tuple[Row, str, str]], summary: dict | None = None) -> str:
    """docs/safety_table.md: the harness's classes (``summary``, if given) and the listed rows [(row, outcome, seen)]."""
    counts = {k: sum(o == k for _, o, _ in results) for k in OUTCOMES}
    lines = [
        "# Bad input: what the user sees",
        "",
        "Generated by `scripts/render_safety_table.py`: the classes of the generative bad-input harness (counts and",
        "messages of its last run), then every row of `tests/safety_rows.py` run through the real `llamafactory-ext` /",
        "`llamafactory-cli` on the tiny local Llama, CPU (`tests/test_safety_table.py` runs the same rows).",
        "",
    ]
    if summary:
        lines += render_classes(summary) + [""]
    lines += [
        ROWS_HEADING,
        "",
        "Outcome `clean error`: exit code != 0, one message naming the key, file or row, no traceback;",
        "`clean`: the run goes on and nothing is lost or mixed.",
        "",
        f"**Counts**: clean errors {counts['clean error']}, clean runs {counts['clean']}, "
        f"tracebacks {counts['traceback']}, silent accepts {counts['silent accept']}, "
        f"unclear errors {counts['unclear error']}, data lost {counts['data lost']}, hangs {counts['hang']}.",
        "",
        "| bad input | command | outcome | what the user sees |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.bad} | `{r.command}` | {o} | {s} |" for r, o, s in results]
    return "\n".join(lines) + "\n"
