"""Model families: forward shapes and gradients, state hand-over, the EA-LSTM gate, the hybrid's physics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from upscale import physics
from upscale.errors import RecipeError
from upscale.features import Normaliser
from upscale.models.hybrid import PARAMETERS, Hybrid
from upscale.models.lstm import EALSTM
from upscale.models.registry import available, build

NAMES = ["tas", "vpd", "rsds", "rsds_pot", "pr", "fapar"]
FD, FS, TARGETS = len(NAMES), 4, ["gpp", "et"]


def make(kind: str, hidden=(8,)):
    torch.manual_seed(0)
    return build({"type": kind, "hidden": list(hidden)}, FD, FS, TARGETS, dynamic_names=NAMES)


def inputs(b=3, t=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, FD, generator=gen), torch.randn(b, FS, generator=gen)


def test_registry_lists_the_model_families():
    assert {"mlp", "lstm", "ealstm", "hybrid"} <= set(available())


@pytest.mark.parametrize("kind", ["mlp", "lstm", "ealstm", "hybrid"])
def test_forward_shapes_and_gradients(kind):
    model = make(kind)
    dyn, stat = inputs()
    outputs, state = model(dyn, stat)
    assert set(outputs) == set(TARGETS)
    for mean, log_var in outputs.values():
        assert mean.shape == log_var.shape == (3, 20)
        assert torch.isfinite(mean).all() and torch.isfinite(log_var).all()
    sum(m.sum() + v.sum() for m, v in outputs.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0
    assert (state is None) == (kind == "mlp")


@pytest.mark.parametrize("kind", ["lstm", "ealstm", "hybrid"])
@pytest.mark.parametrize("split", [1, 7, 19])
def test_state_handed_on_equals_one_pass(kind, split):
    model = make(kind).eval()
    dyn, stat = inputs(t=20)
    with torch.no_grad():
        whole, _ = model(dyn, stat)
        first, state = model(dyn[:, :split], stat)
        second, _ = model(dyn[:, split:], stat, state)
    assert all(s.shape[0] == 3 for s in state)  # pixels first, so batches of pixels can be stitched
    for target in TARGETS:
        joined = torch.cat([first[target][0], second[target][0]], dim=1)
        torch.testing.assert_close(joined, whole[target][0], rtol=1e-5, atol=1e-6)


def test_sequence_models_have_memory_and_mlp_has_none():
    dyn, stat = inputs(b=1, t=30)
    changed = dyn.clone()
    changed[:, :5] += 3.0  # change only the first five days
    for kind, remembers in (("mlp", False), ("lstm", True)):
        model = make(kind).eval()
        with torch.no_grad():
            late = model(dyn, stat)[0]["gpp"][0][:, 10:]
            late_changed = model(changed, stat)[0]["gpp"][0][:, 10:]
        assert (not torch.allclose(late, late_changed)) == remembers


def reference_ealstm(model: EALSTM, dynamic, static):
    """EA-LSTM step by step (Kratzert et al. 2019, eq. 4-9) from the model's own weights."""
    lstm, size = model.lstm, model.lstm.hidden_size
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    w_ii, w_f, w_g, w_o = w_ih.split(size)
    u_f, u_g, u_o = w_hh[size:].split(size)
    b_i, b_f, b_g, b_o = b.split(size)
    fd = dynamic.shape[-1]
    i = torch.sigmoid(static @ w_ii[:, fd:].T + b_i)
    h = c = torch.zeros(dynamic.shape[0], size)
    hs = []
    for t in range(dynamic.shape[1]):
        x = dynamic[:, t]
        f = torch.sigmoid(x @ w_f[:, :fd].T + h @ u_f.T + b_f)
        g = torch.tanh(x @ w_g[:, :fd].T + h @ u_g.T + b_g)
        o = torch.sigmoid(x @ w_o[:, :fd].T + h @ u_o.T + b_o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        hs.append(h)
    return torch.stack(hs, dim=1)


def test_ealstm_equals_its_equations_and_keeps_its_gate_static_after_training():
    model = make("ealstm")
    dyn, stat = inputs(b=4, t=12)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # masked weights must stay masked through optimiser steps
        loss = sum(m.pow(2).mean() for m, _ in model(dyn, stat)[0].values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        h, _ = model.lstm(torch.cat([dyn, stat[:, None].expand(-1, 12, -1)], dim=-1))
        expected = reference_ealstm(model, dyn, stat)
    torch.testing.assert_close(h, expected, rtol=1e-5, atol=1e-6)
    size = model.lstm.hidden_size
    assert float(model.lstm.weight_ih_l0[:size, :FD].abs().max()) == 0.0
    assert float(model.lstm.weight_hh_l0[:size].abs().max()) == 0.0


def hybrid_with_normaliser() -> Hybrid:
    model = make("hybrid")
    norm = Normaliser(dynamic_mean=[10.0, 8.0, 200.0, 300.0, 2.0, 0.5], dynamic_std=[8.0, 5.0, 80.0, 90.0, 3.0, 0.2],
                      static_mean=[0.0] * FS, static_std=[1.0] * FS, target_mean=[4.0, 1.5], target_std=[3.0, 1.0])
    model.attach_normaliser(norm)
    return model, norm


def test_hybrid_parameters_stay_in_their_physical_bounds_for_any_input():
    model, _ = hybrid_with_normaliser()
    dyn, stat = inputs(b=8, t=15)
    with torch.no_grad():
        params, _, _ = model.process_parameters(dyn * 50, stat * 50)
    for name, (low, high, _, varying, _) in PARAMETERS.items():
        assert float(params[name].min()) >= low and float(params[name].max()) <= high, name
        spread = float((params[name] - params[name][:, :1]).abs().max())
        assert (spread > 0) == varying, name  # per-pixel constants do not move in time


def test_hybrid_fluxes_are_the_process_models_with_its_parameters():
    model, norm = hybrid_with_normaliser()
    x = np.array([[20.0, 10.0, 250.0, 400.0, 1.0, 0.6]], dtype="float32")[None]  # one pixel-day
    dyn = torch.from_numpy(norm.dynamic(x))
    stat = torch.zeros(1, FS)
    with torch.no_grad():
        outputs, _ = model(dyn, stat)
        params, _, _ = model.process_parameters(dyn, stat)
    p = {k: float(v) for k, v in params.items()}
    par = 250.0 * 0.45 * 86400 / 1e6
    gpp = (p["lue_max"] * 0.6 * par * np.exp(-((20 - p["t_opt"]) / 14.0) ** 2)
           * np.exp(-p["vpd_sensitivity"] * 10) * p["f_water"])
    assert float(outputs["gpp"][0]) * 3.0 + 4.0 == pytest.approx(gpp, rel=1e-4)
    et = p["pt_alpha"] * float(physics.equilibrium_et(
        physics.net_radiation(torch.tensor(250.0), torch.tensor(20.0), torch.tensor(10.0), torch.tensor(400.0)),
        torch.tensor(20.0)))
    assert float(outputs["et"][0]) + 1.5 == pytest.approx(et, rel=1e-4)


def test_hybrid_refuses_missing_predictors_and_unknown_targets():
    with pytest.raises(RecipeError, match="needs the predictors fapar"):
        build({"type": "hybrid", "hidden": [8]}, 3, FS, ["gpp"], dynamic_names=["tas", "vpd", "rsds"])
    with pytest.raises(RecipeError, match="no process model for nee"):
        build({"type": "hybrid", "hidden": [8]}, FD, FS, ["nee"], dynamic_names=NAMES)


def test_process_formulas_against_hand_values():
    t = torch.tensor
    # Magnus (Alduchov & Eskridge): 0.61094 exp(17.625 x 20 / 263.04) = 0.61094 x 3.8194 = 2.3334 kPa
    es = 2.3334
    assert float(physics.saturation_vapour_pressure_kpa(t(20.0))) == pytest.approx(es, rel=1e-4)
    rn = physics.net_radiation(t(250.0), t(20.0), t(10.0), t(400.0))
    ea = es - 1.0
    ratio = 250.0 / (0.75 * 400.0)
    expected_rn = 0.77 * 250.0 - 5.670374e-8 * 293.16 ** 4 * (0.34 - 0.14 * np.sqrt(ea)) * (1.35 * ratio - 0.35)
    assert float(rn) == pytest.approx(expected_rn, rel=1e-3)
    delta = 4098 * es / (20 + 237.3) ** 2
    lam = (2.501 - 0.002361 * 20) * 1e6
    expected_et = 1.26 * delta / (delta + 0.066) * expected_rn * 86400 / lam
    assert float(physics.priestley_taylor_et(1.26, rn, t(20.0))) == pytest.approx(expected_et, rel=1e-3)
    assert float(physics.equilibrium_et(t(-50.0), t(20.0))) == 0.0  # no negative evaporation
