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
REGRESSION_PLOT = "predicted_vs_true.png"
SINGLE, MULTI, REGRESSION = "single_label", "multi_label", "regression"


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


def _tfidf(train_texts, test_texts):
    """TF-IDF features (word 1-2-grams, sublinear tf) fitted on the train texts: (x_train, x_test)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    return vec.fit_transform(train_texts), vec.transform(test_texts)


def fit_predict(train_texts, train_labels, test_texts, labels, classifier: str = "svm", C: float = 1.0):
    """(predicted labels, probabilities [n, k] in ``labels`` order) of TF-IDF (1-2-grams, sublinear) + a linear model.

    LinearSVC predicts with its decision function; its probabilities come from Platt scaling
    (CalibratedClassifierCV, 3 folds) and serve only as confidences.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    x_train, x_test = _tfidf(train_texts, test_texts)
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


def label_matrix(label_lists, labels):
    """0/1 matrix [rows, labels] of label lists; a label outside ``labels`` is ignored."""
    import numpy as np

    index = {lab: j for j, lab in enumerate(labels)}
    y = np.zeros((len(label_lists), len(labels)), dtype=np.int8)
    for i, row in enumerate(label_lists):
        for lab in row:
            if lab in index:
                y[i, index[lab]] = 1
    return y


def fit_predict_multilabel(train_texts, train_labels, test_texts, labels, classifier: str = "svm", C: float = 1.0,
                           with_scores: bool = False):
    """(predicted label lists, probabilities [n, k] in ``labels`` order) of TF-IDF + one linear model per label
    (one-vs-rest). LinearSVC predicts a label where its decision function is > 0, and its probabilities come from
    Platt scaling per label (3 folds; a sigmoid of the margin for a label with fewer than 2 rows on either side);
    LogisticRegression predicts where its probability is >= 0.5. ``with_scores`` adds the raw decision values
    (logits for LogisticRegression) [n, k] as a third item."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    y = label_matrix(train_labels, labels)
    x_train, x_test = _tfidf(train_texts, test_texts)
    probs = np.zeros((x_test.shape[0], len(labels)))
    scores = np.zeros_like(probs)
    chosen = np.zeros_like(probs, dtype=bool)
    for j in range(len(labels)):
        yj = y[:, j]
        if yj.min() == yj.max():  # the label is on every train row or on none
            probs[:, j] = chosen[:, j] = bool(yj[0])
            scores[:, j] = 50.0 if yj[0] else -50.0
            continue
        if classifier == "logreg":
            model = LogisticRegression(C=C, max_iter=2000).fit(x_train, yj)
            probs[:, j], scores[:, j] = model.predict_proba(x_test)[:, 1], model.decision_function(x_test)
            chosen[:, j] = probs[:, j] >= 0.5
        else:
            margin = scores[:, j] = LinearSVC(C=C, random_state=0).fit(x_train, yj).decision_function(x_test)
            chosen[:, j] = margin > 0
            if min(int(yj.sum()), int(len(yj) - yj.sum())) < 2:
                probs[:, j] = 1 / (1 + np.exp(-np.clip(margin, -50, 50)))
            else:
                p, classes = _platt(x_train, yj, x_test, C)
                probs[:, j] = p[:, classes.index(1)]
    predicted = [[lab for lab, c in zip(labels, row) if c] for row in chosen]
    return (predicted, probs, scores) if with_scores else (predicted, probs)


def fit_predict_regression(train_texts, train_scores, test_texts, alpha: float = 1.0):
    """Predicted scores (numpy [n]) of TF-IDF + Ridge(alpha)."""
    import numpy as np
    from sklearn.linear_model import Ridge

    x_train, x_test = _tfidf(train_texts, test_texts)
    model = Ridge(alpha=alpha).fit(x_train, np.asarray(train_scores, dtype=float))
    return model.predict(x_test)


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


def _calibration_md(m: dict) -> str:
    return f"; probabilities: ECE {m['ece']:.4f}, Brier {m['brier']:.4f}" if "ece" in m else ""


def _report_md(title: str, m: dict, labels) -> str:
    kind = m.get("problem_type", SINGLE)
    if kind == REGRESSION:
        lines = [f"# {title}", "", f"MAE **{m['mae']:.4f}**, RMSE **{m['rmse']:.4f}**, Pearson **{m['pearson']:.4f}**, "
                 f"Spearman **{m['spearman']:.4f}** on {m['n']} rows (predicting the train mean: MAE "
                 f"{m['mean_predictor_mae']:.4f}).", "", f"![predicted vs true]({REGRESSION_PLOT})"]
        return "\n".join(lines) + "\n"
    if kind == MULTI:
        lines = [f"# {title}", "", f"micro-F1 **{m['micro_f1']:.4f}**, macro-F1 **{m['macro_f1']:.4f}**, samples-F1 "
                 f"**{m['samples_f1']:.4f}**, exact match **{m['exact_match']:.4f}** on {m['n']} rows{_calibration_md(m)}", "",
                 "| label | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|"]
        for lab in labels:
            r = m["per_label"][lab]
            lines.append(f"| {lab} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |")
        return "\n".join(lines) + "\n"
    lines = [f"# {title}", "", f"accuracy **{m['accuracy']:.4f}**, macro-F1 **{m['macro_f1']:.4f}** on {m['n']} rows{_calibration_md(m)}", "",
             "| label | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|"]
    for lab in labels:
        r = m["per_class"].get(lab, {})
        lines.append(f"| {lab} | {r.get('precision', 0):.4f} | {r.get('recall', 0):.4f} | {r.get('f1-score', 0):.4f} | {int(r.get('support', 0))} |")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def problem_type_of(data) -> str:
    """The problem type of loaded cls data: its ``problem_type`` when it has one, else what the train rows carry
    (``labels`` -> multi_label, ``score`` -> regression, else single_label)."""
    kind = getattr(data, "problem_type", None)
    if kind in (SINGLE, MULTI, REGRESSION):
        return kind
    first = data.train[0] if data.train else None
    if getattr(first, "labels", None) is not None:
        return MULTI
    if getattr(first, "score", None) is not None:
        return REGRESSION
    return SINGLE


def baseline_rows(data, kind: str, classifier: str = "svm", C: float = 1.0, alpha: float = 1.0):
    """(metrics, predictions rows) of the baseline of ``kind`` fitted on ``data.train``, scored on ``data.test``."""
    from .metrics import multilabel_metrics, regression_metrics

    train_texts, test_texts = [_text(e) for e in data.train], [_text(e) for e in data.test]
    labels = list(data.labels)
    if kind == REGRESSION:
        import numpy as np

        predicted = fit_predict_regression(train_texts, [e.score for e in data.train], test_texts, alpha)
        gold = np.array([e.score for e in data.test], dtype=float)
        m = regression_metrics(gold, predicted)
        m.update(mean_predictor_mae=float(np.abs(gold - np.mean([e.score for e in data.train])).mean()),
                 classifier="Ridge", alpha=alpha)
        rows = [{"id": e.id, "gold": float(g), "predicted": round(float(p), 6), "text": _text(e)}
                for e, g, p in zip(data.test, gold, predicted)]
        return m, rows
    if kind == MULTI:
        predicted, probs = fit_predict_multilabel(train_texts, [e.labels for e in data.train], test_texts, labels,
                                                  classifier, C)
        gold = [list(e.labels) for e in data.test]
        m = multilabel_metrics(label_matrix(gold, labels), label_matrix(predicted, labels), 0.5, labels)
    else:
        predicted, probs = fit_predict(train_texts, [e.label for e in data.train], test_texts, labels, classifier, C)
        gold = [e.label for e in data.test]
        m = metrics_of(gold, predicted, labels)
    m.update(classifier="LinearSVC" if classifier == "svm" else "LogisticRegression", C=C, **_calibration_of(probs, gold, labels, kind))
    rows = [{"id": e.id, "gold": g, "predicted": p, "text": _text(e),
             "probabilities": {lab: round(float(x), 6) for lab, x in zip(labels, pr)}}
            for e, g, p, pr in zip(data.test, gold, predicted, probs)]
    return m, rows


def _calibration_of(probs, gold, labels, kind: str) -> dict:
    """ECE and Brier of the baseline's probabilities on the scored rows ({} where a gold label is not a known one)."""
    import numpy as np

    from .calibration import brier, ece

    p = np.clip(probs, 0.0, 1.0)
    if kind == MULTI:
        y = label_matrix(gold, labels)
        return {"ece": ece(p, y, "multi"), "brier": brier(p, y, "multi")}
    if any(g not in labels for g in gold):
        return {}
    y = np.array([labels.index(g) for g in gold])
    return {"ece": ece(p, y, "single"), "brier": brier(p, y, "single")}


