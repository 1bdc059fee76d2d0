"""Aggregates of a product: monthly and annual means, true cell areas, area-weighted global totals.

``upscale aggregate RUN_DIR --freq month|year`` writes ``RUN_DIR/aggregates/product_<freq>.zarr``:
the mean of the daily values over each calendar month or year, with ``time`` at the middle
of the days averaged and ``time_bnds`` spanning exactly those days (a partial first or last
month covers only the days the product has). Global totals (GPP in Pg C per year, ET in
10^3 km3 per year) integrate the daily product over true cell areas on a sphere of the
authalic radius of WGS 84 (the sphere with the ellipsoid's surface area).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import upscale
from upscale import cf
from upscale.errors import RunDirError
from upscale.outputs import FLAG_NAME
from upscale.rundir import RunDir
from upscale.store import write_atomically

AUTHALIC_RADIUS_M = 6371007.181  # WGS 84 authalic sphere (Moritz 2000)
DAYS_PER_YEAR = 365.25
FREQS = {"month": "MS", "year": "YS"}
WATER_DENSITY = 1000.0  # kg m-3
# target -> (quantity, units of the total, multiplier from canonical flux x m2 x days to those units)
TOTALS = {"gpp": ("GPP", "Pg C yr-1", 1e-15), "et": ("ET", "10^3 km3 yr-1", 1.0 / WATER_DENSITY / 1e12)}


def cell_areas(lat_bnds: np.ndarray, lon_bnds: np.ndarray, radius: float = AUTHALIC_RADIUS_M) -> np.ndarray:
    """Areas (m2) of latitude-longitude cells on a sphere: R^2 * dlon * (sin(lat1) - sin(lat0)).

    Parameters
    ----------
    lat_bnds, lon_bnds : numpy.ndarray
        [n_lat, 2] and [n_lon, 2] cell bounds in degrees.
    radius : float
        Sphere radius in m (default: the WGS 84 authalic radius).

    Returns
    -------
    numpy.ndarray
        [n_lat, n_lon] cell areas in m2.
    """
    lat = np.deg2rad(np.asarray(lat_bnds, dtype="float64"))
    lon = np.deg2rad(np.asarray(lon_bnds, dtype="float64"))
    band = np.abs(np.sin(lat[:, 1]) - np.sin(lat[:, 0]))
    width = np.abs(lon[:, 1] - lon[:, 0])
    return radius**2 * band[:, None] * width[None, :]


def product_areas(ds: xr.Dataset) -> xr.DataArray:
    """Cell areas of a product (from its ``lat_bnds``/``lon_bnds``) as a (lat, lon) DataArray in m2."""
    areas = cell_areas(*cf.spatial_bounds(ds))
    return xr.DataArray(
        areas,
        dims=("lat", "lon"),
        coords={"lat": ds.lat, "lon": ds.lon},
        attrs={"standard_name": "cell_area", "units": "m2"},
    )


def zonal_sums(ds: xr.Dataset, names: list[str]) -> xr.Dataset:
    """Per variable, the sums over longitude of value x cell area and of the area of the cells with data.

    ``<name>`` and ``<name>_area``, (time, lat), computed in one pass over the product: a latitude
    band's area-weighted mean is then a ratio of sums over latitude, and the daily global integral
    the sum of ``<name>`` over latitude.
    """
    areas = product_areas(ds).drop_attrs()  # the sums are not cell areas
    sums = {}
    for name in names:
        sums[name] = (ds[name].fillna(0) * areas).sum("lon")
        sums[f"{name}_area"] = (ds[name].notnull() * areas).sum("lon")
    return xr.Dataset(sums).compute()


def flux_targets(ds: xr.Dataset) -> list[str]:
    """The targets of a product: its variables that have ``ancillary_variables``."""
    return [name for name, var in ds.data_vars.items() if "ancillary_variables" in var.attrs]


def global_totals(ds: xr.Dataset, zonal: xr.Dataset | None = None) -> pd.DataFrame:
    """Area-weighted global totals of GPP and ET over the product's period, per year.

    The mean over days of the daily global integral (sum over cells of flux x cell area),
    times 365.25 days: the annual total for a product that spans whole years, otherwise the
    period's mean rate expressed per year. ``se_upper`` is the same integral of the total
    standard deviation: the standard error if errors were fully correlated in space and time,
    an upper bound otherwise. ``zonal``: the product's :func:`zonal_sums` of the targets and
    their ``_sd``, when already computed (the report's); otherwise computed here.

    Returns
    -------
    pandas.DataFrame
        One row per target with a total: target, quantity, units, start, end, days, total, se_upper.
    """
    targets = [t for t in flux_targets(ds) if t in TOTALS]
    if zonal is None:
        zonal = zonal_sums(ds, [name for t in targets for name in (t, f"{t}_sd")])
    rows = []
    for target in targets:
        quantity, units, scale = TOTALS[target]
        to_canonical = cf.canonical_factor(target, ds[target].attrs["units"])
        row = {
            "target": target,
            "quantity": quantity,
            "units": units,
            "start": str(ds.time.values[0])[:10],
            "end": str(ds.time.values[-1])[:10],
            "days": ds.sizes["time"],
        }
        for column, name in (("total", target), ("se_upper", f"{target}_sd")):
            daily = zonal[name].sum("lat") * to_canonical  # canonical units x m2, per day
            row[column] = float(daily.mean("time")) * DAYS_PER_YEAR * scale
        rows.append(row)
    return pd.DataFrame(rows, columns=["target", "quantity", "units", "start", "end", "days", "total", "se_upper"])


def time_means(ds: xr.Dataset, freq: str) -> xr.Dataset:
    """Monthly or annual means of a daily product, with CF time bounds and cell methods.

    Parameters
    ----------
    ds : xarray.Dataset
        A daily product (as written by ``upscale run``).
    freq : {"month", "year"}
        Calendar months or years.

    Returns
    -------
    xarray.Dataset
        Each flux and uncertainty variable averaged over the days of each period (NaN days
        skipped); the extrapolation flag becomes ``extrapolation_fraction``, the share of
        those days flagged; ``time`` is the middle of the days averaged and ``time_bnds``
        spans them.
    """
    if freq not in FREQS:
        raise RunDirError(f"unknown aggregation frequency {freq!r}", where="--freq", fix="Use month or year")
    names = [n for n in ds.data_vars if "time" in ds[n].dims and not n.endswith("_bnds")]
    daily = ds[names]
    if FLAG_NAME in daily:  # its no_prediction value (-127) must not enter the share of days flagged
        daily = daily.assign({FLAG_NAME: cf.flag_share(daily[FLAG_NAME])})
    groups = daily.resample(time=FREQS[freq])
    out = groups.mean(skipna=True)
    first = ds.time.resample(time=FREQS[freq]).min().values
    last = ds.time.resample(time=FREQS[freq]).max().values + np.timedelta64(1, "D")
    out = out.assign_coords(time=("time", first + (last - first) / 2, cf.axis_attrs("time")))
    out["time_bnds"] = (("time", cf.BOUNDS_DIM), np.stack([first, last], axis=-1))
    for axis, bounds in zip(("lat", "lon"), cf.spatial_bounds(ds)):
        out[axis].attrs = cf.axis_attrs(axis)
        out[f"{axis}_bnds"] = ((axis, cf.BOUNDS_DIM), bounds, {"units": cf.axis_attrs(axis)["units"]})
    for name in names:
        out[name].attrs = _mean_attrs(ds[name].attrs, freq)
    if FLAG_NAME in out:
        out = out.rename({FLAG_NAME: f"{FLAG_NAME}_fraction"})
        for name in flux_targets(out):
            out[name].attrs["ancillary_variables"] = (
                out[name].attrs["ancillary_variables"].replace(FLAG_NAME, f"{FLAG_NAME}_fraction")
            )
    out.attrs = cf.append_history(
        dict(ds.attrs), f"{freq}ly means by upscale {upscale.__version__} (upscale aggregate)"
    )
    return out


def _mean_attrs(attrs: dict, freq: str) -> dict:
    """Attributes of a variable's period mean: cell_methods over the days, flags become fractions."""
    period = {"month": "calendar month", "year": "calendar year"}[freq]
    attrs = dict(attrs)
    if "flag_values" in attrs:
        for key in ("flag_values", "flag_meanings"):
            attrs.pop(key)
        return {
            **attrs,
            "long_name": f"fraction of the days of the {period} with predictors outside the range "
            "seen at the training sites",
            "units": "1",
            "cell_methods": "time: mean (interval: 1 day)",
        }
    attrs["cell_methods"] = "time: mean (interval: 1 day)"
    attrs["long_name"] = f"{attrs.get('long_name', '')}, mean over the days of the {period}"
    if "standard_error" in attrs.get("standard_name", ""):
        attrs["comment"] = (
            "mean of the daily standard deviations: the standard error of the period mean if "
            "daily errors are fully correlated, an upper bound otherwise"
        )
    return attrs


def aggregate_product(run_dir: str | Path, freq: str, overwrite: bool = False) -> Path:
    """Write the ``freq`` means of a run's product to ``RUN_DIR/aggregates/product_<freq>.zarr``.

    Raises
    ------
    RunDirError
        If the product is missing or unfinished, ``freq`` is unknown, or the output exists
        and ``overwrite`` is false. Nothing is left half-written.
    """
    files = RunDir(run_dir)
    product = files.finished_product()
    target = files.aggregate(freq)
    if target.exists() and not overwrite:
        raise RunDirError("the aggregate exists", where=str(target), fix="Pass --overwrite to replace it")
    ds = xr.open_zarr(product)
    out = time_means(ds, freq)
    _, tile_lat, tile_lon = ds[flux_targets(ds)[0]].data.chunksize
    out = out.chunk({"time": -1, "lat": tile_lat, "lon": tile_lon, cf.BOUNDS_DIM: -1})
    for name in out.variables:
        out[name].encoding = {}
    target.parent.mkdir(exist_ok=True)
    return write_atomically(target, lambda tmp: out.to_zarr(tmp, mode="w-", encoding=cf.encoding(out)), overwrite)
