"""Building blocks: the Gaussian head, dense stacks, and appending the static predictors."""

from __future__ import annotations

import math

import torch
from torch import nn

from upscale.models.heads import LOG_VAR_MAX, LOG_VAR_MIN, GaussianHead, dense_stack, with_static


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