def make_baseline(recipe: str, overrides=(), classifier: str = "svm", C: float = 1.0, output=None,
                  alpha: float = 1.0) -> tuple[Path, dict]:
    """Fit the baseline of the recipe's problem type on its train rows, score its test rows; write
    predictions.jsonl, metrics.json and report.md (regression: also predicted_vs_true.png) into ``output``
    (default: the recipe's output_dir/baseline). Returns (folder, metrics)."""
    data, a = load_recipe_split(recipe, overrides)
    if not data.test:
        raise UserError("the recipe has no evaluation rows: set `eval_dataset`, `val_size` or `test_dataset`", recipe)
    out = Path(output) if output else Path(a.get("output_dir") or ".") / BASELINE_DIR
    kind = problem_type_of(data)
    m, rows = baseline_rows(data, kind, classifier, C, alpha)
    m.update(problem_type=kind, features="tfidf word 1-2-grams, sublinear tf", n_train=len(data.train),
             datasets=data.sources)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / PREDICTIONS, "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    _write_atomic(out / "metrics.json", json.dumps(m, indent=2, ensure_ascii=False))
    if kind == REGRESSION:
        from .metrics import plot_regression

        plot_regression([r["gold"] for r in rows], [r["predicted"] for r in rows], out / REGRESSION_PLOT,
                        "TF-IDF + Ridge baseline")
    _write_atomic(out / "report.md", _report_md(f"TF-IDF + {m['classifier']} baseline", m, list(data.labels)))
    return out, m


