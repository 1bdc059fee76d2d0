"""The canonical grid layout, time-axis checks, subsetting and Zarr detection shared by the gridded sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from upscale.errors import DataError
from upscale.sources.grid import canonical_grid, check_time_axis, is_zarr, same_grid, select_period, subset


def cube(lat=(10.0, 0.0), lon=(0.0, 90.0, 180.0, 270.0), days=3, names=("valid_time", "latitude", "longitude")):
    """A (time, lat, lon) cube in ERA5's native layout: descending latitudes, 0..360 longitudes."""
    time = pd.date_range("2020-01-01", periods=days, freq="D")
    values = np.arange(days * len(lat) * len(lon), dtype="float32").reshape(days, len(lat), len(lon))
    return xr.Dataset({"t": (names, values)}, coords={names[0]: time, names[1]: list(lat), names[2]: list(lon)})


def test_canonical_grid_renames_wraps_and_sorts():
    raw = cube()
    ds = canonical_grid(raw, "test")
    assert ds["t"].dims == ("time", "lat", "lon")
    assert ds["lat"].values.tolist() == [0.0, 10.0]
    assert ds["lon"].values.tolist() == [-180.0, -90.0, 0.0, 90.0]
    # the value at 10 N, 270 E is the one at 10 N, -90 E
    assert float(ds["t"].isel(time=0).sel(lat=10.0, lon=-90.0)) == float(raw["t"].isel(valid_time=0)[0, 3])


def test_canonical_grid_leaves_canonical_cubes_alone():
    ds = canonical_grid(cube(lat=(0.0, 10.0), lon=(-10.0, 10.0), names=("time", "lat", "lon")), "test")
    assert ds["lat"].values.tolist() == [0.0, 10.0] and ds["lon"].values.tolist() == [-10.0, 10.0]


@pytest.mark.parametrize(
    "names, fragment",
    [
        (("time", "lat", "z"), "no lon dimension (looked for lon, longitude, x)"),
        (("time", "row", "lon"), "no lat dimension (looked for lat, latitude, y)"),
    ],
)
def test_canonical_grid_needs_lat_and_lon(names, fragment):
    with pytest.raises(DataError, match=r"no l(at|on) dimension") as info:
        canonical_grid(cube(names=names), "my cube")
    assert fragment in str(info.value) and "my cube" in str(info.value)


def test_canonical_grid_refuses_duplicate_coordinates():
    with pytest.raises(DataError, match="duplicate lon coordinates"):
        canonical_grid(cube(lon=(0.0, 360.0)), "test")  # 360 E wraps onto 0 E


def test_check_time_axis():
    days = pd.date_range("2020-01-01", periods=3, freq="D").to_numpy()
    check_time_axis(days, "t")
    check_time_axis(days[:1], "t")
    with pytest.raises(DataError, match="duplicate timestamps"):
        check_time_axis(days[[0, 1, 1]], "t")
    with pytest.raises(DataError, match="not in increasing order"):
        check_time_axis(days[[0, 2, 1]], "t")
    with pytest.raises(DataError, match="duplicate timestamps"):
        canonical_grid(cube().isel(valid_time=[0, 0]), "t")


def test_same_grid():
    a = canonical_grid(cube(), "a")
    assert same_grid(a, a.isel(time=0))
    assert same_grid(a, a.assign_coords(lat=a["lat"] + 1e-9))
    assert not same_grid(a, a.assign_coords(lat=a["lat"] + 0.5))
    assert not same_grid(a, a.isel(lon=slice(1, None)))


def test_subset_by_period_and_box():
    ds = canonical_grid(cube(), "c")
    cut = subset(ds, period=("2020-01-02", "2020-01-03"), bbox=(-100, -5, 5, 5), source="c")
    assert cut.sizes == {"time": 2, "lat": 1, "lon": 2}
    assert cut["lon"].values.tolist() == [-90.0, 0.0]
    assert subset(ds) is ds
    assert subset(ds.isel(time=0, drop=True), period=("2021-01-01", "2021-01-02"))["t"].dims == ("lat", "lon")
    with pytest.raises(DataError, match="leaves no time of the cube") as info:
        subset(ds, period=("2021-01-01", "2021-01-02"), source="entry x")
    assert "entry x" in str(info.value)
    with pytest.raises(DataError, match="leaves no lat of the cube"):
        subset(ds, bbox=(0, 50, 10, 60))


def test_select_period_is_inclusive_and_skips_time_less_data():
    ds = canonical_grid(cube(), "c")
    assert select_period(ds, ("2020-01-02", "2020-01-03"))["time"].dt.day.values.tolist() == [2, 3]
    assert select_period(ds, None) is ds
    static = ds.isel(time=0, drop=True)
    assert select_period(static, ("2020-01-02", "2020-01-03")) is static


def test_is_zarr(tmp_path):
    assert is_zarr(str(tmp_path / "era5.zarr")) and is_zarr(str(tmp_path / "era5.zarr") + "/")
    assert is_zarr("gs://gcp-public-data-arco-era5/ar/full.zarr-v3") and is_zarr("s3://bucket/cube.zarr/")
    assert is_zarr(str(tmp_path))  # a local directory is a store
    assert not is_zarr(str(tmp_path / "era5.nc")) and not is_zarr("https://host/era5.nc")
    assert not is_zarr("gs://bucket/folder")  # remote: only by name
