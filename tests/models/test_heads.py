"""Building blocks: the Gaussian head, dense stacks, and appending the static predictors."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr
from torch import nn

from upscale.distribution import censored_moments
from upscale.models.heads import (
    LOG_VAR_MAX,
    LOG_VAR_MIN,
    GaussianHead,
    dense_stack,
    expected_value,
    expected_value_slopes,
    with_static,
)


def test_gaussian_head_against_hand_values():
    head = GaussianHead(2, ["gpp", "et"])
    with torch.no_grad():  # rows: mean gpp, mean et, raw gpp, raw et
        head.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
        head.linear.bias.copy_(torch.tensor([0.0, 0.5, 0.0, math.log(3.0)]))
        out = head(torch.tensor([[1.0, 2.0]]))
    assert list(out) == ["gpp", "et"]
    assert float(out["gpp"][0]) == 1.0 and float(out["et"][0]) == 2.5
    # log_var = -9 + 14 sigmoid(raw): sigmoid(0) = 1/2 -> -2; sigmoid(ln 3) = 3/4 -> 1.5
    assert float(out["gpp"][1]) == -2.0
    assert abs(float(out["et"][1]) - 1.5) < 1e-6


def test_gaussian_head_log_variance_stays_in_its_bounds():
    torch.manual_seed(0)
    head = GaussianHead(4, ["gpp"])
    with torch.no_grad():
        _, log_var = head(1e4 * torch.randn(500, 4))["gpp"]
    assert float(log_var.min()) >= LOG_VAR_MIN and float(log_var.max()) <= LOG_VAR_MAX
    # inputs this large saturate the sigmoid at both ends: the bounds are reached, not just respected
    assert float(log_var.min()) == LOG_VAR_MIN and float(log_var.max()) == LOG_VAR_MAX


def test_gaussian_head_keeps_leading_dimensions():
    out = GaussianHead(3, ["gpp", "et", "le"])(torch.zeros(2, 7, 3))
    assert all(m.shape == v.shape == (2, 7) for m, v in out.values())


def test_dense_stack_layers_and_width():
    stack, width = dense_stack(3, [5, 4], 0.0)
    assert width == 4
    assert [type(m) for m in stack] == [nn.Linear, nn.SiLU, nn.Linear, nn.SiLU]
    assert [(m.in_features, m.out_features) for m in stack if isinstance(m, nn.Linear)] == [(3, 5), (5, 4)]
    with_dropout, _ = dense_stack(3, [5, 4], 0.2)
    assert [type(m) for m in with_dropout] == [nn.Linear, nn.SiLU, nn.Dropout] * 2
    assert with_dropout[2].p == 0.2


def test_empty_dense_stack_is_the_identity():
    stack, width = dense_stack(6, [], 0.5)
    x = torch.randn(2, 6)
    assert width == 6 and len(stack) == 0
    assert torch.equal(stack(x), x)


def test_with_static_appends_the_static_predictors_to_every_day():
    dynamic = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    static = torch.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]])
    x = with_static(dynamic, static)
    assert x.shape == (2, 3, 5)
    assert torch.equal(x[..., :2], dynamic)
    assert x[1, 2].tolist() == [10.0, 11.0, 40.0, 50.0, 60.0]
    assert all(torch.equal(x[:, t, 2:], static) for t in range(3))


@given(
    mean=st.floats(-6, 6),
    log_var=st.floats(-4, 3),
    bound=st.one_of(st.none(), st.floats(-3, 3)),
)
@settings(max_examples=60, deadline=None)
def test_expected_value_is_the_numpy_censored_mean_and_its_derivative_phi(mean, log_var, bound):
    """The torch twin equals :func:`censored_moments`' mean; its derivative in the mean is P(Z > bound)."""
    m = torch.tensor(mean, dtype=torch.float64, requires_grad=True)
    v = torch.tensor(log_var, dtype=torch.float64)
    value = expected_value(m, v, bound)
    expected, _ = censored_moments(np.array(mean), np.array(np.exp(0.5 * log_var)), bound)
    np.testing.assert_allclose(value.item(), float(expected), rtol=1e-9, atol=1e-9)
    (slope,) = torch.autograd.grad(value, m)
    above = 1.0 if bound is None else float(ndtr((mean - bound) / np.exp(0.5 * log_var)))
    np.testing.assert_allclose(slope.item(), above, rtol=1e-7, atol=1e-9)


@given(mean=st.floats(-5, 5), raw=st.floats(-4, 4), bound=st.one_of(st.none(), st.floats(-3, 3)))
@settings(max_examples=40, deadline=None)
def test_expected_value_slopes_equal_autograd_through_the_soft_clamp(mean, raw, bound):
    """The closed-form slopes in the mean and, through :meth:`GaussianHead.log_var_slope`, in the raw output."""
    m = torch.tensor(mean, dtype=torch.float64, requires_grad=True)
    r = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    log_var = LOG_VAR_MIN + (LOG_VAR_MAX - LOG_VAR_MIN) * torch.sigmoid(r)
    d_mean, d_raw = torch.autograd.grad(expected_value(m, log_var, bound), (m, r), allow_unused=True)
    slope_mean, slope_log_var = expected_value_slopes(m.detach(), log_var.detach(), bound)
    np.testing.assert_allclose(slope_mean.item(), d_mean.item(), rtol=1e-9, atol=1e-12)
    closed = (slope_log_var * GaussianHead.log_var_slope(r.detach())).item()
    np.testing.assert_allclose(closed, 0.0 if d_raw is None else d_raw.item(), rtol=1e-9, atol=1e-12)