def baseline_summary(m: dict) -> str:
    """One line of a baseline's headline metrics (what the CLI prints)."""
    kind = m.get("problem_type", SINGLE)
    if kind == REGRESSION:
        head = f"MAE {m['mae']:.4f}, RMSE {m['rmse']:.4f}, Pearson {m['pearson']:.4f}, Spearman {m['spearman']:.4f}"
    elif kind == MULTI:
        head = (f"micro-F1 {m['micro_f1']:.4f}, macro-F1 {m['macro_f1']:.4f}, samples-F1 {m['samples_f1']:.4f}, "
                f"exact match {m['exact_match']:.4f}")
    else:
        head = f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}"
    return f"baseline ({m['classifier']}): {head} on {m['n']} rows (trained on {m['n_train']})"


# ------------------------------------------------------------------ compare

def read_predictions(path: Path, who: str) -> dict[str, dict]:
    """id -> row of a predictions.jsonl: {id, gold, predicted, probabilities} where gold / predicted are a label
    (single-label) or a list of labels (multi-label), or {id, gold, predicted} numbers (regression). A repeated id
    or rows of different types are refused, naming the lines (rows sharing an id could not be told apart when the
    two files are joined)."""
    from ...safeio import DATA_LIMIT, read_text

    if not path.is_file():
        raise UserError(f"{who}: {path} does not exist")
    rows, problems, line_of, first_kind = {}, [], {}, None
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
        kind = row_kind(r)
        need = ("id", "gold", "predicted") + (() if kind == REGRESSION else ("probabilities",))
        missing = [k for k in need if k not in r]
        if missing:
            problems.append(f"{path} line {i}: missing {', '.join(missing)}")
            continue
        wrong = _row_problem(r, kind)
        if wrong:
            problems.append(f"{path} line {i}: {wrong}")
            continue
        if first_kind is None:
            first_kind = (kind, i)
        elif kind != first_kind[0]:
            problems.append(f"{path} line {i}: a {kind} row (gold {r['gold']!r}) after {first_kind[0]} rows "
                            f"(line {first_kind[1]}); one file holds one problem type")
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


