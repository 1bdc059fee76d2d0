"""Earth-observation cubes and static maps as canonical Datasets on the meteorological grid.

Sources:

- Zarr stores and NetCDF files of gridded variables (:func:`open_cube`); CF ``scale_factor``,
  ``add_offset`` and ``_FillValue`` are decoded by xarray, and extra ones (MODIS conventions
  that are not in the file) can be given;
- GeoTIFFs read with rioxarray (:func:`open_geotiff`): a single map, or a stack of one file per
  date (dates from the names: MODIS ``A2018001``, AppEEARS ``doy2018001``, ``20180101`` or
  ``2018-01-01``), in any CRS.

Options shared by both (catalog entry keys): ``variables`` renames source names to canonical
ones; ``scale_factor``, ``add_offset``, ``fill_value`` and ``valid_range`` (raw values outside
it, such as MODIS flags 249-255, are missing); ``composite_days`` turns 8- or 16-day composites
(stamped with their first day) into days: each composite sits at its middle day, days between
valid composites are interpolated linearly when they are at most ``max_gap_days`` apart, and the
days of a composite's own period next to a long gap or the ends take its value;
``grid`` regrids onto another entry's grid (area-weighted average; a ``categorical`` map becomes
the fraction of each class, variables ``pft_ENF``, ``pft_GRA``... in [0, 1]).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from glob import glob
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import DataError
from upscale.sources.grid import canonical_grid, is_zarr, subset
from upscale.sources.regrid import regrid, reproject_to_latlon
from upscale.variables import VARIABLES

#: File-name date patterns of GeoTIFF stacks, tried in order: (regex, strptime format).
DATE_PATTERNS = (
    (re.compile(r"(?:A|doy)(\d{7})(?!\d)"), "%Y%j"),
    (re.compile(r"(?<!\d)(\d{8})(?!\d)"), "%Y%m%d"),
    (re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)"), "%Y-%m-%d"),
)


def open_cube(path: str, source: str | None = None, **options) -> xr.Dataset:
    """Open a Zarr store or NetCDF file of gridded variables, lazily, on the canonical grid.

    Parameters
    ----------
    path : str
        A Zarr store (``*.zarr``, a directory, or an fsspec URL) or a NetCDF file.
    source : str, optional
        Name used in error messages (e.g. the catalog entry).
    **options
        ``variables``, ``scale_factor``, ``add_offset``, ``fill_value``, ``valid_range``,
        ``composite_days``, ``max_gap_days``, ``period``, ``bbox``, ``storage_options``,
        ``grid`` (a target ``(lat, lon)`` Dataset), ``categorical`` (see the module docstring).

    Returns
    -------
    xarray.Dataset
        Dims (time, lat, lon) or (lat, lon), canonical names; variables with canonical names
        must carry canonical units (or none).
    """
    where = source or path
    ds = canonical_grid(
        _rename(_open_cube_file(path, where, options.get("storage_options")), options.get("variables"), where), where
    )
    return _finish(ds, where, options)


def open_geotiff(path: str, variable: str, source: str | None = None, **options) -> xr.Dataset:
    """Open a GeoTIFF, or a stack of GeoTIFFs with one date each, as a canonical Dataset.

    Parameters
    ----------
    path : str
        A file or a glob; several files form a time stack whose dates are read from their names.
    variable : str
        Canonical name of the (single-band) variable.
    source : str, optional
        Name used in error messages.
    **options
        As for :func:`open_cube` (``variables`` does not apply). Without ``grid``, a CRS other
        than EPSG:4326 is reprojected to EPSG:4326 at about the native resolution.

    Returns
    -------
    xarray.Dataset
        ``variable`` with dims (lat, lon) or (time, lat, lon); nodata and fill values are NaN.
    """
    import rioxarray  # noqa: F401  (registers the engine and the .rio accessor)

    where = source or path
    files = _geotiff_files(path, where)
    if len(files) == 1:
        da = _read_geotiff(files[0], where)
    else:
        da = xr.concat([_read_geotiff(f, where) for f in files], dim=pd.Index(_file_dates(files, where), name="time"))
    grid = options.get("grid")
    categorical = bool(options.get("categorical"))
    da = _scaled(da, options, where)
    rest = {k: v for k, v in options.items() if k not in _SCALING + ("grid",)}  # scaled once, here
    if grid is not None:
        return _finish(_regrid_raster(da, grid, variable, categorical, where), where, rest)
    if da.rio.crs is None:
        raise DataError("the GeoTIFF has no CRS", where=where, fix="Set one, e.g. gdal_edit.py -a_srs EPSG:4326")
    if da.rio.crs.to_epsg() != 4326:
        da = reproject_to_latlon(da, categorical)
    da = da.rename({"x": "lon", "y": "lat"})
    da = da.drop_vars([c for c in da.coords if c not in da.dims])
    da.attrs = {"units": _units_of(variable)}
    ds = canonical_grid(da.astype("float32").to_dataset(name=variable), where)
    return _finish(ds, where, rest)


def composites_to_daily(ds: xr.Dataset, composite_days: int, max_gap_days: int | None = None) -> xr.Dataset:
    """8- or 16-day composites (stamped with their first day) as a daily series with a bounded gap fill.

    Parameters
    ----------
    ds : xarray.Dataset
        Dims (time, ...) with one step per composite.
    composite_days : int
        Days per composite (8 or 16 for MODIS).
    max_gap_days : int, optional
        Longest distance in days between the middle days of two valid composites that is still
        interpolated; default ``2 * composite_days`` (one missing composite is bridged).

    Returns
    -------
    xarray.Dataset
        Daily from the first composite's first day to the last composite's last day.
    """
    max_gap = 2 * composite_days if max_gap_days is None else int(max_gap_days)
    start = pd.DatetimeIndex(ds["time"].values)
    middle = start + pd.Timedelta(days=composite_days // 2)
    days = pd.date_range(start[0], start[-1] + pd.Timedelta(days=composite_days - 1), freq="D")
    placed = ds.assign_coords(time=middle).reindex(time=days).chunk({"time": -1})
    filled = placed.interpolate_na("time", method="linear", max_gap=pd.Timedelta(days=max_gap))
    before = composite_days // 2
    after = composite_days - 1 - before
    filled = filled.bfill("time", limit=before) if before else filled
    return filled.ffill("time", limit=after) if after else filled


def apply_scaling(
    da: xr.DataArray, scale_factor=None, add_offset=None, fill_value=None, valid_range=None
) -> xr.DataArray:
    """Raw values to physical ones: fill values and values outside ``valid_range`` become NaN,
    then ``value * scale_factor + add_offset``.

    Parameters
    ----------
    da : xarray.DataArray
        Raw (e.g. integer) values.
    scale_factor, add_offset : float, optional
    fill_value : number or sequence of numbers, optional
    valid_range : (min, max), optional
        Inclusive, in raw units.
    """
    out = da.astype("float64")
    for value in np.atleast_1d(fill_value) if fill_value is not None else ():
        out = out.where(da != value)
    if valid_range is not None:
        out = out.where((da >= valid_range[0]) & (da <= valid_range[1]))
    if scale_factor is not None:
        out = out * float(scale_factor)
    if add_offset is not None:
        out = out + float(add_offset)
    return out.assign_attrs(da.attrs)


# --------------------------------------------------------------------------- internals

_SCALING = ("scale_factor", "add_offset", "fill_value", "valid_range")


def _open_cube_file(path: str, where: str, storage_options: dict | None) -> xr.Dataset:
    remote = "://" in path
    p = Path(path).expanduser()
    if not remote and not p.exists():
        raise DataError("cube not found", where=f"{where}: {path}", fix="Check the catalog path")
    try:
        if is_zarr(path):
            return xr.open_zarr(path if remote else p, chunks={}, storage_options=storage_options)
        return xr.open_dataset(p, chunks={})
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot open cube: {exc}", where=where) from None


def _rename(ds: xr.Dataset, variables: dict | None, where: str) -> xr.Dataset:
    if not variables:
        return ds
    missing = [name for name in variables if name not in ds.data_vars]
    if missing:
        raise DataError(
            f"variables {missing} named in 'variables' are not in the cube",
            where=where,
            fix=f"It has: {', '.join(map(str, ds.data_vars))}",
        )
    unknown = [new for new in variables.values() if new not in VARIABLES]
    if unknown:
        raise DataError(
            f"{unknown} are not canonical variable names",
            where=where,
            fix=f"Map source names to some of {', '.join(VARIABLES)}",
        )
    return ds[list(variables)].rename(variables)


def _finish(ds: xr.Dataset, where: str, options: dict) -> xr.Dataset:
    """Scaling, composites to days, subsetting, regridding and the unit check shared by all cubes."""
    if any(options.get(k) is not None for k in _SCALING):
        ds = ds.map(lambda da: _scaled(da, options, where))
    if options.get("composite_days"):
        if "time" not in ds.dims:
            raise DataError("composite_days is set but the cube has no time dimension", where=where)
        ds = composites_to_daily(ds, int(options["composite_days"]), options.get("max_gap_days"))
    ds = subset(ds, options.get("period"), options.get("bbox"), where)
    grid = options.get("grid")
    if grid is not None:
        ds = xr.merge([_regrid_dataset_var(ds[name], grid, name, where) for name in ds.data_vars])
    _check_units(ds, where)
    return ds


def _scaled(da: xr.DataArray, options: dict, where: str) -> xr.DataArray:
    try:
        return apply_scaling(da, *(options.get(k) for k in _SCALING))
    except (TypeError, ValueError, IndexError) as exc:
        raise DataError(
            f"bad scale_factor/add_offset/fill_value/valid_range: {exc}",
            where=where,
            fix="Give numbers, fill_value as a number or list, valid_range as [min, max]",
        ) from None


def _units_of(variable: str) -> str:
    """The canonical units of ``variable``; "1" for names that are not canonical variables."""
    return VARIABLES[variable].units if variable in VARIABLES else "1"


def _check_units(ds: xr.Dataset, where: str) -> None:
    for name in ds.data_vars:
        if name in VARIABLES:
            units = ds[name].attrs.get("units")
            if units not in (None, VARIABLES[name].units):
                raise DataError(
                    f"variable {name!r} has units {units!r}, expected {VARIABLES[name].units!r}",
                    where=where,
                    fix="Convert it, or name it differently in the cube",
                )


def _geotiff_files(path: str, where: str) -> list[str]:
    expanded = str(Path(path).expanduser())
    files = sorted(glob(expanded)) if re.search(r"[*?\[]", expanded) else [expanded]
    files = [f for f in files if Path(f).is_file()]
    if not files:
        raise DataError("GeoTIFF not found", where=f"{where}: {path}", fix="Check the catalog path")
    return files


def _read_geotiff(path: str, where: str) -> xr.DataArray:
    import rioxarray

    try:
        da = rioxarray.open_rasterio(path, mask_and_scale=False)
    except Exception as exc:  # noqa: BLE001 - rasterio raises its own RasterioIOError and friends
        raise DataError(f"cannot read the GeoTIFF: {exc}", where=f"{where}: {path}") from None
    if da.sizes.get("band", 1) != 1:
        raise DataError(
            f"the GeoTIFF has {da.sizes['band']} bands; one band per file is read",
            where=f"{where}: {path}",
            fix="Write one file per date (dates in the file names) or per variable",
        )
    da = da.isel(band=0, drop=True)
    nodata = da.rio.nodata
    values = da.astype("float64")
    if nodata is not None:
        values = values.where(da != nodata)
    values = values.rio.write_crs(da.rio.crs).rio.write_transform(da.rio.transform())
    return values.rio.write_nodata(np.nan)


def _file_dates(files: Sequence[str], where: str) -> pd.DatetimeIndex:
    dates = []
    for name in (Path(f).name for f in files):
        for pattern, fmt in DATE_PATTERNS:
            match = pattern.search(name)
            if match:
                dates.append(pd.to_datetime(match[1], format=fmt))
                break
        else:
            raise DataError(
                f"no date in the file name {name!r} of a GeoTIFF stack",
                where=where,
                fix="Name the files with their date, e.g. ndvi_A2018001.tif or ndvi_20180101.tif",
            )
    index = pd.DatetimeIndex(dates).as_unit("ns")
    if index.has_duplicates:
        raise DataError(
            f"two files of the stack have the date {index[index.duplicated()][0]:%Y-%m-%d}",
            where=where,
            fix="Keep one file per date",
        )
    return index


def _regrid_raster(da: xr.DataArray, grid: xr.Dataset, variable: str, categorical: bool, where: str) -> xr.Dataset:
    if da.rio.crs is None:
        raise DataError(
            "the GeoTIFF has no CRS, so it cannot be regridded",
            where=where,
            fix="Set one, e.g. gdal_edit.py -a_srs EPSG:4326",
        )
    out = regrid(da, grid["lat"].values, grid["lon"].values, categorical)
    if not categorical:
        out = out.rename({"value": variable})
        out[variable].attrs = {"units": _units_of(variable)}
    else:
        for name in out.data_vars:
            out[name].attrs = {
                "units": "1",
                "long_name": f"fraction of the cell covered by IGBP class {name.removeprefix('pft_')}",
            }
    return out.astype("float32")


def _regrid_dataset_var(da: xr.DataArray, grid: xr.Dataset, name: str, where: str) -> xr.Dataset:
    """A canonical lat/lon variable averaged onto ``grid`` (its attrs kept)."""
    import rioxarray  # noqa: F401  (registers the .rio accessor: a cube is not opened through it)

    raster = da.rename({"lat": "y", "lon": "x"}).rio.write_crs("EPSG:4326")
    out = regrid(raster, grid["lat"].values, grid["lon"].values)["value"]
    return out.astype("float32").assign_attrs(da.attrs).to_dataset(name=name)
