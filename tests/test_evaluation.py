"""Held-out skill: site folds, the out-of-fold dataset, per-site metric tables, their medians and the comparison."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from upscale.errors import RecipeError
from upscale.evaluation import (
    comparison_table,
    fold_of,
    metrics_table,
    oof_dataset,
    prediction_name,
    site_folds,
    summarise_metrics,
)
from upscale.folds import kfold
from upscale.metrics import DECOMPOSED_COLUMNS, METRIC_COLUMNS

TIMES = pd.date_range("2018-01-01", "2019-12-31").values  # two years: the seasonal-cycle scores are defined
UNITS = {"gpp": "g m-2 d-1", "et": "kg m-2 d-1"}


def sites_ds(n_sites=3, targets=("gpp", "et"), seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    season = np.sin(2 * np.pi * np.arange(TIMES.size) / 365.25)
    ds = xr.Dataset(
        coords={
            "site": [f"S{i}" for i in range(n_sites)],
            "time": TIMES,
            "lat": ("site", np.linspace(-40, 40, n_sites)),
            "lon": ("site", np.zeros(n_sites)),
            "igbp": ("site", ["ENF", "GRA", "ENF", "CRO"][:n_sites]),
        }
    )
    for target in targets:
        values = 5 + 3 * season + rng.standard_normal((n_sites, TIMES.size))
        ds[target] = (("site", "time"), values, {"units": UNITS[target]})
    return ds


def recipe(scheme="kfold", group_by="igbp", folds=2, seed=0):
    return SimpleNamespace(
        validation=SimpleNamespace(scheme=scheme, group_by=group_by, folds=folds), training=SimpleNamespace(seed=seed)
    )


def perfect_oof(sites: xr.Dataset, targets: list[str], sd: float = 1.0) -> dict:
    """Out-of-fold parts predicting every observation exactly."""
    out = {}
    for target in targets:
        obs = sites[target].values
        var = np.full(obs.shape, sd**2 / 2)
        out[target] = {
            "mean": obs.copy(),
            "sd": np.sqrt(2 * var),
            "sd_epistemic": np.sqrt(var),
            "sd_aleatoric": np.sqrt(var),
        }
    return out


def oof_of(sites: xr.Dataset, targets: list[str], folds=None) -> xr.Dataset:
    observed = np.stack([sites[t].values for t in targets], axis=-1)
    folds = folds if folds is not None else [np.arange(sites.sizes["site"])]
    return oof_dataset(sites, observed, perfect_oof(sites, targets), targets, folds)


# --------------------------------------------------------------------------- folds


def test_fold_of_each_site_by_hand():
    fold = fold_of([np.array([2, 0]), np.array([3])], 5)
    assert fold.tolist() == [0, -1, 0, 1, -1] and fold.dtype == np.int16


def test_site_folds_follow_the_scheme():
    sites = sites_ds(n_sites=4)
    by_igbp = site_folds(recipe("group", "igbp"), sites)
    assert [f.tolist() for f in by_igbp] == [[3], [0, 2], [1]]  # CRO, ENF, GRA
    assert [f.tolist() for f in site_folds(recipe("kfold", folds=2, seed=5), sites)] == [
        f.tolist() for f in kfold(4, 2, 5)
    ]
    assert [f.tolist() for f in site_folds(recipe("loso"), sites)] == [[0], [1], [2], [3]]


def test_grouping_by_climate_needs_temperature_and_precipitation():
    with pytest.raises(RecipeError, match="grouping by climate needs the predictor 'tas'") as err:
        site_folds(recipe("group", "climate"), sites_ds())
    assert err.value.where == "validation.group_by" and "igbp" in err.value.fix


def test_grouping_by_climate_groups_by_koppen_class():
    sites = sites_ds(n_sites=4)
    season = -np.cos(2 * np.pi * (np.arange(TIMES.size) - 15) / 365.0)
    tas = np.stack([26 + 2 * season, 26 + 2 * season, -10 + 12 * season, 26 + 2 * season])  # A, A, E, A
    sites["tas"] = (("site", "time"), tas)
    sites["pr"] = (("site", "time"), np.full(tas.shape, 6.0))
    assert [f.tolist() for f in site_folds(recipe("group", "climate"), sites)] == [[0, 1, 3], [2]]


# --------------------------------------------------------------------------- out-of-fold dataset


def test_oof_dataset_names_and_units_follow_the_product():
    sites = sites_ds()
    oof = oof_of(sites, ["gpp", "et"], folds=[np.array([0, 2]), np.array([1])])
    assert list(oof.data_vars) == [
        "gpp",
        "gpp_pred",
        "gpp_sd",
        "gpp_sd_epistemic",
        "gpp_sd_aleatoric",
        "et",
        "et_pred",
        "et_sd",
        "et_sd_epistemic",
        "et_sd_aleatoric",
    ]
    for name, var in oof.data_vars.items():
        assert var.dims == ("site", "time") and var.attrs["units"] == UNITS[name.split("_")[0]], name
    assert oof.fold.values.tolist() == [0, 1, 0]
    assert oof.site.dtype == object and oof.igbp.values.tolist() == ["ENF", "GRA", "ENF"]
    np.testing.assert_array_equal(oof["et"].values, sites["et"].values)
    np.testing.assert_array_equal(oof[prediction_name("et")].values, sites["et"].values)
    np.testing.assert_allclose(
        oof["gpp_sd"].values ** 2, oof["gpp_sd_epistemic"].values ** 2 + oof["gpp_sd_aleatoric"].values ** 2
    )


def test_prediction_name_leaves_the_target_name_to_the_observations():
    assert prediction_name("gpp") == "gpp_pred"


# --------------------------------------------------------------------------- metrics


def test_a_perfect_prediction_scores_nse_1_and_rmse_0():
    oof = oof_of(sites_ds(), ["gpp", "et"])
    table = metrics_table(oof, ["gpp", "et"])
    assert list(table.columns) == ["site", "target", *METRIC_COLUMNS, *DECOMPOSED_COLUMNS]
    assert table[["site", "target"]].values.tolist() == [
        ["S0", "gpp"],
        ["S1", "gpp"],
        ["S2", "gpp"],
        ["S0", "et"],
        ["S1", "et"],
        ["S2", "et"],
    ]
    np.testing.assert_allclose(table[["nse", "r2", "kge", "msc_nse", "anomaly_nse"]], 1.0)
    np.testing.assert_allclose(table[["rmse", "bias"]], 0.0, atol=1e-12)
    assert (table["n"] == TIMES.size).all()
    assert table["coverage_90"].eq(1.0).all()  # every observation at the centre of its interval


def test_metrics_use_the_oof_prediction_not_the_observations():
    sites = sites_ds(n_sites=1, targets=("gpp",))
    oof = oof_of(sites, ["gpp"])
    oof["gpp_pred"] = oof["gpp_pred"] + 2.0  # a constant bias of 2
    row = metrics_table(oof, ["gpp"]).iloc[0]
    assert row["bias"] == pytest.approx(2.0) and row["rmse"] == pytest.approx(2.0) and row["r2"] == pytest.approx(1)


def test_summarise_metrics_takes_the_nan_skipping_median_per_target():
    table = pd.DataFrame(
        {
            "site": ["a", "b", "c", "a", "b"],
            "target": ["gpp"] * 3 + ["et"] * 2,
            "r2": [0.1, 0.5, 0.9, np.nan, 0.4],
            "rmse": [1.0, 2.0, 4.12345, 3.0, 5.0],
        }
    )
    summary = summarise_metrics(table)
    assert summary == {"et": {"r2": 0.4, "rmse": 4.0}, "gpp": {"r2": 0.5, "rmse": 2.0}}
    assert summarise_metrics(table.iloc[[2]])["gpp"]["rmse"] == 4.123  # rounded for display


def test_comparison_table_rows_medians_and_site_counts():
    def rows(model, target, nse):
        frame = pd.DataFrame({"site": [f"S{i}" for i in range(len(nse))], "target": target, "nse": nse})
        for column in METRIC_COLUMNS:
            frame[column] = frame.get(column, 0.0)
        return frame if model is None else frame.assign(model=model)

    learned = pd.concat([rows(None, "gpp", [0.2, 0.6, 0.7]), rows(None, "et", [0.1, 0.3])], ignore_index=True)
    learned["msc_nse"] = 1.0  # the learned table's decomposed scores are not part of the comparison
    baselines = pd.concat([rows("pmodel", "gpp", [0.0, 0.5, np.nan, 0.9])], ignore_index=True)
    summary = comparison_table("mlp", learned, baselines)
    assert list(summary.columns) == ["model", "target", "sites", *METRIC_COLUMNS]
    assert summary[["model", "target", "sites"]].values.tolist() == [
        ["mlp", "gpp", 3],
        ["mlp", "et", 2],
        ["pmodel", "gpp", 4],
    ]
    np.testing.assert_allclose(summary["nse"], [0.6, 0.2, 0.5])  # the pmodel median skips its NaN site
