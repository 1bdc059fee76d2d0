"""Tests of upscale.sources.demo.noise: the seeded streams, smoothing, and the static and AR(1) weather fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.sources.demo.common import SMALL, TINY
from upscale.sources.demo import noise
from upscale.sources.demo.noise import rng, smooth2d, static_noise, weather_noise


def test_each_component_has_its_own_stream():
    streams = [
        noise.S_GEO,
        noise.S_TEMP,
        noise.S_PREC,
        noise.S_PFT,
        noise.S_NDVI,
        noise.S_SITES,
        noise.S_OBS,
        noise.S_WIND,
    ]
    assert sorted(streams) == list(range(1, 9))
    np.testing.assert_array_equal(
        rng(TINY, noise.S_TEMP).random(5), np.random.default_rng([TINY.seed, noise.S_TEMP]).random(5)
    )
    np.testing.assert_array_equal(rng(TINY, noise.S_OBS, 3).random(5), rng(TINY, noise.S_OBS, 3).random(5))
    draws = {(s, k): rng(TINY, s, k).random() for s in streams for k in (0, 1)}
    assert len(set(draws.values())) == len(draws)
    assert rng(TINY, noise.S_GEO).random() != rng(SMALL, noise.S_GEO).random()  # another seed


def test_smooth2d_wraps_longitudes_only_on_the_globe():
    field = np.zeros((9, 12))
    field[4, 0] = 1.0
    wrapped, cut = smooth2d(field, 1.0, wrap=True), smooth2d(field, 1.0, wrap=False)
    assert wrapped[4, -1] == pytest.approx(wrapped[4, 1]) and wrapped[4, -1] > 0.05
    assert cut[4, -1] < 1e-6
    assert wrapped.sum() == pytest.approx(1.0)
    assert smooth2d(field, 0.2, wrap=True) is field  # under 0.3 cells: nothing to smooth


def test_static_noise_is_a_seeded_standardised_field():
    a = static_noise(np.random.default_rng(1), (20, 30), 2.0, wrap=True)
    b = static_noise(np.random.default_rng(1), (20, 30), 2.0, wrap=True)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20, 30)
    assert a.mean() == pytest.approx(0.0, abs=1e-12) and a.std() == pytest.approx(1.0)
    neighbours = np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1]
    assert neighbours > 0.7  # smooth: a 2-cell Gaussian


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_weather_noise_is_seeded_stationary_ar1(sigma):
    tau, nt, shape = 5.0, 3000, (6, 8)
    a = weather_noise(np.random.default_rng(2), nt, shape, sigma, tau, wrap=True)
    np.testing.assert_array_equal(a, weather_noise(np.random.default_rng(2), nt, shape, sigma, tau, wrap=True))
    assert a.shape == (nt, *shape) and a.dtype == np.float32
    assert not np.array_equal(a, weather_noise(np.random.default_rng(3), nt, shape, sigma, tau, wrap=True))
    series = a.reshape(nt, -1).astype("float64")
    assert series.var() == pytest.approx(1.0, abs=0.1)
    for lag in (1, 3):
        r = np.mean([np.corrcoef(s[:-lag], s[lag:])[0, 1] for s in series.T])
        assert r == pytest.approx(math.exp(-lag / tau), abs=0.03), lag


def test_weather_noise_has_unit_variance_from_the_first_day():
    """Day 0 continues the stationary state of the day before: no spin-up."""
    a = weather_noise(np.random.default_rng(4), 2, (100, 100), 0.0, 30.0, wrap=False)
    assert a[0].var() == pytest.approx(1.0, abs=0.05) and a[1].var() == pytest.approx(1.0, abs=0.05)
    assert np.corrcoef(a[0].ravel(), a[1].ravel())[0, 1] == pytest.approx(math.exp(-1 / 30.0), abs=0.01)


def test_weather_noise_is_smooth_in_space():
    a = weather_noise(np.random.default_rng(5), 50, (20, 20), 2.0, 3.0, wrap=True)
    neighbours = np.corrcoef(a[:, :, :-1].ravel(), a[:, :, 1:].ravel())[0, 1]
    rough = weather_noise(np.random.default_rng(5), 50, (20, 20), 0.0, 3.0, wrap=True)
    assert neighbours > 0.7 and abs(np.corrcoef(rough[:, :, :-1].ravel(), rough[:, :, 1:].ravel())[0, 1]) < 0.05