def row_kind(r: dict) -> str:
    """The problem type a predictions row is written for: gold a list -> multi_label, a number -> regression."""
    gold = r.get("gold")
    if isinstance(gold, list):
        return MULTI
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        return REGRESSION
    return SINGLE


def _row_problem(r: dict, kind: str = SINGLE):
    """What is wrong with the fields of one predictions row, or None."""
    import math

    if isinstance(r["id"], bool) or not isinstance(r["id"], (str, int)):
        return f"id is {type(r['id']).__name__}, not a string"
    for k in ("gold", "predicted"):
        v = r[k]
        if kind == REGRESSION:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"`{k}` is {v!r}, not a finite number (the row's gold is a number: a regression row)"
        elif kind == MULTI:
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                return f"`{k}` is {type(v).__name__}, not a list of labels (the row's gold is a list: a multi-label row)"
        elif not isinstance(v, str):
            return f"`{k}` is {'missing (null)' if v is None else type(v).__name__}, not a label"
    if kind == REGRESSION:
        return None
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
    ids = list(llm)
    kind, other = row_kind(llm[ids[0]]), row_kind(base[ids[0]])
    if kind != other:
        raise UserError(f"the run's predictions are {kind} but the baseline's are {other}: rerun "
                        f"`llamafactory-ext baseline` with the run's recipe")
    bad_gold = [i for i in llm if not _same_gold(llm[i]["gold"], base[i]["gold"])]
    if bad_gold:
        from .records import normalize_label

        i = bad_gold[0]
        g1, g2 = llm[i]["gold"], base[i]["gold"]
        hint = ("; they differ only by whitespace or Unicode form: make the baseline with the run's "
                "`cls_label_normalize` setting" if kind == SINGLE and normalize_label(g1) == normalize_label(g2) else "")
        raise UserError(f"gold labels differ between the run and the baseline for {len(bad_gold)} rows (e.g. id {i!r}: "
                        f"{llm[i]['gold']!r} vs {base[i]['gold']!r}){hint}")
    if kind == REGRESSION:
        return compare_regression(llm, base, ids, examples, model)
    labels = list(llm[ids[0]]["probabilities"])
    for who, rows in (("the run", llm), ("the baseline", base)):
        other = next((i for i in ids if set(rows[i]["probabilities"]) != set(labels)), None)
        if other is not None:
            raise UserError(f"{who}'s label set differs between rows (ids {ids[0]!r} and {other!r}): "
                            f"{sorted(labels)} vs {sorted(rows[other]['probabilities'])}; rerun `llamafactory-ext baseline` "
                            f"with the run's recipe")
    if kind == MULTI:
        return compare_multilabel(llm, base, ids, labels, examples, model)
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


def _same_gold(a, b) -> bool:
    """Gold values of one row agree: equal labels, the same label set, or numbers equal up to rounding."""
    if isinstance(a, list) and isinstance(b, list):
        return sorted(a) == sorted(b)
    if row_kind({"gold": a}) == REGRESSION and row_kind({"gold": b}) == REGRESSION:
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return a == b


