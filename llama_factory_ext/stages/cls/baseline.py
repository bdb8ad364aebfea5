"""TF-IDF + linear classifier on a cls recipe's own split (``llamafactory-ext baseline``) and a finished cls run
against that baseline: error analysis (``llamafactory-ext compare``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...api import UserError

BASELINE_DIR = "baseline"
COMPARE_DIR = "compare"
PREDICTIONS = "predictions.jsonl"


# ------------------------------------------------------------------ baseline

def load_recipe_split(recipe: str, overrides=()):
    """(ClsData, host_args) for a cls recipe: the same train / test rows the cls stage uses."""
    from types import SimpleNamespace

    from ...catalog import find
    from ...recipe.load import cli_override_keys, read_recipe, resolve_paths, with_overrides
    from ...recipe import prepare
    from .data import load_cls_data

    path = find(recipe)
    raw = with_overrides(read_recipe(path), list(overrides))
    raw = resolve_paths(raw, path, keep=cli_override_keys(list(overrides)))
    if raw.get("stage") != "cls":
        raise UserError(f"key `stage`: the baseline needs a classification recipe (`stage: cls`), got {raw.get('stage', 'sft')!r}", str(path))
    run = prepare(raw, source=str(path))
    a = {**raw, **run.host_args}
    val_size = a.get("val_size") or 0.0
    data_args = SimpleNamespace(dataset=a.get("dataset"), eval_dataset=a.get("eval_dataset"),
                                dataset_dir=a.get("dataset_dir", "data"), max_samples=a.get("max_samples"),
                                val_size=float(val_size))
    training_args = SimpleNamespace(seed=int(a.get("seed", 42)), do_train=True)
    try:
        data = load_cls_data(data_args, training_args, run.stage_opts)
    except UserError as err:
        raise UserError(err.problems, str(path)) from None
    return data, a


def _text(ex) -> str:
    return ex.text if not ex.text_pair else f"{ex.text} {ex.text_pair}"


def fit_predict(train_texts, train_labels, test_texts, labels, classifier: str = "svm", C: float = 1.0):
    """(predicted labels, probabilities [n, k] in ``labels`` order) of TF-IDF (1-2-grams, sublinear) + a linear model.

    LinearSVC predicts with its decision function; its probabilities come from Platt scaling
    (CalibratedClassifierCV, 3 folds) and serve only as confidences.
    """
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vec.fit_transform(train_texts)
    x_test = vec.transform(test_texts)
    if classifier == "logreg":
        model = LogisticRegression(C=C, max_iter=2000)
        model.fit(x_train, train_labels)
        predicted = model.predict(x_test)
        probs = model.predict_proba(x_test)
        classes = list(model.classes_)
    else:
        model = LinearSVC(C=C, random_state=0)
        model.fit(x_train, train_labels)
        predicted = model.predict(x_test)
        probs, classes = _platt(x_train, train_labels, x_test, C)
    full = np.zeros((len(test_texts), len(labels)))
    for j, c in enumerate(classes):
        full[:, labels.index(c)] = probs[:, j]
    return list(predicted), full


def _platt(x_train, y_train, x_test, C):
    from collections import Counter

    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    folds = min(3, min(Counter(y_train).values()))
    if folds < 2:  # a class with one row: no calibration possible, softmax of the margins
        model = LinearSVC(C=C, random_state=0).fit(x_train, y_train)
        scores = np.atleast_2d(model.decision_function(x_test))
        e = np.exp(scores - scores.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True), list(model.classes_)
    cal = CalibratedClassifierCV(LinearSVC(C=C, random_state=0), method="sigmoid", cv=folds)
    cal.fit(x_train, y_train)
    return cal.predict_proba(x_test), list(cal.classes_)


def metrics_of(gold, predicted, labels) -> dict:
    from sklearn.metrics import accuracy_score, classification_report, f1_score

    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
        "per_class": classification_report(gold, predicted, labels=labels, output_dict=True, zero_division=0),
        "n": len(gold),
    }


def _report_md(title: str, m: dict, labels) -> str:
    lines = [f"# {title}", "", f"accuracy **{m['accuracy']:.4f}**, macro-F1 **{m['macro_f1']:.4f}** on {m['n']} rows", "",
             "| label | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|"]
    for lab in labels:
        r = m["per_class"].get(lab, {})
        lines.append(f"| {lab} | {r.get('precision', 0):.4f} | {r.get('recall', 0):.4f} | {r.get('f1-score', 0):.4f} | {int(r.get('support', 0))} |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def make_baseline(recipe: str, overrides=(), classifier: str = "svm", C: float = 1.0, output=None) -> tuple[Path, dict]:
    """Fit the baseline on the recipe's train rows, score its test rows; write predictions.jsonl, metrics.json and
    report.md into ``output`` (default: the recipe's output_dir/baseline). Returns (folder, metrics)."""
    data, a = load_recipe_split(recipe, overrides)
    if not data.test:
        raise UserError("the recipe has no evaluation rows: set `eval_dataset`, `val_size` or `test_dataset`", recipe)
    out = Path(output) if output else Path(a.get("output_dir") or ".") / BASELINE_DIR
    labels = list(data.labels)
    predicted, probs = fit_predict([_text(e) for e in data.train], [e.label for e in data.train],
                                   [_text(e) for e in data.test], labels, classifier, C)
    gold = [e.label for e in data.test]
    m = metrics_of(gold, predicted, labels)
    m.update(classifier="LinearSVC" if classifier == "svm" else "LogisticRegression", C=C,
             features="tfidf word 1-2-grams, sublinear tf", n_train=len(data.train), datasets=data.sources)
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"id": e.id, "gold": g, "predicted": p, "text": _text(e),
                        "probabilities": {lab: round(float(x), 6) for lab, x in zip(labels, pr)}}, ensure_ascii=False)
            for e, g, p, pr in zip(data.test, gold, predicted, probs)]
    _write_atomic(out / PREDICTIONS, "\n".join(rows) + "\n")
    _write_atomic(out / "metrics.json", json.dumps(m, indent=2))
    _write_atomic(out / "report.md", _report_md(f"TF-IDF + {m['classifier']} baseline", m, labels))
    return out, m


