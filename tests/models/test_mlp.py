"""The per-day multilayer perceptron: no memory, one prediction per day from that day alone."""

from __future__ import annotations

import torch
from torch import nn

from upscale.models.mlp import MLP


def test_mlp_has_no_memory(make_model, early_change):
    out, changed_out = early_change(make_model("mlp").eval())  # only days 0-4 differ
    assert torch.equal(out[:, 5:], changed_out[:, 5:])
    assert not torch.allclose(out[:, :5], changed_out[:, :5])  # the changed days did change


def test_mlp_day_by_day_equals_whole_series(make_model, make_inputs):
    model = make_model("mlp").eval()
    dyn, stat = make_inputs(b=2, t=6)
    with torch.no_grad():
        whole, _ = model(dyn, stat)
        days = [model(dyn[:, t : t + 1], stat)[0] for t in range(6)]
    for target in model.targets:
        for k in (0, 1):  # mean and log-variance
            torch.testing.assert_close(torch.cat([d[target][k] for d in days], dim=1), whole[target][k])


def test_mlp_layer_widths(make_model):
    model = make_model("mlp", hidden=(8, 5))
    assert isinstance(model, MLP)
    widths = [(m.in_features, m.out_features) for m in model.body if isinstance(m, nn.Linear)]
    assert widths == [(6 + 4, 8), (8, 5)]
    assert model.head.linear.in_features == 5 and model.head.linear.out_features == 2 * 2
