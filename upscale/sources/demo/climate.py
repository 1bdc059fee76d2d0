"""The daily climate of the demo world: temperature, precipitation, clouds, radiation, humidity, wind.

* temperature = annual mean(latitude, continentality, aridity) + seasonal cycle (amplitude grows
  with latitude and distance to the coast, peak ~30 days after the solstice) + AR(1) weather
  anomalies (correlation time 4 days, spatially smooth);
* precipitation: a climatology (ITCZ migrating with the seasons, more so over land; dry
  subtropics and continental interiors; mid-latitude storm tracks), stochastic occurrence from a
  smooth latent AR(1) field and exponential amounts;
* cloudiness from the same latent field and the wetness of the climate; rsds = TOA * (0.8 - 0.55 cloud);
* relative humidity lower where and when dry and hot, plus air masses of their own humidity;
  vpd = es(T) (1 - RH); dew point kept;
* 10 m wind (u10, v10; ws = their speed), a decoy: see :func:`wind`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special

from upscale.sources.demo.geography import Geography
from upscale.sources.demo.noise import (
    S_GEO,
    S_HUMID,
    S_PREC,
    S_TEMP,
    S_WIND,
    rng,
    static_noise,
    weather_noise,
)
from upscale.sources.demo.spec import DemoSpec
from upscale.variables import (
    dewpoint_from_vapour_pressure,
    saturation_vapour_pressure,
    toa_shortwave_daily_mean,
)

f32 = np.float32


class Climate(NamedTuple):
    """The climate of a world: annual means for the PFT map and sites, and the daily fields."""

    t_ann: np.ndarray  # (ny, nx) annual mean temperature, degC
    p_ann: np.ndarray  # (ny, nx) annual precipitation, mm
    daily: dict  # tas, tdew, vpd, rsds, rsds_pot, pr, cloud, u10, v10, ws -> (nt, ny, nx) float32


def simulate_climate(spec: DemoSpec, geo: Geography, time: pd.DatetimeIndex) -> Climate:
    """The daily climate of ``spec`` on its geography, over the days ``time``.

    Parameters
    ----------
    spec : DemoSpec
        Seed and resolution.
    geo : Geography
        The grid and its static geography.
    time : pandas.DatetimeIndex
        The days.

    Returns
    -------
    Climate
        Annual means (float64) and daily fields (float32; see :data:`Climate`).
    """
    doy = time.day_of_year.values
    p_mod, t_offset = _static_modulations(spec, geo)
    p_ann_rate, p_clim = _precipitation_climate(doy, geo, p_mod)
    t_ann, tas, noise_t = _temperature(spec, geo, doy, p_ann_rate, t_offset)
    pr, cloud, q, wet_clim = _precipitation(spec, geo, p_clim)
    del p_clim
    rsds_pot, rsds = _radiation(geo.lat, doy, cloud)
    tdew, vpd = _humidity(spec, geo, tas, q, wet_clim, noise_t)
    del q, wet_clim, noise_t
    u10, v10 = wind(spec, doy, geo.lat, geo.landness, geo.wrap)
    daily = {
        "tas": tas,
        "tdew": tdew,
        "vpd": vpd,
        "rsds": rsds,
        "rsds_pot": rsds_pot,
        "pr": pr,
        "cloud": cloud,
        "u10": u10,
        "v10": v10,
        "ws": np.hypot(u10, v10),
    }
    return Climate(t_ann, 365.25 * p_ann_rate, daily)


def season_cos(doy: np.ndarray, peak: float) -> np.ndarray:
    """cos of the phase of the year, 1 on day ``peak``."""
    return np.cos(2 * np.pi * (np.asarray(doy, dtype=float) - peak) / 365.25)


def _static_modulations(spec: DemoSpec, geo: Geography) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random factor on precipitation and offset of the annual mean temperature (land only)."""
    res = spec.resolution
    shape = geo.land.shape
    rng_geo = rng(spec, S_GEO)
    p_mod = np.exp(0.35 * static_noise(rng_geo, shape, 12.0 / res, geo.wrap) - 0.35**2 / 2)
    t_offset = 1.5 * static_noise(rng_geo, shape, 6.0 / res, geo.wrap) * geo.land.astype(float)
    return p_mod, t_offset


