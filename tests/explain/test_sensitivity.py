"""Gridded sensitivity maps: the kernel against hand-computed derivatives, the tiled store, resume, CF."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_recipe_dict
from upscale.encoding import Normaliser
from upscale.ensemble import Ensemble
from upscale.explain.sensitivity import inverse_units, month_index, sensitivity_attrs, sensitivity_block
from upscale.models.base import FluxModel
from upscale.models.heads import with_static
from upscale.models.lstm import LSTM

NORM = Normaliser(
    dynamic_mean=[1.0, 2.0, 3.0],
    dynamic_std=[2.0, 0.5, 1.5],
    static_mean=[0.0, 0.0],
    static_std=[1.0, 1.0],
    target_mean=[5.0, 1.0],
    target_std=[3.0, 0.7],
)


class Linear(FluxModel):
    """Per-day linear model: mean_j = x @ w_j in normalised units."""

    def __init__(self, weights):
        super().__init__(weights.shape[1], 2, ["gpp", "et"])
        self.w = torch.nn.Parameter(torch.as_tensor(weights, dtype=torch.float32))

    def forward(self, dynamic, static, state=None):
        mean = dynamic @ self.w.T  # [B, T, K]
        return {t: (mean[..., j], torch.zeros_like(mean[..., j])) for j, t in enumerate(self.targets)}, None


def _inputs(p=4, t=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(p, t, 3)).astype("float32"), rng.normal(size=(p, 2)).astype("float32")


@pytest.mark.parametrize(
    "units, inverse",
    [
        ("W m-2", "W-1 m2"),
        ("degC", "K-1"),
        ("hPa", "hPa-1"),
        ("mm d-1", "mm-1 d"),
        ("m s-1", "m-1 s"),
        ("1", ""),
        ("K", "K-1"),
    ],
)
def test_inverse_units(units, inverse):
    assert inverse_units(units) == inverse


def test_attrs_carry_physical_units():
    assert sensitivity_attrs("gpp", "tas")["units"] == "g m-2 d-1 K-1"
    assert sensitivity_attrs("et", "rsds")["units"] == "kg m-2 d-1 W-1 m2"
    assert sensitivity_attrs("gpp", "fapar")["units"] == "g m-2 d-1"
    assert "period" in sensitivity_attrs("gpp", "vpd", period_mean=True)["long_name"]


def test_linear_model_derivative_is_weight_in_physical_units():
    w = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    members = [Linear(w), Linear(2 * w)]  # the ensemble mean derivative is 1.5 w
    dyn, stat = _inputs()
    dyn[0, 3, 1] = np.nan
    out, state = sensitivity_block(Ensemble(members, NORM, ["gpp", "et"]), dyn, stat, [0, 1, 2])
    assert state == [None, None]
    for j, target in enumerate(["gpp", "et"]):
        expected = 1.5 * w[j] * NORM.target_std[j] / np.array(NORM.dynamic_std)
        got = out[target]
        assert np.isnan(got[0, 3]).all()
        np.testing.assert_allclose(
            np.delete(got.reshape(-1, 3), 3, axis=0), np.broadcast_to(expected, (79, 3)), rtol=1e-6
        )


def _lstm_ensemble(seed=0):
    torch.manual_seed(seed)
    return Ensemble([LSTM(3, 2, ["gpp", "et"], hidden=[8]) for _ in range(2)], NORM, ["gpp", "et"])


@settings(max_examples=10, deadline=None)
@given(cuts=st.lists(st.integers(1, 19), min_size=1, max_size=3, unique=True))
def test_chunked_days_equal_one_pass(cuts):
    ensemble = _lstm_ensemble()
    dyn, stat = _inputs()
    whole, _ = sensitivity_block(ensemble, dyn, stat, [0, 2])
    parts, state = [], None
    bounds = [0, *sorted(cuts), 20]
    for a, b in itertools.pairwise(bounds):
        part, state = sensitivity_block(ensemble, dyn[:, a:b], stat, [0, 2], state, batch_pixels=3)
        parts.append(part["et"])
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole["et"], rtol=1e-5, atol=1e-7)


def test_lstm_derivative_is_the_same_day_partial_derivative():
    """Perturbing day t's input alone moves day t's prediction by the derivative (state at t fixed)."""
    ensemble = _lstm_ensemble(1)
    dyn, stat = _inputs(seed=1)
    out, _ = sensitivity_block(ensemble, dyn, stat, [0, 1, 2])
    t, h = 11, 1e-2
    for c in range(3):
        up, down = dyn.copy(), dyn.copy()
        up[:, t, c] += h
        down[:, t, c] -= h
        fd = (ensemble.predict(up, stat)["gpp"].mean[:, t] - ensemble.predict(down, stat)["gpp"].mean[:, t]) / (2 * h)
        np.testing.assert_allclose(out["gpp"][:, t, c], fd, rtol=2e-2, atol=1e-4)


def test_every_nth_day_equals_the_full_derivative_on_those_days():
    ensemble = _lstm_ensemble(2)
    dyn, stat = _inputs(seed=2)
    full, _ = sensitivity_block(ensemble, dyn, stat, [1])
    some, state = sensitivity_block(ensemble, dyn, stat, [1], days=np.array([0, 7, 14]))
    np.testing.assert_allclose(some["gpp"][:, [0, 7, 14]], full["gpp"][:, [0, 7, 14]], rtol=1e-5, atol=1e-7)
    assert np.isnan(np.delete(some["gpp"], [0, 7, 14], axis=1)).all()
    _, whole_state = sensitivity_block(ensemble, dyn, stat, [1], days=np.array([], dtype=int))
    np.testing.assert_allclose(whole_state[0][1], state[0][1], rtol=1e-5, atol=1e-7)


def test_month_index():
    months = np.array(["2018-01-01", "2018-02-01", "2018-03-01"], dtype="datetime64[ns]")
    days = np.array(["2018-01-01", "2018-01-31", "2018-02-01", "2018-03-31"], dtype="datetime64[ns]")
    assert month_index(days, months).tolist() == [0, 0, 1, 2]


# ---- the tiled store ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sens_run(tiny_world, tmp_path_factory):
    """A tiny MLP run (no cross-validation) whose explain stage wrote sensitivity maps."""
    from upscale import pipeline
    from upscale.recipe import load_recipe

    root = tmp_path_factory.mktemp("sens")
    data = tiny_recipe_dict(tiny_world, root / "run")
    data["validation"] = {"scheme": "none"}
    data["explain"] = {"methods": ["sensitivity"], "predictors": ["tas", "rsds"]}
    (root / "recipe.yaml").write_text(yaml.safe_dump(data))
    run = pipeline.open_run(load_recipe(root / "recipe.yaml"))
    pipeline.run_stages(run, ("extract", "train", "apply", "explain"))
    return run


def _store(run):
    return xr.open_zarr(run.path("explain", "sensitivity.zarr")).load()


def test_store_layout_units_and_water(sens_run):
    ds = _store(sens_run)
    product = xr.open_zarr(sens_run.path("product.zarr"))
    land = np.isfinite(product["gpp"].isel(time=0).values)
    assert ds["gpp_sens_tas"].dims == ("time", "lat", "lon") and ds.sizes["time"] == 6
    assert ds["gpp_sens_tas"].dtype == np.float32
    assert ds["gpp_sens_tas_mean"].dims == ("lat", "lon")
    assert ds["gpp_sens_tas"].attrs["units"] == "g m-2 d-1 K-1"
    assert ds["et_sens_rsds_mean"].attrs["units"] == "kg m-2 d-1 W-1 m2"
    assert ds["gpp_sens_tas"].attrs["cell_methods"] == "time: mean"
    assert ds.time.attrs["bounds"] == "time_bnds"
    assert str(ds.time_bnds.values[0, 1])[:10] == "2018-02-01"
    mean = ds["gpp_sens_rsds_mean"].values
    assert np.isfinite(mean[land]).all() and np.isnan(mean[~land]).all()
    days = ds.time_bnds.diff("bnds").squeeze().values / np.timedelta64(1, "D")
    weighted = (ds["gpp_sens_rsds"] * xr.DataArray(days, dims="time")).sum("time") / days.sum()
    np.testing.assert_allclose(weighted.values[land], mean[land], rtol=1e-4, atol=1e-6)


def test_store_equals_one_pass_over_each_pixel(sens_run):
    """The tiles x time chunks equal the kernel run once over the whole series of every land pixel."""
    from upscale.bundle import load_bundle
    from upscale.encoding import encode_static
    from upscale.features import land_mask, open_predictors
    from upscale.recipe import load_recipe

    ds = _store(sens_run)
    ensemble, spec, _ = load_bundle(sens_run.path("bundle"))
    recipe = load_recipe(sens_run.path("recipe.yaml"))
    dyn, stat = open_predictors(recipe.catalog, spec.dynamic, spec.static)
    mask = land_mask(dyn.isel(time=slice(0, 1)), stat).reshape(-1)
    values = np.stack([dyn[v].values for v in spec.dynamic_names], axis=-1)  # [T, lat, lon, F]
    pixels = values.reshape(values.shape[0], -1, values.shape[-1]).transpose(1, 0, 2)[mask]
    static = encode_static({v: stat[v].values.reshape(-1)[mask] for _, v in spec.static}, spec, int(mask.sum()))
    keep = np.isfinite(static).all(axis=-1)
    names = spec.dynamic_names
    out, _ = sensitivity_block(ensemble, pixels[keep], static[keep], [names.index("tas"), names.index("rsds")])
    expected = np.nanmean(out["et"][..., 1], axis=1)
    got = ds["et_sens_rsds_mean"].values.reshape(-1)[mask][keep]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_resume_after_a_kill_gives_the_same_maps(sens_run, monkeypatch):
    from upscale import pipeline
    from upscale.explain import sensitivity
    from upscale.rundir import Manifest

    reference = _store(sens_run)
    copy = sens_run.dir.parent / "run-resume"
    shutil.copytree(sens_run.dir, copy)
    manifest = Manifest(copy / "manifest.json")
    manifest.reset_stages("explain")
    shutil.rmtree(copy / "explain")
    real = sensitivity.run_sensitivity_tile
    calls = []

    def dies_on_third(job, tile):
        calls.append(tile.id)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(job, tile)

    monkeypatch.setattr(sensitivity, "run_sensitivity_tile", dies_on_third)
    recipe = sens_run.recipe.model_copy(deep=True)
    recipe.output.run_dir = str(copy)
    run = pipeline.open_run(recipe, new_run=False)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_stages(run, ("explain",))
    manifest = Manifest(copy / "manifest.json")
    assert len(manifest.sensitivity_log.ids) == 2 and manifest.get("explain")["tiles"] == []  # the log, not the JSON
    resumed = []
    monkeypatch.setattr(
        sensitivity, "run_sensitivity_tile", lambda job, tile: resumed.append(tile.id) or real(job, tile)
    )
    pipeline.run_stages(pipeline.open_run(recipe, new_run=False), ("explain",))
    assert len(resumed) == 7  # the 3 x 3 tiles but the two that had finished
    got = _store(run)
    assert "(upscale explain)" in got.attrs.pop("history") and reference.attrs.pop("history")  # when it was written
    xr.testing.assert_identical(got, reference)


@pytest.mark.parametrize("bounds", [(), (-0.4, 0.3)])
@pytest.mark.parametrize("kind, hidden", [("lstm", [8]), ("lstm", [8, 5]), ("ealstm", [6])])
def test_closed_form_lstm_gradients_equal_autograd(kind, hidden, bounds):
    """The LSTM family's closed-form same-day gradients equal autograd through single-day steps, for the
    mean and for the censored mean; in blocks of 5 days, one of which has no chosen day."""
    from upscale.explain.sensitivity import autograd_day_gradients
    from upscale.models.lstm import lstm_day_gradients
    from upscale.models.registry import build

    torch.manual_seed(3)
    member = build({"type": kind, "hidden": hidden}, 3, 2, ["gpp", "et"]).eval()
    dyn, stat = (torch.as_tensor(a) for a in _inputs(p=5, t=12, seed=3))
    state = (0.3 * torch.randn(5, 1, hidden[0]), 0.3 * torch.randn(5, 1, hidden[0]))
    days = torch.tensor([0, 4, 11])
    fast, fast_state = member.day_gradients(dyn, stat, state, days, bounds)
    blocks, _ = lstm_day_gradients(member, with_static(dyn, stat), state, days, bounds, block=5)
    slow, slow_state = autograd_day_gradients(member, ["gpp", "et"], dyn, stat, state, days, bounds)
    for a, b, c in zip(fast, slow, blocks):
        assert a.shape == (5, 3, 3)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(c.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    for a, b in zip(fast_state, slow_state):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_censored_sensitivity_vanishes_far_below_the_bound():
    """Where the latent mean lies far below the bound the product's mean does not move: d E / d x ~ 0,
    while the latent mean's own derivative is not."""
    from upscale.models.registry import build

    torch.manual_seed(4)
    member = build({"type": "lstm", "hidden": [6]}, 3, 2, ["gpp", "et"]).eval()
    dyn, stat = (torch.as_tensor(a) for a in _inputs(p=4, t=6, seed=4))
    days = torch.arange(6)
    latent, _ = member.day_gradients(dyn, stat, None, days)
    censored, _ = member.day_gradients(dyn, stat, None, days, (50.0, -50.0))  # gpp always below, et never
    assert np.abs(latent[0].numpy()).max() > 1e-3
    np.testing.assert_allclose(censored[0].numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(censored[1].numpy(), latent[1].numpy(), rtol=1e-5, atol=1e-7)


def test_store_passes_the_cf_checker(sens_run, tmp_path):
    """Whole-period means name the scalar ``period`` coordinate in cell_methods; the store has a history."""
    from tests.test_cf import cf_check
    from upscale.export import write_store

    ds = xr.open_zarr(sens_run.path("explain", "sensitivity.zarr"))
    assert "created by upscale" in ds.attrs["history"] and "(upscale explain)" in ds.attrs["history"]
    assert ds["gpp_sens_tas_mean"].attrs["cell_methods"] == "period: mean"
    assert ds["gpp_sens_tas_mean"].encoding["coordinates"] == "spatial_ref period"
    assert ds["gpp_sens_tas"].encoding["coordinates"] == "spatial_ref"
    assert ds["period"].attrs["standard_name"] == "time" and ds["period"].values == ds.time_bnds.values[0, 0]
    assert ds["period"].attrs["comment"] == "means over 2018-01-01 to 2018-07-01 (end exclusive)"
    write_store(ds, tmp_path / "sensitivity.nc", "netcdf")
    report = cf_check(tmp_path / "sensitivity.nc")
    failures = [(r["name"], r["msgs"]) for key in ("high_priorities", "medium_priorities") for r in report[key]]
    assert report["high_count"] == 0 and report["medium_count"] == 0, [f for f in failures if f[1]]
    written = xr.open_dataset(tmp_path / "sensitivity.nc")
    assert written["et_sens_rsds_mean"].encoding["coordinates"] == "spatial_ref period"
    assert (
        written["period"].encoding["dtype"] == np.float64
        and written["period"].encoding["units"] == "days since 1970-01-01"
    )
