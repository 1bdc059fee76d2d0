"""ERA5 reader: tiny CDS NetCDF (hourly, daily statistics) and ARCO-style Zarr files, hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from upscale.errors import DataError
from upscale.sources.era5 import LONG_NAMES, open_era5
from upscale.variables import pascal_to_hpa, vpd_from_dewpoint

LAT_DESC = np.array([10.0, 0.0])
LON_360 = np.array([0.0, 90.0, 180.0, 270.0])
UNITS = {"t2m": "K", "d2m": "K", "ssrd": "J m**-2", "tp": "m", "sp": "Pa", "u10": "m s**-1", "v10": "m s**-1"}


def hourly_fields(start="2020-01-01 00:00", periods=49) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
    """Hourly ERA5 fields, 2020-01-01 00:00 .. 2020-01-03 00:00 (two complete days)."""
    time = pd.date_range(start, periods=periods, freq="h")
    shape = (time.size, LAT_DESC.size, LON_360.size)
    hour = time.hour.to_numpy(float)[:, None, None]
    lon_mark = (LON_360 / 90.0 * 0.1)[None, None, :]  # 0, 0.1, 0.2, 0.3 K
    t2m = 280.15 + hour + lon_mark + np.zeros(shape)
    ssrd = np.full(shape, 3600.0 * 100.0)  # 100 W m-2 over each hour
    ssrd[time == pd.Timestamp("2020-01-02 00:00")] = 3600.0 * 1000.0  # the hour 23:00-24:00 of Jan 1
    tp = np.zeros(shape)
    tp[(time >= "2020-01-01 01:00") & (time <= "2020-01-01 06:00")] = 0.001  # 6 mm on Jan 1
    tp[time == pd.Timestamp("2020-01-03 00:00")] = 0.002  # the last hour of Jan 2
    fields = {
        "t2m": t2m,
        "d2m": t2m - 5.0,
        "ssrd": ssrd,
        "tp": tp,
        "sp": np.full(shape, 101325.0),
        "u10": np.full(shape, 3.0),
        "v10": np.full(shape, -4.0),
    }
    return time, fields


def cds_dataset(time, fields, time_dim="valid_time") -> xr.Dataset:
    dims = (time_dim, "latitude", "longitude")
    ds = xr.Dataset(
        {k: (dims, v.astype("float32"), {"units": UNITS[k]}) for k, v in fields.items()},
        coords={time_dim: time, "latitude": LAT_DESC, "longitude": LON_360},
    )
    ds = ds.assign_coords(number=0, expver=(time_dim, np.full(time.size, "0001")))
    return ds


def write_cds(path: Path, time, fields, time_dim="valid_time") -> Path:
    cds_dataset(time, fields, time_dim).to_netcdf(path, engine="netcdf4")
    return path


def es(t):
    """Magnus saturation vapour pressure (hPa), written out by hand."""
    return 6.1094 * np.exp(17.625 * t / (t + 243.04))


def check_hourly_values(ds: xr.Dataset) -> None:
    assert ds["time"].dt.strftime("%Y-%m-%d").values.tolist() == ["2020-01-01", "2020-01-02"]
    assert ds["lon"].values.tolist() == [-180.0, -90.0, 0.0, 90.0]
    assert ds["lat"].values.tolist() == [0.0, 10.0]
    # tas: mean over hours 0..23 of 7 + h degC, plus the longitude mark (lon 270 -> -90: +0.3 K)
    np.testing.assert_allclose(ds["tas"].sel(lon=-90.0, lat=0.0).values, [7 + 11.5 + 0.3] * 2, atol=1e-4)  # float32 K
    np.testing.assert_allclose(ds["tas"].sel(lon=0.0).values, np.full((2, 2), 18.5), atol=1e-4)
    # accumulations: day D = records stamped D 01:00 .. D+1 00:00
    np.testing.assert_allclose(ds["rsds"].sel(lon=0.0, lat=0.0).values, [(23 * 100 + 1000) / 24, 100.0], rtol=1e-6)
    np.testing.assert_allclose(ds["pr"].sel(lon=0.0, lat=0.0).values, [6.0, 2.0], rtol=1e-5)
    # VPD per hour, then the daily mean: T = 7 + h, Td = T - 5
    t = 7.0 + np.arange(24)
    np.testing.assert_allclose(ds["vpd"].sel(lon=0.0, lat=0.0).values, [np.mean(es(t) - es(t - 5))] * 2, atol=1e-4)
    np.testing.assert_allclose(ds["ps"].values, 1013.25, rtol=1e-6)
    np.testing.assert_allclose(ds["ws"].values, 5.0, rtol=1e-6)
    for name in ds.data_vars:
        assert ds[name].dtype == np.float32 and ds[name].dims == ("time", "lat", "lon")


def test_cds_hourly_netcdf(tmp_path):
    time, fields = hourly_fields()
    ds = open_era5(str(write_cds(tmp_path / "era5_hourly.nc", time, fields)))
    check_hourly_values(ds)
    assert ds["tas"].attrs["units"] == "degC" and ds["pr"].attrs["units"] == "mm d-1"
    # potential shortwave from astronomy: 0 N on 1 January (FAO-56), by hand
    dr = 1 + 0.033 * math.cos(2 * math.pi / 365)
    decl = 0.409 * math.sin(2 * math.pi / 365 - 1.39)
    ra = 1361.0 / math.pi * dr * math.cos(decl)  # at the equator: sin(phi) = 0, ws = pi/2, sin(ws) = 1
    assert float(ds["rsds_pot"].sel(lat=0.0, lon=0.0).isel(time=0)) == pytest.approx(ra, rel=1e-5)


def test_cds_hourly_split_over_files(tmp_path):
    time, fields = hourly_fields()
    first = {k: v[:20] for k, v in fields.items()}
    rest = {k: v[20:] for k, v in fields.items()}
    write_cds(tmp_path / "era5_a.nc", time[:20], first)
    write_cds(tmp_path / "era5_b.nc", time[20:], rest)
    check_hourly_values(open_era5(str(tmp_path / "era5_*.nc")))


def test_arco_zarr_long_names(tmp_path):
    time, fields = hourly_fields()
    short_to_long = {v: k for k, v in LONG_NAMES.items()}
    dims = ("time", "latitude", "longitude")
    ds = xr.Dataset(
        {short_to_long[k]: (dims, v.astype("float32"), {"units": UNITS[k]}) for k, v in fields.items()},
        coords={"time": time, "latitude": LAT_DESC, "longitude": LON_360},
    )
    ds["geopotential_at_surface"] = (("latitude", "longitude"), np.zeros((2, 4)), {"units": "m**2 s**-2"})
    path = tmp_path / "arco.zarr"
    ds.chunk({"time": 12}).to_zarr(path, zarr_format=2, consolidated=True)
    check_hourly_values(open_era5(str(path)))
    cut = open_era5(str(path), period=("2020-01-02", "2020-01-02"), bbox=(-100, -5, 5, 5))
    assert cut.sizes == {"time": 1, "lat": 1, "lon": 2}
    assert float(cut["rsds"].sel(lon=0.0).values.item()) == pytest.approx(100.0)


@pytest.mark.parametrize("statistic, ssrd, tp", [("sum", 100.0 * 86400, 0.012), ("mean", 100.0 * 3600, 0.0005)])
def test_cds_daily_statistics(tmp_path, statistic, ssrd, tp):
    time = pd.date_range("2020-03-01", periods=3, freq="D")
    shape = (3, 2, 4)
    fields = {
        "t2m": np.full(shape, 290.15),
        "d2m": np.full(shape, 280.15),
        "ssrd": np.full(shape, ssrd),
        "tp": np.full(shape, tp),
    }
    ds = open_era5(str(write_cds(tmp_path / "daily.nc", time, fields)), daily_statistic=statistic)
    np.testing.assert_allclose(ds["tas"].values, 17.0, rtol=1e-6)
    np.testing.assert_allclose(ds["rsds"].values, 100.0, rtol=1e-6)  # 8.64e6 J m-2 per day = 100 W m-2
    np.testing.assert_allclose(ds["pr"].values, 12.0, rtol=1e-5)  # 12 mm per day
    np.testing.assert_allclose(ds["vpd"].values, es(17.0) - es(7.0), rtol=1e-5)
    assert set(ds.data_vars) == {"tas", "vpd", "rsds", "pr", "rsds_pot"}


@pytest.mark.parametrize(
    "change, fragment",
    [
        (
            lambda ds: ds.rename(
                {"t2m": "temp", "d2m": "dew", "ssrd": "rad", "tp": "rain", "sp": "p", "u10": "u", "v10": "v"}
            ),
            "no ERA5 field it can map (found temp",
        ),
        (lambda ds: ds.assign(t2m=ds["t2m"].assign_attrs(units="degC")), "has units 'degC', expected 'K'"),
        (lambda ds: ds.isel(valid_time=slice(0, None, 3)), "time step is 180 minutes"),
        (lambda ds: ds.isel(valid_time=[0, 1, 1, 2]), "duplicate timestamps"),
        (lambda ds: ds.isel(valid_time=slice(1, 12)), "no complete day"),
    ],
)
def test_bad_era5_files(tmp_path, change, fragment):
    time, fields = hourly_fields()
    path = tmp_path / "bad.nc"
    change(cds_dataset(time, fields)).to_netcdf(path)
    with pytest.raises(DataError) as info:
        open_era5(str(path), source="catalog entry 'era5'")
    assert fragment in str(info.value) and "catalog entry 'era5'" in str(info.value)


def test_missing_files_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="no ERA5 files match"):
        open_era5(str(tmp_path / "nothing_*.nc"))
    with pytest.raises(DataError, match="daily_statistic 'median'"):
        open_era5(str(tmp_path / "x.nc"), daily_statistic="median")
    with pytest.raises(DataError, match="remote ERA5 paths must be Zarr"):
        open_era5("s3://bucket/era5_*.nc")


# --------------------------------------------------------------------------- conversions (properties)

hourly_acc = st.lists(st.floats(min_value=0.0, max_value=4e6, allow_nan=False), min_size=24, max_size=24)


@settings(max_examples=25, deadline=None)
@given(values=hourly_acc)
def test_daily_radiation_is_the_sum_of_the_hours_ending_in_the_day(values):
    time, _ = hourly_fields(periods=25)  # 00:00 .. next day 00:00: one complete day
    ssrd = np.zeros((25, 2, 4))
    ssrd[1:] = np.asarray(values)[:, None, None]
    ssrd[0] = 9e9  # the hour before the day: must not count
    ds = xr.Dataset(
        {"ssrd": (("valid_time", "latitude", "longitude"), ssrd, {"units": "J m-2"})},
        coords={"valid_time": time, "latitude": LAT_DESC, "longitude": LON_360},
    )
    from upscale.sources import era5

    out = era5._hourly_to_daily({"ssrd": era5.canonical_grid(ds, "t")["ssrd"]}, "t")
    assert float(out["rsds"].isel(time=0, lat=0, lon=0)) == pytest.approx(sum(values) / 86400.0, rel=1e-9, abs=1e-9)


@given(t=st.floats(min_value=-40, max_value=45), dep=st.floats(min_value=0, max_value=30))
def test_vpd_from_dewpoint_properties(t, dep):
    vpd = vpd_from_dewpoint(t, t - dep)
    assert vpd >= 0.0
    assert vpd == pytest.approx(es(t) - es(t - dep), rel=1e-12, abs=1e-12)
    assert vpd_from_dewpoint(t, t) == 0.0


@given(p=st.floats(min_value=3e4, max_value=1.1e5))
def test_pascal_to_hpa(p):
    assert pascal_to_hpa(p) * 100.0 == pytest.approx(p, rel=1e-15)


def test_files_sharing_days_are_named(tmp_path):
    time, fields = hourly_fields()
    write_cds(tmp_path / "era5_a.nc", time[:30], {k: v[:30] for k, v in fields.items()})
    write_cds(tmp_path / "era5_b.nc", time[20:], {k: v[20:] for k, v in fields.items()})
    with pytest.raises(DataError) as info:
        open_era5(str(tmp_path / "era5_*.nc"), source="catalog entry 'era5'")
    message = str(info.value)
    assert "two ERA5 files hold the same times (2 days, 2020-01-01..2020-01-02)" in message
    assert "era5_a.nc and" in message and "era5_b.nc" in message and "catalog entry 'era5'" in message


def test_a_missing_field_is_named_for_the_variable_it_makes(tmp_path):
    from upscale.sources.era5 import missing_field_error

    time, fields = hourly_fields()
    del fields["d2m"]
    ds = open_era5(str(write_cds(tmp_path / "era5.nc", time, fields)))
    assert "vpd" not in ds and ds.attrs["era5_fields"] == "t2m ssrd tp sp u10 v10"
    error = missing_field_error(ds, "vpd", "catalog entry 'era5'")
    assert "ERA5 field 'd2m' is missing" in error.message and "2m_dewpoint_temperature" in error.message
    assert missing_field_error(ds, "tas", "e") is None and missing_field_error(ds, "fapar", "e") is None