# ------------------------------------------------------------------ compare

def read_predictions(path: Path, who: str) -> dict[str, dict]:
    """id -> row of a predictions.jsonl ({id, gold, predicted, probabilities}); a repeated id is refused, naming both
    lines (rows sharing an id could not be told apart when the two files are joined)."""
    from ...safeio import DATA_LIMIT, read_text

    if not path.is_file():
        raise UserError(f"{who}: {path} does not exist")
    rows, problems, line_of = {}, [], {}
    for i, line in enumerate(read_text(path, DATA_LIMIT, "predictions file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            problems.append(f"{path} line {i}: not JSON ({getattr(exc, 'msg', 'nested too deeply')})")
            continue
        if not isinstance(r, dict):
            problems.append(f"{path} line {i}: not a JSON object")
            continue
        missing = [k for k in ("id", "gold", "predicted", "probabilities") if k not in r]
        if missing:
            problems.append(f"{path} line {i}: missing {', '.join(missing)}")
            continue
        wrong = _row_problem(r)
        if wrong:
            problems.append(f"{path} line {i}: {wrong}")
            continue
        rid = str(r["id"])
        if rid in line_of:
            problems.append(f"{path}: id {rid!r} is on line {line_of[rid]} and line {i}; rows are matched by id, so ids "
                            f"must be unique (give the data an `id` column with unique values and predict again)")
            continue
        line_of[rid] = i
        rows[rid] = r
    if problems:
        raise UserError(problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else []))
    if not rows:
        raise UserError(f"{who}: {path} has no predictions")
    return rows


def _row_problem(r: dict):
    """What is wrong with the fields of one predictions row, or None."""
    if isinstance(r["id"], bool) or not isinstance(r["id"], (str, int)):
        return f"id is {type(r['id']).__name__}, not a string"
    for k in ("gold", "predicted"):
        if not isinstance(r[k], str):
            return f"`{k}` is {'missing (null)' if r[k] is None else type(r[k]).__name__}, not a label"
    p = r["probabilities"]
    if not isinstance(p, dict) or not p or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values()):
        return "`probabilities` is not a mapping label: number"
    return None


