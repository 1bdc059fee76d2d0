""":func:`simulate`: the demo world in memory, composed of geography, climate, land and sites."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import DataError, UpscaleError
from upscale.sources.demo.climate import Climate, simulate_climate
from upscale.sources.demo.geography import Geography, build_geography, pft_map
from upscale.sources.demo.land import simulate_land
from upscale.sources.demo.noise import S_NDVI, rng
from upscale.sources.demo.sensitivity import sensitivity_variables
from upscale.sources.demo.sites import choose_sites
from upscale.sources.demo.spec import DemoSpec

f32 = np.float32
# Largest world simulate() builds in memory (time x lat x lon cells), ~20 float32 arrays of this size.
_MAX_CELLS = 150_000_000
# The drivers of the land model, taken from the climate.
_LAND_DRIVERS = ("tas", "vpd", "rsds", "pr", "cloud", "ws")

_WORLD_ATTRS = {
    "tas": ("degC", "air temperature at 2 m, daily mean"),
    "tdew": ("degC", "dew-point temperature at 2 m, daily mean"),
    "vpd": ("hPa", "vapour pressure deficit, daily mean"),
    "rsds": ("W m-2", "surface downwelling shortwave radiation, daily mean"),
    "rsds_pot": ("W m-2", "top-of-atmosphere (potential) shortwave radiation, daily mean"),
    "pr": ("mm d-1", "precipitation"),
    "cloud": ("1", "cloud fraction, daily mean"),
    "u10": ("m s-1", "eastward wind at 10 m, daily mean"),
    "v10": ("m s-1", "northward wind at 10 m, daily mean"),
    "ws": ("m s-1", "wind speed at 10 m (of the daily-mean wind vector)"),
    "fapar": ("1", "fraction of absorbed photosynthetically active radiation"),
    "ndvi": ("1", "normalized difference vegetation index"),
    "soil_water": ("mm", "plant-available soil water at the start of the day"),
    "gpp": ("g m-2 d-1", "gross primary productivity (as carbon)"),
    "et": ("kg m-2 d-1", "evapotranspiration"),
    "pft": ("1", "plant functional type (IGBP)"),
    "land_mask": ("1", "land (true) or water/ice (false)"),
    "water_limitation": ("1", "growing-season mean reduction of GPP by soil water"),
}


def simulate(spec: DemoSpec) -> tuple[xr.Dataset, pd.DataFrame]:
    """Simulate the demo world in memory.

    Returns
    -------
    world : xarray.Dataset
        Canonical grid: dims (time, lat, lon), lat and lon ascending, cell centres, lon in
        [-180, 180). Variables (float32 unless noted): tas (degC), tdew (degC, dew point), vpd
        (hPa), rsds, rsds_pot (W m-2), pr (mm d-1), cloud (1), u10, v10, ws (m s-1; ws is the
        speed of the daily-mean wind vector), fapar, ndvi (1; NaN over water), soil_water (mm,
        at the start of the day), gpp (g m-2 d-1), et (kg m-2 d-1), and 2-D pft (uint8 IGBP
        code, 0 = water), land_mask (bool), water_limitation (1; NaN over water). The true
        sensitivities ``<target>_sens_<driver>`` (target gpp, et; driver tas, vpd, rsds, pr, ws)
        have dims (month, lat, lon), the monthly mean of the daily derivative (coordinate
        ``month``: the first day of each calendar month of the period), and
        ``<target>_sens_<driver>_mean`` dims (lat, lon), its mean over all days; NaN over water.
    sites : pandas.DataFrame
        SITE_ID, SITE_NAME, LOCATION_LAT, LOCATION_LONG, LOCATION_ELEV, IGBP, bias.

    Raises
    ------
    DataError
        If the bbox holds no cell, the world is too large for memory or has fewer land cells
        than sites.
    """
    if not isinstance(spec, DemoSpec):
        raise UpscaleError(f"simulate() needs a DemoSpec, got {type(spec).__name__}", "upscale.sources.demo")
    time = pd.date_range(spec.start, spec.end, freq="D")
    geo = build_geography(spec)
    _check_size(time.size, geo)
    climate = simulate_climate(spec, geo, time)
    pft = pft_map(spec, geo.land, climate.t_ann, climate.p_ann, geo.wrap)
    land = _simulate_vegetation(spec, geo, climate, pft, time)
    world = _world_dataset(spec, geo, time, climate.daily, pft, land)
    sites = choose_sites(spec, geo.lat, geo.lon, geo.land, pft, climate.t_ann, climate.p_ann)
    return world, sites


def _check_size(nt: int, geo: Geography) -> None:
    ny, nx = geo.land.shape
    if nt * ny * nx > _MAX_CELLS:
        raise DataError(
            f"a demo world of {nt} days x {ny} x {nx} cells is too large to simulate in memory",
            "demo world spec",
            "use a coarser resolution, a bbox or a shorter period",
        )


def _month_number(time: pd.DatetimeIndex) -> np.ndarray:
    """0 for the days of the period's first calendar month, 1 for the next, ..."""
    return (time.year - time.year[0]) * 12 + (time.month - time.month[0])


