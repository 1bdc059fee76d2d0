"""Process-model baselines: the P-model and Priestley-Taylor by hand, which baselines run, and their per-site skill."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from upscale.baselines import baseline_metrics, baseline_predictions, pmodel_gpp, priestley_taylor_et
from upscale.metrics import METRIC_COLUMNS


def test_pmodel_baseline_units_and_gaps():
    from pyrealm.pmodel import PModel, PModelEnvironment

    tas, vpd, rsds, fapar = (
        np.array([20.0, 5.0, np.nan]),
        np.array([10.0, 3.0, 5.0]),
        np.array([250.0, 80.0, 200.0]),
        np.array([0.8, 0.3, 0.5]),
    )
    gpp = pmodel_gpp(tas, vpd, rsds, fapar)
    env = PModelEnvironment(
        tc=tas[:2],
        vpd=vpd[:2] * 100,
        co2=np.full(2, 410.0),
        patm=np.full(2, 101325.0),
        fapar=fapar[:2],
        ppfd=rsds[:2] * 2.04,
    )
    raw = PModel(env).gpp  # micrograms C m-2 s-1
    np.testing.assert_allclose(gpp[:2], raw * 86400 / 1e6, rtol=1e-9)
    assert 5 < gpp[0] < 25 and math.isnan(gpp[2])  # a bright summer day: g C m-2 d-1


def test_priestley_taylor_baseline_by_hand():
    et = priestley_taylor_et(np.array([20.0]), np.array([10.0]), np.array([250.0]), np.array([400.0]))
    es = 0.61094 * np.exp(17.625 * 20 / 263.04)
    rn = 0.77 * 250 - 5.670374e-8 * 293.16**4 * (0.34 - 0.14 * np.sqrt(es - 1.0)) * (1.35 * 250 / 300 - 0.35)
    delta = 4098 * es / 257.3**2
    expected = 1.26 * delta / (delta + 0.066) * rn * 86400 / ((2.501 - 0.002361 * 20) * 1e6)
    assert et[0] == pytest.approx(expected, rel=1e-9)


def test_pmodel_elevation_lowers_the_air_pressure_and_sea_level_is_the_default():
    args = (np.array([20.0]), np.array([10.0]), np.array([250.0]), np.array([0.8]))
    assert pmodel_gpp(*args, elevation=np.array([0.0])) == pytest.approx(pmodel_gpp(*args), rel=1e-12)
    assert pmodel_gpp(*args, elevation=np.array([np.nan])) == pytest.approx(pmodel_gpp(*args), rel=1e-12)
    assert pmodel_gpp(*args, elevation=np.array([3000.0]))[0] != pytest.approx(pmodel_gpp(*args)[0], rel=1e-6)


def sites(variables=("tas", "vpd", "rsds", "fapar"), n_sites=2, n_days=5) -> xr.Dataset:
    rng = np.random.default_rng(0)
    ranges = {"tas": (5, 25), "vpd": (2, 15), "rsds": (80, 300), "fapar": (0.2, 0.9), "rsds_pot": (300, 400)}
    ds = xr.Dataset(
        coords={
            "site": [f"S{i}" for i in range(n_sites)],
            "time": pd.date_range("2018-06-01", periods=n_days).values,
            "elevation": ("site", np.array([100.0, 1500.0][:n_sites])),
        }
    )
    for name in variables:
        low, high = ranges[name]
        ds[name] = (("site", "time"), rng.uniform(low, high, (n_sites, n_days)))
    return ds


def test_baselines_run_for_wanted_targets_with_their_predictors():
    ds = sites(("tas", "vpd", "rsds", "fapar", "rsds_pot"))
    out = baseline_predictions(ds, ["gpp", "et"])
    assert {name: list(p) for name, p in out.items()} == {"pmodel": ["gpp"], "priestley_taylor": ["et"]}
    x = {v: ds[v].values for v in ("tas", "vpd", "rsds")}
    np.testing.assert_array_equal(out["priestley_taylor"]["et"], priestley_taylor_et(**x, rsds_pot=ds.rsds_pot.values))
    np.testing.assert_array_equal(
        out["pmodel"]["gpp"], pmodel_gpp(**x, fapar=ds.fapar.values, elevation=ds.elevation.values[:, None])
    )
    assert list(baseline_predictions(ds, ["et"])) == ["priestley_taylor"]


def test_a_baseline_without_its_predictors_is_skipped_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="upscale"):
        out = baseline_predictions(sites(("tas", "vpd", "rsds")), ["gpp", "et"])
    assert list(out) == ["priestley_taylor"]
    assert "baseline pmodel skipped: the recipe has no fapar" in caplog.text


def test_baseline_metrics_score_each_site_against_its_observations():
    ds = sites(("tas", "vpd", "rsds", "fapar"), n_days=12)
    gpp = baseline_predictions(ds, ["gpp"])["pmodel"]["gpp"]
    ds["gpp"] = (("site", "time"), gpp.copy())
    ds["gpp"][1] = gpp[1] + 1.0  # the second site's observations lie 1 above the P-model
    table = baseline_metrics(ds, ["gpp"])
    assert list(table.columns) == ["model", "site", "target", *METRIC_COLUMNS]
    assert table[["model", "site", "target"]].values.tolist() == [["pmodel", "S0", "gpp"], ["pmodel", "S1", "gpp"]]
    assert table["nse"][0] == pytest.approx(1.0) and table["rmse"][0] == pytest.approx(0.0, abs=1e-12)
    assert table["bias"][1] == pytest.approx(-1.0) and table["rmse"][1] == pytest.approx(1.0)
    assert table["n"].tolist() == [12, 12] and table["crps"].isna().all()  # a baseline has no spread


def test_no_baseline_gives_an_empty_table_with_the_columns():
    table = baseline_metrics(sites(("tas",)), ["gpp", "et"])
    assert table.empty and list(table.columns) == ["model", "site", "target", *METRIC_COLUMNS]
