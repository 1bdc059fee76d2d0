"""Rasters onto the lat/lon grid: area-weighted averages and class fractions."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from upscale.errors import DataError
from upscale.sources.regrid import regrid


def raster(values: np.ndarray) -> xr.DataArray:
    """A (y, x) EPSG:4326 raster of 0.5-degree cells over lat 0..4, lon 0..4 (y descending, as GeoTIFFs are)."""
    ny, nx = values.shape
    y = 4.0 - 0.25 - 0.5 * np.arange(ny)
    x = 0.25 + 0.5 * np.arange(nx)
    return xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}).rio.write_crs("EPSG:4326")


def test_average_of_four_cells_is_their_mean_and_nan_is_left_out():
    values = np.arange(64, dtype="float64").reshape(8, 8)
    values[0, 0] = np.nan
    out = regrid(raster(values), lat=np.array([1.0, 3.0]), lon=np.array([1.0, 3.0]))["value"]
    # the north-west 2-degree cell holds rows 0-3, columns 0-3 of the raster (NaN left out)
    block = values[:4, :4]
    assert out.sel(lat=3.0, lon=1.0).item() == pytest.approx(np.nanmean(block))
    assert out.sel(lat=1.0, lon=3.0).item() == pytest.approx(values[4:, 4:].mean())
    assert out.dims == ("lat", "lon") and out.lat.values.tolist() == [1.0, 3.0]


def test_class_map_becomes_fractions_that_sum_to_one():
    classes = np.full((8, 8), 10.0)  # GRA
    classes[:, :2] = 1.0  # ENF in the western quarter
    out = regrid(raster(classes), lat=np.array([1.0, 3.0]), lon=np.array([1.0, 3.0]), categorical=True)
    assert sorted(out.data_vars) == ["pft_ENF", "pft_GRA"]
    np.testing.assert_allclose(out["pft_ENF"].values, [[0.5, 0.0], [0.5, 0.0]])
    np.testing.assert_allclose((out["pft_ENF"] + out["pft_GRA"]).values, 1.0)


def test_an_uneven_target_grid_is_refused():
    with pytest.raises(DataError, match="not evenly spaced"):
        regrid(raster(np.ones((8, 8))), lat=np.array([0.5, 1.0, 3.0]), lon=np.array([1.0, 3.0]))
