"""Rasters onto the regular lat/lon grid of the meteorology: reprojection and area-weighted averaging."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from upscale.errors import DataError
from upscale.variables import IGBP_CLASSES


def regrid(da: xr.DataArray, lat: np.ndarray, lon: np.ndarray, categorical: bool = False) -> xr.Dataset:
    """Average a georeferenced raster onto a regular lat/lon grid (cell centres ``lat``, ``lon``).

    Parameters
    ----------
    da : xarray.DataArray
        A (y, x) or (time, y, x) raster with a CRS (``da.rio.crs``); NaN is missing.
    lat, lon : numpy.ndarray
        Ascending, evenly spaced cell centres of the target grid (EPSG:4326).
    categorical : bool
        If True, ``da`` holds IGBP class codes and the result holds, for each class present,
        ``pft_<ABBR>``: the fraction of the cell's valid area covered by that class.

    Returns
    -------
    xarray.Dataset
        Variables on dims ([time,] lat, lon).
    """
    if not categorical:
        return xr.Dataset({"value": _average_onto(da, lat, lon)})
    values = np.asarray(da.values)
    classes = sorted(int(c) for c in np.unique(values[np.isfinite(values)]) if c > 0)
    out = {}
    for code in classes:
        share = xr.where(da == code, 1.0, 0.0).where(np.isfinite(da)).rio.write_crs(da.rio.crs)
        share = share.rio.write_transform(da.rio.transform())
        out[f"pft_{IGBP_CLASSES.get(code, code)}"] = _average_onto(share, lat, lon)
    return xr.Dataset(out)


def reproject_to_latlon(da: xr.DataArray, categorical: bool) -> xr.DataArray:
    """``da`` reprojected onto EPSG:4326: nearest neighbour for class maps, bilinear otherwise."""
    from rasterio.enums import Resampling

    method = Resampling.nearest if categorical else Resampling.bilinear
    return reproject_quietly(da, resampling=method, nodata=np.nan)


def reproject_quietly(da: xr.DataArray, **options) -> xr.DataArray:
    """``da.rio.reproject`` onto EPSG:4326 without the DeprecationWarnings of rasterio's stack."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return da.rio.reproject("EPSG:4326", **options)


def _average_onto(da: xr.DataArray, lat: np.ndarray, lon: np.ndarray) -> xr.DataArray:
    """Area-weighted average onto the grid; one time step at a time (GDAL's multi-band average
    does not leave out NaN pixels band by band)."""
    if "time" in da.dims:
        steps = [_average_onto(da.isel(time=i), lat, lon) for i in range(da.sizes["time"])]
        return xr.concat(steps, dim=da.indexes["time"]).transpose("time", "lat", "lon")
    return _average_2d(da, lat, lon)


def _average_2d(da: xr.DataArray, lat: np.ndarray, lon: np.ndarray) -> xr.DataArray:
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin

    dlat, dlon = _spacing(lat, "lat"), _spacing(lon, "lon")
    transform = from_origin(lon[0] - dlon / 2, lat[-1] + dlat / 2, dlon, dlat)
    da = da.rio.write_nodata(np.nan)  # NaN pixels are left out of the averages
    out = reproject_quietly(
        da, shape=(lat.size, lon.size), transform=transform, resampling=Resampling.average, nodata=np.nan
    )
    out = out.rename({"x": "lon", "y": "lat"}).assign_coords(lat=lat[::-1], lon=lon)
    out = out.drop_vars([c for c in out.coords if c not in out.dims]).sortby("lat")
    return out.assign_attrs({})


def _spacing(values: np.ndarray, name: str) -> float:
    steps = np.diff(values)
    if values.size < 2 or not np.allclose(steps, steps[0], rtol=1e-6):
        raise DataError(
            f"the target grid's {name} is not evenly spaced",
            where="grid",
            fix="Regrid onto a regular lat/lon grid (such as ERA5's)",
        )
    return float(steps[0])
