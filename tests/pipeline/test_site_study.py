"""A site-only study on the user's own site table: leave-site-out CV and a report, no product; bad tables exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from tests.conftest import table_recipe_dict, tiny_recipe_dict
from tests.test_hostile_inputs import assert_refused, invoke
from upscale.evaluation import prediction_name
from upscale.pipeline import execute
from upscale.recipe import load_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def recipe_file(tmp_path, data: dict):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("sampling, days", [("daily", 181), ("irregular", 60)])
def test_a_site_only_study_runs_leave_site_out_cv_and_reports(site_table, tmp_path, sampling, days):
    recipe = load_recipe(recipe_file(tmp_path, table_recipe_dict(site_table, tmp_path / "run", sampling)))
    assert recipe.apply is None and recipe.catalog is None
    info = execute(recipe)
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["stages"]["apply"]["skipped"] is True
    assert manifest["stages"]["extract"]["time_sampling"] == sampling
    assert info["product_bytes"] == 0 and not (run / "product.zarr").exists()
    assert info["sites"] == 12 and info["days"] == days
    oof = xr.open_zarr(run / "cv" / "oof.zarr")
    assert sorted(np.unique(oof.fold.values)) == list(range(12))  # leave-one-site-out: a fold per site
    observed = np.isfinite(oof["gpp"].values)
    assert observed.sum() > 12 * days // 2 and np.isfinite(oof[prediction_name("gpp")].values[observed]).all()
    metrics = pd.read_csv(run / "cv" / "metrics.csv")
    assert len(metrics) == 24 and set(metrics["target"]) == {"gpp", "et"}
    assert metrics.groupby("target")["r2"].median().gt(-1).all()  # finite, and not absurd after 4 epochs
    report = (run / "report" / "report.md").read_text()
    assert "No product: a site-only study" in report and "Cross-validated skill" in report


def test_targets_from_a_table_and_predictors_from_cubes(site_table, tiny_world, tmp_path):
    data = tiny_recipe_dict(tiny_world, tmp_path / "run")
    data["sites"] = {"source": "table", "table": str(site_table["daily"]), "site_list": str(site_table["site_list"])}
    recipe = load_recipe(recipe_file(tmp_path, data))
    assert recipe.apply is not None
    execute(recipe, stages=("extract",))
    sites = xr.open_zarr(tmp_path / "run" / "sites.zarr")
    rows = pd.read_csv(site_table["daily"], parse_dates=["time"]).set_index(["site", "time"])
    site = str(sites.site.values[0])
    np.testing.assert_allclose(
        sites["gpp"].sel(site=site).to_series().dropna().to_numpy(), rows.loc[site, "gpp"].dropna().to_numpy(), 1e-6
    )
    assert ("fapar" in sites and "time_sampling" not in sites.attrs) or sites.attrs["time_sampling"] == "daily"


def _bad_table(site_table, tmp_path, change):
    rows = pd.read_csv(site_table["daily"])
    path = tmp_path / "bad.csv"
    change(rows).to_csv(path, index=False)
    return str(path)


TABLE_CASES = {
    "unknown column": (
        lambda t, p, d: d["sites"].update(columns={"gpp": "GPP_NT"}),
        "maps 'gpp' to the column 'GPP_NT', which the table does not have",
    ),
    "bad units": (
        lambda t, p, d: d["sites"].update(table=_bad_table(t, p, lambda f: f.rename(columns={"vpd": "vpd [kPa]"}))),
        "column 'vpd' (vpd) is in 'kPa', upscale expects 'hPa'",
    ),
    "duplicate rows": (
        lambda t, p, d: d["sites"].update(table=_bad_table(t, p, lambda f: pd.concat([f, f.iloc[[9]]]))),
        "duplicate rows: site AU-Jh2 at 2018-01-11 appears on data rows 10, 1960",
    ),
    "sequence model on irregular times": (
        lambda t, p, d: d.update(
            model={"type": "lstm", "hidden": [8]}, sites={**d["sites"], "table": str(t["irregular"])}
        ),
        "the lstm model has memory",
    ),
    "apply without cubes": (
        lambda t, p, d: d.update(apply={}, catalog="nowhere.yaml"),
        "apply needs gridded predictors",
    ),
    "table and cube predictors": (
        lambda t, p, d: d.update(predictors={"table": ["tas"], "era5": ["pr"]}, catalog="c.yaml"),
        "predictors come from the site table and from catalog entries (era5)",
    ),
    "sensitivity without apply": (
        lambda t, p, d: d.update(explain={"methods": ["sensitivity"]}),
        "the recipe has no apply section",
    ),
    "table keys without a table": (
        lambda t, p, d: d["sites"].update(source="fluxnet"),
        "'table' applies to source: table only",
    ),
}


@pytest.mark.parametrize("case", list(TABLE_CASES))
def test_bad_site_tables_and_studies_exit_2(site_table, tmp_path, case):
    change, expected = TABLE_CASES[case]
    data = table_recipe_dict(site_table, tmp_path / "run")
    change(site_table, tmp_path, data)
    assert_refused(invoke("validate", recipe_file(tmp_path, data)), expected)


def test_apply_on_a_site_only_recipe_is_refused_before_anything_is_written(site_table, tmp_path):
    data = table_recipe_dict(site_table, tmp_path / "run")
    result = invoke("apply", recipe_file(tmp_path, data))
    assert_refused(result, "the recipe has no apply section, so there is nothing to apply")
    assert not (tmp_path / "run").exists()
