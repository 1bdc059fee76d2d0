"""Tests of upscale.sources.demo.world (simulate): determinism, grid layout, regional and default worlds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from tests.sources.demo.common import BOX, DYNAMIC, TINY
from upscale.sources.demo import DemoSpec, simulate, write_world


def test_simulate_is_deterministic_and_seeded(tiny):
    world, sites = tiny
    again, sites_again = simulate(TINY)
    xr.testing.assert_identical(world, again)
    pd.testing.assert_frame_equal(sites, sites_again)
    other, other_sites = simulate(DemoSpec(**{**TINY.to_dict(), "seed": 1}))
    assert not np.array_equal(world.tas.values, other.tas.values)
    assert not np.array_equal(world.pr.values, other.pr.values)
    assert not sites["SITE_ID"].equals(other_sites["SITE_ID"])


def test_grid_layout_and_dtypes(tiny):
    world, _ = tiny
    assert world.tas.dims == ("time", "lat", "lon")
    np.testing.assert_allclose(world.lat.values, np.arange(-85, 90, 10))
    np.testing.assert_allclose(world.lon.values, np.arange(-175, 180, 10))
    assert world.time.size == 120 and str(world.time.values[0])[:10] == "2018-01-01"
    for name in DYNAMIC + ["water_limitation"]:
        assert world[name].dtype == np.float32, name
    assert world.pft.dtype == np.uint8 and world.pft.dims == ("lat", "lon")
    assert world.land_mask.dtype == bool
    assert world.gpp.attrs["units"] == "g m-2 d-1" and world.et.attrs["units"] == "kg m-2 d-1"


def test_bbox_world_is_a_cutout_of_the_global_grid(tmp_path):
    from global_land_mask import globe

    world, sites = simulate(BOX)
    np.testing.assert_allclose(world.lat.values, np.arange(37.5, 60, 5))
    np.testing.assert_allclose(world.lon.values, np.arange(-7.5, 30, 5))
    lat, lon = np.meshgrid(world.lat.values, world.lon.values, indexing="ij")
    np.testing.assert_array_equal(world.land_mask.values, globe.is_land(lat, lon))
    assert sites["LOCATION_LAT"].between(35, 60).all() and sites["LOCATION_LONG"].between(-10, 30).all()

    catalog = write_world(BOX, tmp_path / "box")
    files = sorted((catalog.parent / "era5").glob("*.nc"))
    assert [f.name for f in files] == ["era5_daily_2018.nc", "era5_daily_2019.nc"]
    parts = []
    for f in files:
        with xr.open_dataset(f) as ds:
            assert ds.sizes["valid_time"] == 31
            lon = ds.longitude.values
            np.testing.assert_allclose(lon, [2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 352.5, 357.5])
            assert np.all(np.diff(ds.latitude.values) < 0)
            parts.append(
                ds.t2m.assign_coords(longitude=(lon + 180) % 360 - 180).sortby("longitude").sortby("latitude").load()
            )
    t2m = xr.concat(parts, "valid_time")
    np.testing.assert_allclose(t2m.values - 273.15, world.tas.values, atol=1e-4)
    assert "bbox [-10.0, 35.0, 30.0, 60.0]" in yaml.safe_load(catalog.read_text())["description"]


@pytest.mark.slow
def test_default_world_is_plausible(tmp_path):
    catalog = write_world(DemoSpec(), tmp_path / "default")
    with xr.open_zarr(catalog.parent / "truth.zarr") as truth:
        lat = truth.lat.values
        res = 2.0
        area = (6371e3**2 * np.deg2rad(res) * (np.sin(np.deg2rad(lat + res / 2)) - np.sin(np.deg2rad(lat - res / 2))))[
            :, None
        ]
        years = truth.sizes["time"] / 365.25
        gpp = float((truth.gpp.sum("time").values * area).sum() / years / 1e15)  # Pg C / yr
        et = float((truth.et.sum("time").values * area).sum() / years / 1e15)  # 10^3 km3 / yr (mm m2 = 1e-3 m3)
    assert 60 < gpp < 250
    assert 40 < et < 130