def compare_multilabel(llm: dict, base: dict, ids: list, labels: list, examples: int = 20, model: str = "cls run") -> dict:
    """Multi-label comparison: micro / macro / samples-F1 and exact match of both, per-label F1 deltas (where each
    model wins), and the rows only one model gets exactly right."""
    import numpy as np

    from .metrics import multilabel_metrics

    y = label_matrix([llm[i]["gold"] for i in ids], labels)
    pl = label_matrix([llm[i]["predicted"] for i in ids], labels)
    pb = label_matrix([base[i]["predicted"] for i in ids], labels)
    ml, mb = (multilabel_metrics(y, p, 0.5, labels) for p in (pl, pb))
    per_class = []
    for lab in labels:
        a, b = ml["per_label"][lab], mb["per_label"][lab]
        per_class.append({"label": lab, "support": a["support"], "f1_llm": a["f1"], "f1_baseline": b["f1"],
                          "f1_delta": a["f1"] - b["f1"], "precision_llm": a["precision"], "recall_llm": a["recall"],
                          "precision_baseline": b["precision"], "recall_baseline": b["recall"]})
    exact_l, exact_b = (pl == y).all(1), (pb == y).all(1)
    wrong_l, wrong_b = (pl != y).sum(1), (pb != y).sum(1)  # labels each model gets wrong per row

    def row(j):
        i = ids[j]
        r = {"id": i, "gold": sorted(llm[i]["gold"]), "llm": sorted(llm[i]["predicted"]),
             "baseline": sorted(base[i]["predicted"])}
        if base[i].get("text"):
            r["text"] = base[i]["text"]
        return r

    only_l = sorted(np.flatnonzero(exact_l & ~exact_b), key=lambda j: -wrong_b[j])
    only_b = sorted(np.flatnonzero(exact_b & ~exact_l), key=lambda j: -wrong_l[j])
    head = lambda m: {k: m[k] for k in ("micro_f1", "macro_f1", "samples_f1", "exact_match")}  # noqa: E731
    deltas = np.array([r["f1_delta"] for r in per_class])
    return {
        "problem_type": MULTI, "n": len(ids), "model": model, "llm": head(ml), "baseline": head(mb),
        "per_class": per_class,
        "counts": {"only_llm_exact": len(only_l), "only_baseline_exact": len(only_b),
                   "both_exact": int((exact_l & exact_b).sum()), "neither_exact": int((~exact_l & ~exact_b).sum()),
                   "labels_llm_better": int((deltas > 0).sum()), "labels_baseline_better": int((deltas < 0).sum()),
                   "labels_tied": int((deltas == 0).sum())},
        "only_llm_right": [row(j) for j in only_l[:examples]],
        "only_baseline_right": [row(j) for j in only_b[:examples]],
    }


ERROR_EDGES = (0.1, 0.25, 0.5, 1.0, 2.0)  # absolute-error buckets, in standard deviations of the gold scores


def compare_regression(llm: dict, base: dict, ids: list, examples: int = 20, model: str = "cls run") -> dict:
    """Regression comparison: MAE / RMSE / Pearson / Spearman of both, how many rows fall in each absolute-error
    bucket (edges: ERROR_EDGES x the gold scores' standard deviation), MAE per fifth of the gold range (where each
    model wins) and the rows where one model is much closer."""
    import numpy as np

    from .metrics import regression_metrics

    gold = np.array([float(llm[i]["gold"]) for i in ids])
    pl = np.array([float(llm[i]["predicted"]) for i in ids])
    pb = np.array([float(base[i]["predicted"]) for i in ids])
    ml, mb = regression_metrics(gold, pl), regression_metrics(gold, pb)
    el, eb = np.abs(pl - gold), np.abs(pb - gold)
    sd = float(gold.std()) or 1.0
    edges = [0.0] + [e * sd for e in ERROR_EDGES] + [float("inf")]
    buckets = [{"from": lo, "to": None if hi == float("inf") else hi,
                "rows_llm": int(((el >= lo) & (el < hi)).sum()), "rows_baseline": int(((eb >= lo) & (eb < hi)).sum())}
               for lo, hi in zip(edges[:-1], edges[1:])]
    cuts = np.unique(np.quantile(gold, [0.2, 0.4, 0.6, 0.8]))
    part = np.searchsorted(cuts, gold, side="right")
    by_range = []
    for b in range(len(cuts) + 1):
        sel = part == b
        if not sel.any():
            continue
        by_range.append({"from": float(gold[sel].min()), "to": float(gold[sel].max()), "rows": int(sel.sum()),
                         "mae_llm": float(el[sel].mean()), "mae_baseline": float(eb[sel].mean()),
                         "llm_closer": int((el[sel] < eb[sel]).sum()), "baseline_closer": int((eb[sel] < el[sel]).sum())})

    def row(j):
        i = ids[j]
        r = {"id": i, "gold": float(gold[j]), "llm": float(pl[j]), "baseline": float(pb[j]),
             "error_llm": float(el[j]), "error_baseline": float(eb[j])}
        if base[i].get("text"):
            r["text"] = base[i]["text"]
        return r

    gain = eb - el
    closer_l = sorted(np.flatnonzero(gain > 0), key=lambda j: -gain[j])
    closer_b = sorted(np.flatnonzero(gain < 0), key=lambda j: gain[j])
    head = lambda m: {k: m[k] for k in ("mae", "rmse", "pearson", "spearman")}  # noqa: E731
    return {
        "problem_type": REGRESSION, "n": len(ids), "model": model, "llm": head(ml), "baseline": head(mb),
        "gold_std": sd, "error_buckets": buckets, "by_gold_range": by_range,
        "counts": {"llm_closer": len(closer_l), "baseline_closer": len(closer_b), "tied": int((gain == 0).sum())},
        "only_llm_right": [row(j) for j in closer_l[:examples]],
        "only_baseline_right": [row(j) for j in closer_b[:examples]],
    }


