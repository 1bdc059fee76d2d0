"""The model protocol, over every family: forward shapes and gradients, and the state hand-over."""

from __future__ import annotations

import pytest
import torch

from upscale.models.base import FluxModel

FAMILIES = ["mlp", "lstm", "ealstm", "hybrid"]


@pytest.mark.parametrize("kind", FAMILIES)
def test_forward_shapes_and_gradients(kind, make_model, make_inputs):
    model = make_model(kind)
    dyn, stat = make_inputs()
    outputs, state = model(dyn, stat)
    assert set(outputs) == set(model.targets)
    for mean, log_var in outputs.values():
        assert mean.shape == log_var.shape == (3, 20)
        assert torch.isfinite(mean).all() and torch.isfinite(log_var).all()
    sum(m.sum() + v.sum() for m, v in outputs.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0
    assert (state is None) == (kind == "mlp")
    assert model.sequential == (kind != "mlp")  # the flag says whether a state comes back


@pytest.mark.parametrize("kind", ["lstm", "ealstm", "hybrid"])
@pytest.mark.parametrize("split", [1, 7, 19])
def test_state_handed_on_equals_one_pass(kind, split, make_model, make_inputs):
    model = make_model(kind).eval()
    dyn, stat = make_inputs(t=20)
    with torch.no_grad():
        whole, _ = model(dyn, stat)
        first, state = model(dyn[:, :split], stat)
        second, _ = model(dyn[:, split:], stat, state)
    assert all(s.shape[0] == 3 for s in state)  # pixels first, so batches of pixels can be stitched
    for target in model.targets:
        joined = torch.cat([first[target][0], second[target][0]], dim=1)
        torch.testing.assert_close(joined, whole[target][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", FAMILIES)
def test_models_record_their_layout(kind, make_model, dynamic_names):
    model = make_model(kind)
    assert isinstance(model, FluxModel)
    assert (model.n_dynamic, model.n_static, model.targets) == (len(dynamic_names), 4, ["gpp", "et"])


def test_the_base_class_has_no_forward():
    model = FluxModel(2, 1, ["gpp"])
    assert not model.sequential and model.parameter_info == {}
    with pytest.raises(NotImplementedError):
        model(torch.zeros(1, 1, 2), torch.zeros(1, 1))
