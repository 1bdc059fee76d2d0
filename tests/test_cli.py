"""The command line end to end on a tiny world, and the errors a person meets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from upscale.cli import app
from tests.conftest import tiny_recipe_dict

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def finished_run(tiny_world, tmp_path_factory):
    """One complete `upscale run` on the tiny world (on a local Dask cluster of one worker)."""
    tmp = tmp_path_factory.mktemp("e2e")
    data = tiny_recipe_dict(tiny_world, tmp / "run")
    data["cluster"] = {"type": "local", "n_workers": 1, "threads_per_worker": 1}
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    result = invoke("run", recipe)
    assert result.exit_code == 0, result.output
    return recipe, tmp / "run", result.output


def test_run_writes_the_run_directory(finished_run):
    _, run_dir, output = finished_run
    for name in ("recipe.yaml", "manifest.json", "log.txt", "bundle/bundle.json", "bundle/member-0.safetensors",
                 "cv/metrics.csv", "cv/oof.zarr", "cv/folds/fold-0/bundle.json", "cv/folds/fold-2/member-1.safetensors",
                 "product.zarr", "report/report.md", "sites.zarr"):
        assert (run_dir / name).exists(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] and set(manifest["stages"]) == {"extract", "evaluate", "train", "apply", "explain", "report"}
    assert "cross-validated skill" in output and "product.zarr" in output


def test_product_is_finite_over_land_and_nan_over_ocean(finished_run, tiny_world):
    _, run_dir, _ = finished_run
    product = xr.open_zarr(run_dir / "product.zarr")
    truth = xr.open_zarr(tiny_world.parent / "truth.zarr")
    assert set(product.data_vars) >= {"gpp", "gpp_sd", "et", "et_sd"}
    assert product["gpp"].dims == ("time", "lat", "lon")
    assert product.sizes["time"] == truth.sizes["time"]
    land = truth["land_mask"].values.astype(bool)
    for name in ("gpp", "gpp_sd", "et", "et_sd"):
        values = product[name].values
        assert np.isfinite(values[:, land]).all(), name
        assert np.isnan(values[:, ~land]).all(), name
    assert (product["gpp_sd"].values[:, land] > 0).all()
    assert product["gpp"].attrs["standard_name"] == "gross_primary_productivity_of_biomass_expressed_as_carbon"
    assert product["gpp"].attrs["units"] == "g m-2 d-1"
    assert product["et"].attrs["standard_name"] == "water_evapotranspiration_flux"
    assert product["gpp"].attrs["ancillary_variables"] == "gpp_sd gpp_sd_epistemic gpp_sd_aleatoric extrapolation"
    assert product.attrs["Conventions"].startswith("CF-")


def test_product_tracks_the_truth(finished_run, tiny_world):
    _, run_dir, _ = finished_run
    product = xr.open_zarr(run_dir / "product.zarr")
    truth = xr.open_zarr(tiny_world.parent / "truth.zarr")
    land = truth["land_mask"].values.astype(bool)
    pred = product["gpp"].values[:, land].ravel()
    true = truth["gpp"].values[:, land].ravel()
    assert np.corrcoef(pred, true)[0, 1] > 0.7


def test_cv_outputs_follow_the_contract(finished_run):
    _, run_dir, _ = finished_run
    table = pd.read_csv(run_dir / "cv" / "metrics.csv")
    assert list(table.columns[:10]) == ["site", "target", "n", "r2", "nse", "kge", "rmse", "bias",
                                        "coverage_50", "coverage_90"]
    assert set(table.target) == {"gpp", "et"}
    oof = xr.open_zarr(run_dir / "cv" / "oof.zarr")
    assert oof["gpp_pred"].dims == ("site", "time")
    assert {"lat", "lon"} <= set(oof.coords)
    assert table.groupby("target").r2.median()["gpp"] > 0.3


def test_finished_run_directory_is_not_overwritten(finished_run):
    recipe, run_dir, _ = finished_run
    before = (run_dir / "manifest.json").read_text()
    result = invoke("run", recipe)
    assert result.exit_code == 2
    assert "already holds a finished run" in result.output and "--overwrite" in result.output
    assert (run_dir / "manifest.json").read_text() == before


def test_export_netcdf(finished_run, tmp_path):
    _, run_dir, _ = finished_run
    result = invoke("export", run_dir, "--format", "netcdf", "--output", tmp_path / "p.nc")
    assert result.exit_code == 0, result.output
    nc = xr.open_dataset(tmp_path / "p.nc")
    zr = xr.open_zarr(run_dir / "product.zarr")
    np.testing.assert_array_equal(nc["gpp"].values, zr["gpp"].values)


@pytest.mark.parametrize("change, expected", [
    ({"modle": {"type": "mlp"}}, "did you mean 'model'"),
    ({"predictors": {"era6": ["tas"]}}, "no entry 'era6'"),
    ({"predictors": {"era5": ["tas"], "eo": ["lai"]}}, "variable 'lai' is not in the cube"),
    ({"catalog": "/nonexistent/catalog.yaml"}, "catalog file not found"),
])
def test_bad_input_gives_exit_code_2_and_writes_nothing(tiny_world, tmp_path, change, expected):
    data = {**tiny_recipe_dict(tiny_world, tmp_path / "run"), **change}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data))
    result = invoke("run", recipe)
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "product.zarr").exists()


def test_validate_reports_the_domain(tiny_recipe):
    result = invoke("validate", tiny_recipe)
    assert result.exit_code == 0, result.output
    assert "12 sites" in result.output and "18 x 36 cells" in result.output


def test_validate_with_set_override_error(tiny_recipe):
    result = invoke("validate", tiny_recipe, "--set", "apply.bbox=[100, 86, 110, 89]")
    assert result.exit_code == 2
    assert "apply domain is empty" in " ".join(result.output.split())


def test_refuses_foreign_directory(tiny_recipe, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    result = invoke("run", tiny_recipe, "--run-dir", foreign, "--overwrite")
    assert result.exit_code == 2
    assert "not an upscale run directory" in " ".join(result.output.split())
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_schema_command():
    result = invoke("schema")
    assert result.exit_code == 0
    assert "predictors" in json.loads(result.output)["properties"]


def test_stage_command_refuses_a_changed_recipe(finished_run):
    recipe, run_dir, _ = finished_run
    result = invoke("apply", recipe, "--set", "apply.tile_lat=4")
    assert result.exit_code == 2
    assert "different recipe" in " ".join(result.output.split())
    # where a run computes is not part of its results: another cluster may go on with it
    result = invoke("report", recipe, "--set", "cluster={type: local, n_workers: 1}")
    assert result.exit_code == 0, result.output


def test_report_stage_reruns_on_a_finished_run(finished_run):
    recipe, run_dir, _ = finished_run
    (run_dir / "report" / "report.md").unlink()
    result = invoke("report", recipe)
    assert result.exit_code == 0, result.output
    assert "Cross-validated skill" in (run_dir / "report" / "report.md").read_text()


def test_overwrite_never_deletes_a_foreign_manifest_folder(tiny_recipe, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "manifest.json").write_text('{"app": "other"}')
    (precious / "thesis.tex").write_text("precious")
    result = invoke("run", tiny_recipe, "--run-dir", precious, "--overwrite")
    assert result.exit_code == 2
    assert (precious / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("override, expected", [
    ("training.epochs=[1", "not valid YAML"),
    ("=3", "empty key"),
    ("apply.period={start: 2018-03-01, end: 2018-02-01}", "is after end"),
    ("apply.period={start: 2018-13-45, end: 2018-02-01}", "not valid YAML"),
    ("sites.exclude=[XX-Nope]", "unknown sites: XX-Nope"),
    ("validation.folds=20", "needs at least 20 sites"),
    ("model.type=transformer", "unknown model type"),
])
def test_more_bad_input_is_exit_code_2(tiny_recipe, tmp_path, override, expected):
    result = invoke("run", tiny_recipe, "--set", override)
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()
