"""Metrics against values worked out by hand on tiny arrays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from upscale import metrics

OBS = np.array([1.0, 2.0, 3.0, 4.0])
PRED = np.array([1.5, 2.0, 2.5, 5.0])
# By hand: errors pred - obs = [0.5, 0, -0.5, 1]; SSE = 1.5; obs mean 2.5, SST = 5;
# pred mean 2.75, sum of squared pred deviations = 7.25; cross-product sum = 5.5.
R = 5.5 / math.sqrt(5.0 * 7.25)  # 0.91350028
ALPHA = math.sqrt(7.25 / 5.0)  # 1.20415946
BETA = 2.75 / 2.5  # 1.1


def test_r2_by_hand():
    assert metrics.r2(OBS, PRED) == pytest.approx(30.25 / 36.25)  # 0.83448276
    assert metrics.r2(OBS, PRED) == pytest.approx(0.8344827586)


def test_nse_by_hand():
    assert metrics.nse(OBS, PRED) == pytest.approx(1 - 1.5 / 5.0)  # 0.7


def test_kge_by_hand():
    expected = 1 - math.sqrt((R - 1) ** 2 + (ALPHA - 1) ** 2 + (BETA - 1) ** 2)
    assert expected == pytest.approx(0.7567650, abs=1e-7)
    assert metrics.kge(OBS, PRED) == pytest.approx(expected)


def test_rmse_and_bias_by_hand():
    assert metrics.rmse(OBS, PRED) == pytest.approx(math.sqrt(1.5 / 4))  # 0.61237244
    assert metrics.bias(OBS, PRED) == pytest.approx(0.25)
    assert metrics.bias(PRED, OBS) == pytest.approx(-0.25)


def test_perfect_prediction_scores_one():
    obs = np.array([0.3, 1.7, 2.2, 5.0, 4.1])
    assert metrics.nse(obs, obs) == pytest.approx(1.0)
    assert metrics.kge(obs, obs) == pytest.approx(1.0)
    assert metrics.r2(obs, obs) == pytest.approx(1.0)
    assert metrics.rmse(obs, obs) == 0.0
    assert metrics.bias(obs, obs) == 0.0


def test_nans_are_ignored_pairwise():
    obs = np.array([1.0, np.nan, 2.0, 3.0, 4.0, 7.0])
    pred = np.array([1.5, 9.0, 2.0, 2.5, 5.0, np.inf])
    for name in ("r2", "nse", "kge", "rmse", "bias"):
        fn = getattr(metrics, name)
        assert fn(obs, pred) == pytest.approx(fn(OBS, PRED)), name
    assert metrics.score(obs, pred)["n"] == 4


def test_returns_python_floats():
    assert type(metrics.nse(OBS, PRED)) is float
    assert type(metrics.score(OBS, PRED)["n"]) is int


@pytest.mark.parametrize(
    "obs, pred",
    [
        ([1.0], [1.0]),  # one pair
        ([], []),  # none
        ([np.nan, 1.0], [1.0, np.nan]),  # no finite pair
    ],
)
def test_too_few_pairs_give_nan(obs, pred):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        result = metrics.score(obs, pred, sd=np.ones(len(obs)))
    assert all(math.isnan(result[k]) for k in metrics.METRIC_COLUMNS if k != "n")


def test_zero_variance_gives_nan_not_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(metrics.nse([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
        assert math.isnan(metrics.r2([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
        assert math.isnan(metrics.r2([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))
        assert math.isnan(metrics.kge([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))
        assert math.isnan(metrics.kge([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]))  # zero observed mean
    assert metrics.rmse([2.0, 2.0], [1.0, 3.0]) == pytest.approx(1.0)


def test_coverage_by_hand():
    obs = np.array([0.0, 1.0, 2.0, 3.0])
    # 50 %: |z| <= 0.6745 -> only 0; 90 %: |z| <= 1.6449 -> 0 and 1.
    assert metrics.coverage(obs, np.zeros(4), np.ones(4), 0.5) == pytest.approx(0.25)
    assert metrics.coverage(obs, 0.0, 1.0, 0.9) == pytest.approx(0.5)
    assert metrics.coverage(obs, 0.0, 1.5, 0.9) == pytest.approx(0.75)  # half width 2.47


def test_coverage_of_calibrated_sample_is_level():
    rng = np.random.default_rng(42)
    mean = rng.normal(10.0, 3.0, 200_000)
    sd = rng.uniform(0.5, 2.0, mean.size)
    obs = rng.normal(mean, sd)
    for level in (0.5, 0.9):
        assert metrics.coverage(obs, mean, sd, level) == pytest.approx(level, abs=0.005)
    assert metrics.coverage(obs, mean, 2 * sd, 0.5) > 0.7  # too wide -> over-covers


def test_coverage_rejects_bad_level():
    with pytest.raises(ValueError, match="level"):
        metrics.coverage(OBS, PRED, np.ones(4), 1.5)


def _crps_by_integration(y: float, mu: float, sigma: float) -> float:
    """CRPS = integral of (F(x) - 1{x >= y})**2 dx, integrated numerically."""

    def below(x):
        return norm.cdf(x, mu, sigma) ** 2

    def above(x):
        return (1.0 - norm.cdf(x, mu, sigma)) ** 2

    lo, hi = mu - 12 * sigma, mu + 12 * sigma
    return integrate.quad(below, min(lo, y), y)[0] + integrate.quad(above, y, max(hi, y))[0]


@pytest.mark.parametrize("y, mu, sigma", [(0.0, 0.0, 1.0), (1.3, 0.2, 0.7), (-4.0, 1.0, 2.5), (3.0, 3.5, 0.1)])
def test_crps_matches_numerical_integration(y, mu, sigma):
    # Two copies of the same case: the mean over them is the case's CRPS.
    got = metrics.crps_gaussian([y, y], [mu, mu], [sigma, sigma])
    assert got == pytest.approx(_crps_by_integration(y, mu, sigma), rel=1e-6, abs=1e-9)


def test_crps_known_value_and_point_forecast():
    # y = mu: CRPS = sigma * (2 * phi(0) - 1/sqrt(pi)) = 0.2336950 sigma.
    assert metrics.crps_gaussian([0.0, 0.0], 0.0, 1.0) == pytest.approx(0.2336950, abs=1e-7)
    assert metrics.crps_gaussian([0.0, 0.0], 0.0, 3.0) == pytest.approx(3 * 0.2336950, abs=1e-6)
    # sd = 0: the absolute error.
    assert metrics.crps_gaussian([1.0, 4.0], [0.0, 2.0], [0.0, 0.0]) == pytest.approx(1.5)


def test_crps_ignores_nan_and_negative_sd():
    got = metrics.crps_gaussian([0.0, 0.0, 5.0, 1.0], [0.0, 0.0, np.nan, 0.0], [1.0, 1.0, 1.0, -1.0])
    assert got == pytest.approx(0.2336950, abs=1e-7)


def test_score_keys_and_sd_none():
    result = metrics.score(OBS, PRED)
    assert tuple(result) == metrics.METRIC_COLUMNS
    assert result["n"] == 4
    assert result["nse"] == pytest.approx(0.7)
    assert all(math.isnan(result[k]) for k in ("coverage_50", "coverage_90", "crps"))


def test_score_with_sd():
    result = metrics.score(OBS, PRED, sd=np.full(4, 1.0))
    # |errors| = [0.5, 0, 0.5, 1] against half widths 0.674 (50 %) and 1.645 (90 %).
    assert result["coverage_50"] == pytest.approx(0.75)
    assert result["coverage_90"] == pytest.approx(1.0)
    assert result["crps"] == pytest.approx(
        np.mean([_crps_by_integration(o, p, 1.0) for o, p in zip(OBS, PRED)]), rel=1e-6
    )


def test_pinball_loss_by_hand():
    # level 0.9: under-prediction costs 0.9 per unit, over-prediction 0.1
    assert metrics.pinball([1.0, 1.0, np.nan], [0.0, 3.0, 1.0], 0.9) == pytest.approx((0.9 * 1 + 0.1 * 2) / 2)
    assert math.isnan(metrics.pinball([1.0], [0.0], 0.5))


def test_scores_take_their_coverage_from_the_pit_when_given():
    obs = np.array([0.0, 1.0, 2.0, 3.0])
    pit = np.array([0.4, 0.5, 0.97, 0.2])  # the first censored: uniform on [0, 0.4]
    censored = np.array([True, False, False, False])
    out = metrics.score(obs, obs, np.ones(4), pit, censored)
    assert out["coverage_90"] == pytest.approx((0.35 / 0.4 + 1 + 0 + 1) / 4)
    assert out["coverage_50"] == pytest.approx((0.15 / 0.4 + 1 + 0 + 0) / 4)
    assert metrics.pit_share(pit, censored, 0.0, 0.05) == pytest.approx(0.125 / 4)
