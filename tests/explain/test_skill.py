"""Skill of many daily series at once: row by row the scores of upscale.metrics, and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from upscale.explain.skill import MONTH_MIN_DAYS, SCORES, site_scores
from upscale.metrics import monthly_components, nse, r2


def days(start: str, n: int) -> np.ndarray:
    return np.datetime64(start, "ns") + np.arange(n).astype("timedelta64[D]")


def test_site_scores_equal_the_metrics_row_by_row():
    rng = np.random.default_rng(2)
    time = np.datetime64("2018-01-01", "ns") + np.arange(400).astype("timedelta64[D]")
    obs = rng.normal(3, 1, (5, 400)) + np.sin(np.arange(400) / 58.0)
    pred = obs + rng.normal(0, 0.5, obs.shape)
    pred[:, (np.arange(400) - 4) % 3 != 0] = np.nan  # every third day evaluated, as in memory effects
    obs[0, 40:90] = np.nan
    obs[1] = 1.0  # constant observations: NSE undefined
    pred[2, :] = np.nan
    scores = site_scores(time, obs, pred, min_days=4)
    for row in range(5):
        parts = monthly_components(time, obs[row], pred[row], min_days=4)
        expected = {
            "nse": nse(obs[row], pred[row]),
            "r2": r2(obs[row], pred[row]),
            "msc_nse": nse(parts[0], parts[1]),
            "anomaly_nse": nse(parts[2], parts[3]),
        }
        for key, value in expected.items():
            np.testing.assert_allclose(scores[key][row], value, rtol=1e-9, atol=1e-12, err_msg=f"{key} row {row}")
    assert np.isnan(scores["nse"][1]) and np.isnan(scores["nse"][2])


def test_day_scores_by_hand():
    obs = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, np.nan, 3.0, 5.0]])
    pred = np.array([[1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0], [1.0, 7.0, np.nan, 5.0]])
    scores = site_scores(days("2018-01-01", 4), obs, pred)
    assert set(scores) == set(SCORES)
    # row 0: sse 1, sst 5; r = 6.5 / sqrt(5 * 8.75), so r2 = 42.25 / 43.75 = 169 / 175
    np.testing.assert_allclose(scores["nse"], [0.8, 1.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(scores["r2"], [169 / 175, 1.0, 1.0], rtol=1e-12)
    # one month of four days: no month has MONTH_MIN_DAYS, so no seasonal cycle and no anomalies
    assert MONTH_MIN_DAYS > 4
    assert np.isnan(scores["msc_nse"]).all() and np.isnan(scores["anomaly_nse"]).all()


def test_fewer_than_two_pairs_or_constant_series_are_undefined():
    obs = np.array([[1.0, np.nan, np.nan], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0]])
    pred = np.array([[1.0, 2.0, np.nan], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    scores = site_scores(days("2018-01-01", 3), obs, pred)
    assert np.isnan(scores["nse"][:2]).all() and np.isnan(scores["r2"]).all()
    assert scores["nse"][2] == pytest.approx(1 - 2 / 2)  # constant predictions: NSE defined, r2 not


def test_seasonal_cycle_and_anomalies_by_hand():
    """January obs 1, pred 1; February obs 3, pred 2: the monthly means are the seasonal cycle."""
    time = days("2018-01-01", 59)
    january = np.arange(59) < 31
    obs = np.where(january, 1.0, 3.0)[None]
    pred = np.where(january, 1.0, 2.0)[None]
    scores = site_scores(time, obs, pred)
    assert scores["msc_nse"][0] == pytest.approx(1 - 1 / 2)  # sse (0 + 1), sst ((1 - 2)^2 + (3 - 2)^2)
    assert np.isnan(scores["anomaly_nse"][0])  # one year: the anomalies of the observations are all 0
    few = obs.copy()
    few[0, 31:54] = np.nan  # February keeps 5 days: below MONTH_MIN_DAYS, it does not count
    assert np.isnan(site_scores(time, few, pred)["msc_nse"][0])
    assert site_scores(time, few, pred, min_days=5)["msc_nse"][0] == pytest.approx(0.5)
