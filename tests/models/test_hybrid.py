"""The hybrid model: bounded process parameters, fluxes from the process models, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from upscale import physics
from upscale.encoding import Normaliser
from upscale.errors import RecipeError
from upscale.models.hybrid import PARAMETERS, Hybrid
from upscale.models.registry import build


def hybrid_with_normaliser(make_model) -> tuple[Hybrid, Normaliser]:
    model = make_model("hybrid")
    norm = Normaliser(
        dynamic_mean=[10.0, 8.0, 200.0, 300.0, 2.0, 0.5],
        dynamic_std=[8.0, 5.0, 80.0, 90.0, 3.0, 0.2],
        static_mean=[0.0] * 4,
        static_std=[1.0] * 4,
        target_mean=[4.0, 1.5],
        target_std=[3.0, 1.0],
    )
    model.attach_normaliser(norm)
    return model, norm


def test_hybrid_parameters_stay_in_their_physical_bounds_for_any_input(make_model, make_inputs):
    model, _ = hybrid_with_normaliser(make_model)
    dyn, stat = make_inputs(b=8, t=15)
    with torch.no_grad():
        params, _, _ = model.process_parameters(dyn * 50, stat * 50)
    for name, (low, high, _, varying, _) in PARAMETERS.items():
        assert float(params[name].min()) >= low and float(params[name].max()) <= high, name
        spread = float((params[name] - params[name][:, :1]).abs().max())
        assert (spread > 0) == varying, name  # per-pixel constants do not move in time


def test_hybrid_fluxes_are_the_process_models_with_its_parameters(make_model):
    model, norm = hybrid_with_normaliser(make_model)
    x = np.array([[20.0, 10.0, 250.0, 400.0, 1.0, 0.6]], dtype="float32")[None]  # one pixel-day
    dyn = torch.from_numpy(norm.dynamic(x))
    stat = torch.zeros(1, 4)
    with torch.no_grad():
        outputs, _ = model(dyn, stat)
        params, _, _ = model.process_parameters(dyn, stat)
    p = {k: float(v) for k, v in params.items()}
    par = 250.0 * 0.45 * 86400 / 1e6
    gpp = (
        p["lue_max"]
        * 0.6
        * par
        * np.exp(-(((20 - p["t_opt"]) / 14.0) ** 2))
        * np.exp(-p["vpd_sensitivity"] * 10)
        * p["f_water"]
    )
    assert float(outputs["gpp"][0]) * 3.0 + 4.0 == pytest.approx(gpp, rel=1e-4)
    et = p["pt_alpha"] * float(
        physics.equilibrium_et(
            physics.net_radiation(torch.tensor(250.0), torch.tensor(20.0), torch.tensor(10.0), torch.tensor(400.0)),
            torch.tensor(20.0),
        )
    )
    assert float(outputs["et"][0]) + 1.5 == pytest.approx(et, rel=1e-4)


def test_forward_with_parameters_returns_the_process_parameters(make_model, make_inputs):
    model, _ = hybrid_with_normaliser(make_model)
    dyn, stat = make_inputs(b=2, t=5)
    with torch.no_grad():
        outputs, state, params = model.forward_with_parameters(dyn, stat)
        plain, plain_state = model(dyn, stat)
        expected, _, _ = model.process_parameters(dyn, stat)
    assert set(params) == set(PARAMETERS)
    assert all(torch.equal(params[n], expected[n]) and params[n].shape == (2, 5) for n in PARAMETERS)
    assert all(torch.equal(outputs[t][0], plain[t][0]) for t in model.targets)
    assert all(torch.equal(a, b) for a, b in zip(state, plain_state))


def test_parameter_info_describes_every_parameter():
    assert list(Hybrid.parameter_info) == list(PARAMETERS)
    for name, (low, high, units, _, long_name) in PARAMETERS.items():
        assert Hybrid.parameter_info[name] == {
            "units": units,
            "long_name": long_name,
            "valid_min": low,
            "valid_max": high,
        }
        assert low < high


def test_hybrid_refuses_missing_predictors_and_unknown_targets(dynamic_names):
    with pytest.raises(RecipeError, match="needs the predictors fapar"):
        build({"type": "hybrid", "hidden": [8]}, 3, 4, ["gpp"], dynamic_names=["tas", "vpd", "rsds"])
    with pytest.raises(RecipeError, match="no process model for nee"):
        build({"type": "hybrid", "hidden": [8]}, len(dynamic_names), 4, ["nee"], dynamic_names=dynamic_names)


def test_et_alone_needs_no_fapar():
    names = ["rsds", "vpd", "tas"]
    model = build({"type": "hybrid", "hidden": [4]}, 3, 0, ["et"], dynamic_names=names)
    assert model.columns == {"rsds": 0, "tas": 2, "vpd": 1}  # rsds_pot absent: the half-cloudy default
    outputs, _ = model(torch.zeros(2, 3, 3), torch.zeros(2, 0))
    assert list(outputs) == ["et"] and outputs["et"][0].shape == (2, 3)