def _side_by_side(c: dict, keys, heads) -> list[str]:
    """Markdown table of both models' headline metrics and their difference."""
    L, B, name = c["llm"], c["baseline"], c.get("model", "cls run")
    return [f"| | {' | '.join(heads)} |", "|---|" + "---:|" * len(keys),
            f"| {name if name == 'cls run' else name + ' (cls run)'} | " + " | ".join(f"{L[x]:.4f}" for x in keys) + " |",
            "| TF-IDF baseline | " + " | ".join(f"{B[x]:.4f}" for x in keys) + " |",
            "| delta | " + " | ".join(f"{L[x] - B[x]:+.4f}" for x in keys) + " |"]


def _example_sections(c: dict, sections, head: str, cells) -> list[str]:
    """One markdown section per (title, key) listing the example rows ``c[key]``, or "none"."""
    lines = []
    for title, key in sections:
        lines += ["", f"## {title}", ""]
        if not c[key]:
            lines.append("none")
            continue
        lines += [head, "|" + "---|" * head.count(" | ") + "---|"]
        lines += [cells(r) for r in c[key]]
    return lines


def _md_multilabel(c: dict, run_dir: str) -> str:
    name, k = c.get("model", "cls run"), c["counts"]
    lines = [f"# {run_dir}: {name} vs TF-IDF baseline (multi-label)", "", f"{c['n']} rows.", "",
             *_side_by_side(c, ("micro_f1", "macro_f1", "samples_f1", "exact_match"),
                            ("micro-F1", "macro-F1", "samples-F1", "exact match")), "",
             f"## Per-label F1: {name} better on {k['labels_llm_better']}, TF-IDF on {k['labels_baseline_better']}, "
             f"tied on {k['labels_tied']}", "",
             f"| label | support | {name} | TF-IDF | delta |", "|---|---:|---:|---:|---:|"]
    for r in sorted(c["per_class"], key=lambda r: r["f1_delta"]):
        lines.append(f"| {r['label']} | {r['support']} | {r['f1_llm']:.4f} | {r['f1_baseline']:.4f} | {r['f1_delta']:+.4f} |")
    joined = lambda labels: _clip(", ".join(labels), 80)  # noqa: E731
    lines += _example_sections(
        c, ((f"Only {name} gets the label set exactly right: {k['only_llm_exact']}", "only_llm_right"),
            (f"Only TF-IDF gets the label set exactly right: {k['only_baseline_exact']}", "only_baseline_right")),
        f"| id | gold | {name} | TF-IDF | text |",
        lambda r: f"| {_clip(r['id'], 60)} | {joined(r['gold'])} | {joined(r['llm'])} | {joined(r['baseline'])} | "
                  f"{_clip(r.get('text', ''))} |")
    return "\n".join(lines) + "\n"