def model_name(run_dir) -> str:
    """A readable name of a cls run's model: the hub id, or the local folder's name (skipping generic ones)."""
    import re

    manifest_path = Path(run_dir) / "cls_run.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "cls run"
    base = str(manifest.get("base_model") or "")
    if not base:
        return "cls run"
    if not os.path.isabs(base) and not os.path.exists(base):
        return base  # a hub id
    generic = re.compile(r"^(model|models|weights|snapshots|checkpoint.*|[0-9a-f]{40}|main)$", re.I)
    for part in reversed(Path(base).parts):
        if part and part != os.sep and not generic.match(part):
            return part
    return base


def _margin(row: dict, label: str) -> float:
    """p(label) - p(gold) in one model's probabilities."""
    p = row["probabilities"]
    return float(p.get(label, 0.0)) - float(p.get(row["gold"], 0.0))


def compare_predictions(llm: dict[str, dict], base: dict[str, dict], confident: float | None = None,
                        examples: int = 20, model: str = "cls run") -> dict:
    """Side-by-side metrics, per-class deltas, disagreements and suspected mislabels (JSON-ready).

    Suspected mislabels: every row where both models predict the same label against the gold one, ranked by
    evidence: the smaller of the two margins p(predicted) - p(gold) (both models must prefer their label).
    ``confident`` optionally also requires both probabilities to reach it.
    """
    only_llm = [i for i in llm if i not in base]
    if only_llm:
        raise UserError(f"{len(only_llm)} of the run's {len(llm)} predicted rows are not in the baseline "
                        f"(e.g. id {only_llm[0]!r}): rerun `llamafactory-ext baseline` with the run's recipe")
    bad_gold = [i for i in llm if llm[i]["gold"] != base[i]["gold"]]
    if bad_gold:
        from .records import normalize_label

        i = bad_gold[0]
        hint = ("; they differ only by whitespace or Unicode form: make the baseline with the run's "
                "`cls_label_normalize` setting" if normalize_label(llm[i]["gold"]) == normalize_label(base[i]["gold"]) else "")
        raise UserError(f"gold labels differ between the run and the baseline for {len(bad_gold)} rows (e.g. id {i!r}: "
                        f"{llm[i]['gold']!r} vs {base[i]['gold']!r}){hint}")
    ids = list(llm)
    labels = list(llm[ids[0]]["probabilities"])
    for who, rows in (("the run", llm), ("the baseline", base)):
        other = next((i for i in ids if set(rows[i]["probabilities"]) != set(labels)), None)
        if other is not None:
            raise UserError(f"{who}'s label set differs between rows (ids {ids[0]!r} and {other!r}): "
                            f"{sorted(labels)} vs {sorted(rows[other]['probabilities'])}; rerun `llamafactory-ext baseline` "
                            f"with the run's recipe")
    gold = [llm[i]["gold"] for i in ids]
    m_llm = metrics_of(gold, [llm[i]["predicted"] for i in ids], labels)
    m_base = metrics_of(gold, [base[i]["predicted"] for i in ids], labels)
    per_class = []
    for lab in labels:
        a, b = m_llm["per_class"].get(lab, {}), m_base["per_class"].get(lab, {})
        per_class.append({"label": lab, "support": int(a.get("support", 0)),
                          "f1_llm": a.get("f1-score", 0.0), "f1_baseline": b.get("f1-score", 0.0),
                          "f1_delta": a.get("f1-score", 0.0) - b.get("f1-score", 0.0)})

    def evidence(i) -> float:
        lab = llm[i]["predicted"]
        return min(_margin(llm[i], lab), _margin(base[i], lab))

    def row(i):
        r = {"id": i, "gold": llm[i]["gold"], "llm": llm[i]["predicted"], "baseline": base[i]["predicted"],
             "p_llm": llm[i]["probabilities"].get(llm[i]["predicted"]),
             "p_baseline": base[i]["probabilities"].get(base[i]["predicted"])}
        if llm[i]["predicted"] == base[i]["predicted"] != llm[i]["gold"]:
            r["margin"] = round(evidence(i), 6)
        if base[i].get("text"):
            r["text"] = base[i]["text"]
        return r

    llm_right = [i for i in ids if llm[i]["predicted"] == llm[i]["gold"] != base[i]["predicted"]]
    base_right = [i for i in ids if base[i]["predicted"] == base[i]["gold"] != llm[i]["predicted"]]
    agree_wrong = [i for i in ids if llm[i]["predicted"] == base[i]["predicted"] != llm[i]["gold"]]
    suspects = [i for i in agree_wrong if confident is None or (
        llm[i]["probabilities"].get(llm[i]["predicted"], 0) >= confident
        and base[i]["probabilities"].get(base[i]["predicted"], 0) >= confident)]
    suspects.sort(key=lambda i: -evidence(i))
    by_conf = lambda i, who: -(who[i]["probabilities"].get(who[i]["predicted"], 0))  # noqa: E731
    llm_right.sort(key=lambda i: by_conf(i, llm))
    base_right.sort(key=lambda i: by_conf(i, base))
    return {
        "n": len(ids),
        "model": model,
        "llm": {"accuracy": m_llm["accuracy"], "macro_f1": m_llm["macro_f1"]},
        "baseline": {"accuracy": m_base["accuracy"], "macro_f1": m_base["macro_f1"]},
        "per_class": per_class,
        "counts": {"only_llm_right": len(llm_right), "only_baseline_right": len(base_right),
                   "both_right": sum(llm[i]["predicted"] == base[i]["predicted"] == llm[i]["gold"] for i in ids),
                   "both_wrong_agreeing": len(agree_wrong),
                   "suspected_mislabels": len(suspects)},
        "confident": confident,
        "only_llm_right": [row(i) for i in llm_right[:examples]],
        "only_baseline_right": [row(i) for i in base_right[:examples]],
        "suspected_mislabels": [row(i) for i in suspects[:examples]],
    }


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def compare_markdown(c: dict, run_dir: str) -> str:
    L, B, name = c["llm"], c["baseline"], c.get("model", "cls run")
    lines = [f"# {run_dir}: {name} vs TF-IDF baseline", "", f"{c['n']} rows.", "",
             "| | accuracy | macro-F1 |", "|---|---:|---:|",
             f"| {name if name == 'cls run' else name + ' (cls run)'} | {L['accuracy']:.4f} | {L['macro_f1']:.4f} |",
             f"| TF-IDF baseline | {B['accuracy']:.4f} | {B['macro_f1']:.4f} |",
             f"| delta | {L['accuracy'] - B['accuracy']:+.4f} | {L['macro_f1'] - B['macro_f1']:+.4f} |", "",
             "## Per-class F1", "", f"| label | support | {name} | TF-IDF | delta |", "|---|---:|---:|---:|---:|"]
    for r in sorted(c["per_class"], key=lambda r: r["f1_delta"]):
        lines.append(f"| {r['label']} | {r['support']} | {r['f1_llm']:.4f} | {r['f1_baseline']:.4f} | {r['f1_delta']:+.4f} |")
    k = c["counts"]
    considered = k.get("both_wrong_agreeing", k["suspected_mislabels"])
    rule = (f"{considered} rows where both models predict the same label against the gold one"
            + (f"; {k['suspected_mislabels']} of them with p >= {c['confident']} in both" if c.get("confident") is not None else "")
            + "; ranked by evidence: the smaller of the two margins p(predicted) - p(gold)")
    sections = [(f"Only {name} is right", "only_llm_right", k["only_llm_right"], None),
                ("Only TF-IDF is right", "only_baseline_right", k["only_baseline_right"], None),
                ("Suspected mislabels", "suspected_mislabels", k["suspected_mislabels"], rule)]
    for title, key, count, note in sections:
        lines += ["", f"## {title}: {count}", ""]
        if note:
            lines += [note + (f" (top {len(c[key])} listed)" if len(c[key]) < count else "") + ".", ""]
        if not c[key]:
            lines.append("none")
            continue
        margin = key == "suspected_mislabels"
        lines += [f"| id | gold | {name} (p) | TF-IDF (p) |" + (" margin |" if margin else "") + " text |",
                  "|---|---|---|---|" + ("---:|" if margin else "") + "---|"]
        for r in c[key]:
            pl = f"{r['p_llm']:.2f}" if r["p_llm"] is not None else "?"
            pb = f"{r['p_baseline']:.2f}" if r["p_baseline"] is not None else "?"
            extra = f" {r['margin']:.2f} |" if margin else ""
            lines.append(f"| {_clip(r['id'], 60)} | {r['gold']} | {r['llm']} ({pl}) | {r['baseline']} ({pb}) |{extra} {_clip(r.get('text', ''))} |")
    return "\n".join(lines) + "\n"