def _simulate_vegetation(
    spec: DemoSpec, geo: Geography, climate: Climate, pft: np.ndarray, time: pd.DatetimeIndex
) -> dict:
    """The land model and NDVI over the land pixels, gridded: (nt, ny, nx) fapar, ndvi, soil_water,
    gpp, et, (ny, nx) water_limitation and the true sensitivities; NaN over water, float32."""
    nt = time.size
    flat = np.flatnonzero(geo.land.ravel())
    drivers = {name: np.ascontiguousarray(climate.daily[name].reshape(nt, -1)[:, flat]) for name in _LAND_DRIVERS}
    fluxes, wlim, sensitivity = simulate_land(drivers, pft.ravel()[flat], _month_number(time))
    del drivers
    ndvi_land = (
        f32(0.05)
        + f32(0.85) * fluxes["fapar"] ** f32(0.8)
        + f32(0.02) * rng(spec, S_NDVI).standard_normal(fluxes["fapar"].shape, dtype=f32)
    )
    fluxes["ndvi"] = np.clip(ndvi_land, -0.1, 1.0).astype(f32)

    def to_grid(a):
        full = np.full((*a.shape[:-1], geo.land.size), np.nan, f32)
        full[..., flat] = a
        return full.reshape(*a.shape[:-1], *geo.land.shape)

    gridded = {name: to_grid(fluxes[name]) for name in ("fapar", "ndvi", "soil_water", "gpp", "et")}
    gridded["water_limitation"] = to_grid(wlim)
    gridded["sensitivity"] = {k: to_grid(v) for k, v in sensitivity.items()}
    return gridded


def _world_dataset(
    spec: DemoSpec, geo: Geography, time: pd.DatetimeIndex, daily: dict, pft: np.ndarray, land: dict
) -> xr.Dataset:
    """The world as an xarray Dataset with units and long names (see :func:`simulate`)."""
    dims = ("time", "lat", "lon")
    data = {
        **{
            name: (dims, daily[name])
            for name in ("tas", "tdew", "vpd", "rsds", "rsds_pot", "pr", "cloud", "u10", "v10", "ws")
        },
        **{name: (dims, land[name]) for name in ("fapar", "ndvi", "soil_water", "gpp", "et")},
        "pft": (("lat", "lon"), pft),
        "land_mask": (("lat", "lon"), geo.land.copy()),
        "water_limitation": (("lat", "lon"), land["water_limitation"]),
    }
    variables = {
        k: (d, v, {"units": _WORLD_ATTRS[k][0], "long_name": _WORLD_ATTRS[k][1]}) for k, (d, v) in data.items()
    }
    variables.update(sensitivity_variables(land["sensitivity"]))
    months = pd.date_range(time[0].to_period("M").to_timestamp(), time[-1], freq="MS")
    return xr.Dataset(
        variables,
        coords={
            "time": ("time", time.values, {"long_name": "time"}),
            "month": ("month", months.values, {"long_name": "first day of the calendar month"}),
            "lat": ("lat", geo.lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", geo.lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"title": "upscale demo world (synthetic)", "demo_spec": json.dumps(spec.to_dict())},
    )