def _md_regression(c: dict, run_dir: str) -> str:
    name, k = c.get("model", "cls run"), c["counts"]
    lines = [f"# {run_dir}: {name} vs TF-IDF baseline (regression)", "",
             f"{c['n']} rows; {name} is closer on {k['llm_closer']}, TF-IDF on {k['baseline_closer']}, tied on {k['tied']}.", "",
             *_side_by_side(c, ("mae", "rmse", "pearson", "spearman"), ("MAE", "RMSE", "Pearson", "Spearman")), "",
             f"## Absolute error (gold standard deviation {c['gold_std']:.4g})", "",
             f"| absolute error | rows {name} | rows TF-IDF |", "|---|---:|---:|"]
    for b in c["error_buckets"]:
        span = f"{b['from']:.4g} - {b['to']:.4g}" if b["to"] is not None else f">= {b['from']:.4g}"
        lines.append(f"| {span} | {b['rows_llm']} | {b['rows_baseline']} |")
    lines += ["", "## Where each model wins: MAE per fifth of the gold range", "",
              f"| gold from | to | rows | MAE {name} | MAE TF-IDF | {name} closer | TF-IDF closer |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for b in c["by_gold_range"]:
        lines.append(f"| {b['from']:.4g} | {b['to']:.4g} | {b['rows']} | {b['mae_llm']:.4f} | {b['mae_baseline']:.4f} | "
                     f"{b['llm_closer']} | {b['baseline_closer']} |")
    lines += _example_sections(
        c, ((f"{name} much closer (top {len(c['only_llm_right'])})", "only_llm_right"),
            (f"TF-IDF much closer (top {len(c['only_baseline_right'])})", "only_baseline_right")),
        f"| id | gold | {name} | TF-IDF | text |",
        lambda r: f"| {_clip(r['id'], 60)} | {r['gold']:.4g} | {r['llm']:.4g} | {r['baseline']:.4g} | {_clip(r.get('text', ''))} |")
    return "\n".join(lines) + "\n"


def plot_mae_by_range(c: dict, path: Path) -> None:
    """Bars: MAE of both models per fifth of the gold range (regression compare)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ...safeio import atomic_path

    name, rows = c.get("model", "cls run"), c["by_gold_range"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    ax.bar(x - 0.2, [r["mae_llm"] for r in rows], width=0.4, color="#2e86c1", label=f"{name} (MAE {c['llm']['mae']:.3f})")
    ax.bar(x + 0.2, [r["mae_baseline"] for r in rows], width=0.4, color="#c0392b",
           label=f"TF-IDF (MAE {c['baseline']['mae']:.3f})")
    ax.set_xticks(x, [f"{r['from']:.3g}..{r['to']:.3g}" for r in rows], fontsize=8)
    ax.set_xlabel("gold value range (fifths of the rows)")
    ax.set_ylabel("mean absolute error")
    ax.legend(fontsize=8)
    ax.set_title(f"MAE per gold range: {name} vs TF-IDF baseline ({c['n']:,} rows)", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def compare_summary(c: dict) -> str:
    """One line of a comparison (what the CLI prints)."""
    L, B, k, name = c["llm"], c["baseline"], c["counts"], c["model"]
    kind = c.get("problem_type", SINGLE)
    if kind == MULTI:
        return (f"{name}: micro-F1 {L['micro_f1']:.4f} / macro-F1 {L['macro_f1']:.4f}; TF-IDF {B['micro_f1']:.4f} / "
                f"{B['macro_f1']:.4f}; per-label F1 better for {name} on {k['labels_llm_better']} labels, for TF-IDF on "
                f"{k['labels_baseline_better']}")
    if kind == REGRESSION:
        return (f"{name}: MAE {L['mae']:.4f} / Spearman {L['spearman']:.4f}; TF-IDF {B['mae']:.4f} / {B['spearman']:.4f}; "
                f"{name} closer on {k['llm_closer']} rows, TF-IDF on {k['baseline_closer']}")
    return (f"{name}: accuracy {L['accuracy']:.4f} / macro-F1 {L['macro_f1']:.4f}; TF-IDF {B['accuracy']:.4f} / {B['macro_f1']:.4f}; "
            f"only {name} right {k['only_llm_right']}, only TF-IDF right {k['only_baseline_right']}, "
            f"suspected mislabels {k['suspected_mislabels']} (of {k['both_wrong_agreeing']} rows where both agree "
            f"against the gold label)")


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def compare_markdown(c: dict, run_dir: str) -> str:
    if c.get("problem_type") == MULTI:
        return _md_multilabel(c, run_dir)
    if c.get("problem_type") == REGRESSION:
        return _md_regression(c, run_dir)
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
    compare.md and a chart (f1_delta.png; regression: mae_by_range.png) into ``output`` (default: RUN_DIR/compare).
    Returns (folder, comparison)."""
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
    if c.get("problem_type") == REGRESSION:
        plot_mae_by_range(c, out / "mae_by_range.png")
    else:
        plot_f1_delta(c, out / "f1_delta.png")
    return out, c
