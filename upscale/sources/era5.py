"""ERA5 meteorology converted to canonical daily variables on read.

Two layouts are read:

- CDS NetCDF files (short names ``t2m, d2m, ssrd, tp, sp, u10, v10``; dims ``valid_time`` or
  ``time``, ``latitude``, ``longitude``), either hourly ("reanalysis-era5-single-levels") or
  daily ("derived-era5-single-levels-daily-statistics", or any daily sums/means you made);
- the ARCO-ERA5 Zarr layout (long names such as ``2m_temperature``, hourly, 0..360 longitudes,
  descending latitudes), locally or at an fsspec URL such as ``gs://gcp-public-data-arco-era5/...``.

Hourly data become days (UTC) as ECMWF's daily statistics do: instantaneous fields (t2m, d2m,
sp, u10, v10) are the mean of 00..23 UTC; accumulated fields (ssrd, tp) hold the hour *ending*
at their timestamp, so day D is the sum of the records stamped D 01:00 .. D+1 00:00. Only days
with all 24 hours are kept. VPD is computed per hour from t2m and d2m and then averaged (from the
daily means in daily files). Potential shortwave comes from astronomy (latitude and day of year).
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import DataError
from upscale.sources.grid import canonical_grid, is_zarr, select_period, subset
from upscale.variables import (
    VARIABLES,
    daily_accumulation_to_flux,
    hourly_mean_to_daily_total,
    kelvin_to_celsius,
    metres_to_mm,
    pascal_to_hpa,
    toa_shortwave_daily_mean,
    vpd_from_dewpoint,
)

#: ARCO-ERA5 (and CDS API request) long names -> CDS NetCDF short names.
LONG_NAMES = {
    "2m_temperature": "t2m",
    "2m_dewpoint_temperature": "d2m",
    "surface_solar_radiation_downwards": "ssrd",
    "total_precipitation": "tp",
    "surface_pressure": "sp",
    "10m_u_component_of_wind": "u10",
    "10m_v_component_of_wind": "v10",
}
#: Short name -> accepted spellings of its native units.
UNITS = {
    "t2m": ("K", "kelvin"),
    "d2m": ("K", "kelvin"),
    "ssrd": ("J m-2", "J m**-2", "J/m2", "J m^-2"),
    "tp": ("m", "metres", "meters", "m of water equivalent"),
    "sp": ("Pa",),
    "u10": ("m s-1", "m s**-1", "m/s"),
    "v10": ("m s-1", "m s**-1", "m/s"),
}
#: Fields accumulated over the hour (or day) ending at their timestamp.
ACCUMULATED = ("ssrd", "tp")
#: canonical name -> (ERA5 short names it needs)
PROVIDES = {
    "tas": ("t2m",),
    "vpd": ("t2m", "d2m"),
    "rsds": ("ssrd",),
    "pr": ("tp",),
    "rsds_pot": (),
    "ps": ("sp",),
    "ws": ("u10", "v10"),
}
#: How accumulated fields of daily files were aggregated: the day's total, or the mean of its hours.
DAILY_STATISTICS = ("sum", "mean")
HOURS_PER_DAY = 24


def open_era5(
    path: str,
    source: str | None = None,
    daily_statistic: str = "sum",
    period=None,
    bbox=None,
    storage_options: dict | None = None,
) -> xr.Dataset:
    """Open ERA5 files or a Zarr store (a path, glob or fsspec URL) as a lazy canonical daily Dataset.

    Parameters
    ----------
    path : str
        A NetCDF file, a glob matching one file per period (combined along time), or a Zarr
        store (``*.zarr``, a directory, or a URL such as ``gs://.../era5.zarr``).
    source : str, optional
        Name used in error messages (e.g. the catalog entry).
    daily_statistic : {"sum", "mean"}
        Daily files only: whether ssrd and tp hold the day's total (``daily_sum``, J m-2 and m per
        day) or the mean of its hourly accumulations (CDS ``daily_mean``, per hour).
    period : (start, end), optional
        Days to keep (inclusive); read before converting, so remote stores stay cheap.
    bbox : (lon_min, lat_min, lon_max, lat_max), optional
        Region to keep, in degrees (longitudes -180..180).
    storage_options : dict, optional
        fsspec options for remote stores (e.g. ``{"token": "anon"}``).

    Returns
    -------
    xarray.Dataset
        Of ``tas`` (degC), ``vpd`` (hPa), ``rsds`` (W m-2), ``pr`` (mm d-1), ``ps`` (hPa),
        ``ws`` (m s-1), those whose ERA5 fields are present, and ``rsds_pot`` (W m-2);
        float32, dims (time, lat, lon), daily at 00:00 UTC.

    Raises
    ------
    upscale.errors.DataError
        No files, files sharing days, no field it can map, units not ERA5's, a time step neither hourly nor daily.
    """
    where = source or path
    if daily_statistic not in DAILY_STATISTICS:
        raise DataError(
            f"daily_statistic {daily_statistic!r} is not one of {', '.join(DAILY_STATISTICS)}",
            where=where,
            fix="Use 'sum' for daily totals, 'mean' for CDS daily_mean files",
        )
    raw = _select_fields(_open(path, where, storage_options), where)
    raw = subset(canonical_grid(raw, where), _padded(period), bbox, where)
    fields = {name: _in_units(raw, name, where) for name in raw.data_vars}
    step = _time_step_hours(raw, where)
    out = _hourly_to_daily(fields, where) if step == 1 else _daily(fields, daily_statistic)
    ds = xr.Dataset({k: v.astype("float32") for k, v in out.items()})
    ds = select_period(ds, period)
    if ds.sizes.get("time", 0) == 0:
        _no_complete_day(where)
    ds["rsds_pot"] = potential_shortwave(ds)
    for name in ds.data_vars:
        ds[name].attrs = {"units": VARIABLES[name].units, "long_name": VARIABLES[name].long_name}
    ds.attrs["era5_fields"] = " ".join(fields)  # says why a canonical variable is missing
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


# --------------------------------------------------------------------------- opening


def _open(path: str, where: str, storage_options: dict | None) -> xr.Dataset:
    if is_zarr(path):
        try:
            return xr.open_zarr(path, chunks={}, storage_options=storage_options)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(
                f"cannot open the ERA5 Zarr store: {exc}",
                where=f"{where}: {path}",
                fix="Check the path or URL (and storage_options for remote stores)",
            ) from None
    if "://" in path:
        raise DataError(
            "remote ERA5 paths must be Zarr stores",
            where=f"{where}: {path}",
            fix="Download the NetCDF files, or point at a Zarr store (e.g. ARCO-ERA5)",
        )
    files = sorted(glob.glob(str(Path(path).expanduser())))
    if not files:
        raise DataError("no ERA5 files match the path", where=f"{where}: {path}", fix="Check the catalog path")
    try:
        return xr.open_mfdataset(
            files,
            combine="by_coords",
            chunks={},
            engine="netcdf4",
            data_vars="minimal",
            coords="minimal",
            compat="override",
        )
    except (OSError, ValueError) as exc:
        _check_repeated_times(files, where)  # the usual cause, in words xarray does not give
        raise DataError(
            f"cannot open ERA5 files: {exc}", where=where, fix="Pass CDS NetCDF files (one per period) on one grid"
        ) from None


def _check_repeated_times(files: list[str], where: str) -> None:
    """Raise a DataError naming the files that share timestamps (or repeat one inside a file)."""
    seen: dict = {}
    for file in files:
        try:
            with xr.open_dataset(file, engine="netcdf4", chunks=None) as ds:
                name = "valid_time" if "valid_time" in ds.coords else "time"
                times = pd.DatetimeIndex(ds[name].values) if name in ds.coords else pd.DatetimeIndex([])
        except (OSError, ValueError, TypeError):
            continue  # unreadable on its own: the caller reports xarray's message
        repeated = times[times.duplicated()]
        if repeated.size:
            raise DataError(
                f"timestamps repeat inside the file ({_days(repeated)})",
                where=f"{where}: {file}",
                fix="Remove the repeated records",
            )
        for other, other_times in seen.items():
            shared = times.intersection(other_times)
            if shared.size:
                raise DataError(
                    f"two ERA5 files hold the same times ({_days(shared)})",
                    where=f"{where}: {other} and {file}",
                    fix="Keep one file per period (a copy or an overlapping download is the usual cause)",
                )
        seen[file] = times


def _days(times: pd.DatetimeIndex) -> str:
    days = times.floor("D").unique()
    text = f"{days[0]:%Y-%m-%d}..{days[-1]:%Y-%m-%d}" if days.size > 1 else f"{days[0]:%Y-%m-%d}"
    return f"{days.size} day{'s' if days.size > 1 else ''}, {text}"


def missing_field_error(ds: xr.Dataset, name: str, where: str) -> DataError | None:
    """Why canonical variable ``name`` is not in ``ds`` (an opened ERA5 entry): the ERA5 fields it needs.

    None when ``name`` is not an ERA5 variable or the fields the entry holds are not recorded.
    """
    fields = ds.attrs.get("era5_fields")
    if name not in PROVIDES or fields is None:
        return None
    missing = [field for field in PROVIDES[name] if field not in fields.split()]
    if not missing:
        return None
    long = {short: long for long, short in LONG_NAMES.items()}
    return DataError(
        f"ERA5 field {' and '.join(map(repr, missing))} is missing, and {name} is computed from "
        f"{' and '.join(PROVIDES[name])} (the files hold {', '.join(fields.split())})",
        where=where,
        fix=f"Download {', '.join(f'{m} ({long[m]})' for m in missing)} too, "
        f"or drop {name} from the recipe's predictors",
    )


def _select_fields(raw: xr.Dataset, where: str) -> xr.Dataset:
    """The known ERA5 fields under their short names, nothing else (ARCO stores hold hundreds)."""
    raw = raw.rename({long: short for long, short in LONG_NAMES.items() if long in raw.data_vars})
    known = [name for name in UNITS if name in raw.data_vars]
    if not known:
        found = ", ".join(map(str, list(raw.data_vars)[:12])) or "nothing"
        raise DataError(
            f"no ERA5 field it can map (found {found})",
            where=where,
            fix=f"Provide some of {', '.join(UNITS)} (CDS short names) or "
            f"{', '.join(LONG_NAMES)} (ARCO-ERA5 long names)",
        )
    raw = raw[known]
    return raw.drop_vars([c for c in raw.coords if c not in raw.dims and c not in ("valid_time", "time")])


def _padded(period):
    """The period plus one day, for the accumulation stamped 00:00 of the day after the last."""
    if period is None:
        return None
    return pd.Timestamp(period[0]), pd.Timestamp(period[1]) + pd.Timedelta(days=1)


def _in_units(raw: xr.Dataset, name: str, where: str) -> xr.DataArray:
    units = str(raw[name].attrs.get("units", "")).strip()
    if units not in UNITS[name]:
        raise DataError(
            f"ERA5 field {name!r} has units {units!r}, expected {UNITS[name][0]!r}",
            where=where,
            fix="Provide the field in ERA5's native units",
        )
    return raw[name]


def _time_step_hours(raw: xr.Dataset, where: str) -> int:
    if "time" not in raw.dims:
        raise DataError("no time dimension (looked for time, valid_time)", where=where)
    times = raw["time"].values
    if times.size < 2:
        return 24
    step = int(np.median(np.diff(times)).astype("timedelta64[m]").astype(int))
    if step not in (60, 24 * 60):
        raise DataError(
            f"ERA5 time step is {step} minutes; only hourly and daily data are read",
            where=where,
            fix="Use hourly files or daily statistics files (1-hourly frequency)",
        )
    return step // 60


# --------------------------------------------------------------------------- conversion


def _daily(fields: dict[str, xr.DataArray], daily_statistic: str) -> dict[str, xr.DataArray]:
    """Daily files: accumulations are per day ('sum') or per hour ('mean')."""

    def total(da):
        return da if daily_statistic == "sum" else hourly_mean_to_daily_total(da)

    daily = {name: total(da) if name in ACCUMULATED else da for name, da in fields.items()}
    daily = {name: da.assign_coords(time=da["time"].dt.floor("D")) for name, da in daily.items()}
    out = _canonical(daily)
    out.update(_derived(daily))  # from daily means: VPD of the mean day, speed of the mean wind vector
    return out


def _hourly_to_daily(fields: dict[str, xr.DataArray], where: str) -> dict[str, xr.DataArray]:
    """Hourly fields to complete UTC days (see the module docstring)."""
    hourly = {**fields, **_derived(fields)}
    times = pd.DatetimeIndex(next(iter(fields.values()))["time"].values)
    days = _complete_days(times, shift_hours=0)
    if any(name in fields for name in ACCUMULATED):
        days = days.intersection(_complete_days(times, shift_hours=1))
    if days.size == 0:
        _no_complete_day(where)
    daily = {}
    for name, da in hourly.items():
        shift = 1 if name in ACCUMULATED else 0
        blocks = da.isel(time=_positions(times, days, shift))
        blocks = blocks.chunk({"time": HOURS_PER_DAY * min(days.size, 32)}).coarsen(time=HOURS_PER_DAY)
        reduced = blocks.reduce(np.sum if shift else np.mean)  # NaN propagates: a missing hour, a missing day
        daily[name] = reduced.assign_coords(time=days.values)
    out = _canonical(daily)
    for name in ("vpd", "ws"):
        if name in daily:
            out[name] = daily[name]
    return out


def _derived(fields: dict[str, xr.DataArray]) -> dict[str, xr.DataArray]:
    """VPD (hPa, from t2m and d2m) and wind speed (m s-1, from u10 and v10) where their fields exist."""
    out = {}
    if "t2m" in fields and "d2m" in fields:
        out["vpd"] = vpd_from_dewpoint(kelvin_to_celsius(fields["t2m"]), kelvin_to_celsius(fields["d2m"]))
    if "u10" in fields and "v10" in fields:
        out["ws"] = np.hypot(fields["u10"], fields["v10"])
    return out


def _no_complete_day(where: str) -> None:
    raise DataError(
        "no complete day of ERA5 data in the files (or in the period asked for)",
        where=where,
        fix="Hourly files need all 24 hours of a day (accumulations: up to 00:00 of the next day)",
    )


def _positions(times: pd.DatetimeIndex, days: pd.DatetimeIndex, shift_hours: int) -> np.ndarray:
    """Positions of the records of ``days`` (24 consecutive ones per day, in order)."""
    of_day = (times - pd.Timedelta(hours=shift_hours)).floor("D")
    return np.flatnonzero(of_day.isin(days))


def _complete_days(times: pd.DatetimeIndex, shift_hours: int) -> pd.DatetimeIndex:
    """Days (00:00) that have all 24 hourly records once shifted back by ``shift_hours``."""
    days = (times - pd.Timedelta(hours=shift_hours)).floor("D")
    counts = pd.Series(1, index=days).groupby(level=0).sum()
    return pd.DatetimeIndex(counts.index[counts.to_numpy() == HOURS_PER_DAY]).as_unit("ns")


def _canonical(daily: dict[str, xr.DataArray]) -> dict[str, xr.DataArray]:
    """Daily ERA5 fields (daily totals for accumulations) in canonical names and units.

    VPD and wind speed are left to the caller, which knows whether hourly values exist.
    """
    out = {}
    if "t2m" in daily:
        out["tas"] = kelvin_to_celsius(daily["t2m"])
    if "ssrd" in daily:
        out["rsds"] = daily_accumulation_to_flux(daily["ssrd"])
    if "tp" in daily:
        out["pr"] = metres_to_mm(daily["tp"])
    if "sp" in daily:
        out["ps"] = pascal_to_hpa(daily["sp"])
    return out
