"""Aggregates against values computed by hand on a small synthetic product with known cell areas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from upscale import cf
from upscale.aggregate import AUTHALIC_RADIUS_M, cell_areas, global_totals, time_means
from upscale.cli import app
from upscale.outputs import FLAG_FILL, uncertainty_names
from upscale.rundir import Manifest
from upscale.store import create_template, mark_complete, write_block

R2 = AUTHALIC_RADIUS_M**2
# 2 x 2 cells: latitude edges -90, 0, 90 and longitude edges -180, 0, 180: each cell is a quarter sphere
LAT, LON = np.array([-45.0, 45.0]), np.array([-90.0, 90.0])
QUARTER = np.pi * R2  # R^2 * dlon (pi) * (sin 90 - sin 0)
DAYS = pd.date_range("2018-01-10", "2018-03-31", freq="D").values  # 81 days: partial January


def synthetic(units: str = "default") -> dict[str, np.ndarray]:
    """gpp = day index + 10 * lat index + lon index, its sds 1 and 0.5, et 2 (over land, in ``units``);
    the cell (0, 0) is ocean (NaN); the flag marks the first 5 days (Jan 10-14)."""
    t, i, j = np.meshgrid(np.arange(DAYS.size), np.arange(2), np.arange(2), indexing="ij")
    ocean = (i == 0) & (j == 0)
    arrays = {"gpp": t + 10 * i + j, "gpp_sd": np.ones(t.shape), "et": np.full(t.shape, 2.0)}
    for target in ("gpp", "et"):
        factor = cf.product_units(target, units)[1]
        for name in [target, *uncertainty_names(target)]:
            arrays[name] = np.where(ocean, np.nan, arrays.get(name, 0.5) * factor).astype("float32")
    arrays["extrapolation"] = np.where(ocean, FLAG_FILL, t < 5).astype("int8")
    return arrays


@pytest.fixture
def run_dir(tmp_path):
    """A run directory holding a finished synthetic product (default units)."""
    return write_run(tmp_path / "run", synthetic())


def write_run(path, arrays, finished=True, units="default"):
    path.mkdir()
    coords = cf.product_coords(DAYS, LAT, LON)
    create_template(
        path / "product.zarr",
        coords,
        cf.product_variables(["gpp", "et"], units),
        (40, 2, 2),
        {"Conventions": cf.CONVENTIONS, "history": "made by hand"},
    )
    write_block(path / "product.zarr", arrays, slice(None), slice(None), slice(None))
    manifest = Manifest(path / "manifest.json")
    if finished:
        mark_complete(path / "product.zarr")
        manifest.finish_stage("apply", 1.0)
    return path


def test_cell_areas_are_true_spherical_areas():
    np.testing.assert_allclose(cell_areas(cf.cell_bounds(LAT, -90, 90), cf.cell_bounds(LON)), QUARTER)
    lat, lon = np.arange(-89.5, 90), np.arange(-179.5, 180)
    areas = cell_areas(cf.cell_bounds(lat, -90, 90), cf.cell_bounds(lon))
    assert areas.sum() == pytest.approx(4 * np.pi * R2, rel=1e-12)
    # a 1-degree cell at the equator: R^2 * (pi/180) * sin(1 deg)
    assert areas[90, 0] == pytest.approx(R2 * np.pi / 180 * np.sin(np.pi / 180), rel=1e-12)


def test_monthly_means_and_bounds(run_dir):
    ds = xr.open_zarr(run_dir / "product.zarr")
    month = time_means(ds, "month").load()
    # January covers day indices 0..21 (Jan 10..31): mean 10.5; February 22..49: 35.5; March 50..80: 65
    for k, mean_t in enumerate((10.5, 35.5, 65.0)):
        np.testing.assert_allclose(month["gpp"].values[k], [[np.nan, mean_t + 1], [mean_t + 10, mean_t + 11]])
    np.testing.assert_array_equal(
        month["time_bnds"].values,
        np.array(
            [["2018-01-10", "2018-02-01"], ["2018-02-01", "2018-03-01"], ["2018-03-01", "2018-04-01"]],
            dtype="datetime64[ns]",
        ),
    )
    np.testing.assert_array_equal(
        month["time"].values, np.array(["2018-01-21", "2018-02-15", "2018-03-16T12"], dtype="datetime64[ns]")
    )
    np.testing.assert_allclose(month["extrapolation_fraction"].values[:, 1, 1], [5 / 22, 0, 0])
    assert np.isnan(month["extrapolation_fraction"].values[:, 0, 0]).all()  # no_prediction is not a share
    assert ds["extrapolation"].dtype == np.int8 and month["extrapolation_fraction"].dtype == np.float32
    assert month["gpp"].attrs["cell_methods"] == "time: mean (interval: 1 day)"
    assert month["gpp"].attrs["ancillary_variables"].split()[-1] == "extrapolation_fraction"
    assert month["extrapolation_fraction"].attrs["units"] == "1"
    assert "flag_values" not in month["extrapolation_fraction"].attrs
    assert month.attrs["history"].startswith("made by hand\n") and "upscale aggregate" in month.attrs["history"]


def test_annual_means(run_dir):
    year = time_means(xr.open_zarr(run_dir / "product.zarr"), "year").load()
    assert year.sizes["time"] == 1
    np.testing.assert_allclose(year["gpp"].values[0, 1, 1], 40 + 11)  # mean day index 0..80 = 40
    np.testing.assert_array_equal(
        year["time_bnds"].values[0], np.array(["2018-01-10", "2018-04-01"], dtype="datetime64[ns]")
    )


@pytest.mark.parametrize("units", ["default", "si"])
def test_global_totals_by_hand(tmp_path, units):
    run = write_run(tmp_path / "run", synthetic(units), units=units)
    totals = global_totals(xr.open_zarr(run / "product.zarr")).set_index("target")
    # GPP: per day, sum over the 3 land cells of (40 + 10 i + j) g m-2 d-1 x QUARTER on average = (41 + 50 + 51)
    gpp = (41 + 50 + 51) * QUARTER * 365.25 / 1e15
    assert totals.loc["gpp", "total"] == pytest.approx(gpp, rel=1e-6)
    assert totals.loc["gpp", "se_upper"] == pytest.approx(3 * QUARTER * 365.25 / 1e15, rel=1e-6)
    # ET: 2 kg m-2 d-1 over 3 quarter spheres, as 10^3 km3 per year (1000 kg m-3, 1e12 m3)
    assert totals.loc["et", "total"] == pytest.approx(2 * 3 * QUARTER * 365.25 / 1000 / 1e12, rel=1e-6)
    assert totals.loc["gpp", "units"] == "Pg C yr-1" and totals.loc["et", "units"] == "10^3 km3 yr-1"
    assert totals.loc["gpp", "days"] == 81


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_aggregate_command_writes_and_refuses_to_overwrite(run_dir):
    result = invoke("aggregate", run_dir, "--freq", "month")
    assert result.exit_code == 0, result.output
    path = run_dir / "aggregates" / "product_month.zarr"
    written = xr.open_zarr(path)
    assert written.sizes["time"] == 3 and written["time_bnds"].dtype.kind == "M"
    again = invoke("aggregate", run_dir, "--freq", "month")
    assert again.exit_code == 2 and "--overwrite" in " ".join(again.output.split())
    assert invoke("aggregate", run_dir, "--freq", "month", "--overwrite").exit_code == 0
    assert sorted(p.name for p in (run_dir / "aggregates").iterdir()) == ["product_month.zarr"]


def test_aggregate_is_cf_clean(run_dir, tmp_path):
    """The monthly aggregate written as NetCDF passes the CF checker too (bounds, cell_methods, units)."""
    from tests.test_cf import cf_check
    from upscale.export import netcdf_encoding

    assert invoke("aggregate", run_dir, "--freq", "month").exit_code == 0
    month = xr.open_zarr(run_dir / "aggregates" / "product_month.zarr")
    encoding = netcdf_encoding(month)
    for name in month.variables:
        month[name].encoding = {}
    month.to_netcdf(tmp_path / "month.nc", encoding=encoding)
    report = cf_check(tmp_path / "month.nc")
    assert report["high_count"] == 0, [r for r in report["high_priorities"] if r["msgs"]]


@pytest.mark.parametrize(
    "freq, finished, expected",
    [
        ("week", True, "unknown aggregation frequency"),
        ("month", False, "unfinished"),
    ],
)
def test_aggregate_bad_input_is_exit_2_and_writes_nothing(tmp_path, freq, finished, expected):
    run = write_run(tmp_path / "run", synthetic(), finished=finished)
    result = invoke("aggregate", run, "--freq", freq)
    assert result.exit_code == 2 and expected in " ".join(result.output.split())
    assert not (run / "aggregates").exists() or not any((run / "aggregates").iterdir())


def test_products_without_bounds_get_them_from_their_centres(run_dir):
    """Products written before bounds existed still aggregate and total (bounds derived from the centres)."""
    ds = xr.open_zarr(run_dir / "product.zarr")
    old = ds.drop_vars(["lat_bnds", "lon_bnds"])
    pd.testing.assert_frame_equal(global_totals(old), global_totals(ds))
    np.testing.assert_array_equal(time_means(old, "month")["lat_bnds"].values, [[-90, 0], [0, 90]])