def precip_climatology(doy, lat, landness, cont, ocean_east, modulation) -> np.ndarray:
    """Climatological precipitation rate (mm d-1), shape (len(doy), ny, nx), float32."""
    lat2 = lat[:, None]
    alat = np.abs(lat2)
    cyc = season_cos(doy, 200.0)[:, None, None].astype(np.float32)
    itcz_lat = 3.0 + (5.0 + 9.0 * landness)[None] * cyc
    p = 10.0 * np.exp(-(((lat2[None] - itcz_lat) / (8.0 + 2.0 * landness[None])) ** 2))
    p += (2.8 * np.exp(-(((alat - 47.0) / 15.0) ** 2)) + 0.5)[None]
    subtropics = 1.0 - 0.75 * np.exp(-(((alat - 25.0) / 9.0) ** 2)) * (1.0 - 0.8 * ocean_east)
    poleward = 1.0 - 0.5 * np.clip((alat - 50.0) / 15.0, 0.0, 1.0)
    interior = 1.0 - 0.55 * cont * (1.0 - np.exp(-((lat2 / 18.0) ** 2))) * poleward
    hem = np.tanh(lat2 / 5.0)
    summer = np.clip((alat - 25.0) / 10.0, 0.0, 1.0)
    season_mod = 1.0 + 0.35 * (cont * summer * hem)[None] * cyc
    p *= (subtropics * interior)[None] * season_mod
    # Summer monsoons on the east sides of the continents (SE Asia, SE USA, SE Brazil, E Australia).
    east = ocean_east**1.5 * np.exp(-(((alat - 27.0) / 9.0) ** 2)) * landness
    p += 6.0 * east[None] * np.clip(hem[None] * cyc, 0.0, None)
    p *= modulation[None]
    return p.astype(np.float32)


def _precipitation_climate(doy, geo: Geography, p_mod) -> tuple[np.ndarray, np.ndarray]:
    """Annual mean precipitation rate (mm d-1, float64) and the climatology of the days (float32)."""
    args = (geo.lat, geo.landness, geo.cont, geo.ocean_east, p_mod)
    p_ann_rate = precip_climatology(np.arange(1, 366), *args).mean(axis=0, dtype=np.float64)
    return p_ann_rate, precip_climatology(doy, *args)


def _temperature(spec: DemoSpec, geo: Geography, doy, p_ann_rate, t_offset):
    """Annual mean temperature (float64), daily tas and its weather anomaly (float32), all degC."""
    lat2 = geo.lat[:, None]
    alat = np.abs(lat2)
    sin_lat = np.sin(np.deg2rad(alat))
    cos_lat = np.cos(np.deg2rad(lat2))
    land, cont = geo.land, geo.cont
    wet_ann = p_ann_rate / (p_ann_rate + 1.5)
    t_ann = (
        -15.0
        + 42.0 * cos_lat**1.5
        - 5.0 * cont * sin_lat**2
        + land.astype(float) * 3.0 * (1.0 - wet_ann) * np.clip((40.0 - alat) / 15.0, 0.0, 1.0)
        + t_offset
    )
    amp = (0.8 + 26.0 * sin_lat**1.5) * np.where(land, 0.35 + 0.65 * cont, 0.25)
    hem = np.tanh(lat2 / 5.0)
    season = (hem[None] * season_cos(doy, 202.0)[:, None, None]).astype(f32)  # (nt, ny, 1)
    sd_t = ((1.0 + 3.5 * sin_lat**1.5) * np.where(land, 0.8 + 0.4 * cont, 0.5)).astype(f32)
    noise_t = weather_noise(rng(spec, S_TEMP), len(doy), land.shape, 6.0 / spec.resolution, 4.0, geo.wrap)
    tas = (
        t_ann.astype(f32)[None]
        + amp.astype(f32)[None] * season
        + sd_t[None] * (f32(1.0) + f32(0.3) * np.maximum(-season, 0)) * noise_t
    )
    return t_ann, tas.astype(f32), noise_t


def _precipitation(spec: DemoSpec, geo: Geography, p_clim):
    """Daily precipitation (mm d-1) and cloud fraction, how close each day is to raining, and the
    wetness of the climate; (nt, ny, nx) float32 each."""
    latent = weather_noise(rng(spec, S_PREC), p_clim.shape[0], geo.land.shape, 4.0 / spec.resolution, 1.5, geo.wrap)
    p_wet = np.clip(f32(0.03) + f32(1.1) * p_clim / (p_clim + f32(3.0)), 0.03, 0.8).astype(f32)
    thr = special.ndtri(p_wet).astype(f32)
    wet = latent < thr
    u = np.clip(special.ndtr(latent) / p_wet, 1e-6, 1.0)
    pr = np.where(wet, (p_clim / p_wet) * -np.log(u), f32(0.0)).astype(f32)
    del u
    q = special.ndtr(thr - latent).astype(f32)  # how close to raining, > 0.5 when it rains
    del thr, wet, latent
    wet_clim = p_clim / (p_clim + f32(2.0))
    cloud = np.clip(f32(0.05) + f32(0.5) * q + f32(0.25) * wet_clim, 0, 1).astype(f32)
    return pr, cloud, q, wet_clim


