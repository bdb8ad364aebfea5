"""stages.cls.metrics: multi-label F1s and thresholds against sklearn / hand-computed values, regression metrics
against scipy, constant inputs without NaN or warnings, the predicted-vs-true plot."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from llama_factory_ext.stages.cls.metrics import multilabel_metrics, plot_regression, regression_metrics, tune_thresholds


def _random_multilabel(seed=0, n=400, k=7):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < np.linspace(0.05, 0.6, k)).astype(int)
    p = np.clip(0.45 * y + 0.6 * rng.random((n, k)), 0, 1)
    return y, p


def test_multilabel_metrics_match_sklearn_with_per_label_thresholds():
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y, p = _random_multilabel()
    t = np.linspace(0.3, 0.7, y.shape[1])
    pred = (p >= t).astype(int)
    labels = [f"l{j}" for j in range(y.shape[1])]
    m = multilabel_metrics(y, p, t, labels)
    assert m["micro_f1"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["samples_f1"] == pytest.approx(f1_score(y, pred, average="samples", zero_division=1))
    assert m["exact_match"] == pytest.approx(accuracy_score(y, pred))
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    for j, lab in enumerate(labels):
        assert m["per_label"][lab] == pytest.approx({"precision": prec[j], "recall": rec[j], "f1": f1[j], "support": sup[j]})
    assert m["n"] == len(y)


def test_multilabel_metrics_hand_computed_and_conventions():
    y = [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    p = [[0.9, 0.6, 0.1], [0.4, 0.8, 0.0], [0.2, 0.1, 0.3]]
    m = multilabel_metrics(y, p, labels=["a", "b", "c"])  # default threshold 0.5
    # predicted: {a, b}, {b}, {}: tp 2 (a row 1, b row 2), fp 1 (b row 1), fn 1 (a row 2)
    assert m["micro_f1"] == pytest.approx(4 / 6)
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["per_label"]["b"]["precision"] == 0.5 and m["per_label"]["b"]["recall"] == 1.0
    assert m["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}  # undefined: 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    # rows: {a} vs {a,b}: 2/3; {a,b} vs {b}: 2/3; {} vs {}: 1 (nothing applies and nothing predicted)
    assert m["samples_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert multilabel_metrics(y, p, 0.85)["micro_f1"] == pytest.approx(2 / 4)  # a scalar threshold for all labels


@pytest.mark.parametrize("y, p, said", [
    ([[1, 0]], [[0.5, 0.5, 0.1]], "shapes"),
    ([1, 0], [0.5, 0.5], "shapes"),
    ([[1, 2]], [[0.5, 0.5]], "0/1"),
    ([[1, 0]], [[np.nan, 0.5]], "NaN"),
    (np.zeros((0, 3)), np.zeros((0, 3)), "empty"),
])
def test_multilabel_bad_input_is_a_clear_value_error(y, p, said):
    with pytest.raises(ValueError, match=said):
        multilabel_metrics(y, p)


def _best_f1_brute_force(yj, pj):
    best = 0.0
    for t in np.unique(pj):
        pred = pj >= t
        tp = (pred & yj).sum()
        best = max(best, 2 * tp / (pred.sum() + yj.sum()))
    return best


def test_tune_thresholds_reach_the_best_f1_of_each_label():
    y, p = _random_multilabel(seed=3)
    y[:, 0] = 0  # a label without a positive row keeps 0.5
    p[:40, 1] = 0.5  # ties in a probability
    t = tune_thresholds(y, p)
    assert t.shape == (y.shape[1],) and t[0] == 0.5
    tuned = multilabel_metrics(y, p, t)["per_label"]
    at_half = multilabel_metrics(y, p, 0.5)["per_label"]
    for j in range(1, y.shape[1]):
        best = _best_f1_brute_force(y[:, j].astype(bool), p[:, j])
        assert tuned[str(j)]["f1"] == pytest.approx(best)
        assert tuned[str(j)]["f1"] >= at_half[str(j)]["f1"]


def test_tune_thresholds_separable_label_splits_halfway():
    y = np.array([[1], [1], [0], [0]])
    p = np.array([[0.9], [0.7], [0.3], [0.1]])
    assert tune_thresholds(y, p)[0] == pytest.approx(0.5)  # halfway between 0.7 and 0.3
    p2 = np.array([[0.2], [0.15], [0.1], [0.05]])  # positives rank first but all below 0.5
    assert tune_thresholds(y, p2)[0] == pytest.approx(0.125)
    assert multilabel_metrics(y, p2, tune_thresholds(y, p2))["micro_f1"] == 1.0


def test_regression_metrics_match_sklearn_and_scipy_with_ties():
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    f = np.round(y + rng.normal(scale=0.7, size=500))  # many ties in the predictions
    m = regression_metrics(y, f)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, f))
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, f)))
    assert m["pearson"] == pytest.approx(pearsonr(y, f)[0])
    assert m["spearman"] == pytest.approx(spearmanr(y, f)[0])
    assert m["n"] == 500
    hand = regression_metrics([1, 2, 3, 4], [1, 3, 2, 5])
    assert hand["mae"] == 0.75 and hand["rmse"] == pytest.approx(np.sqrt(3 / 4)) and hand["spearman"] == pytest.approx(0.8)


def test_regression_constant_inputs_give_zero_correlations_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for y, f in (([1, 1, 1], [1, 2, 3]), ([1, 2, 3], [2, 2, 2]), ([5.0], [4.0]), ([0.1] * 7, [0.1] * 7)):
            m = regression_metrics(y, f)
            assert m["pearson"] == 0.0 and m["spearman"] == 0.0
        big = regression_metrics([1e200, 2e200, 3e200], [1e200, 3e200, 2e200])  # no overflow
        assert big["pearson"] == pytest.approx(0.5) and big["spearman"] == pytest.approx(0.5)
    assert regression_metrics([1, 1, 1], [1, 2, 3])["mae"] == 1.0


@pytest.mark.parametrize("y, f, said", [([1, 2], [1], "shapes"), ([], [], "empty"), ([1, np.inf], [1, 2], "infinite"),
                                        ([[1, 2]], [[1, 2]], "shapes")])
def test_regression_bad_input_is_a_clear_value_error(y, f, said):
    with pytest.raises(ValueError, match=said):
        regression_metrics(y, f)


@pytest.mark.parametrize("n", [50, 6000])  # points, and a density map above 5,000 rows
def test_plot_regression_writes_a_png_and_no_temporary_file(tmp_path, n):
    rng = np.random.default_rng(0)
    y = rng.normal(size=n)
    out = tmp_path / "sub" / "pred.png"
    plot_regression(y, y + rng.normal(scale=0.3, size=n), out, title="size")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["pred.png"]
