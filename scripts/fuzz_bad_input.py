#!/usr/bin/env python3
"""The longer run of the generative bad-input harness (issue 17): the unit tier's strategies (tests/unit/fuzzcases.py)
with many more examples, counted per class and outcome, and written to docs/bad_input_fuzz.md.

    .venv-unit/bin/python scripts/fuzz_bad_input.py [--examples 2000] [--cli-venv /path/to/venv --cli-cases 12]

Runs from the source tree like the unit tier (no torch, no host: host keys from the shipped snapshot, no host value
types). With ``--cli-venv`` (a venv holding LLaMA-Factory), a few generated recipe files also go through the real
``llamafactory-ext validate`` in a subprocess. Deterministic: the same arguments give the same cases and the same doc.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from hypothesis import HealthCheck, given, settings  # noqa: E402

from unit import fuzzcases as fc  # noqa: E402

DOC = REPO / "docs" / "bad_input_fuzz.md"
SLOW = ("pack keys (llamafactory-cli)", "run folders and file-system faults")
CLASSES = {
    "recipe keys and values (dict)": "`recipe.prepare` on a bundled recipe with keys replaced, added, removed: "
                                     "wrong types, out of range, NaN/inf, huge, unicode, nested, unknown keys",
    "recipe files (YAML/JSON)": "`read_recipe` then `prepare`: aliases and alias bombs, duplicate keys, `!!python` "
                                "and other tags, deep nesting, huge scalars, non-UTF-8 bytes, other encodings",
    "cls data folders": "the cls stage's data check (`validate`) and load (`train`): jsonl/json/csv, encodings, "
                        "ragged rows, labels of every type and form, repeated ids, tiny, skewed and impossible splits",
    "cls multi-label and regression data": "the same check and load on multi-label and regression folders: label "
                                            "lists (empty, nested, non-string items, repeats, list-like and joined "
                                            "strings, scalars among lists, unknown labels, huge lists), scores (NaN, "
                                            "inf, text, numeric text, booleans, missing, huge and tiny, constant, one "
                                            "row, lists), the problem type key agreeing with the data or not, the "
                                            "label and split keys on tiny and skewed data",
    "llamafactory-ext arguments": "`build_parser().parse_args` for every command: numbers, negative, huge, NaN, "
                                  "text, paths to files, folders, missing and read-only places",
    "pack keys (llamafactory-cli)": "the pack's `cls_*`, stage and strategy keys with generated values, in the "
                                    "recipe file and as `key=value` after it, through `read_recipe`, the overrides, "
                                    "validate's checks and train's `prepare`",
    "run folders and file-system faults": "the readers (`run_state`, the `run_folder` argument of predict/export/"
                                          "compare) and a new run (lock, overwrite, resume, status, save) on damaged, "
                                          "foreign, in-use and killed runs, output_dir as a file, inputs inside it; "
                                          "read-only, full (tmpfs) and size-limited (RLIMIT_FSIZE) file systems",
    "llamafactory-ext validate (subprocess)": "generated recipe files through the real `llamafactory-ext validate` "
                                              "with LLaMA-Factory installed",
}


def _clean(text: str, kind: str = "", tmp_roots=()) -> str:
    """One line (a traceback's last, a message's first problem), no temporary paths, no memory addresses, short."""
    lines = [x for x in text.strip().splitlines() if x.strip() and not re.search(r"\d+ problem(s|\(s\))?( in .*)?:?$", x)]
    line = (lines[-1] if kind in ("traceback", "other") else lines[0]) if lines else ""
    for root in tmp_roots:
        line = line.replace(root, "<tmp>")
    line = re.sub(re.escape(tempfile.gettempdir()) + r"/[^/\s'\"]+/?", "", line)  # keep names inside the case's folder
    line = re.sub(r"0x[0-9a-f]{6,}", "0x…", line)
    return (line[:160] + "…") if len(line) > 160 else line


class Tally:
    def __init__(self):
        self.counts = collections.defaultdict(collections.Counter)  # class -> outcome -> n
        self.by_tag = collections.defaultdict(collections.Counter)  # (class, tag) -> outcome -> n
        self.examples: dict[tuple[str, str], str] = {}  # (class, outcome) -> first detail
        self.findings: list[tuple[str, str, str]] = []  # (class, outcome, detail) of every not-ok case
        self.examples_run: dict[str, int] = {}

    def add(self, cls: str, out: fc.Outcome) -> None:
        self.counts[cls][out.kind] += 1
        for tag in out.tags[:1]:
            self.by_tag[(cls, tag)][out.kind] += 1
        detail = _clean(out.detail, out.kind)
        self.examples.setdefault((cls, out.kind), detail)
        if not out.ok:
            self.findings.append((cls, out.kind, detail))


def _run(strategy, n: int, body) -> None:
    @settings(max_examples=n, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def loop(case):
        body(case)

    loop()


def run_cli_validate(venv: Path, data: bytes, suffix: str, mutation: str, timeout: float) -> fc.Outcome:
    """One generated recipe file through ``llamafactory-ext validate`` (source tree on PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "true",
           "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, fc._MARKER)
        path = Path(tmp) / f"recipe{suffix or '.yaml'}"
        path.write_bytes(data.replace(b"{marker}", marker.encode()))
        try:
            proc = subprocess.run([str(venv / "bin" / "python"), "-m", "llama_factory_ext.cli", "validate", str(path)],
                                  capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            return fc.Outcome("other", f"no answer in {timeout:.0f} s (a hang)", tags=[mutation])
        err = (proc.stderr + proc.stdout).replace(tmp + "/", "").replace(tmp, "<tmp>")
        err = "\n".join(x for x in err.splitlines() if not x.startswith("[WARNING|"))  # the host's timestamped notes
        if os.path.exists(marker):
            return fc.Outcome("other", "a recipe ran code", tags=[mutation])
    if "Traceback (most recent call last)" in err:
        return fc.Outcome("traceback", err[-1500:], tags=[mutation])
    if proc.returncode == 0:
        return fc.Outcome("warning" if "llama-factory-ext: warning" in err else "correct result", err[-300:], tags=[mutation])
    if proc.returncode in (1, 2) and ("recipe" in err or "key `" in err or "file " in err):
        return fc.Outcome("clean error", err[-300:], tags=[mutation])
    return fc.Outcome("other", f"exit {proc.returncode}: {err[-800:]}", tags=[mutation])


def render(t: Tally, args, seconds_note: str) -> str:
    outcomes = fc.OUTCOMES
    total = collections.Counter()
    for c in t.counts.values():
        total.update(c)
    lines = [
        "# Bad input, generated: what the pack answers",
        "",
        "Generated by `scripts/fuzz_bad_input.py` (the generative harness of `tests/unit/fuzzcases.py`; a bounded "
        "slice of the same strategies runs in the unit tier, `tests/unit/test_fuzz_*.py`). Each case is generated by "
        "Hypothesis (derandomized: the same run gives the same cases) and sorted automatically into one outcome:",
        "",
        "- **clean error**: a `UserError` whose every problem names a key, file, row or argument (for arguments: "
        "argparse's exit 2 with one `error:` line naming the argument); no traceback;",
        "- **correct result**: the input is accepted and what comes out holds the class's rules (a cls data folder: "
        "training rows, every label in the label set, unique ids where predictions are joined, and `validate` "
        "passes exactly what `train` loads, writing nothing into the folder; multi-label: every row a list of distinct "
        "labels of the set, each label on some train rows and not on all; regression: every score a finite float, "
        "train scores that vary, a finite mean and std; arguments: no NaN, no count below its floor);",
        "- **warning**: a correct result with a documented warning (labels merged by normalisation, labels that "
        "differ only by case);",
        "- **traceback**: any other exception; **other**: a message naming nothing, a result that breaks a rule, a "
        "recipe that ran code, `validate` and `train` disagreeing, a hang.",
        "",
        f"Run: {args.examples} examples per class ({', '.join(f'{c}: {n}' for c, n in t.examples_run.items() if n != args.examples) or 'all'}){seconds_note}.",
        "",
        f"**Total**: {sum(total.values())} cases; " + ", ".join(f"{o} {total[o]}" for o in outcomes) + ".",
        "",
        "| class | what is generated | " + " | ".join(outcomes) + " |",
        "|---|---|" + "---|" * len(outcomes),
    ]
    for cls, what in CLASSES.items():
        if cls in t.counts:
            lines.append(f"| {cls} | {what} | " + " | ".join(str(t.counts[cls][o]) for o in outcomes) + " |")
    lines += ["", "## By kind of input", "", "| class | kind | " + " | ".join(outcomes) + " |",
              "|---|---|" + "---|" * len(outcomes)]
    for (cls, tag), c in sorted(t.by_tag.items()):
        lines.append(f"| {cls} | {tag} | " + " | ".join(str(c[o]) for o in outcomes) + " |")
    lines += ["", "## What the user sees (first case of each outcome)", "", "| class | outcome | message |",
              "|---|---|---|"]
    for (cls, kind), detail in sorted(t.examples.items(), key=lambda kv: (list(CLASSES).index(kv[0][0]),
                                                                          outcomes.index(kv[0][1]))):
        lines.append(f"| {cls} | {kind} | {detail.replace('|', '/') or '-'} |")
    lines += ["", "## Findings (outcomes other than clean error, correct result, warning)", ""]
    if t.findings:
        seen = collections.Counter((c, k, d) for c, k, d in t.findings)
        lines += [f"- {c}: {k} ×{n}: {d.replace('|', '/')}" for (c, k, d), n in sorted(seen.items())]
    else:
        lines.append("None in this run.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000, help="examples per class (default 2000)")
    ap.add_argument("--slow-examples", type=int, default=None,
                    help="examples for the slower classes (pack keys, run folders; default: --examples / 4)")
    ap.add_argument("--cli-venv", type=Path, default=None, help="a venv with LLaMA-Factory for `validate` subprocesses")
    ap.add_argument("--cli-cases", type=int, default=12, help="generated recipe files through the real CLI")
    ap.add_argument("--cli-timeout", type=float, default=180.0, help="seconds one `validate` may take")
    ap.add_argument("--output", type=Path, default=DOC, help=f"the report (default {DOC.relative_to(REPO)})")
    ap.add_argument("--no-write", action="store_true", help="print the counts only")
    args = ap.parse_args(argv)

    tally = Tally()
    started = time.monotonic()
    with fc.source_host() as keys:
        pack_keys = fc.pack_keys()
        steps = [
            ("recipe keys and values (dict)", fc.recipe_dicts(keys=pack_keys),
             lambda c: _tag(fc.run_recipe_dict(c[0], c[1], keys), "with data" if c[1] else "keys only")),
            ("recipe files (YAML/JSON)", fc.recipe_texts(), lambda c: fc.run_recipe_file(*c, keys)),
            ("cls data folders", fc.cls_cases(), fc.run_cls_case),
            ("cls multi-label and regression data", fc.cls_typed_cases(), fc.run_cls_typed_case),
            ("llamafactory-ext arguments", fc.cli_argvs(), lambda c: fc.run_cli_argv(*c)),
            ("pack keys (llamafactory-cli)", fc.pack_key_cases(), lambda c: fc.run_pack_key_case(*c, keys)),
            ("run folders and file-system faults", fc.run_folder_cases(), fc.run_run_folder_case),
        ]
        slow = args.slow_examples if args.slow_examples is not None else max(1, args.examples // 4)
        for cls, strategy, body in steps:
            t0 = time.monotonic()
            n = slow if cls in SLOW else args.examples
            tally.examples_run[cls] = n
            _run(strategy, n, lambda case, cls=cls, body=body: tally.add(cls, body(case)))
            print(f"{cls}: " + ", ".join(f"{o} {tally.counts[cls][o]}" for o in fc.OUTCOMES)
                  + f" ({time.monotonic() - t0:.0f} s)", flush=True)
    if args.cli_venv:
        cls = "llamafactory-ext validate (subprocess)"
        _run(fc.recipe_texts(), args.cli_cases,
             lambda c: tally.add(cls, run_cli_validate(args.cli_venv, *c, timeout=args.cli_timeout)))
        print(f"{cls}: " + ", ".join(f"{o} {tally.counts[cls][o]}" for o in fc.OUTCOMES), flush=True)
    minutes = (time.monotonic() - started) / 60
    print(f"done in {minutes:.1f} min; {len(tally.findings)} findings")
    for c, k, d in tally.findings[:40]:
        print(f"  {c}: {k}: {d}")
    if not args.no_write:
        note = f", and {args.cli_cases} recipe files through `llamafactory-ext validate`" if args.cli_venv else ""
        text = render(tally, args, note)
        from llama_factory_ext.safeio import atomic_write

        with atomic_write(args.output) as f:
            f.write(text)
        write_json(args.output.with_suffix(".json"), summary(tally))
        print(f"wrote {args.output} and {args.output.with_suffix('.json').name}")
    return 1 if tally.findings else 0


def summary(t: Tally) -> dict:
    """The run's counts per class and kind of input, and the first message of each outcome (read by
    scripts/render_safety_table.py for docs/safety_table.md)."""
    return {"outcomes": list(fc.OUTCOMES),
            "classes": [{"class": cls, "what": CLASSES[cls], "examples_run": t.examples_run.get(cls),
                         "counts": {o: t.counts[cls][o] for o in fc.OUTCOMES},
                         "kinds": {tag: {o: c[o] for o in fc.OUTCOMES if c[o]}
                                   for (k, tag), c in sorted(t.by_tag.items()) if k == cls},
                         "examples": {o: t.examples[(cls, o)] for o in fc.OUTCOMES if (cls, o) in t.examples}}
                        for cls in CLASSES if cls in t.counts],
            "findings": [list(f) for f in t.findings]}


def write_json(path: Path, data) -> None:
    import json

    from llama_factory_ext.safeio import atomic_write

    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def _tag(out: fc.Outcome, tag: str) -> fc.Outcome:
    out.tags = [tag] + out.tags
    return out


if __name__ == "__main__":
    sys.exit(main())