def _radiation(lat, doy, cloud) -> tuple[np.ndarray, np.ndarray]:
    """Top-of-atmosphere and surface downwelling shortwave radiation (W m-2), (nt, ny, nx) float32."""
    nt, ny, nx = cloud.shape
    rsds_pot = np.broadcast_to(
        toa_shortwave_daily_mean(lat[None, :, None], doy[:, None, None]).astype(f32), (nt, ny, nx)
    )
    rsds = (rsds_pot * (f32(0.8) - f32(0.55) * cloud)).astype(f32)
    return np.ascontiguousarray(rsds_pot), rsds


def _humidity(spec: DemoSpec, geo: Geography, tas, q, wet_clim, noise_t) -> tuple[np.ndarray, np.ndarray]:
    """Dew point (degC) and vapour pressure deficit (hPa), (nt, ny, nx) float32."""
    # air masses: synoptic humidity anomalies of their own, so that VPD is not a function of temperature
    # and cloud alone (as in the real atmosphere) and its effect on GPP can be told apart from theirs
    air_mass = weather_noise(rng(spec, S_HUMID), tas.shape[0], geo.land.shape, 5.0 / spec.resolution, 3.0, geo.wrap)
    rh_land = (
        f32(0.30)
        + f32(0.5) * wet_clim
        + f32(0.15) * (q - f32(0.3))
        + f32(0.08) * (f32(1.0) - geo.cont.astype(f32))[None]
        - f32(0.006) * np.maximum(tas - f32(22.0), 0)
        - f32(0.03) * noise_t
        - f32(0.15) * air_mass
    )
    rh_ocean = f32(0.75) + f32(0.1) * q + f32(0.05) * wet_clim
    rh = np.clip(np.where(geo.land[None], rh_land, rh_ocean), 0.08, 0.97).astype(f32)
    del rh_land, rh_ocean
    es = saturation_vapour_pressure(tas).astype(f32)
    e = rh * es
    tdew = dewpoint_from_vapour_pressure(e).astype(f32)
    vpd = np.maximum(es - e, 0).astype(f32)
    return tdew, vpd


def wind(
    spec: DemoSpec, doy: np.ndarray, lat: np.ndarray, landness: np.ndarray, wrap: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Daily-mean 10 m wind components u10, v10 (m s-1), each (len(doy), ny, nx) float32.

    A decoy predictor: plausible, but nothing else in the world depends on it. Trade easterlies
    blowing towards the equator, calm near it, westerlies in the mid-latitude storm tracks
    (stronger in the south and in winter), weak polar easterlies; land slows the mean wind more
    than its day-to-day variability. Weather: AR(1) with a correlation time of 2 days, smooth in
    space, strongest in the storm tracks. Its own random stream: the other components do not change.
    """
    generator = rng(spec, S_WIND)
    res = spec.resolution
    alat = np.abs(lat)[:, None]
    hem = np.tanh(lat / 5.0)[:, None]
    storm_track = np.exp(-(((alat - 50.0) / 12.0) ** 2))
    trades = np.exp(-(((alat - 15.0) / 10.0) ** 2))
    polar = np.exp(-(((alat - 72.0) / 8.0) ** 2))
    winter = (-hem[None] * season_cos(doy, 200.0)[:, None, None]).astype(f32)  # +1 in local winter
    westerlies = np.where(lat < 0, 10.0, 7.0)[:, None] * storm_track
    slowdown = 1.0 - 0.5 * landness  # surface roughness of land
    exposure = np.exp(0.15 * static_noise(generator, landness.shape, 3.0 / res, wrap))  # ridges, valleys
    mean_scale = (slowdown * exposure).astype(f32)
    u_mean = (westerlies - 7.0 * trades - 2.0 * polar).astype(f32)
    u_season = (0.25 * westerlies).astype(f32)
    v_mean = (-3.0 * hem * trades).astype(f32)
    sd = ((2.0 + 2.5 * storm_track + 1.0 * trades) * (1.0 - 0.4 * landness)).astype(f32)
    nt, shape = len(doy), landness.shape
    u10 = (u_mean[None] + u_season[None] * winter) * mean_scale[None]
    u10 += sd[None] * weather_noise(generator, nt, shape, 5.0 / res, 2.0, wrap)
    v10 = v_mean[None] * mean_scale[None] + sd[None] * weather_noise(generator, nt, shape, 5.0 / res, 2.0, wrap)
    return u10.astype(f32), v10.astype(f32)
