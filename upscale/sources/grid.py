"""Bring gridded datasets onto the canonical layout: dims (time, lat, lon), lat and lon ascending,
lon in [-180, 180), unique daily timestamps; cut them to a period and box; tell Zarr stores apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import DataError

_DIM_ALIASES = {
    "valid_time": "time",
    "date": "time",
    "latitude": "lat",
    "y": "lat",
    "longitude": "lon",
    "x": "lon",
}


def canonical_grid(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Rename dims to (time, lat, lon), wrap longitudes to [-180, 180) and sort both axes ascending.

    Parameters
    ----------
    ds : xarray.Dataset
        A lazily opened cube.
    source : str
        Where it came from, for error messages.
    """
    ds = ds.rename({k: v for k, v in _DIM_ALIASES.items() if k in ds.dims or k in ds.coords})
    for dim in ("lat", "lon"):
        if dim not in ds.dims:
            raise DataError(
                f"no {dim} dimension (looked for {dim}, {', '.join(k for k, v in _DIM_ALIASES.items() if v == dim)})",
                where=source,
            )
    lon = ds["lon"].values
    if lon.max() >= 180:
        ds = ds.assign_coords(lon=((lon + 180.0) % 360.0) - 180.0)
    if not _ascending(ds["lon"].values):
        ds = ds.sortby("lon")
    if not _ascending(ds["lat"].values):
        ds = ds.sortby("lat")
    for dim in ("lat", "lon"):
        if np.unique(ds[dim].values).size != ds.sizes[dim]:
            raise DataError(f"duplicate {dim} coordinates", where=source)
    if "time" in ds.dims:
        check_time_axis(ds["time"].values, source)
    return ds


def check_time_axis(times: np.ndarray, source: str) -> None:
    """Raise a DataError if timestamps repeat or are out of order."""
    if times.size < 2:
        return
    steps = np.diff(times.astype("datetime64[ns]").astype(np.int64))
    if np.any(steps == 0):
        raise DataError("duplicate timestamps", where=source, fix="Remove the repeated days")
    if np.any(steps < 0):
        raise DataError("timestamps are not in increasing order", where=source, fix="Sort the file by time")


def _ascending(values: np.ndarray) -> bool:
    return values.size < 2 or bool(np.all(np.diff(values) > 0))


def same_grid(a: xr.Dataset, b: xr.Dataset, tol: float = 1e-6) -> bool:
    """Whether two canonical datasets share the same lat/lon cell centres."""
    return all(a.sizes[d] == b.sizes[d] and np.allclose(a[d].values, b[d].values, atol=tol) for d in ("lat", "lon"))


def subset(ds: xr.Dataset, period=None, bbox=None, source: str = "") -> xr.Dataset:
    """Cut a canonical cube to a period and a bounding box, before anything is read.

    Parameters
    ----------
    ds : xarray.Dataset
        On the canonical grid (lat and lon ascending, lon in [-180, 180)).
    period : (start, end), optional
        Inclusive bounds on ``time`` (anything pandas reads as a timestamp).
    bbox : (lon_min, lat_min, lon_max, lat_max), optional
        Inclusive bounds in degrees.
    source : str
        Where the cube came from, for error messages.

    Raises
    ------
    upscale.errors.DataError
        If the period or box leaves nothing of the cube.
    """
    ds = select_period(ds, period)
    if bbox is not None:
        lon_min, lat_min, lon_max, lat_max = map(float, bbox)
        ds = ds.sel(lon=slice(lon_min, lon_max), lat=slice(lat_min, lat_max))
    empty = [d for d in ("time", "lat", "lon") if d in ds.dims and ds.sizes[d] == 0]
    if empty:
        raise DataError(
            f"the period or bbox leaves no {empty[0]} of the cube",
            where=source,
            fix="Check the catalog entry's period and bbox against the data",
        )
    return ds


def select_period(ds: xr.Dataset, period=None) -> xr.Dataset:
    """The days of ``ds`` within ``period`` (inclusive ``(start, end)``); all of it when None or time-less."""
    if period is not None and "time" in ds.dims:
        ds = ds.sel(time=slice(pd.Timestamp(period[0]), pd.Timestamp(period[1])))
    return ds


def is_zarr(path: str) -> bool:
    """Whether ``path`` names a Zarr store: ``.zarr`` in its last part, or a local directory.

    Parameters
    ----------
    path : str
        A local path (``~`` allowed) or an fsspec URL such as ``gs://bucket/era5.zarr``.
    """
    stripped = path.rstrip("/")
    return ".zarr" in Path(stripped).name or (("://" not in path) and Path(path).expanduser().is_dir())
