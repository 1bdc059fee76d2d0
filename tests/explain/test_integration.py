"""The integration core of integrated gradients: exact on linear models, steps raised to tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from upscale.encoding import Normaliser
from upscale.ensemble import Ensemble
from upscale.explain.context import SiteSet
from upscale.explain.integration import IG_METHOD, IGSettings, attribute_days, attribution_mode
from upscale.models.lstm import LSTM

N_SITES, N_DAYS, WINDOW = 3, 10, 4
TARGET_MEAN, TARGET_STD = 5.0, 3.0
DYNAMIC_MEAN, DYNAMIC_STD = [1.0, 2.0], [2.0, 4.0]


class Yesterday(torch.nn.Module):
    """gpp_t = squash(z_{t-1} . w) + s . v in normalised units: reads only the day before (lag 1)."""

    sequential = False

    def __init__(self, weights, static_weights, squash=None):
        super().__init__()
        self.register_buffer("w", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("v", torch.tensor(static_weights, dtype=torch.float32))
        self.squash = squash or (lambda z: z)
        self.targets = ["gpp"]

    def forward(self, dynamic, static, state=None):
        before = torch.cat([dynamic.new_zeros(dynamic.shape[0], 1, dynamic.shape[2]), dynamic[:, :-1]], dim=1)
        mean = self.squash(before @ self.w) + (static @ self.v)[:, None]
        return {"gpp": (mean, torch.zeros_like(mean))}, None


def make_sites(n_static: int = 1) -> SiteSet:
    rng = np.random.default_rng(0)
    return SiteSet(
        np.array([f"S{i}" for i in range(N_SITES)]),
        np.datetime64("2018-01-01", "ns") + np.arange(N_DAYS).astype("timedelta64[D]"),
        rng.normal(1.0, 3.0, (N_SITES, N_DAYS, 2)).astype("float32"),
        rng.normal(size=(N_SITES, n_static)).astype("float32"),
        rng.normal(size=(N_SITES, N_DAYS, 1)).astype("float32"),
        ["tas", "pr"],
        {"elevation": [0]} if n_static else {},
        ["gpp"],
    )


def ensemble(members, n_static: int = 1) -> Ensemble:
    norm = Normaliser(DYNAMIC_MEAN, DYNAMIC_STD, [0.0] * n_static, [1.0] * n_static, [TARGET_MEAN], [TARGET_STD])
    return Ensemble(members, norm, ["gpp"])


def settings(n_steps=2, batch=2, tolerance=0.03, max_n_steps=8) -> IGSettings:
    return IGSettings(
        window=WINDOW,
        n_steps=n_steps,
        method=IG_METHOD,
        internal_batch_size=batch,
        tolerance=tolerance,
        max_n_steps=max_n_steps,
    )


SITE_IDX, DAYS = np.array([0, 0, 1, 2, 2]), np.array([3, 9, 5, 4, 8])


@pytest.mark.parametrize("batch", [2, 64])
def test_linear_members_are_attributed_exactly(batch):
    sites = make_sites()
    w1, w2, v1, v2 = [0.5, -1.0], [1.5, 2.0], [0.7], [-0.1]
    ens = ensemble([Yesterday(w1, v1), Yesterday(w2, v2)])
    with attribution_mode(ens.members):
        parts, steps = attribute_days(ens, sites, "gpp", SITE_IDX, DAYS, settings(batch=batch))
    dynamic, static, delta, change = parts
    assert dynamic.shape == (5, WINDOW, 2) and static.shape == (5, 1) and steps == 2
    z = (sites.dynamic - np.float32(DYNAMIC_MEAN)) / np.float32(DYNAMIC_STD)
    w, v = (np.array(w1) + w2) / 2, (np.array(v1) + v2) / 2
    np.testing.assert_allclose(dynamic[:, 1], TARGET_STD * w * z[SITE_IDX, DAYS - 1], rtol=1e-5, atol=1e-6)
    assert np.all(dynamic[:, [0, 2, 3]] == 0)  # lag 0 is the predicted day, which the model does not read
    np.testing.assert_allclose(static, TARGET_STD * v * sites.static[SITE_IDX], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(change, dynamic.sum(axis=(1, 2)) + static.sum(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


def test_without_static_predictors_the_static_attributions_are_empty():
    sites = make_sites(n_static=0)
    ens = ensemble([Yesterday([1.0, 1.0], [])], n_static=0)
    with attribution_mode(ens.members):
        (dynamic, static, _, change), _ = attribute_days(ens, sites, "gpp", SITE_IDX, DAYS, settings())
    assert static.shape == (5, 0)
    np.testing.assert_allclose(change, dynamic.sum(axis=(1, 2)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "tolerance, max_n_steps, expected",
    [
        (1.0, 8, 2),  # within tolerance at once
        (0.0, 5, 5),  # raised 2 -> min(5, 8): capped at max_n_steps
        (0.0, 2, 2),  # nothing to raise
    ],
)
def test_steps_are_raised_to_tolerance_up_to_the_maximum(tolerance, max_n_steps, expected):
    sites = make_sites()
    ens = ensemble([Yesterday([2.0, -1.5], [0.0], torch.tanh)])
    with attribution_mode(ens.members):
        _, steps = attribute_days(
            ens, sites, "gpp", SITE_IDX, DAYS, settings(tolerance=tolerance, max_n_steps=max_n_steps, batch=64)
        )
    assert steps == expected


def test_attribution_mode_disables_cudnn_and_restores_the_weights():
    model = LSTM(3, 4, ["gpp"], hidden=[8])
    model.head.linear.bias.requires_grad_(False)
    before = [p.requires_grad for p in model.parameters()]
    with attribution_mode([model]):
        assert not torch.backends.cudnn.enabled
        assert torch.is_grad_enabled()
        assert not any(p.requires_grad for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == before
