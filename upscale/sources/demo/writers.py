"""Writing the demo world in the formats of the real data, and :func:`write_world` that does it all.

ERA5 daily NetCDF, an EO Zarr cube, a PFT GeoTIFF, FLUXNET2015 DD CSV files with noise, gaps and
QC, a site list, the truth and the true sensitivities as Zarr, and a catalog pointing at all of it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from upscale.errors import DataError, UpscaleError
from upscale.sources.demo.noise import S_OBS, rng
from upscale.sources.demo.sensitivity import SENSITIVITY_DEFINITION
from upscale.sources.demo.sites import site_cells, site_table
from upscale.sources.demo.spec import WORLD_VERSION, DemoSpec
from upscale.sources.demo.world import simulate
from upscale.variables import SECONDS_PER_DAY


def write_fluxnet(spec, world, sites, folder: Path) -> None:
    """One FLUXNET2015 DD CSV file per site (observation errors from stream S_OBS, j) and sites.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    y0, y1 = spec.start[:4], spec.end[:4]
    iy, ix = site_cells(world, sites)
    for j, sid in enumerate(sites["SITE_ID"]):
        table = site_table(world, sites, j, int(iy[j]), int(ix[j]), rng(spec, S_OBS, j))
        table.to_csv(folder / f"FLX_{sid}_FLUXNET2015_SUBSET_DD_{y0}-{y1}_1-4.csv", index=False, float_format="%.10g")
    meta = sites[["SITE_ID", "SITE_NAME", "LOCATION_LAT", "LOCATION_LONG", "LOCATION_ELEV", "IGBP"]]
    meta.to_csv(folder / "sites.csv", index=False)


_ERA5_VARS = {
    # name: (units, long_name, standard_name)
    "t2m": ("K", "2 metre temperature", "air_temperature"),
    "d2m": ("K", "2 metre dewpoint temperature", "dew_point_temperature"),
    "ssrd": ("J m-2", "Surface short-wave (solar) radiation downwards", "surface_downwelling_shortwave_flux_in_air"),
    "tp": ("m", "Total precipitation", "lwe_thickness_of_precipitation_amount"),
    "u10": ("m s-1", "10 metre U wind component", "eastward_wind"),
    "v10": ("m s-1", "10 metre V wind component", "northward_wind"),
}


def write_era5(world, folder: Path) -> None:
    """One NetCDF file per year in the layout of a CDS ERA5 daily download (lat descending, lon 0..360)."""
    folder.mkdir(parents=True, exist_ok=True)
    lon360 = np.mod(world.lon.values, 360.0)
    order = np.argsort(lon360, kind="stable")
    lat_desc = world.lat.values[::-1]
    time = pd.DatetimeIndex(world.time.values)
    ny, nx = lat_desc.size, lon360.size
    for year in np.unique(time.year):
        sel = np.flatnonzero(time.year == year)
        t0, t1 = sel[0], sel[-1] + 1
        values = _era5_fields(world, slice(t0, t1), order)
        ds = _era5_dataset(values, time.values[t0:t1], lat_desc, lon360[order])
        chunks = (min(t1 - t0, 31), min(ny, 360), min(nx, 720))
        enc = {
            k: {"zlib": True, "complevel": 1, "chunksizes": chunks, "_FillValue": np.float32(np.nan)} for k in values
        }
        enc["valid_time"] = {"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"}
        ds.to_netcdf(folder / f"era5_daily_{year}.nc", engine="netcdf4", format="NETCDF4", encoding=enc)


def _era5_fields(world, days: slice, order: np.ndarray) -> dict[str, np.ndarray]:
    """The ERA5 fields of some days, in ERA5 units, lat descending and lon in 0..360 order."""

    def cut(name):
        return world[name].values[days, ::-1, :][:, :, order]

    return {
        "t2m": cut("tas") + np.float32(273.15),
        "d2m": cut("tdew") + np.float32(273.15),
        "ssrd": cut("rsds") * np.float32(SECONDS_PER_DAY),
        "tp": cut("pr") / np.float32(1000.0),
        "u10": cut("u10"),
        "v10": cut("v10"),
    }


