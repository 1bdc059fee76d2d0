"""The CF product: checker-clean NetCDF export, cf-xarray and rioxarray, uncertainty parts, extrapolation flag.

The export itself (values, compression, refusals) is tested in tests/test_export.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cf_xarray  # noqa: F401  (registers the .cf accessor)
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
import yaml
from typer.testing import CliRunner

from tests.conftest import apply_job
from upscale import cf
from upscale.apply import plan_tiles, predict_block, run_tile
from upscale.bundle import load_bundle, read_meta
from upscale.cli import app
from upscale.outputs import FLAG_FILL, uncertainty_names
from upscale.store import create_template

GPP = "gross_primary_productivity_of_biomass_expressed_as_carbon"
ET = "water_evapotranspiration_flux"


@pytest.fixture(scope="module")
def exported(product_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "product.nc"
    result = CliRunner().invoke(app, ["export", str(product_run.dir), "--format", "netcdf", "--output", str(path)])
    assert result.exit_code == 0, result.output
    return path


def cf_check(path: Path) -> dict:
    """The IOOS compliance-checker's CF-1.8 result (its JSON report) for a NetCDF file."""
    checker = Path(sys.executable).with_name("compliance-checker")
    proc = subprocess.run(
        [str(checker), "--test=cf:1.8", "--format=json", "-o", "-", str(path)], capture_output=True, text=True
    )
    return json.loads(proc.stdout)["cf:1.8"]


def test_export_passes_the_cf_checker(exported):
    report = cf_check(exported)
    failures = [
        (r["name"], r["msgs"]) for key in ("high_priorities", "medium_priorities") for r in report[key] if r["msgs"]
    ]
    assert report["high_count"] == 0 and report["medium_count"] == 0, failures
    assert report["scored_points"] == report["possible_points"] > 100


def test_the_grid_mapping_is_what_rioxarray_writes_for_epsg_4326():
    ds = xr.Dataset(coords={"lat": [-1.0, 0.0, 1.0], "lon": [0.0, 2.0]})
    written = ds.rio.write_crs("EPSG:4326", grid_mapping_name=cf.GRID_MAPPING)[cf.GRID_MAPPING]
    ours = cf.grid_mapping(ds)[cf.GRID_MAPPING]
    assert {**written.attrs, "long_name": ours.attrs["long_name"]} == ours.attrs
    assert ours.dtype == written.dtype and ours.values == written.values
    assert xr.Dataset(coords={cf.GRID_MAPPING: ours}).rio.crs.to_epsg() == 4326


@pytest.mark.parametrize("opener", ["zarr", "netcdf"])
def test_cf_xarray_and_rioxarray_understand_the_product(product_run, exported, opener):
    ds = xr.open_zarr(product_run.path("product.zarr")) if opener == "zarr" else xr.open_dataset(exported)
    assert ds.cf[GPP].name == "gpp" and ds.cf[ET].name == "et"
    assert ds.cf.bounds["latitude"] == ["lat_bnds"] and ds.cf.bounds["longitude"] == ["lon_bnds"]
    assert ds.cf.bounds["time"] == ["time_bnds"]
    for target in ("gpp", "et"):
        linked = ds.cf.get_associated_variable_names(target)
        assert linked["ancillary_variables"] == [
            f"{target}_sd",
            f"{target}_sd_epistemic",
            f"{target}_sd_aleatoric",
            f"{target}_q05",
            f"{target}_q50",
            f"{target}_q95",
            "extrapolation",
        ]
        assert linked["grid_mapping"] == ["spatial_ref"]
        for name in linked["ancillary_variables"][:3]:
            assert ds[name].attrs["standard_name"] == f"{ds[target].attrs['standard_name']} standard_error"
    for level, name in ((0.05, "gpp_q05"), (0.5, "gpp_q50"), (0.95, "gpp_q95")):
        assert ds[name].attrs["quantile"] == np.float32(level) and "standard_name" not in ds[name].attrs
        assert f"{level:g} quantile" in ds[name].attrs["long_name"] and ds[name].attrs["valid_min"] == 0
    assert ds.rio.crs.to_epsg() == 4326
    assert all(ds[name].rio.crs.to_epsg() == 4326 for name in ds.data_vars if not name.endswith("_bnds"))
    assert ds["gpp"].attrs["units"] == "g m-2 d-1" and ds["et"].attrs["units"] == "kg m-2 d-1"
    np.testing.assert_allclose(ds["lat_bnds"].values[0], [-90, -80])
    np.testing.assert_allclose(ds["lon_bnds"].values[-1], [170, 180])
    assert (ds["time_bnds"].values[:, 1] - ds["time_bnds"].values[:, 0] == np.timedelta64(1, "D")).all()
    flag = ds["extrapolation"]
    assert flag.dtype == np.int8 and set(np.unique(flag.values)) == {FLAG_FILL, 0, 1}  # an integer flag
    assert dict(zip(flag.attrs["flag_values"], flag.attrs["flag_meanings"].split()))[FLAG_FILL] == "no_prediction"
    assert ds.attrs["upscale_complete"] == "true"


