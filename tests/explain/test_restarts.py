"""The batched restarts of memory effects against brute force, the destroyed histories, the restart days."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.explain.common import (
    N_SITES,
    N_STATIC,
    NAMES,
    READ_COLUMN,
    READ_LAG,
    TARGETS,
    PerDay,
    ShiftRegister,
    identity_normaliser,
    make_sites,
    random_lstm,
)
from upscale.ensemble import Ensemble
from upscale.explain.restarts import _states_at, evaluation_days, lagged_predictions, shuffled_history
from upscale.explain.stepping import states_after


def brute_force(ensemble, real, destroyed, static, day: int, lag: int) -> dict[str, float]:
    """Predict ``day`` in one pass over the series whose days before day-lag are destroyed."""
    corrupted = np.concatenate([destroyed[: max(day - lag, 0)], real[max(day - lag, 0) : day + 1]])
    prediction = ensemble.predict(corrupted[None], static[None])
    return {t: float(prediction[t].mean[0, -1]) for t in TARGETS}


@pytest.mark.parametrize(
    "members",
    [
        lambda: [ShiftRegister(READ_COLUMN, READ_LAG)],
        lambda: [random_lstm(1), random_lstm(2)],
        lambda: [PerDay([0.5, -1.0, 2.0])],
    ],
    ids=["shift-register", "lstm", "per-day"],
)
def test_batched_restarts_equal_brute_force(members):
    sites = make_sites(3, n_sites=3, n_days=120)
    sites.dynamic[1, 50, 2] = np.nan  # a missing day: NaN prediction there, zero input to later days
    ensemble = Ensemble(members(), identity_normaliser(), TARGETS)
    variants = [[0, 1, 2], [2]]
    destroyed = shuffled_history(sites.dynamic, variants, np.random.default_rng(5))
    lags, stride = [0, 2, 5, 40], 3
    lagged, full = lagged_predictions(ensemble, sites.dynamic, sites.static, destroyed, lags, stride, batch_steps=200)
    reference = ensemble.predict(sites.dynamic, sites.static)
    for t in TARGETS:
        np.testing.assert_allclose(full[t], reference[t].mean, rtol=1e-5, atol=1e-6)
    checked = 0
    for i, lag in enumerate(lags):
        days = np.flatnonzero(evaluation_days(sites.time.size, lag, stride))
        for day in (days[0], days[days > lag][0], days[np.abs(days - 52).argmin()], days[-1]):
            for v in range(len(variants)):
                for site in range(3):
                    expected = brute_force(
                        ensemble, sites.dynamic[site], destroyed[v, site], sites.static[site], day, lag
                    )
                    for t in TARGETS:
                        np.testing.assert_allclose(
                            lagged[t][v, i, site, day],
                            expected[t],
                            rtol=1e-5,
                            atol=1e-6,
                            err_msg=f"variant {v} site {site} day {day} lag {lag}",
                        )
                    checked += 1
    assert checked == len(lags) * 4 * len(variants) * 3
    not_evaluated = ~evaluation_days(sites.time.size, lags[1], stride)
    assert np.isnan(lagged["gpp"][:, 1][..., not_evaluated]).all()


def test_states_at_restart_days_equal_states_after():
    model = random_lstm(4)
    dynamic, static = torch.randn(3, 40, len(NAMES)), torch.randn(3, N_STATIC)
    days = np.array([0, 7, 8, 30, 39])
    with torch.no_grad():
        chunked = _states_at(model, dynamic, static, days)
    every_day = states_after(model, dynamic, static)
    for mine, reference in zip(chunked, every_day):
        torch.testing.assert_close(mine, reference[:, days], rtol=1e-5, atol=1e-6)
    assert _states_at(PerDay([1.0, 1.0, 1.0]), dynamic, static, days) is None


def test_shuffled_history_shuffles_only_the_chosen_columns_within_each_site():
    sites = make_sites()
    destroyed = shuffled_history(sites.dynamic, [[0, 1, 2], [1]], np.random.default_rng(0))
    assert destroyed.shape == (2, *sites.dynamic.shape)
    np.testing.assert_array_equal(destroyed[1][..., [0, 2]], sites.dynamic[..., [0, 2]])
    np.testing.assert_array_equal(destroyed[0][..., 1], destroyed[1][..., 1])
    for site in range(N_SITES):
        for column in range(len(NAMES)):
            np.testing.assert_array_equal(
                np.sort(destroyed[0, site, :, column]), np.sort(sites.dynamic[site, :, column])
            )
        assert not np.array_equal(destroyed[0, site], sites.dynamic[site])


@pytest.mark.parametrize(
    "n_days, lag, stride, days",
    [
        (10, 2, 3, [0, 3, 6, 9]),  # (t - 3) % 3 == 0; day 0 (t <= k) takes the fresh-start prediction
        (10, 0, 4, [1, 5, 9]),
        (6, 3, 1, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_evaluation_days_by_hand(n_days, lag, stride, days):
    assert np.flatnonzero(evaluation_days(n_days, lag, stride)).tolist() == days


def test_shift_register_restarts_by_hand():
    """gpp of day t at lag k reads day t - 5: real when k >= 5, else the destroyed series' day t - 5."""
    sites = make_sites(1, n_sites=2, n_days=30)
    ensemble = Ensemble([ShiftRegister(READ_COLUMN, READ_LAG)], identity_normaliser(), TARGETS)
    destroyed = sites.dynamic[None] + 100.0  # a recognisable "destroyed" history
    lagged, full = lagged_predictions(ensemble, sites.dynamic, sites.static, destroyed, [2, 5], stride=1)
    real = sites.dynamic[..., READ_COLUMN]
    np.testing.assert_allclose(full["gpp"][:, READ_LAG:], real[:, :-READ_LAG], rtol=1e-6)
    np.testing.assert_allclose(full["et"], 2 * full["gpp"], rtol=1e-6)
    np.testing.assert_array_equal(full["gpp"][:, :READ_LAG], 0.0)
    np.testing.assert_allclose(lagged["gpp"][0, 0, :, READ_LAG:], real[:, :-READ_LAG] + 100.0, rtol=1e-6)
    np.testing.assert_array_equal(lagged["gpp"][0, 0, :, 3:READ_LAG], 0.0)  # the destroyed run's fresh register
    np.testing.assert_array_equal(lagged["gpp"][0, 0, :, :3], full["gpp"][:, :3])  # t <= k: the fresh start
    np.testing.assert_allclose(lagged["gpp"][0, 1], full["gpp"], rtol=1e-6)  # k = 5: all it reads is intact
