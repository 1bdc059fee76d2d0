"""ERA5 meteorology (CDS NetCDF short names) converted to canonical variables on read."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import xarray as xr

from upscale.errors import DataError
from upscale.sources.grid import canonical_grid
from upscale.variables import (
    VARIABLES, daily_accumulation_to_flux, kelvin_to_celsius, metres_to_mm,
    toa_shortwave_daily_mean, vpd_from_dewpoint,
)

# canonical name -> (ERA5 short names it needs)
PROVIDES = {"tas": ("t2m",), "vpd": ("t2m", "d2m"), "rsds": ("ssrd",), "pr": ("tp",), "rsds_pot": ()}


def open_era5(path: str, source: str | None = None) -> xr.Dataset:
    """Open daily ERA5 NetCDF files (a path or glob) as a lazy canonical Dataset.

    Parameters
    ----------
    path : str
        A file, or a glob matching one file per period (combined along time).
    source : str, optional
        Name used in error messages (e.g. the catalog entry).

    Returns
    -------
    xarray.Dataset
        ``tas`` (degC), ``vpd`` (hPa), ``rsds`` (W m-2), ``pr`` (mm d-1) and ``rsds_pot`` (W m-2)
        for those whose ERA5 fields are present; dims (time, lat, lon).
    """
    where = source or path
    files = sorted(glob.glob(str(Path(path).expanduser())))
    if not files:
        raise DataError("no ERA5 files match the path", where=f"{where}: {path}", fix="Check the catalog path")
    try:
        raw = xr.open_mfdataset(files, combine="by_coords", chunks={}, engine="netcdf4",
                                data_vars="minimal", coords="minimal", compat="override")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot open ERA5 files: {exc}", where=where) from None
    raw = canonical_grid(raw, where)
    _check_daily(raw, where)
    out = {}
    if "t2m" in raw:
        out["tas"] = kelvin_to_celsius(_in_units(raw, "t2m", "K", where))
        if "d2m" in raw:
            out["vpd"] = vpd_from_dewpoint(out["tas"], kelvin_to_celsius(_in_units(raw, "d2m", "K", where)))
    if "ssrd" in raw:
        out["rsds"] = daily_accumulation_to_flux(_in_units(raw, "ssrd", "J m-2", where))
    if "tp" in raw:
        out["pr"] = metres_to_mm(_in_units(raw, "tp", "m", where))
    if not out:
        raise DataError("none of the ERA5 fields t2m, d2m, ssrd, tp is in the files", where=where)
    ds = xr.Dataset({k: v.astype("float32") for k, v in out.items()})
    ds["rsds_pot"] = potential_shortwave(ds)
    for name in ds.data_vars:
        ds[name].attrs = {"units": VARIABLES[name].units, "long_name": VARIABLES[name].long_name}
    return ds


def potential_shortwave(ds: xr.Dataset) -> xr.DataArray:
    """Daily mean top-of-atmosphere shortwave (W m-2) on the grid and chunks of ``ds``, lazily.

    Only the small (time, lat) table is computed eagerly; the broadcast over longitude stays
    lazy, so task graphs never carry a full-size array.
    """
    doy = ds["time"].dt.dayofyear
    toa = xr.apply_ufunc(toa_shortwave_daily_mean, ds["lat"], doy).astype("float32")
    template = ds[next(iter(ds.data_vars))]
    return (xr.zeros_like(template) + toa).transpose(*template.dims)


def _in_units(raw: xr.Dataset, name: str, expected: str, where: str) -> xr.DataArray:
    units = raw[name].attrs.get("units", "").strip()
    aliases = {"K": {"K", "kelvin"}, "J m-2": {"J m-2", "J m**-2", "J/m2"}, "m": {"m", "metres", "meters"}}
    if units not in aliases[expected]:
        raise DataError(f"ERA5 field {name!r} has units {units!r}, expected {expected!r}", where=where,
                        fix="Provide the field in ERA5's native units")
    return raw[name]


def _check_daily(raw: xr.Dataset, where: str) -> None:
    times = raw["time"].values
    if times.size > 1:
        step = np.median(np.diff(times)).astype("timedelta64[h]").astype(int)
        if step != 24:
            raise DataError(f"ERA5 time step is {step} h; only daily files are supported so far", where=where,
                            fix="Use daily statistics files (CDS 'derived-era5-single-levels-daily-statistics')")
