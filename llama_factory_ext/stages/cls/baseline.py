"""TF-IDF + a linear model on a cls recipe's own split, per problem type (``llamafactory-ext baseline``)."""

from __future__ import annotations

import json
from pathlib import Path

from ...api import UserError
from ...safeio import atomic_write, write_json

BASELINE_DIR = "baseline"
PREDICTIONS = "predictions.jsonl"
REGRESSION_PLOT = "predicted_vs_true.png"
SINGLE, MULTI, REGRESSION = "single_label", "multi_label", "regression"


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
    with atomic_write(out / PREDICTIONS) as f:
        f.write("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    write_json(out / "metrics.json", m)
    if kind == REGRESSION:
        from .metrics import plot_regression

        plot_regression([r["gold"] for r in rows], [r["predicted"] for r in rows], out / REGRESSION_PLOT,
                        "TF-IDF + Ridge baseline")
    with atomic_write(out / "report.md") as f:
        f.write(_report_md(f"TF-IDF + {m['classifier']} baseline", m, list(data.labels)))
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
