"""The censored-Gaussian mixture: moments, quantiles against Monte Carlo, PIT coverage, bounds on extreme inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import norm

from upscale.distribution import censored_moments, mixture_cdf, mixture_pit, mixture_quantiles, pit_coverage


def test_censored_moments_match_numerical_integration():
    mu, sd, b = 0.3, 1.2, 0.0
    mean, var = censored_moments(np.array([mu]), np.array([sd]), b)
    # E[max(b, Z)] = b P(Z <= b) + integral_b^inf z phi(z) dz, and likewise for the second moment
    upper = integrate.quad(lambda z: z * norm.pdf(z, mu, sd), b, np.inf)[0]
    upper2 = integrate.quad(lambda z: z * z * norm.pdf(z, mu, sd), b, np.inf)[0]
    want_mean = b * norm.cdf(b, mu, sd) + upper
    want_var = b * b * norm.cdf(b, mu, sd) + upper2 - want_mean**2
    np.testing.assert_allclose(mean, want_mean, rtol=1e-10)
    np.testing.assert_allclose(var, want_var, rtol=1e-10)


def test_without_a_bound_the_moments_are_the_gaussian_ones():
    mean, var = censored_moments(np.array([-3.0, 2.0]), np.array([0.5, 2.0]), None)
    np.testing.assert_array_equal(mean, [-3.0, 2.0])
    np.testing.assert_array_equal(var, [0.25, 4.0])


def test_mixture_quantiles_match_a_monte_carlo_estimate():
    # three members, one far below the bound: a point mass at 0 of about 0.36 and a bimodal rest
    mu = np.array([[-2.0, 1.0]], "float64").T[:, :, None] * np.array([1.0, 1.0, 1.0])  # [N=2, 1, 3]
    mu = np.concatenate([mu, np.array([[[5.0, 0.2, 3.0]]])])  # [3, 1, 3]
    sd = np.array([[[1.0, 0.5, 2.0]], [[0.3, 1.0, 0.7]], [[2.0, 0.1, 1.5]]])
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    got = mixture_quantiles(levels, mu, sd, 0.0)
    rng = np.random.default_rng(0)
    n = 200_000
    member = rng.integers(0, 3, n)
    for k in range(3):
        samples = np.maximum(0.0, rng.normal(mu[member, 0, k], sd[member, 0, k]))
        want = np.quantile(samples, levels)
        np.testing.assert_allclose(got[:, 0, k], want, atol=0.02)
    assert (got >= 0).all() and (got[0] == 0).all()  # the 5 % quantiles lie in the point mass


def test_quantiles_solve_the_mixture_cdf():
    rng = np.random.default_rng(1)
    mu, sd = rng.normal(2, 3, (5, 40)), rng.uniform(0.05, 4, (5, 40))
    for level, q in zip([0.1, 0.5, 0.9], mixture_quantiles([0.1, 0.5, 0.9], mu, sd, 0.0)):
        cdf = mixture_cdf(q, mu, sd, 0.0)
        above = q > 0
        np.testing.assert_allclose(cdf[above], level, atol=1e-6)
        assert (cdf[~above] >= level - 1e-9).all()  # at the bound: the point mass reaches the level


@settings(max_examples=40, deadline=None)
@given(
    mu=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=4),
    log_sd=st.floats(-12, 12),
    level=st.floats(0.001, 0.999),
    bound=st.sampled_from([0.0, -0.5, 3.0]),
)
def test_bounds_hold_on_extreme_inputs(mu, log_sd, level, bound):
    mu = np.array(mu)[:, None]
    sd = np.full_like(mu, np.exp(log_sd))
    mean, var = censored_moments(mu, sd, bound)
    q = mixture_quantiles([level], mu, sd, bound)
    assert np.isfinite(mean).all() and np.isfinite(var).all() and np.isfinite(q).all()
    assert (mean >= bound).all() and (var >= 0).all() and (q >= bound).all()


def test_nan_members_give_nan_quantiles():
    mu = np.array([[np.nan, 1.0]])
    q = mixture_quantiles([0.5], mu, np.ones_like(mu), 0.0)
    assert np.isnan(q[0, 0]) and q[0, 1] == pytest.approx(1.0)


def test_pit_of_a_censored_observation_is_the_point_mass():
    mu, sd = np.array([[0.0]]), np.array([[1.0]])
    pit = mixture_pit(np.array([-0.3, 0.0, 1.0]), mu, sd, 0.0)
    np.testing.assert_allclose(pit, [0.5, 0.5, norm.cdf(1.0)])


def test_pit_coverage_of_a_censored_observation_by_hand():
    # PIT uniform on [0, 0.4]: [0.05, 0.95] holds (0.4 - 0.05) / 0.4 of it, [0, 0.05] an eighth
    share = pit_coverage(np.array([0.4, 0.4, 0.7]), np.array([True, True, False]), 0.05, 0.95)
    np.testing.assert_allclose(share, [0.875, 0.875, 1.0])
    np.testing.assert_allclose(pit_coverage(np.array([0.4]), np.array([True]), 0.0, 0.05), [0.125])
    np.testing.assert_allclose(pit_coverage(np.array([0.02]), np.array([True]), 0.05, 0.95), [0.0])


def test_draws_from_the_mixture_are_calibrated_by_the_pit():
    rng = np.random.default_rng(2)
    n_members, n = 3, 60_000
    mu, sd = rng.normal(0.5, 1.0, (n_members, n)), rng.uniform(0.3, 1.5, (n_members, n))
    member = rng.integers(0, n_members, n)
    obs = rng.normal(mu[member, np.arange(n)], sd[member, np.arange(n)])  # raw, negative values included
    pit = mixture_pit(obs, mu, sd, 0.0)
    censored = obs <= 0.0
    assert 0.2 < censored.mean() < 0.5
    for low, high in ((0.05, 0.95), (0.25, 0.75), (0.0, 0.05), (0.0, 0.5)):
        assert pit_coverage(pit, censored, low, high).mean() == pytest.approx(high - low, abs=0.01)


def test_censored_moments_of_a_point_mass_off_the_bound():
    mean, var = censored_moments(np.array([2.0, -3.0]), np.array([0.0, 0.0]), 0.0)
    np.testing.assert_array_equal(mean, [2.0, 0.0])
    np.testing.assert_array_equal(var, [0.0, 0.0])
