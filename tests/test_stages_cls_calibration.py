"""stages.cls.calibration: temperature scaling recovers a known temperature, never makes the fit worse, ECE and
Brier against hand-computed and sklearn values, robust to extreme logits and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from llama_factory_ext.stages.cls.calibration import (
    _loss, apply_temperature, brier, calibrate, ece, fit_temperature, plot_reliability, reliability_bins,
)


def _sample_single(T, n=6000, k=5, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, k))
    p = apply_temperature(z, T, "single")
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)  # one draw per row from softmax(z / T)
    return z, y


def _sample_multi(T, n=3000, k=8, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, k))
    return z, (rng.random((n, k)) < apply_temperature(z, T, "multi")).astype(int)


@pytest.mark.parametrize("T", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_a_known_temperature(T):
    z, y = _sample_single(T)
    assert fit_temperature(z, y, "single") == pytest.approx(T, rel=0.08)
    zm, ym = _sample_multi(T)
    assert fit_temperature(zm, ym, "multi") == pytest.approx(T, rel=0.08)


def test_fitted_temperature_lowers_the_loss_and_the_ece_of_overconfident_scores():
    z, y = _sample_single(3.0)
    T = fit_temperature(z, y, "single")
    assert _loss(z, y, "single", 1 / T) < _loss(z, y, "single", 1.0)
    before, after = ece(apply_temperature(z, 1.0, "single"), y, "single"), ece(apply_temperature(z, T, "single"), y, "single")
    assert before > 0.15 and after < 0.03
    assert brier(apply_temperature(z, T, "single"), y, "single") < brier(apply_temperature(z, 1.0, "single"), y, "single")
    c = calibrate(z, y, "single")
    assert c["temperature"] == T and (c["ece_before"], c["ece_after"]) == (before, after) and c["rows"] == len(z)


def test_never_worse_than_one_on_the_fit_rows():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(200, 4))
    y = rng.integers(0, 4, 200)  # labels unrelated to the scores: T grows, the loss never rises
    T = fit_temperature(z, y, "single")
    assert _loss(z, y, "single", 1 / T) <= _loss(z, y, "single", 1.0)
    zs = np.array([[5.0, -5.0], [-5.0, 5.0]])
    Ts = fit_temperature(zs, [0, 1], "single")  # separable: sharper is better until the loss underflows to 0
    assert 0.01 <= Ts < 0.2 and _loss(zs, [0, 1], "single", 1 / Ts) < 1e-20


def test_ece_of_perfectly_calibrated_data_is_small_and_hand_computed_bins():
    rng = np.random.default_rng(2)
    p = rng.random((20000, 3))
    y = (rng.random((20000, 3)) < p).astype(int)  # each probability is the true frequency
    assert ece(p, y, "multi") < 0.015
    assert ece(np.clip(p * 1.6, 0, 1), y, "multi") > 0.1
    # single, 2 bins: confidences 0.9 (right), 0.8 (wrong) in bin 2; 0.4 (right) in bin 1
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.4, 0.3, 0.3]])
    conf, freq, count = reliability_bins(probs, [0, 1, 0], "single", bins=2)
    assert count.tolist() == [1, 2] and conf == pytest.approx([0.4, 0.85]) and freq == pytest.approx([1.0, 0.5])
    assert ece(probs, [0, 1, 0], "single", bins=2) == pytest.approx((1 * 0.6 + 2 * 0.35) / 3)
    assert ece(np.array([[1.0, 0.0]]), [0], "single") == 0.0  # probability 1 falls in the last bin


def test_brier_matches_sklearn():
    from sklearn.metrics import brier_score_loss

    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.ones(4), size=300)
    y = rng.integers(0, 4, 300)
    assert brier(p, y, "single") == pytest.approx(brier_score_loss(y, p, labels=[0, 1, 2, 3]))
    pm = rng.random((300, 4))
    ym = (rng.random((300, 4)) < 0.3).astype(int)
    assert brier(pm, ym, "multi") == pytest.approx(brier_score_loss(ym.ravel(), pm.ravel()))


def test_extreme_logits_stay_finite_without_warnings():
    z = np.array([[1e6, -1e6, 0.0], [3e300, -3e300, 1.0], [-40.0, -41.0, -42.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = apply_temperature(z, 0.05, "single")
        assert np.isfinite(p).all() and p.sum(1) == pytest.approx([1, 1, 1]) and p[0, 0] == 1.0
        s = apply_temperature(z, 0.05, "multi")
        assert np.isfinite(s).all() and s[0, 0] == 1.0 and s[0, 1] == 0.0
        T = fit_temperature(z[[0, 2]] * 1e3, [0, 0], "single")
        assert np.isfinite(T) and T > 0
        assert np.isfinite(fit_temperature(z * 1e3, (z > 0).astype(int), "multi"))


def test_one_label_gives_temperature_one():
    assert fit_temperature(np.ones((5, 1)), [0] * 5, "single") == 1.0
    assert apply_temperature(np.array([[3.0]]), 2.0, "single").tolist() == [[1.0]]


@pytest.mark.parametrize("call, said", [
    (lambda: fit_temperature(np.zeros((0, 3)), [], "single"), "at least one"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0, 3], "single"), "0..2"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0.5, 1], "single"), "integer"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0], "single"), "one label index per row"),
    (lambda: fit_temperature(np.zeros((2, 3)), np.zeros((2, 2)), "multi"), "shape"),
    (lambda: fit_temperature(np.full((2, 2), np.nan), np.zeros((2, 2)), "multi"), "NaN"),
    (lambda: fit_temperature(np.zeros((2, 2)), np.full((2, 2), 2), "multi"), "0/1"),
    (lambda: fit_temperature(np.zeros((2, 2)), [0, 1], "multiclass"), "kind"),
    (lambda: apply_temperature(np.zeros((2, 2)), 0.0, "single"), "positive"),
    (lambda: apply_temperature(np.zeros((2, 2)), float("nan"), "multi"), "positive"),
    (lambda: ece(np.array([[1.5, -0.5]]), [0], "single"), r"\[0, 1\]"),
    (lambda: ece(np.array([[0.5, 0.5]]), [0], "single", bins=0), "bins"),
    (lambda: brier(np.zeros((0, 2)), [], "single"), "at least one"),
])
def test_bad_input_is_a_clear_value_error(call, said):
    with pytest.raises(ValueError, match=said):
        call()


def test_plot_reliability_writes_a_png(tmp_path):
    z, y = _sample_single(2.0, n=500)
    out = tmp_path / "reliability.png"
    plot_reliability(apply_temperature(z, 1.0, "single"), apply_temperature(z, 2.0, "single"), y, "single", out, title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    zm, ym = _sample_multi(2.0, n=200)
    plot_reliability(apply_temperature(zm, 1.0, "multi"), apply_temperature(zm, 2.0, "multi"), ym, "multi", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reliability.png"]
