"""Earth-observation and static readers: GeoTIFF stacks with a CRS, PFT fractions, composites, scaling."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from upscale.errors import DataError
from upscale.sources.eo import apply_scaling, composites_to_daily, open_cube, open_geotiff

# the meteorological grid: 1 degree cells, centres 0.5 .. 2.5 N and 10.5 .. 12.5 E
MET = xr.Dataset(coords={"lat": np.array([0.5, 1.5, 2.5]), "lon": np.array([10.5, 11.5, 12.5])})


def write_tif(path: Path, values: np.ndarray, x: np.ndarray, y: np.ndarray, crs: str, nodata=None) -> Path:
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x})
    da = da.rio.write_crs(crs)
    if nodata is not None:
        da = da.rio.write_nodata(nodata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da.rio.to_raster(path)
    return path


def fine_axes():
    """0.25 degree cells over 0..3 N, 10..13 E (12 x 12), north-up."""
    x = 10.125 + 0.25 * np.arange(12)
    y = 2.875 - 0.25 * np.arange(12)
    return x, y


def test_geotiff_stack_scaled_averaged_onto_the_met_grid_and_made_daily(tmp_path):
    x, y = fine_axes()
    raw = np.full((12, 12), 5000, dtype="int16")  # NDVI 0.5
    raw[8:12, 0:4] = np.array([2000, 4000, 6000, -3000] * 4).reshape(4, 4)  # cell (0.5 N, 10.5 E)
    write_tif(tmp_path / "ndvi_A2018001.tif", raw, x, y, "EPSG:4326")
    write_tif(tmp_path / "ndvi_A2018017.tif", np.full((12, 12), 7000, dtype="int16"), x, y, "EPSG:4326")
    ds = open_geotiff(
        str(tmp_path / "ndvi_A*.tif"), "ndvi", grid=MET, scale_factor=0.0001, fill_value=-3000, composite_days=16
    )
    assert ds["ndvi"].dims == ("time", "lat", "lon") and ds["ndvi"].dtype == np.float32
    np.testing.assert_allclose(ds["lat"], MET["lat"]) and np.testing.assert_allclose(ds["lon"], MET["lon"])
    # 16-day composites sit at their 9th day (Jan 9, Jan 25); days between are interpolated
    assert ds.sizes["time"] == 32  # 2018-01-01 .. 2018-02-01
    day = {d: ds["ndvi"].sel(time=d) for d in ("2018-01-01", "2018-01-09", "2018-01-17", "2018-01-25", "2018-02-01")}
    # the corner cell: 12 valid fine cells (the -3000 fill is dropped): (0.2 + 0.4 + 0.6) * 4 / 12 = 0.4
    assert float(day["2018-01-09"].sel(lat=0.5, lon=10.5)) == pytest.approx(0.4, abs=1e-6)
    assert float(day["2018-01-09"].sel(lat=2.5, lon=12.5)) == pytest.approx(0.5, abs=1e-6)
    assert float(day["2018-01-01"].sel(lat=2.5, lon=12.5)) == pytest.approx(0.5, abs=1e-6)  # its own period
    assert float(day["2018-01-17"].sel(lat=2.5, lon=12.5)) == pytest.approx(0.6, abs=1e-6)  # halfway
    assert float(day["2018-02-01"].sel(lat=2.5, lon=12.5)) == pytest.approx(0.7, abs=1e-6)


def test_projected_geotiff_is_reprojected_onto_the_met_grid(tmp_path):
    # Web Mercator (EPSG:3857) 10 km pixels over about 9.5..13.5 E, -0.5..3.5 N, with a pixel edge on
    # 11 E (x = 11 pi / 180 * 6378137 m): 0.2 west of 11 E, 0.8 east of it
    x_11e = 11.0 * np.pi / 180.0 * 6378137.0
    x = x_11e + 10000.0 * np.arange(-17, 28) + 5000.0
    y = np.arange(390000.0, -55000.0, -10000.0)
    lon_of_x = x / 6378137.0 * 180.0 / np.pi
    values = np.where(lon_of_x < 11.0, 0.2, 0.8)[None, :].repeat(y.size, axis=0).astype("float32")
    path = write_tif(tmp_path / "fapar_3857.tif", values, x, y, "EPSG:3857", nodata=-1.0)
    ds = open_geotiff(str(path), "fapar", grid=MET)
    col = ds["fapar"].sel(lat=1.5)
    assert float(col.sel(lon=11.5)) == pytest.approx(0.8, abs=1e-6)
    assert float(col.sel(lon=12.5)) == pytest.approx(0.8, abs=1e-6)
    assert float(col.sel(lon=10.5)) == pytest.approx(0.2, abs=1e-6)


def test_categorical_pft_becomes_fractions_on_the_coarse_grid(tmp_path):
    x, y = fine_axes()
    pft = np.full((12, 12), 10, dtype="uint8")  # GRA
    corner = pft[8:12, 0:4]  # the cell (0.5 N, 10.5 E): 16 fine pixels
    corner[0, :] = 1  # 4 ENF
    corner[1, :2] = 0  # 2 water (nodata): left out of the fractions
    pft[0:4, 8:12] = 12  # the cell (2.5 N, 12.5 E): all CRO
    path = write_tif(tmp_path / "pft.tif", pft, x, y, "EPSG:4326", nodata=0)
    ds = open_geotiff(str(path), "pft", grid=MET, categorical=True)
    assert sorted(ds.data_vars) == ["pft_CRO", "pft_ENF", "pft_GRA"]
    cell = ds.sel(lat=0.5, lon=10.5)
    assert float(cell["pft_ENF"]) == pytest.approx(4 / 14)
    assert float(cell["pft_GRA"]) == pytest.approx(10 / 14)
    assert float(cell["pft_CRO"]) == 0.0
    assert float(ds["pft_CRO"].sel(lat=2.5, lon=12.5)) == 1.0
    total = sum(ds[v] for v in ds.data_vars)
    np.testing.assert_allclose(total.values, 1.0, rtol=1e-6)


def test_static_geotiff_in_lat_lon_without_grid(tmp_path):
    x, y = fine_axes()
    path = write_tif(tmp_path / "elev.tif", np.arange(144, dtype="float32").reshape(12, 12), x, y, "EPSG:4326")
    ds = open_geotiff(str(path), "elevation")
    assert ds["elevation"].dims == ("lat", "lon") and ds["lat"].values[0] == pytest.approx(0.125)
    assert float(ds["elevation"].sel(lat=0.125, lon=10.125)) == 132.0  # last row of the north-up file


def test_composites_to_daily_hand_values():
    time = pd.to_datetime(["2018-01-01", "2018-01-09", "2018-01-17", "2018-01-25"])
    ds = xr.Dataset({"fapar": ("time", [0.2, 0.4, np.nan, 0.8])}, coords={"time": time})
    daily = composites_to_daily(ds, 8)["fapar"].to_series()
    assert daily.index[0] == pd.Timestamp("2018-01-01") and daily.index[-1] == pd.Timestamp("2018-02-01")
    expected = {
        "2018-01-01": 0.2,
        "2018-01-05": 0.2,
        "2018-01-09": 0.3,
        "2018-01-13": 0.4,
        "2018-01-21": 0.6,
        "2018-01-29": 0.8,
        "2018-02-01": 0.8,
    }
    for date, value in expected.items():
        assert daily[date] == pytest.approx(value), date
    bounded = composites_to_daily(ds, 8, max_gap_days=8)["fapar"].to_series()
    assert bounded["2018-01-16"] == pytest.approx(0.4) and bounded["2018-01-25"] == pytest.approx(0.8)
    assert bounded["2018-01-17":"2018-01-24"].isna().all()


def test_netcdf_cube_with_cf_packing_renames_and_valid_range(tmp_path):
    time = pd.date_range("2018-01-01", periods=2, freq="8D")
    raw = np.array([[[40, 100], [250, 7]], [[60, 100], [254, 9]]], dtype="uint8")  # FPAR %, 250+ are flags
    ds = xr.Dataset(
        {"Fpar_500m": (("time", "latitude", "longitude"), raw)},
        coords={"time": time, "latitude": [1.0, 0.0], "longitude": [350.0, 10.0]},
    )
    path = tmp_path / "mod15.nc"
    ds.to_netcdf(path)
    cube = open_cube(
        str(path),
        variables={"Fpar_500m": "fapar"},
        scale_factor=0.01,
        valid_range=[0, 100],
        composite_days=8,
        period=["2018-01-01", "2018-01-16"],
    )
    assert cube["lon"].values.tolist() == [-10.0, 10.0] and cube["lat"].values.tolist() == [0.0, 1.0]
    at = cube["fapar"].sel(lat=1.0, lon=-10.0)
    assert float(at.sel(time="2018-01-05")) == pytest.approx(0.40)
    assert float(at.sel(time="2018-01-09")) == pytest.approx(0.50)  # halfway between 0.40 (Jan 5) and 0.60 (Jan 13)
    assert np.isnan(cube["fapar"].sel(lat=0.0, lon=-10.0).values).all()  # flags only


def test_cf_scale_factor_and_fill_value_decoded_from_zarr(tmp_path):
    ds = xr.Dataset(
        {"ndvi": (("lat", "lon"), np.array([[0.5, np.nan], [-0.1, 0.9]]))},
        coords={"lat": [0.0, 1.0], "lon": [0.0, 1.0]},
    )
    ds["ndvi"].encoding = {"dtype": "int16", "scale_factor": 0.0001, "_FillValue": -3000}
    ds.to_zarr(tmp_path / "ndvi.zarr", zarr_format=2)
    cube = open_cube(str(tmp_path / "ndvi.zarr"))
    np.testing.assert_allclose(cube["ndvi"].values, [[0.5, np.nan], [-0.1, 0.9]], atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"variables": {"NDVI": "ndvi"}}, "variables ['NDVI'] named in 'variables' are not in the cube"),
        ({"variables": {"ndvi": "greenness"}}, "not canonical variable names"),
        ({"composite_days": 8}, "composite_days is set but the cube has no time dimension"),
        ({"bbox": [50, 50, 60, 60]}, "leaves no lat"),
        ({"scale_factor": "x"}, "bad scale_factor"),
    ],
)
def test_bad_cube_options(tmp_path, kwargs, fragment):
    ds = xr.Dataset({"ndvi": (("lat", "lon"), np.ones((2, 2)))}, coords={"lat": [0.0, 1.0], "lon": [0.0, 1.0]})
    ds.to_netcdf(tmp_path / "c.nc")
    with pytest.raises(DataError) as info:
        open_cube(str(tmp_path / "c.nc"), source="catalog entry 'eo'", **kwargs)
    assert fragment in str(info.value) and "catalog entry 'eo'" in str(info.value)


def test_bad_geotiffs(tmp_path):
    x, y = fine_axes()
    write_tif(tmp_path / "ndvi_first.tif", np.ones((12, 12)), x, y, "EPSG:4326")
    write_tif(tmp_path / "ndvi_second.tif", np.ones((12, 12)), x, y, "EPSG:4326")
    with pytest.raises(DataError, match=r"no date in the file name 'ndvi_first\.tif'"):
        open_geotiff(str(tmp_path / "ndvi_*.tif"), "ndvi")
    with pytest.raises(DataError, match="GeoTIFF not found"):
        open_geotiff(str(tmp_path / "missing.tif"), "ndvi")
    (tmp_path / "broken.tif").write_text("not a tiff")
    with pytest.raises(DataError, match="cannot read the GeoTIFF"):
        open_geotiff(str(tmp_path / "broken.tif"), "ndvi")


@given(
    raw=st.integers(min_value=-32768, max_value=32767),
    scale=st.floats(min_value=1e-5, max_value=10.0),
    offset=st.floats(min_value=-100.0, max_value=100.0),
)
def test_apply_scaling_property(raw, scale, offset):
    da = xr.DataArray(np.array([raw], dtype="int32"))
    out = float(apply_scaling(da, scale, offset, fill_value=[-3000, 32767], valid_range=[-2000, 10000])[0])
    if raw in (-3000, 32767) or not -2000 <= raw <= 10000:
        assert np.isnan(out)
    else:
        assert out == pytest.approx(raw * scale + offset, rel=1e-12, abs=1e-9)


def test_a_cube_regrids_in_a_process_that_never_imported_rioxarray():
    import subprocess
    import sys

    code = (
        "import numpy as np, xarray as xr, sys\n"
        "from upscale.sources.eo import _regrid_dataset_var\n"
        "assert 'rioxarray' not in sys.modules\n"
        "lat, lon = np.arange(4) * 45 - 67.5, np.arange(8) * 45 - 157.5\n"
        "values = np.arange(32, dtype='f4').reshape(4, 8)\n"
        "da = xr.DataArray(values, dims=('lat', 'lon'), coords={'lat': lat, 'lon': lon})\n"
        "grid = xr.Dataset(coords={'lat': [-45.0, 45.0], 'lon': np.arange(4) * 90 - 135.0})\n"
        "out = _regrid_dataset_var(da, grid, 'x', 'w')['x'].values\n"
        "print(out.tolist())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    values = eval(done.stdout)
    # each coarse cell averages a 2 x 2 block of the fine one: rows 0-1 / 2-3, columns 2j, 2j+1
    assert values == [[4.5, 6.5, 8.5, 10.5], [20.5, 22.5, 24.5, 26.5]]
