"""Earth-observation cubes (Zarr / NetCDF) and static maps (GeoTIFF) as canonical Datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from upscale.errors import DataError
from upscale.sources.grid import canonical_grid
from upscale.variables import VARIABLES


def open_cube(path: str, source: str | None = None) -> xr.Dataset:
    """Open a Zarr store or NetCDF file of gridded variables, lazily, on the canonical grid.

    Variables whose names are canonical must carry canonical units (or none).
    """
    where = source or path
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError("cube not found", where=f"{where}: {path}", fix="Check the catalog path")
    try:
        if p.suffix == ".zarr" or p.is_dir():
            ds = xr.open_zarr(p, chunks={})
        else:
            ds = xr.open_dataset(p, chunks={})
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot open cube: {exc}", where=where) from None
    ds = canonical_grid(ds, where)
    for name in ds.data_vars:
        if name in VARIABLES:
            units = ds[name].attrs.get("units")
            if units not in (None, VARIABLES[name].units):
                raise DataError(f"variable {name!r} has units {units!r}, expected {VARIABLES[name].units!r}",
                                where=where, fix="Convert it, or name it differently in the cube")
    return ds


def open_geotiff(path: str, variable: str, source: str | None = None) -> xr.Dataset:
    """Open a single-band GeoTIFF in EPSG:4326 as a Dataset with one (lat, lon) variable; nodata -> NaN."""
    import rioxarray  # noqa: F401  (registers the engine)

    where = source or path
    if not Path(path).expanduser().exists():
        raise DataError("GeoTIFF not found", where=f"{where}: {path}", fix="Check the catalog path")
    da = xr.open_dataarray(path, engine="rasterio", mask_and_scale=False)
    crs = da.rio.crs
    if crs is None or crs.to_epsg() != 4326:
        raise DataError(f"GeoTIFF CRS is {crs}, only EPSG:4326 is supported so far", where=where,
                        fix="Reproject it to EPSG:4326 (e.g. gdalwarp -t_srs EPSG:4326)")
    da = da.isel(band=0, drop=True)
    nodata = da.rio.nodata
    values = da.astype("float32")
    if nodata is not None:
        values = values.where(da != nodata)
    values = values.drop_vars([c for c in values.coords if c not in ("x", "y")])
    values.attrs = {"units": VARIABLES[variable].units if variable in VARIABLES else "1"}
    return canonical_grid(values.to_dataset(name=variable), where)