def plot_f1_delta(c: dict, path: Path) -> None:
    """Horizontal bars: per-class F1 (the cls run's model minus the TF-IDF baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = c.get("model", "cls run")
    rows = sorted(c["per_class"], key=lambda r: r["f1_delta"])
    fig, ax = plt.subplots(figsize=(7.5, max(3.0, 0.28 * len(rows) + 1.4)))
    deltas = [r["f1_delta"] for r in rows]
    ax.barh([r["label"] for r in rows], deltas, color=["#c0392b" if d < 0 else "#2e86c1" for d in deltas])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.tick_params(axis="y", labelsize=max(5, 10 - len(rows) // 10))
    ax.set_xlabel(f"F1 difference per label ({name} minus TF-IDF; blue: {name} better, red: TF-IDF better)", fontsize=8)
    ax.set_title(f"Per-label F1: {name} vs TF-IDF baseline ({c['n']:,} rows)\n"
                 f"macro-F1: {name} {c['llm']['macro_f1']:.3f}, TF-IDF {c['baseline']['macro_f1']:.3f}", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def make_compare(run_dir, baseline=None, confident: float | None = None, examples: int = 20,
                 output=None) -> tuple[Path, dict]:
    """Compare ``run_dir``'s predictions with the baseline's (default: RUN_DIR/baseline); write compare.json,
    compare.md and f1_delta.png into ``output`` (default: RUN_DIR/compare). Returns (folder, comparison)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist")
    llm = read_predictions(run_dir / PREDICTIONS, "the cls run (train with do_predict: true)")
    base_dir = Path(baseline) if baseline else run_dir / BASELINE_DIR
    base = read_predictions(base_dir / PREDICTIONS, "the baseline (run `llamafactory-ext baseline RECIPE` first)")
    c = compare_predictions(llm, base, confident, examples, model=model_name(run_dir))
    out = Path(output) if output else run_dir / COMPARE_DIR
    out.mkdir(parents=True, exist_ok=True)
    md = compare_markdown(c, str(run_dir))
    _write_atomic(out / "compare.json", json.dumps(c, indent=2, ensure_ascii=False))
    _write_atomic(out / "compare.md", md)
    plot_f1_delta(c, out / "f1_delta.png")
    return out, c