def _era5_dataset(values: dict, time: np.ndarray, lat_desc: np.ndarray, lon: np.ndarray) -> xr.Dataset:
    """A CDS-style dataset of the fields, with ERA5 names, units and coordinate attributes."""
    dims = ("valid_time", "latitude", "longitude")
    return xr.Dataset(
        {
            k: (
                dims,
                v.astype(np.float32),
                {"units": _ERA5_VARS[k][0], "long_name": _ERA5_VARS[k][1], "standard_name": _ERA5_VARS[k][2]},
            )
            for k, v in values.items()
        },
        coords={
            "valid_time": ("valid_time", time, {"long_name": "time", "standard_name": "time"}),
            "latitude": (
                "latitude",
                lat_desc,
                {
                    "units": "degrees_north",
                    "standard_name": "latitude",
                    "long_name": "latitude",
                    "stored_direction": "decreasing",
                },
            ),
            "longitude": (
                "longitude",
                lon,
                {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
            ),
        },
        attrs={
            "Conventions": "CF-1.7",
            "institution": "upscale demo world (synthetic)",
            "GRIB_centre": "ecmf",
            "history": "synthetic daily statistics (daily mean / daily sum) in the layout of a CDS ERA5 daily download",
        },
    )


def _cube_chunks(world) -> dict:
    return {"time": min(world.time.size, 365), "lat": min(world.lat.size, 512), "lon": min(world.lon.size, 512)}


def _to_zarr(ds: xr.Dataset, path: Path) -> None:
    # Zarr format 2: consolidated metadata and string coordinates are part of its specification.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w-", consolidated=True, zarr_format=2)


def write_eo(world, path: Path) -> None:
    """fapar and ndvi as a consolidated Zarr cube."""
    chunks = _cube_chunks(world)
    ds = world[["fapar", "ndvi"]].copy()
    ds.attrs = {
        "title": "upscale demo world (synthetic): Earth-observation cube",
        "institution": "upscale demo world (synthetic)",
    }
    ds["fapar"].attrs = {
        "units": "1",
        "long_name": "fraction of absorbed photosynthetically active radiation",
        "standard_name": "fraction_of_surface_downwelling_photosynthetic_radiative_flux_absorbed_by_vegetation",
    }
    ds["ndvi"].attrs = {
        "units": "1",
        "long_name": "normalized difference vegetation index",
        "standard_name": "normalized_difference_vegetation_index",
    }
    ds = ds.chunk(chunks)
    for v in ds.data_vars:
        ds[v].encoding = {}
    _to_zarr(ds, path)


def write_static(world, path: Path) -> None:
    """The PFT map as a GeoTIFF (EPSG:4326, nodata 0 over water)."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    path.parent.mkdir(parents=True, exist_ok=True)
    da = xr.DataArray(
        world["pft"].values[::-1, :].astype(np.uint8),
        dims=("y", "x"),
        coords={"y": world.lat.values[::-1], "x": world.lon.values},
        name="pft",
        attrs={"long_name": "plant functional type (IGBP)"},
    )
    da = da.rio.write_crs("EPSG:4326").rio.write_nodata(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # affine's `*` inside rioxarray
        warnings.simplefilter("ignore", DeprecationWarning)
        da.rio.to_raster(path, compress="DEFLATE")


def write_truth(spec, world, sites, path: Path) -> None:
    """The true GPP, ET, soil water, water limitation, PFT, land mask and site biases as Zarr."""
    chunks = _cube_chunks(world)
    ds = world[["gpp", "et", "soil_water", "water_limitation", "pft"]].copy()
    ds["land_mask"] = world["land_mask"].astype(np.int8)
    ds["land_mask"].attrs = {"units": "1", "long_name": "land (1) or water/ice (0)"}
    ds["pft"].attrs = {"units": "1", "long_name": "plant functional type (IGBP)", "comment": "0 = water"}
    ds = ds.assign_coords(site=("site", sites["SITE_ID"].values.astype(str)))
    ds["site_lat"] = ("site", sites["LOCATION_LAT"].values.astype(np.float64), {"units": "degrees_north"})
    ds["site_lon"] = ("site", sites["LOCATION_LONG"].values.astype(np.float64), {"units": "degrees_east"})
    ds["site_bias"] = (
        "site",
        sites["bias"].values.astype(np.float64),
        {
            "units": "1",
            "long_name": "multiplicative bias of the site's observations (obs = truth * (1 + bias) + noise)",
        },
    )
    ds.attrs = {
        "title": "upscale demo world (synthetic): the truth",
        "institution": "upscale demo world (synthetic)",
        "demo_spec": json.dumps(spec.to_dict(), sort_keys=True),
        "world_version": WORLD_VERSION,
    }
    cube = dict.fromkeys(("gpp", "et", "soil_water"), chunks)
    for name in ds.data_vars:
        ds[name].encoding = {}
        if name in cube:
            ds[name] = ds[name].chunk(chunks)
    _to_zarr(ds, path)


def _month_bounds(months: np.ndarray, time: np.ndarray) -> np.ndarray:
    """[n, 2] bounds of monthly means: month start and next month start, clipped to the period."""
    start = pd.DatetimeIndex(months)
    bounds = np.stack([start.values, (start + pd.offsets.MonthBegin(1)).values], axis=1)
    first, after_last = time[0], time[-1] + np.timedelta64(1, "D")
    return np.clip(bounds, first, after_last)


def write_sensitivity(spec, world, path: Path) -> None:
    """The true sensitivities as CF Zarr: monthly means on time, period means on (lat, lon)."""
    names = [name for name in world.data_vars if "_sens_" in name]
    ds = world[names].rename(month="time")
    ds["time"].attrs = {
        "long_name": "time",
        "standard_name": "time",
        "axis": "T",
        "bounds": "time_bnds",
        "comment": "first day of each calendar month of the period",
    }
    ds["time_bnds"] = (("time", "bnds"), _month_bounds(world.month.values, world.time.values))
    ds.attrs = {
        "title": "upscale demo world (synthetic): true sensitivities of GPP and ET to the drivers",
        "institution": "upscale demo world (synthetic)",
        "Conventions": "CF-1.8",
        "comment": f"each variable: {SENSITIVITY_DEFINITION}",
        "demo_spec": json.dumps(spec.to_dict(), sort_keys=True),
        "world_version": WORLD_VERSION,
    }
    chunks = {"time": ds.sizes["time"], "lat": min(ds.sizes["lat"], 512), "lon": min(ds.sizes["lon"], 512)}
    for name in names:
        ds[name].encoding = {}
        ds[name] = ds[name].chunk({d: chunks[d] for d in ds[name].dims})
    ds["time"].encoding = {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian"}
    _to_zarr(ds, path)


def write_catalog(spec, path: Path) -> None:
    """catalog.yaml with an entry for each of the files written by :func:`write_world`."""
    box = "" if spec.bbox is None else f", bbox {list(spec.bbox)}"
    catalog = {
        "description": (
            f"upscale demo world (synthetic), seed {spec.seed}, {spec.resolution} deg, "
            f"{spec.start}..{spec.end}, {spec.n_sites} sites{box}"
        ),
        "entries": {
            "era5": {"driver": "era5", "path": "era5/era5_daily_*.nc"},
            "eo": {"driver": "cube", "path": "eo/eo_daily.zarr"},
            "static": {"driver": "geotiff", "path": "static/pft.tif", "variable": "pft", "categorical": True},
            "fluxnet": {
                "driver": "fluxnet",
                "path": "fluxnet/FLX_*_FLUXNET2015_SUBSET_DD_*.csv",
                "site_list": "fluxnet/sites.csv",
            },
            "truth": {"driver": "cube", "path": "truth.zarr"},
            "sensitivity": {"driver": "cube", "path": "sensitivity.zarr"},
        },
    }
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))


OWNER_FILE = ".writer-pid"


def temp_prefix(out_dir: Path) -> str:
    """The name prefix of the hidden folder a world is written into before it is renamed to ``out_dir``."""
    return f".{out_dir.name}.tmp-"


def write_world(spec: DemoSpec, out_dir: str | Path) -> Path:
    """Simulate the world of ``spec`` and write it under ``out_dir``; returns the path of catalog.yaml.

    The files are written into a temporary sibling folder that is renamed to ``out_dir`` at the
    end, so a crash never leaves a half-written world. ``out_dir`` must not exist or be empty.

    Raises
    ------
    DataError
        If ``out_dir`` exists and is not empty (also when another process finished first).
    """
    if not isinstance(spec, DemoSpec):
        raise UpscaleError(f"write_world() needs a DemoSpec, got {type(spec).__name__}", "upscale.sources.demo")
    out_dir = Path(out_dir).expanduser().absolute()
    exists_error = DataError(
        "the output folder exists and is not empty", str(out_dir), "choose a new folder, or delete this one first"
    )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise exists_error
    world, sites = simulate(spec)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out_dir), dir=out_dir.parent))
    owner = tmp / OWNER_FILE
    owner.write_text(str(os.getpid()))  # a folder whose writer died is removed by the next caller
    try:
        write_era5(world, tmp / "era5")
        (tmp / "eo").mkdir()
        write_eo(world, tmp / "eo" / "eo_daily.zarr")
        write_static(world, tmp / "static" / "pft.tif")
        write_fluxnet(spec, world, sites, tmp / "fluxnet")
        write_truth(spec, world, sites, tmp / "truth.zarr")
        write_sensitivity(spec, world, tmp / "sensitivity.zarr")
        write_catalog(spec, tmp / "catalog.yaml")
        owner.unlink()
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, out_dir)
        except OSError as err:
            if out_dir.exists():
                raise exists_error from err
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "catalog.yaml"