def test_uncertainty_parts_add_up(product_run):
    ds = xr.open_zarr(product_run.path("product.zarr")).load()
    for target in ("gpp", "et"):
        total, epistemic, aleatoric = (ds[n].values for n in uncertainty_names(target))
        land = np.isfinite(total)
        np.testing.assert_allclose(total[land] ** 2, epistemic[land] ** 2 + aleatoric[land] ** 2, rtol=1e-4)
        # members agree exactly only where the process model pins the flux to zero (hybrid: no light, Rn < 0)
        flux = ds[target].values[land]
        assert (epistemic[land] >= 0).all() and (epistemic[land][flux > 1e-3] > 0).mean() > 0.99
        assert (aleatoric[land] > 0).all()
        assert np.array_equal(np.isnan(ds[target].values), ds["extrapolation"].values == FLAG_FILL)


def test_bundle_records_the_training_ranges(product_run):
    ranges = read_meta(product_run.path("bundle"))["predictor_ranges"]
    sites = xr.open_zarr(product_run.path("sites.zarr")).load()
    seen = np.isfinite(sites["gpp"].values) | np.isfinite(sites["et"].values)
    assert ranges["dynamic"]["tas"] == [float(sites["tas"].values[seen].min()), float(sites["tas"].values[seen].max())]
    assert list(ranges["static"]) == list(map(str, sites.static_feature.values))


def test_training_site_pixels_are_not_extrapolation(product_run):
    """On the days the model saw, the training sites' own pixels lie inside the range by construction."""
    sites = xr.open_zarr(product_run.path("sites.zarr")).load()
    flag = xr.open_zarr(product_run.path("product.zarr"))["extrapolation"]
    seen = np.isfinite(sites["gpp"].values) | np.isfinite(sites["et"].values)
    at = {axis: xr.DataArray(sites[f"pixel_{axis}"].values, dims="site") for axis in ("lat", "lon")}
    at_sites = flag.sel(**at, time=sites.time.values).transpose("site", "time").values
    assert (at_sites[seen] == 0).all()
    assert float(cf.flag_share(flag).mean()) > 0.01  # 12 sites do not span the world: some pixels extrapolate


def test_extrapolation_flag_marks_values_outside_the_range():
    ranges = {"dynamic": {"tas": [0.0, 10.0], "pr": [0.0, 5.0]}, "static": {"pft_ENF": [0.0, 1.0], "pft_X": [0, 0]}}
    dynamic = np.array([[[5, 1], [10, 5], [10.5, 1], [5, -0.1], [np.nan, 1]]], dtype="float32")  # [1, 5, 2]
    flag = cf.extrapolation_flag(dynamic, np.array([[1, 0]], dtype="float32"), ranges)
    assert flag.dtype == np.int8 and flag.tolist() == [[0, 0, 1, 1, FLAG_FILL]]
    unseen_class = cf.extrapolation_flag(dynamic[:, :2], np.array([[0, 1]], dtype="float32"), ranges)
    assert unseen_class.tolist() == [[1, 1]]
    never_seen = {"dynamic": {"tas": [None, None], "pr": [0, 5]}, "static": {}}
    assert cf.extrapolation_flag(dynamic[:, :1], np.zeros((1, 0), "float32"), never_seen).tolist() == [[1]]


