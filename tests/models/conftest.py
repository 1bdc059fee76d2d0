"""Fixtures of the model tests: a predictor layout, seeded models of each family, and random inputs."""

from __future__ import annotations

import pytest
import torch

from upscale.models.registry import build

NAMES = ["tas", "vpd", "rsds", "rsds_pot", "pr", "fapar"]
N_STATIC = 4
TARGETS = ["gpp", "et"]


@pytest.fixture
def dynamic_names() -> list[str]:
    """Canonical names of the dynamic predictors, in column order (what the hybrid model needs)."""
    return list(NAMES)


@pytest.fixture
def make_model():
    """``make(kind, hidden=(8,))``: a model of that family over the layout above, seeded with 0."""

    def make(kind: str, hidden=(8,)):
        torch.manual_seed(0)
        return build({"type": kind, "hidden": list(hidden)}, len(NAMES), N_STATIC, TARGETS, dynamic_names=NAMES)

    return make


@pytest.fixture
def make_inputs():
    """``inputs(b=3, t=20, seed=0)``: standard-normal (dynamic [b, t, Fd], static [b, Fs]) tensors."""

    def inputs(b=3, t=20, seed=0):
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(b, t, len(NAMES), generator=gen), torch.randn(b, N_STATIC, generator=gen)

    return inputs


@pytest.fixture
def early_change(make_inputs):
    """``run(model)``: its GPP means [1, 30] for one input series and for that series with days 0-4 raised by 3."""

    def run(model):
        dyn, stat = make_inputs(b=1, t=30)
        changed = dyn.clone()
        changed[:, :5] += 3.0
        with torch.no_grad():
            return model(dyn, stat)[0]["gpp"][0], model(changed, stat)[0]["gpp"][0]

    return run
