"""Tests of upscale.sources.demo.writers: every written format, write_world's safety, the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from tests.sources.demo.common import SENSITIVITY_UNITS, SMALL, TARGET_COLUMNS, TINY
from upscale.errors import DataError
from upscale.sources.demo import WORLD_VERSION, DemoSpec, simulate, write_world, writers
from upscale.variables import vpd_from_dewpoint


def test_catalog_points_at_every_file(written):
    catalog = yaml.safe_load(written.read_text())
    assert catalog["description"] == (
        "upscale demo world (synthetic), seed 0, 10.0 deg, 2018-01-01..2018-04-30, 12 sites"
    )
    entries = catalog["entries"]
    assert entries["era5"] == {"driver": "era5", "path": "era5/era5_daily_*.nc"}
    assert entries["eo"] == {"driver": "cube", "path": "eo/eo_daily.zarr"}
    assert entries["static"] == {"driver": "geotiff", "path": "static/pft.tif", "variable": "pft", "categorical": True}
    assert entries["fluxnet"] == {
        "driver": "fluxnet",
        "path": "fluxnet/FLX_*_FLUXNET2015_SUBSET_DD_*.csv",
        "site_list": "fluxnet/sites.csv",
    }
    assert entries["truth"] == {"driver": "cube", "path": "truth.zarr"}
    assert entries["sensitivity"] == {"driver": "cube", "path": "sensitivity.zarr"}
    root = written.parent
    for entry in entries.values():
        assert list(root.glob(entry["path"])), entry
    assert len(list(root.glob(entries["fluxnet"]["path"]))) == TINY.n_sites
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_era5_file_layout_units_and_values(written, tiny):
    world, _ = tiny
    files = sorted((written.parent / "era5").glob("*.nc"))
    assert [f.name for f in files] == ["era5_daily_2018.nc"]
    with xr.open_dataset(files[0]) as ds:
        assert set(ds.data_vars) == {"t2m", "d2m", "ssrd", "tp", "u10", "v10"}
        assert ds.t2m.dims == ("valid_time", "latitude", "longitude")
        units = {"t2m": "K", "d2m": "K", "ssrd": "J m-2", "tp": "m", "u10": "m s-1", "v10": "m s-1"}
        standard = {
            "t2m": "air_temperature",
            "d2m": "dew_point_temperature",
            "ssrd": "surface_downwelling_shortwave_flux_in_air",
            "u10": "eastward_wind",
            "v10": "northward_wind",
        }
        for name, unit in units.items():
            assert ds[name].attrs["units"] == unit and ds[name].dtype == np.float32
            assert ds[name].attrs["long_name"] and ds[name].attrs["standard_name"]
            assert ds[name].encoding["zlib"] and ds[name].encoding["complevel"] == 1
            assert np.isfinite(ds[name].values).all()
        for name, std in standard.items():
            assert ds[name].attrs["standard_name"] == std
        assert ds.attrs["Conventions"] == "CF-1.7"
        assert ds.attrs["institution"] == "upscale demo world (synthetic)"
        lat, lon = ds.latitude.values, ds.longitude.values
        assert np.all(np.diff(lat) < 0) and lat[0] == 85 and lat[-1] == -85
        assert np.all(np.diff(lon) > 0) and lon[0] == 5 and lon[-1] == 355
        assert np.issubdtype(ds.valid_time.dtype, np.datetime64)
        canon = ds.assign_coords(longitude=(lon + 180) % 360 - 180).sortby("longitude").sortby("latitude")
        t = canon.t2m.values - 273.15
        np.testing.assert_allclose(t, world.tas.values, rtol=0, atol=1e-4)
        np.testing.assert_allclose(canon.ssrd.values / 86400, world.rsds.values, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(canon.tp.values * 1000, world.pr.values, rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(canon.u10.values, world.u10.values)
        np.testing.assert_array_equal(canon.v10.values, world.v10.values)
        assert ds.u10.attrs["long_name"] == "10 metre U wind component"
        vpd = vpd_from_dewpoint(t, canon.d2m.values - 273.15)
        np.testing.assert_allclose(vpd, world.vpd.values, rtol=1e-4, atol=1e-3)


def test_eo_cube(written, tiny):
    world, _ = tiny
    path = written.parent / "eo" / "eo_daily.zarr"
    assert (path / ".zmetadata").exists()  # consolidated
    with xr.open_zarr(path) as eo:
        assert set(eo.data_vars) == {"fapar", "ndvi"}
        assert eo.fapar.dims == ("time", "lat", "lon") and eo.fapar.dtype == np.float32
        assert eo.fapar.attrs["units"] == "1" and eo.ndvi.attrs["long_name"]
        assert np.all(np.diff(eo.lat.values) > 0) and np.all(np.diff(eo.lon.values) > 0)
        np.testing.assert_array_equal(eo.fapar.values, world.fapar.values)
        np.testing.assert_array_equal(eo.ndvi.values, world.ndvi.values)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_pft_geotiff(written, tiny):
    import rioxarray

    world, _ = tiny
    with rioxarray.open_rasterio(written.parent / "static" / "pft.tif") as da:
        assert da.rio.crs.to_epsg() == 4326
        assert da.rio.nodata == 0 and da.dtype == np.uint8 and da.sizes["band"] == 1
        assert np.all(np.diff(da.y.values) < 0)
        np.testing.assert_allclose(da.x.values, world.lon.values)
        np.testing.assert_allclose(da.y.values[::-1], world.lat.values)
        np.testing.assert_array_equal(da.values[0][::-1], world.pft.values)
        assert da.attrs["long_name"] == "plant functional type (IGBP)"


def test_truth_store(written, tiny):
    world, sites = tiny
    with xr.open_zarr(written.parent / "truth.zarr") as truth:
        assert json.loads(truth.attrs["demo_spec"]) == TINY.to_dict()
        for name, unit in {"gpp": "g m-2 d-1", "et": "kg m-2 d-1", "soil_water": "mm", "water_limitation": "1"}.items():
            assert truth[name].attrs["units"] == unit
            np.testing.assert_array_equal(truth[name].values, world[name].values)
        assert truth.land_mask.dtype == np.int8 and truth.pft.dtype == np.uint8
        np.testing.assert_array_equal(truth.land_mask.values, world.land_mask.values.astype(np.int8))
        np.testing.assert_array_equal(truth.pft.values, world.pft.values)
        assert list(truth.site.values) == list(sites["SITE_ID"])
        np.testing.assert_allclose(truth.site_bias.values, sites["bias"].values)
        np.testing.assert_allclose(truth.site_lat.values, sites["LOCATION_LAT"].values)
        np.testing.assert_allclose(truth.site_lon.values, sites["LOCATION_LONG"].values)


def test_site_list_csv(written, tiny):
    _, sites = tiny
    table = pd.read_csv(written.parent / "fluxnet" / "sites.csv")
    assert list(table.columns) == ["SITE_ID", "SITE_NAME", "LOCATION_LAT", "LOCATION_LONG", "LOCATION_ELEV", "IGBP"]
    pd.testing.assert_frame_equal(table, sites.drop(columns="bias"), check_dtype=False)


def test_fluxnet_files_format(written, flux_tables):
    expected = [
        "TIMESTAMP",
        "TA_F",
        "TA_F_QC",
        "SW_IN_POT",
        "SW_IN_F",
        "SW_IN_F_QC",
        "VPD_F",
        "VPD_F_QC",
        "P_F",
        "P_F_QC",
        "LE_F_MDS",
        "LE_F_MDS_QC",
        "LE_CORR",
        "NEE_VUT_REF_QC",
        "GPP_NT_VUT_REF",
        "GPP_DT_VUT_REF",
    ]
    for sid, table in flux_tables.items():
        assert list(table.columns) == expected
        assert table["TIMESTAMP"].dtype == np.int64
        assert table["TIMESTAMP"].iloc[0] == 20180101 and table["TIMESTAMP"].iloc[-1] == 20180430
        assert len(table) == 120
        for col in expected[1:]:
            if col not in TARGET_COLUMNS:
                assert (table[col] > -9999).all(), (sid, col)
        qc = table.filter(like="_QC")
        assert qc.min().min() >= 0 and qc.max().max() <= 1
    text = next((written.parent / "fluxnet").glob("FLX_*.csv")).read_text()
    assert re.search(r",-9999(,|\n)", text) and "-9999.0" not in text


def test_fluxnet_reader_reads_the_demo_sites(written, tiny):
    from upscale.sources import fluxnet

    _, sites = tiny
    root = written.parent
    ds = fluxnet.read(
        str(root / "fluxnet" / "FLX_*_FLUXNET2015_SUBSET_DD_*.csv"),
        site_list=root / "fluxnet" / "sites.csv",
        qc_min=0.5,
    )
    assert set(ds.site.values) == set(sites["SITE_ID"])
    ds = ds.sel(site=list(sites["SITE_ID"]))
    np.testing.assert_allclose(ds.lat.values, sites["LOCATION_LAT"].values)
    assert ds.gpp.sizes["time"] == 120
    missing = np.isnan(ds.gpp.values).mean()
    assert 0.05 < missing < 0.2
    assert np.nanmax(ds.et.values) < 20


def test_era5_entry_yields_wind_speed(written, tiny):
    from upscale.sources.catalog import load_catalog

    world, _ = tiny
    era5 = load_catalog(written).open("era5")
    assert era5.ws.attrs["units"] == "m s-1" and era5.ws.dims == ("time", "lat", "lon")
    np.testing.assert_allclose(era5.ws.values, world.ws.values, rtol=1e-6, atol=1e-6)


def test_sensitivity_store(written, tiny):
    from upscale.sources.catalog import load_catalog

    world, _ = tiny
    path = written.parent / "sensitivity.zarr"
    assert (path / ".zmetadata").exists()
    with xr.open_zarr(path) as ds:
        expected = set(SENSITIVITY_UNITS) | {f"{name}_mean" for name in SENSITIVITY_UNITS} | {"time_bnds"}
        assert set(ds.data_vars) == expected
        np.testing.assert_array_equal(ds.lat.values, world.lat.values)
        np.testing.assert_array_equal(ds.lon.values, world.lon.values)
        months = pd.date_range("2018-01-01", "2018-04-01", freq="MS")
        np.testing.assert_array_equal(ds.time.values, months.values)
        np.testing.assert_array_equal(ds.time_bnds.values[:, 0], months.values)
        np.testing.assert_array_equal(ds.time_bnds.values[:, 1], (months + pd.offsets.MonthBegin(1)).values)
        assert ds.time.attrs["bounds"] == "time_bnds"
        land = world.land_mask.values
        days = (ds.time_bnds.values[:, 1] - ds.time_bnds.values[:, 0]) / np.timedelta64(1, "D")
        for name, units in SENSITIVITY_UNITS.items():
            for var, dims in ((ds[name], ("time", "lat", "lon")), (ds[f"{name}_mean"], ("lat", "lon"))):
                assert var.dims == dims and var.dtype == np.float32, var.name
                assert var.attrs["units"] == units and var.attrs["cell_methods"] == "time: mean"
                assert "instantaneous partial derivative" in var.attrs["long_name"]
                assert "held fixed" in var.attrs["comment"]
                np.testing.assert_array_equal(var.values, world[var.name].values)
                assert np.isnan(var.values[..., ~land]).all() and np.isfinite(var.values[..., land]).all()
            weighted = (ds[name].values * days[:, None, None]).sum(axis=0) / days.sum()
            np.testing.assert_allclose(ds[f"{name}_mean"].values, weighted, rtol=1e-5, atol=1e-9)
        assert ds.gpp_sens_tas.attrs["long_name"] == (
            "sensitivity of GPP to air temperature (instantaneous partial derivative)"
        )
        assert json.loads(ds.attrs["demo_spec"]) == TINY.to_dict()
        assert ds.attrs["world_version"] == WORLD_VERSION and ds.attrs["title"]
    opened = load_catalog(written).open("sensitivity")
    assert set(SENSITIVITY_UNITS) <= set(opened.data_vars)


def test_sensitivity_months_of_a_partial_period(tmp_path):
    spec = DemoSpec(seed=2, resolution=10, start="2018-01-20", end="2018-02-10", n_sites=3)
    catalog = write_world(spec, tmp_path / "partial")
    world, _ = simulate(spec)
    with xr.open_zarr(catalog.parent / "sensitivity.zarr") as ds:
        np.testing.assert_array_equal(ds.time.values, pd.to_datetime(["2018-01-01", "2018-02-01"]).values)
        bounds = np.array([["2018-01-20", "2018-02-01"], ["2018-02-01", "2018-02-11"]], "datetime64[ns]")
        np.testing.assert_array_equal(ds.time_bnds.values, bounds)  # the days averaged
        land = world.land_mask.values
        days = np.array([12.0, 10.0])
        weighted = (ds.gpp_sens_tas.values * days[:, None, None]).sum(axis=0) / days.sum()
        np.testing.assert_allclose(ds.gpp_sens_tas_mean.values[land], weighted[land], rtol=1e-5, atol=1e-9)


def test_demo_data_command_writes_the_sensitivities(tmp_path):
    from typer.testing import CliRunner

    from upscale.cli import app

    out = tmp_path / "world"
    result = CliRunner().invoke(
        app,
        ["demo-data", str(out), "--resolution", "10", "--start", "2018-01-01", "--end", "2018-01-20", "--sites", "3"],
    )
    assert result.exit_code == 0, result.output
    with xr.open_zarr(out / "sensitivity.zarr") as ds:
        assert set(SENSITIVITY_UNITS) <= set(ds.data_vars)
    assert "sensitivity" in yaml.safe_load((out / "catalog.yaml").read_text())["entries"]


def test_write_world_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        write_world(SMALL, out)
    assert (out / "mine.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_world(SMALL, empty) == empty.absolute() / "catalog.yaml"


def test_write_world_crash_leaves_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(writers, "write_truth", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_world(SMALL, tmp_path / "world")
    assert list(tmp_path.iterdir()) == []