def test_si_units_scale_every_flux_and_its_uncertainty(product_run, tmp_path):
    """A store created with SI units gets the same predictions times the unit factors."""
    meta = read_meta(product_run.path("bundle"))
    daily = xr.open_zarr(product_run.path("product.zarr"))
    coords = cf.product_coords(daily.time.values, daily.lat.values, daily.lon.values)
    store = tmp_path / "si.zarr"
    variables = cf.product_variables(meta["targets"], "si", quantiles=product_run.recipe.output.quantiles)
    create_template(store, coords, variables, (60, 8, 16), {})
    factors = tuple((t, cf.product_units(t, "si")[1]) for t in meta["targets"])
    job = apply_job(product_run, store, time_chunk=60, batch_size=1000, factors=factors, parameters=())
    tile = plan_tiles(daily.sizes["lat"], daily.sizes["lon"], 8, 16)[4]
    run_tile(job, tile)
    si = xr.open_zarr(store).isel(lat=slice(tile.lat0, tile.lat1), lon=slice(tile.lon0, tile.lon1)).load()
    ref = daily.isel(lat=slice(tile.lat0, tile.lat1), lon=slice(tile.lon0, tile.lon1)).load()
    assert si["gpp"].attrs["units"] == "kg m-2 s-1" and np.isfinite(si["gpp"].values).any()
    for name, factor in (
        ("gpp", 1e-3 / 86400),
        ("gpp_sd_aleatoric", 1e-3 / 86400),
        ("et_sd", 1 / 86400),
        ("gpp_q95", 1e-3 / 86400),
    ):
        np.testing.assert_allclose(si[name].values, ref[name].values * factor, rtol=1e-5)
    np.testing.assert_array_equal(si["extrapolation"].values, ref["extrapolation"].values)


def test_unit_helpers():
    assert cf.product_units("gpp") == ("g m-2 d-1", 1.0)
    assert cf.product_units("et", "si") == ("kg m-2 s-1", 1 / 86400)
    assert cf.canonical_factor("gpp", "kg m-2 s-1") == pytest.approx(86400 * 1000)
    with pytest.raises(Exception, match="unknown unit system"):
        cf.product_units("gpp", "imperial")


def test_kernel_returns_every_product_array_even_for_no_pixels(product_run):
    ensemble, spec, meta = load_bundle(product_run.path("bundle"))
    nf, ns = len(spec.dynamic_names), len(spec.static_names)
    out, _ = predict_block(
        ensemble, np.zeros((0, 5, nf), "float32"), np.zeros((0, ns), "float32"), 100, ranges=meta["predictor_ranges"]
    )
    assert set(out) == set(cf.product_variables(meta["targets"]))
    assert out["extrapolation"].dtype == np.int8 and out["gpp"].shape == (0, 5)


def test_global_attributes(product_run):
    ds = xr.open_zarr(product_run.path("product.zarr"))
    meta = read_meta(product_run.path("bundle"))
    for key in ("title", "institution", "source", "history", "references", "Conventions", "comment"):
        assert ds.attrs[key], key
    assert meta["hash"] in ds.attrs["source"] and "upscale 0.1" in ds.attrs["source"]
    assert ds.attrs["Conventions"] == "CF-1.8" and "upscale run" in ds.attrs["history"]
    assert yaml.safe_load(ds.attrs["recipe"])["name"] == "tiny"
    assert ds.attrs["training_sites"].split() == meta["training_sites"]


def test_cell_bounds():
    np.testing.assert_allclose(cf.cell_bounds(np.array([-85.0, -75.0, 85.0]), -90, 90), [[-90, -80], [-80, 5], [5, 90]])
    np.testing.assert_allclose(cf.cell_bounds(np.array([10.0])), [[9.5, 10.5]])


def test_hybrid_parameter_maps_stay_in_their_bounds(product_run):
    from upscale.models.hybrid import PARAMETERS

    ds = xr.open_zarr(product_run.path("product.zarr"))
    land = np.isfinite(ds["gpp"].isel(time=0).values)
    assert land.any() and (~land).any()
    for name, (low, high, units, varying, _) in PARAMETERS.items():
        values = ds[name].values
        assert ds[name].attrs["units"] == units and ds[name].attrs["valid_min"] == np.float32(low)
        assert np.isnan(values[:, ~land]).all() and np.isfinite(values[:, land]).all(), name
        assert low <= np.nanmin(values) and np.nanmax(values) <= high, name
        spread = np.nanmax(np.nanmax(values, axis=0) - np.nanmin(values, axis=0))
        # per-pixel constants do not move in time (beyond float32 rounding: 1 ulp at 20 degC is 1.9e-6)
        assert (spread > 1e-5 * max(1.0, high)) == varying, name


def test_parameter_maps_need_a_model_with_parameters(tiny_recipe):
    result = CliRunner().invoke(app, ["validate", str(tiny_recipe), "--set", "output.parameters=true"])
    assert result.exit_code == 2
    assert "has no process parameters" in " ".join(result.output.split())
