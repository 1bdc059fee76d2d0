"""The demo world: an embedded, deterministic synthetic Earth that knows the truth.

:func:`simulate` builds, in memory and on the canonical grid, a daily climate (temperature,
radiation, precipitation, humidity, 10 m wind), a plant-functional-type map, vegetation
phenology, a soil-water bucket and the true GPP and ET, their true sensitivities to the
meteorological drivers, plus a table of flux-tower sites.
:func:`write_world` writes it in the formats of the real data (ERA5 NetCDF, an EO Zarr cube, a
GeoTIFF, FLUXNET2015 DD CSV files with noise, gaps and QC, a site list, the truth and the true
sensitivities as Zarr and a catalog pointing at all of it). :func:`cached_world` keeps one world
per spec in a cache folder.

Everything is seeded: the same :class:`DemoSpec` gives bit-identical arrays and file contents.
Each component draws from its own stream ``np.random.default_rng([seed, k])``, so for example the
climate of a world does not change when only the number of sites changes.

The model, in short (all daily):

* temperature = annual mean(latitude, continentality, aridity) + seasonal cycle (amplitude grows
  with latitude and distance to the coast, peak ~30 days after the solstice) + AR(1) weather
  anomalies (correlation time 4 days, spatially smooth);
* precipitation: a climatology (ITCZ migrating with the seasons, more so over land; dry
  subtropics and continental interiors; mid-latitude storm tracks), stochastic occurrence from a
  smooth latent AR(1) field and exponential amounts;
* cloudiness from the same latent field and the wetness of the climate; rsds = TOA * (0.8 - 0.55 cloud);
* relative humidity lower where and when dry and hot; vpd = es(T) (1 - RH); dew point kept;
* 10 m wind (u10, v10; ws = their speed), a decoy: trade easterlies, westerlies in the storm
  tracks (stronger in winter and in the south), slower over land, plus AR(1) weather
  (correlation time 2 days). Its own random stream; nothing else depends on it;
* a snow pack (degree-day melt) and a soil-water bucket W (capacity by PFT) with
  fW = clip(W / (0.6 Wmax), 0, 1), so fluxes remember weeks of weather;
* fapar = fapar_max(PFT) * greenness(smoothed temperature, smoothed fW);
* GPP = eps(PFT) fapar PAR fT fVPD fW; ET = Priestley-Taylor * (0.3 + 0.7 fapar) * fW.

The land model is a pure daily step ``(start-of-day state, day's drivers) -> (day's fluxes, next
state)`` (:func:`_land_step`). The true sensitivities are the instantaneous partial derivatives
of a day's GPP and ET with respect to that day's tas, vpd, rsds, pr and ws, the start-of-day state
(soil water, snow, smoothed temperature, greenness memory), the other drivers and the cloud
fraction held fixed: finite differences of the step in float64, taken inside the recorded run
(see :data:`SENSITIVITY_DRIVERS`), averaged per month and over the period. The day's own update
of the smoothed temperature is part of the day, so fapar's response to the day's tas counts.
The wind's are exactly zero, and so are GPP's to pr (GPP sees the start-of-day soil water) and
ET's to vpd (Priestley-Taylor).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage, special

from upscale.errors import DataError, UpscaleError
from upscale.variables import (
    IGBP_CLASSES,
    SECONDS_PER_DAY,
    dewpoint_from_vapour_pressure,
    latent_heat_of_vaporisation,
    saturation_vapour_pressure,
    toa_shortwave_daily_mean,
)

__all__ = ["DemoSpec", "simulate", "write_world", "cached_world", "WORLD_VERSION", "SENSITIVITY_TARGETS",
           "SENSITIVITY_DRIVERS", "SENSITIVITY_DEFINITION"]

#: Bumped whenever the generator changes what it produces, so cached worlds are not reused.
WORLD_VERSION = 2

#: Targets of the true sensitivities: name -> (units, short name in words).
SENSITIVITY_TARGETS = {"gpp": ("g m-2 d-1", "GPP"), "et": ("kg m-2 d-1", "ET")}
#: Drivers of the true sensitivities: name -> (finite-difference step, inverse units, name in words).
#: Steps are small against the curvature of the model, large against float32 round-off of the inputs.
SENSITIVITY_DRIVERS = {
    "tas": (0.05, "K-1", "air temperature"),
    "vpd": (0.05, "hPa-1", "vapour pressure deficit"),
    "rsds": (0.5, "W-1 m2", "surface downwelling shortwave radiation"),
    "pr": (0.05, "mm-1 d", "precipitation"),
    "ws": (0.05, "m-1 s", "wind speed"),
}
# Drivers that cannot go below zero: a forward difference where they are smaller than the step.
_NON_NEGATIVE_DRIVERS = ("vpd", "rsds", "pr", "ws")

_KM_PER_DEG = 111.2
# Largest world simulate() builds in memory (time x lat x lon cells), ~20 float32 arrays of this size.
_MAX_CELLS = 150_000_000

# Plant functional types used by the demo world and their parameters:
# code: (fapar_max, eps [g C MJ-1], T_opt [degC], T_green [degC], green_min, W_max [mm])
_PFT_PARAMS = {
    1: (0.80, 1.30, 16.0, 3.0, 0.45, 150.0),   # ENF
    2: (0.92, 1.65, 27.0, 10.0, 0.85, 200.0),  # EBF
    4: (0.88, 1.85, 21.0, 7.0, 0.08, 170.0),   # DBF
    5: (0.85, 1.60, 19.0, 5.0, 0.30, 160.0),   # MF
    7: (0.35, 1.20, 25.0, 5.0, 0.15, 100.0),   # OSH
    8: (0.65, 1.50, 26.0, 8.0, 0.35, 160.0),   # WSA
    9: (0.55, 1.40, 27.0, 8.0, 0.20, 130.0),   # SAV
    10: (0.65, 1.50, 22.0, 5.0, 0.05, 120.0),  # GRA
    12: (0.82, 2.10, 23.0, 8.0, 0.05, 140.0),  # CRO
}
_PFT_CODES = tuple(_PFT_PARAMS)

# Climate niches for the PFT map: (code, annual mean T [degC], annual P [mm], weight).
_PFT_NICHES = [
    (1, -1.0, 450.0, 1.0),
    (1, 6.0, 900.0, 0.4),
    (2, 25.5, 2600.0, 1.2),
    (2, 18.0, 1700.0, 0.5),
    (4, 11.0, 900.0, 0.9),
    (5, 6.0, 700.0, 0.7),
    (7, 22.0, 120.0, 1.2),
    (7, -11.0, 280.0, 1.0),
    (7, 8.0, 150.0, 0.8),
    (8, 23.0, 1350.0, 0.9),
    (9, 25.0, 850.0, 1.0),
    (10, 8.0, 380.0, 1.0),
    (10, 20.0, 450.0, 0.6),
    (12, 13.0, 700.0, 1.3),
]

# Pseudo country codes of sites: (lat_min, lat_max, lon_min, lon_max, code), first match wins.
_COUNTRY_BOXES = [
    (59, 84, -75, -10, "GL"),
    (62, 67, -25, -12, "IS"),
    (50, 72, -170, -140, "US"),
    (48, 84, -142, -50, "CA"),
    (43, 48, -68, -52, "CA"),
    (24, 50, -130, -60, "US"),
    (14, 33, -118, -86, "MX"),
    (5, 24, -92, -58, "PA"),
    (-5, 13, -82, -66, "CO"),
    (-20, 6, -75, -66, "PE"),
    (-35, 6, -66, -33, "BR"),
    (-60, -18, -76, -70, "CL"),
    (-60, -20, -70, -50, "AR"),
    (60, 72, -10, 20, "SE"),
    (58, 72, 20, 32, "FI"),
    (53, 58, 20, 30, "LT"),
    (54, 60, 5, 20, "DK"),
    (49, 59, -11, -5, "IE"),
    (49, 59, -5, 2, "GB"),
    (47, 56, 2, 15, "DE"),
    (47, 56, 15, 25, "PL"),
    (42, 49, -5, 8, "FR"),
    (44, 49, 8, 17, "CH"),
    (44, 50, 17, 30, "HU"),
    (44, 53, 30, 41, "UA"),
    (35, 44, -10, 3, "ES"),
    (36, 46, 6, 19, "IT"),
    (34, 44, 19, 45, "TR"),
    (12, 42, 34, 62, "IL"),
    (20, 38, -18, 0, "MA"),
    (20, 38, 0, 25, "DZ"),
    (20, 38, 25, 36, "EG"),
    (5, 20, -20, -5, "SN"),
    (4, 20, -5, 15, "GH"),
    (5, 20, 15, 52, "SD"),
    (-26, -11, 42, 51, "MG"),
    (-5, 5, 8, 32, "CG"),
    (-5, 5, 32, 52, "KE"),
    (-20, -5, 10, 42, "ZM"),
    (-36, -20, 10, 36, "ZA"),
    (50, 84, 25, 180, "RU"),
    (50, 84, -180, -170, "RU"),
    (35, 50, 45, 90, "KZ"),
    (41, 52, 88, 120, "MN"),
    (33, 43, 124, 130, "KR"),
    (30, 46, 129, 146, "JP"),
    (5, 36, 60, 90, "IN"),
    (18, 46, 73, 135, "CN"),
    (8, 24, 90, 110, "TH"),
    (-3, 8, 95, 120, "MY"),
    (-11, 8, 95, 141, "ID"),
    (-11, 0, 141, 156, "PG"),
    (-48, -34, 165, 180, "NZ"),
    (-45, -10, 110, 156, "AU"),
]

_PFT_SITE_WORDS = {
    1: "Pine Forest", 2: "Rainforest", 4: "Deciduous Forest", 5: "Mixed Forest", 7: "Shrubland",
    8: "Woodland", 9: "Savanna", 10: "Grassland", 12: "Cropland",
}
_SYLLABLES = ["ka", "lo", "ren", "ha", "mi", "tor", "vel", "an", "su", "bri", "do", "mar",
              "ne", "ti", "gal", "ros", "wen", "pa", "lu", "ost"]

# Random stream identifiers (sub-seeds), one per component.
_S_GEO, _S_TEMP, _S_PREC, _S_PFT, _S_NDVI, _S_SITES, _S_OBS, _S_WIND = range(1, 9)

_FLUXNET_COLUMNS = [
    "TIMESTAMP", "TA_F", "TA_F_QC", "SW_IN_POT", "SW_IN_F", "SW_IN_F_QC", "VPD_F", "VPD_F_QC",
    "P_F", "P_F_QC", "LE_F_MDS", "LE_F_MDS_QC", "LE_CORR", "NEE_VUT_REF_QC", "GPP_NT_VUT_REF",
    "GPP_DT_VUT_REF",
]


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSpec:
    """What demo world to build: seed, grid, period and number of flux sites.

    Parameters
    ----------
    seed : int
        Seed of all random streams (>= 0).
    resolution : float
        Grid spacing in degrees; must divide 180 (e.g. 0.5, 1, 2, 5, 10).
    start, end : str
        First and last day (inclusive), ISO dates.
    n_sites : int
        Number of flux-tower sites.
    bbox : tuple of 4 floats or None
        ``(lon_min, lat_min, lon_max, lat_max)`` in degrees, lon in [-180, 180]; None = global.
        The grid is the global grid's cells whose centres lie inside the box.
    """

    seed: int = 0
    resolution: float = 2.0
    start: str = "2018-01-01"
    end: str = "2019-12-31"
    n_sites: int = 80
    bbox: tuple[float, float, float, float] | None = None

    def __post_init__(self):
        where = "demo world spec"
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise DataError(f"seed must be a non-negative integer, got {self.seed!r}", where,
                            "pass e.g. seed=0")
        object.__setattr__(self, "seed", int(self.seed))
        try:
            res = float(self.resolution)
        except (TypeError, ValueError):
            res = float("nan")
        n_lat = 180.0 / res if res > 0 else float("nan")
        if not (res > 0) or not math.isfinite(n_lat) or abs(n_lat - round(n_lat)) > 1e-6 * max(1.0, n_lat):
            raise DataError(f"resolution must be a positive number of degrees that divides 180, "
                            f"got {self.resolution!r}", where, "use e.g. 0.5, 1, 2, 5 or 10")
        object.__setattr__(self, "resolution", res)
        dates = []
        for name in ("start", "end"):
            value = getattr(self, name)
            try:
                ts = pd.Timestamp(value)
            except (TypeError, ValueError):
                ts = pd.NaT
            if pd.isna(ts):
                raise DataError(f"{name} is not a date: {value!r}", where, "use an ISO date like 2018-01-01")
            ts = ts.normalize()
            object.__setattr__(self, name, ts.strftime("%Y-%m-%d"))
            dates.append(ts)
        if dates[1] < dates[0]:
            raise DataError(f"end {self.end} is before start {self.start}", where,
                            "give an end date on or after the start date")
        if (isinstance(self.n_sites, bool) or not isinstance(self.n_sites, (int, np.integer))
                or self.n_sites < 1):
            raise DataError(f"n_sites must be a positive integer, got {self.n_sites!r}", where)
        object.__setattr__(self, "n_sites", int(self.n_sites))
        if self.bbox is not None:
            try:
                box = tuple(float(v) for v in self.bbox)
            except (TypeError, ValueError):
                box = ()
            ok = len(box) == 4 and all(math.isfinite(v) for v in box)
            if ok:
                lon0, lat0, lon1, lat1 = box
                ok = -180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90
            if not ok:
                raise DataError(f"bbox must be (lon_min, lat_min, lon_max, lat_max) with "
                                f"-180 <= lon_min < lon_max <= 180 and -90 <= lat_min < lat_max <= 90, "
                                f"got {self.bbox!r}", where,
                                "boxes across the antimeridian are not supported; pass None for the globe")
            object.__setattr__(self, "bbox", box)

    def to_dict(self) -> dict:
        """The fields as plain JSON-able values."""
        d = dataclasses.asdict(self)
        d["bbox"] = list(self.bbox) if self.bbox is not None else None
        return d

    def key(self) -> str:
        """A short stable hash of the fields (and of the generator version), for cache folder names."""
        payload = json.dumps({**self.to_dict(), "version": WORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _rng(spec: DemoSpec, *keys: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *keys])


def _global_axes(res: float) -> tuple[np.ndarray, np.ndarray]:
    n_lat = int(round(180.0 / res))
    n_lon = 2 * n_lat
    lat = -90.0 + res * (np.arange(n_lat) + 0.5)
    lon = -180.0 + res * (np.arange(n_lon) + 0.5)
    return lat, lon


def _grid_slices(spec: DemoSpec) -> tuple[slice, slice]:
    """Index ranges of the spec's grid inside the global grid at its resolution."""
    glat, glon = _global_axes(spec.resolution)
    if spec.bbox is None:
        return slice(0, glat.size), slice(0, glon.size)
    lon0, lat0, lon1, lat1 = spec.bbox
    eps = 1e-9
    iy = np.flatnonzero((glat >= lat0 - eps) & (glat <= lat1 + eps))
    ix = np.flatnonzero((glon >= lon0 - eps) & (glon <= lon1 + eps))
    if iy.size == 0 or ix.size == 0:
        raise DataError(f"bbox {spec.bbox} contains no cell centre of the {spec.resolution} degree grid",
                        "demo world spec", "enlarge the box or use a finer resolution")
    return slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1)


def _is_global(spec: DemoSpec) -> bool:
    return spec.bbox is None


def _smooth2d(field: np.ndarray, sigma: float, wrap: bool) -> np.ndarray:
    if sigma < 0.3:
        return field
    return ndimage.gaussian_filter(field, sigma, mode=("nearest", "wrap" if wrap else "reflect"),
                                   truncate=3.0)


def _static_noise(rng: np.random.Generator, shape, sigma: float, wrap: bool) -> np.ndarray:
    """A smooth 2-D standard-normal-ish field."""
    z = rng.standard_normal(shape)
    z = _smooth2d(z, sigma, wrap)
    sd = z.std()
    return (z - z.mean()) / (sd if sd > 0 else 1.0)


def _weather_noise(rng: np.random.Generator, nt: int, shape, sigma: float, tau: float,
                   wrap: bool) -> np.ndarray:
    """AR(1) in time (correlation time ``tau`` days), Gaussian-smooth in space, unit variance, float32."""
    e = rng.standard_normal((nt + 1, *shape), dtype=np.float32)
    if sigma >= 0.3:
        e = ndimage.gaussian_filter(e, (0, sigma, sigma),
                                    mode=("nearest", "nearest", "wrap" if wrap else "reflect"),
                                    truncate=3.0)
        e /= e.std(dtype=np.float64)
    phi = np.float32(math.exp(-1.0 / tau))
    s = np.float32(math.sqrt(1.0 - float(phi) ** 2))
    out = e[1:]
    out[0] = s * out[0] + phi * e[0]  # e[0] is the stationary state of the day before
    for t in range(1, nt):
        out[t] *= s
        out[t] += phi * out[t - 1]
    return out


def _geography(spec: DemoSpec):
    """Land mask, continentality (0 coast .. 1 deep interior) and smoothed land fraction on the spec grid.

    Computed on the global grid at the spec's resolution and cut out, so that the distance to
    the coast of a regional world is the same as in the global one.
    """
    from global_land_mask import globe

    res = spec.resolution
    glat, glon = _global_axes(res)
    la, lo = np.meshgrid(glat, glon, indexing="ij")
    land_any = np.asarray(globe.is_land(la, lo), dtype=bool)
    n_lon = glon.size
    pad = n_lon // 2
    wrapped = np.concatenate([land_any[:, -pad:], land_any, land_any[:, :pad]], axis=1)
    dist = ndimage.distance_transform_edt(wrapped)[:, pad:pad + n_lon] * res * _KM_PER_DEG
    cont = (1.0 - np.exp(-dist / 1000.0)) * land_any
    landness = ndimage.gaussian_filter(land_any.astype(float), 5.0 / res,
                                       mode=("nearest", "wrap"), truncate=3.0)
    # Fraction of ocean in the 15 degrees east of each cell (east coasts are wetter in the subtropics).
    ocean = (~land_any).astype(float)
    n_east = max(1, int(round(15.0 / res)))
    ocean_east = sum(np.roll(ocean, -k, axis=1) for k in range(1, n_east + 1)) / n_east
    land = land_any & (la >= -60.0)
    sy, sx = _grid_slices(spec)
    return (glat[sy], glon[sx], land[sy, sx], cont[sy, sx], landness[sy, sx], ocean_east[sy, sx])


def _season_cos(doy: np.ndarray, peak: float) -> np.ndarray:
    return np.cos(2 * np.pi * (np.asarray(doy, dtype=float) - peak) / 365.25)


def _precip_climatology(doy, lat, landness, cont, ocean_east, modulation) -> np.ndarray:
    """Climatological precipitation rate (mm d-1), shape (len(doy), ny, nx), float32."""
    lat2 = lat[:, None]
    alat = np.abs(lat2)
    cyc = _season_cos(doy, 200.0)[:, None, None].astype(np.float32)
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
    east = ocean_east ** 1.5 * np.exp(-(((alat - 27.0) / 9.0) ** 2)) * landness
    p += 6.0 * east[None] * np.clip(hem[None] * cyc, 0.0, None)
    p *= modulation[None]
    return p.astype(np.float32)


def _wind(spec: DemoSpec, doy: np.ndarray, lat: np.ndarray, landness: np.ndarray,
          wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Daily-mean 10 m wind components u10, v10 (m s-1), each (len(doy), ny, nx) float32.

    A decoy predictor: plausible, but nothing else in the world depends on it. Trade easterlies
    blowing towards the equator, calm near it, westerlies in the mid-latitude storm tracks
    (stronger in the south and in winter), weak polar easterlies; land slows the mean wind more
    than its day-to-day variability. Weather: AR(1) with a correlation time of 2 days, smooth in
    space, strongest in the storm tracks. Its own random stream: the other components do not change.
    """
    f32 = np.float32
    rng = _rng(spec, _S_WIND)
    res = spec.resolution
    alat = np.abs(lat)[:, None]
    hem = np.tanh(lat / 5.0)[:, None]
    storm_track = np.exp(-(((alat - 50.0) / 12.0) ** 2))
    trades = np.exp(-(((alat - 15.0) / 10.0) ** 2))
    polar = np.exp(-(((alat - 72.0) / 8.0) ** 2))
    winter = (-hem[None] * _season_cos(doy, 200.0)[:, None, None]).astype(f32)  # +1 in local winter
    westerlies = np.where(lat < 0, 10.0, 7.0)[:, None] * storm_track
    slowdown = 1.0 - 0.5 * landness  # surface roughness of land
    exposure = np.exp(0.15 * _static_noise(rng, landness.shape, 3.0 / res, wrap))  # ridges, valleys
    mean_scale = (slowdown * exposure).astype(f32)
    u_mean = (westerlies - 7.0 * trades - 2.0 * polar).astype(f32)
    u_season = (0.25 * westerlies).astype(f32)
    v_mean = (-3.0 * hem * trades).astype(f32)
    sd = ((2.0 + 2.5 * storm_track + 1.0 * trades) * (1.0 - 0.4 * landness)).astype(f32)
    nt, shape = len(doy), landness.shape
    u10 = (u_mean[None] + u_season[None] * winter) * mean_scale[None]
    u10 += sd[None] * _weather_noise(rng, nt, shape, 5.0 / res, 2.0, wrap)
    v10 = v_mean[None] * mean_scale[None] + sd[None] * _weather_noise(rng, nt, shape, 5.0 / res, 2.0, wrap)
    return u10.astype(f32), v10.astype(f32)


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def _pft_table(index: int) -> np.ndarray:
    """Parameter ``index`` of _PFT_PARAMS as a lookup array over IGBP codes 0..16."""
    table = np.zeros(17)
    for code, params in _PFT_PARAMS.items():
        table[code] = params[index]
    return table


def _pft_map(spec, land, t_ann, p_ann, wrap) -> np.ndarray:
    """IGBP code per cell from the climate niches, with a seeded random mix; 0 over water."""
    rng = _rng(spec, _S_PFT)
    ny, nx = land.shape
    logp = np.log(np.maximum(p_ann, 5.0))
    scores = np.zeros((len(_PFT_CODES), ny, nx))
    for code, tc, pc, w in _PFT_NICHES:
        k = _PFT_CODES.index(code)
        d2 = ((t_ann - tc) / 5.0) ** 2 + ((logp - np.log(pc)) / 0.45) ** 2
        scores[k] += w * np.exp(-0.5 * d2)
    scores += 1e-6
    # A smooth random preference per class keeps patches coherent, a per-cell draw mixes them.
    sigma = 2.0 / spec.resolution
    for k in range(len(_PFT_CODES)):
        scores[k] *= np.exp(0.5 * _static_noise(rng, (ny, nx), sigma, wrap))
    prob = scores ** 2
    prob /= prob.sum(axis=0, keepdims=True)
    u = rng.random((ny, nx))
    k = (np.cumsum(prob, axis=0) < u[None]).sum(axis=0)
    k = np.minimum(k, len(_PFT_CODES) - 1)
    pft = np.asarray(_PFT_CODES, dtype=np.uint8)[k]
    return np.where(land, pft, 0).astype(np.uint8)


def _country_code(lat: float, lon: float) -> str:
    """A pseudo country code: the first box that holds the point, else the box with the nearest centre."""
    best, best_d = "XX", np.inf
    for la0, la1, lo0, lo1, code in _COUNTRY_BOXES:
        if la0 <= lat <= la1 and lo0 <= lon <= lo1:
            return code
        d = (lat - (la0 + la1) / 2) ** 2 + ((lon - (lo0 + lo1) / 2) * math.cos(math.radians(lat))) ** 2
        if d < best_d:
            best, best_d = code, d
    return best


def _choose_sites(spec, lat, lon, land, pft, t_ann, p_ann) -> pd.DataFrame:
    rng = _rng(spec, _S_SITES)
    iy, ix = np.nonzero(land)
    n_land = iy.size
    if spec.n_sites > n_land:
        raise DataError(f"{spec.n_sites} sites asked for, but the demo world has only {n_land} land cells",
                        "demo world spec (n_sites)",
                        "ask for fewer sites, a finer resolution or a larger bbox")
    la, lo = lat[iy], lon[ix]
    w = np.ones(n_land)
    for la0, la1, lo0, lo1, weight in [(25, 55, -130, -60, 10.0), (35, 62, -11, 35, 10.0),
                                       (20, 50, 100, 146, 4.0), (-45, -10, 110, 155, 3.0)]:
        inside = (la >= la0) & (la <= la1) & (lo >= lo0) & (lo <= lo1)
        w = np.where(inside, weight, w)
    p = p_ann[iy, ix]
    t = t_ann[iy, ix]
    w *= (p / (p + 400.0)) ** 1.5
    w *= np.where(np.abs(la) < 23.0, 0.6, 1.0)
    w *= np.where(t < -8.0, 0.1, np.where(t < 0.0, 0.35, 1.0))
    w = np.maximum(w, 1e-9)
    pick = rng.choice(n_land, size=spec.n_sites, replace=False, p=w / w.sum())
    res = spec.resolution
    jitter = rng.uniform(-0.29, 0.29, size=(spec.n_sites, 2)) * res
    elev = np.clip(rng.lognormal(np.log(350.0), 0.9, size=spec.n_sites), 2.0, 3800.0)
    bias = rng.uniform(-0.10, 0.10, size=spec.n_sites)
    letters = np.array(list("ABCDEFGHIJKLMNOPRSTUVW"))
    lower = np.array(list("abcdefghiklmnoprstuvwy"))
    last = np.array(list("abcdeghiklmnoprstuvw123456789"))
    rows, used = [], set()
    for j, k in enumerate(pick):
        slat = round(float(la[k] + jitter[j, 0]), 4)
        slon = round(float(lo[k] + jitter[j, 1]), 4)
        cc = _country_code(float(la[k]), float(lo[k]))
        while True:
            sid = f"{cc}-{rng.choice(letters)}{rng.choice(lower)}{rng.choice(last)}"
            if sid not in used:
                used.add(sid)
                break
        code = int(pft[iy[k], ix[k]])
        word = "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4))).capitalize()
        rows.append({
            "SITE_ID": sid,
            "SITE_NAME": f"{word} {_PFT_SITE_WORDS[code]} (synthetic)",
            "LOCATION_LAT": slat,
            "LOCATION_LONG": slon,
            "LOCATION_ELEV": int(round(float(elev[j]))),
            "IGBP": IGBP_CLASSES[code],
            "bias": float(bias[j]),
        })
    return pd.DataFrame(rows)


class _LandParams(NamedTuple):
    """PFT parameters of the land pixels, each (n_land,) float32 (see _PFT_PARAMS)."""

    fapar_max: np.ndarray
    eps: np.ndarray
    t_opt: np.ndarray
    t_green: np.ndarray
    green_min: np.ndarray
    w_max: np.ndarray


class _LandState(NamedTuple):
    """State of the land pixels at the start of a day, each (n_land,)."""

    soil_water: np.ndarray  # mm
    snow: np.ndarray  # mm
    t_smooth: np.ndarray  # degC, ~15-day exponential mean of tas
    green_water: np.ndarray  # 1, ~20-day exponential mean of fW (greenness memory)


# Daily outputs of the land step that _run_land records, (nt, n_land) float32 each.
_LAND_OUTPUTS = ("fapar", "gpp", "et", "soil_water", "fw", "gpp_unlimited")
_SPIN_UP_DAYS = 365


def _land_params(pft_land: np.ndarray) -> _LandParams:
    return _LandParams(*(_pft_table(k)[pft_land].astype(np.float32) for k in range(len(_LandParams._fields))))


def _initial_state(params: _LandParams, tas_first_day: np.ndarray) -> _LandState:
    """Half-full buckets, no snow, smoothed temperature at the first day's, mid greenness."""
    w = np.float32(0.5) * params.w_max
    return _LandState(w, np.zeros_like(w), tas_first_day.copy(), np.full_like(w, 0.5))


def _light_and_pet(params: _LandParams, day: dict) -> tuple[np.ndarray, np.ndarray]:
    """The state-free part of a day: GPP per unit fapar without the water limit (g m-2 d-1) and
    Priestley-Taylor potential ET (kg m-2 d-1), in the dtype of the drivers."""
    f32 = np.float32
    tas, vpd, rsds, cloud = day["tas"], day["vpd"], day["rsds"], day["cloud"]
    par = f32(0.45 * 0.0864) * rsds  # MJ m-2 d-1
    f_t = np.exp(-(((tas - params.t_opt) / f32(12.0)) ** 2)) * np.clip((tas + f32(2.0)) / f32(4.0), 0, 1)
    f_vpd = np.clip(f32(1.0) - f32(0.7) * (vpd - f32(6.0)) / f32(29.0), 0.3, 1.0)
    gpp_light = params.eps * par * f_t * f_vpd
    es_kpa = 0.1 * saturation_vapour_pressure(tas)
    delta = 4098.0 * es_kpa / (tas + f32(237.3)) ** 2  # kPa K-1
    rn = np.maximum(f32(0.72) * rsds - (f32(20.0) + f32(45.0) * (f32(1.0) - cloud)), 0)
    pet = (f32(1.26) * delta / (delta + f32(0.066)) * rn * f32(SECONDS_PER_DAY)
           / latent_heat_of_vaporisation(tas))
    return gpp_light, pet


def _land_step(params: _LandParams, state: _LandState, day: dict) -> tuple[dict, _LandState]:
    """One day of snow, soil water, phenology, GPP and ET over land pixels; a pure function.

    Parameters
    ----------
    params : _LandParams
        (n_land,) arrays.
    state : _LandState
        The state at the start of the day, (n_land,) arrays.
    day : dict
        The day's drivers tas (degC), vpd (hPa), rsds (W m-2), pr (mm d-1), cloud (1) and ws
        (m s-1, ignored: the fluxes do not depend on the wind), each (n_land,) or (k, n_land)
        for k variants of the day that share the state.

    Returns
    -------
    outputs : dict
        The day's fapar, gpp, et, soil_water (at the start of the day), fw (water scalar) and
        gpp_unlimited (GPP without the water limit), in the dtype of the drivers.
    state : _LandState
        The state at the start of the next day.
    """
    f32 = np.float32
    one = f32(1.0)
    temp, pr = day["tas"], day["pr"]
    gpp_light, pet = _light_and_pet(params, day)
    t_smooth = state.t_smooth + (temp - state.t_smooth) * f32(1.0 / 15.0)
    snowfall = np.where(temp < 0, pr, 0)
    melt = np.minimum(state.snow, f32(3.0) * np.maximum(temp, 0))
    snow = state.snow + (snowfall - melt)
    water_in = pr - snowfall + melt
    w = state.soil_water
    f_w = np.clip(w / (f32(0.6) * params.w_max), 0, 1)
    green_water = state.green_water + (f_w - state.green_water) * f32(1.0 / 20.0)
    g_t = one / (one + np.exp(-(t_smooth - params.t_green) / f32(2.5)))
    fapar = params.fapar_max * (params.green_min + (one - params.green_min) * g_t * green_water)
    gpp_unlimited = gpp_light * fapar
    gpp = gpp_unlimited * f_w
    et = np.minimum(pet * (f32(0.3) + f32(0.7) * fapar) * f_w, w + water_in)
    w_next = np.clip(w + water_in - et, 0, params.w_max)
    outputs = {"fapar": fapar, "gpp": gpp, "et": et, "soil_water": w, "fw": f_w, "gpp_unlimited": gpp_unlimited}
    return outputs, _LandState(w_next, snow, t_smooth, green_water)


def _day(drivers: dict, t: int) -> dict:
    return {name: values[t] for name, values in drivers.items()}


def _spin_up(params: _LandParams, drivers: dict) -> _LandState:
    """The state at the start of the run: the first year (or the whole period, if shorter) run once."""
    state = _initial_state(params, drivers["tas"][0])
    for t in range(min(_SPIN_UP_DAYS, drivers["tas"].shape[0])):
        _, state = _land_step(params, state, _day(drivers, t))
    return state


def _day_sensitivities(params64: _LandParams, state: _LandState, day: dict) -> dict:
    """Partial derivatives of the day's GPP and ET with respect to each of its drivers.

    The start-of-day ``state``, the other drivers and the cloud fraction are held fixed. Central
    differences, forward ones where a non-negative driver is below its step; all 2 x
    len(SENSITIVITY_DRIVERS) variants of the day go through one vectorised step, in float64
    (float32 round-off would show at ~1e-4 of the monthly means).

    Parameters
    ----------
    params64 : _LandParams
        (n_land,) float64 arrays.
    state : _LandState
        The state at the start of the day, (n_land,) arrays.
    day : dict
        The day's drivers, (n_land,) arrays (see :func:`_land_step`).

    Returns
    -------
    dict
        ``(target, driver) -> (n_land,)`` float64 derivative.
    """
    base = {name: values.astype(np.float64) for name, values in day.items()}
    n_variants = 2 * len(SENSITIVITY_DRIVERS)
    variants = {name: np.repeat(values[None], n_variants, axis=0) for name, values in base.items()}
    widths = {}
    for k, (name, (step, _, _)) in enumerate(SENSITIVITY_DRIVERS.items()):
        x = base[name]
        lower = np.where(x >= step, x - step, x) if name in _NON_NEGATIVE_DRIVERS else x - step
        variants[name][2 * k] = x + step
        variants[name][2 * k + 1] = lower
        widths[name] = (x + step) - lower
    state64 = _LandState(*(values.astype(np.float64) for values in state))
    outputs, _ = _land_step(params64, state64, variants)
    return {(target, name): (outputs[target][2 * k] - outputs[target][2 * k + 1]) / widths[name]
            for target in SENSITIVITY_TARGETS for k, name in enumerate(SENSITIVITY_DRIVERS)}


def _run_land(params: _LandParams, drivers: dict, state: _LandState,
              month: np.ndarray | None = None) -> tuple[dict, dict | None]:
    """Run the land model over all days from ``state``, recording the daily outputs.

    Parameters
    ----------
    params, state : _LandParams, _LandState
        (n_land,) arrays; ``state`` is the state at the start of the first day.
    drivers : dict
        (nt, n_land) float32 arrays of tas, vpd, rsds, pr, cloud, ws.
    month : numpy.ndarray, optional
        (nt,) month number (0, 1, ...) of each day. If given, the true sensitivities are summed
        per month.

    Returns
    -------
    outputs : dict
        (nt, n_land) float32 arrays of _LAND_OUTPUTS.
    sensitivity_sums : dict or None
        ``(target, driver) -> (n_months, n_land)`` float64 sums of the daily derivatives.
    """
    nt, n_land = drivers["tas"].shape
    out = {name: np.empty((nt, n_land), np.float32) for name in _LAND_OUTPUTS}
    sums = None
    if month is not None:
        params64 = _LandParams(*(values.astype(np.float64) for values in params))
        sums = {(target, name): np.zeros((int(month.max()) + 1, n_land))
                for target in SENSITIVITY_TARGETS for name in SENSITIVITY_DRIVERS}
    for t in range(nt):
        day = _day(drivers, t)
        outputs, next_state = _land_step(params, state, day)
        for name in _LAND_OUTPUTS:
            out[name][t] = outputs[name]
        if sums is not None:
            for key, derivative in _day_sensitivities(params64, state, day).items():
                sums[key][month[t]] += derivative
        state = next_state
    return out, sums


def _water_limitation(out: dict) -> np.ndarray:
    """Growing-season mean reduction of GPP by soil water, (n_land,) float32 in [0, 1]."""
    total = out["gpp_unlimited"].sum(axis=0, dtype=np.float64)
    limited = ((np.float32(1.0) - out["fw"]) * out["gpp_unlimited"]).sum(axis=0, dtype=np.float64)
    water_limitation = np.where(total > 0, limited / np.where(total > 0, total, 1.0), 0.0)
    return np.clip(water_limitation, 0, 1).astype(np.float32)


def _simulate_land(drivers: dict, pft_land: np.ndarray, month: np.ndarray):
    """The land model over land pixels: spin-up, then the recorded run with the true sensitivities.

    Parameters
    ----------
    drivers : dict
        (nt, n_land) float32 arrays of tas, vpd, rsds, pr, cloud and ws.
    pft_land : numpy.ndarray
        (n_land,) IGBP codes.
    month : numpy.ndarray
        (nt,) month number of each day (0 = the period's first calendar month).

    Returns
    -------
    outputs : dict
        (nt, n_land) float32 arrays of _LAND_OUTPUTS.
    water_limitation : numpy.ndarray
        (n_land,) float32.
    sensitivity : dict
        ``"<target>_sens_<driver>"`` -> (n_months, n_land) monthly mean and
        ``"<target>_sens_<driver>_mean"`` -> (n_land,) period mean of the daily derivative, float32.
    """
    params = _land_params(pft_land)
    out, sums = _run_land(params, drivers, _spin_up(params, drivers), month)
    days_per_month = np.bincount(month)[:, None]
    sensitivity = {}
    for (target, name), total in sums.items():
        sensitivity[f"{target}_sens_{name}"] = (total / days_per_month).astype(np.float32)
        sensitivity[f"{target}_sens_{name}_mean"] = (total.sum(axis=0) / month.size).astype(np.float32)
    return out, _water_limitation(out), sensitivity


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

SENSITIVITY_DEFINITION = (
    "instantaneous partial derivative of the day's flux with respect to the same day's driver, with the "
    "state at the start of the day (soil water, snow, smoothed temperature, greenness memory), the other "
    "drivers and the cloud fraction held fixed; central finite difference of the demo world's daily "
    "step (forward where a non-negative driver is below the step), in float64"
)


def _month_number(time: pd.DatetimeIndex) -> np.ndarray:
    """0 for the days of the period's first calendar month, 1 for the next, ..."""
    return (time.year - time.year[0]) * 12 + (time.month - time.month[0])


def _sensitivity_attrs(target: str, driver: str, period_mean: bool) -> dict:
    units, target_words = SENSITIVITY_TARGETS[target]
    _, inverse_units, driver_words = SENSITIVITY_DRIVERS[driver]
    what = "mean over all days of the period" if period_mean else "monthly mean"
    return {"units": f"{units} {inverse_units}",
            "long_name": f"sensitivity of {target_words} to {driver_words} (instantaneous partial derivative)",
            "cell_methods": "time: mean",
            "comment": f"{what} of the daily {SENSITIVITY_DEFINITION}"}


def _sensitivity_variables(gridded: dict) -> dict:
    """The true sensitivities, gridded (month, lat, lon) and (lat, lon) arrays, as world variables."""
    variables = {}
    for target in SENSITIVITY_TARGETS:
        for driver in SENSITIVITY_DRIVERS:
            name = f"{target}_sens_{driver}"
            variables[name] = (("month", "lat", "lon"), gridded[name], _sensitivity_attrs(target, driver, False))
            variables[f"{name}_mean"] = (("lat", "lon"), gridded[f"{name}_mean"],
                                         _sensitivity_attrs(target, driver, True))
    return variables


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
    """
    if not isinstance(spec, DemoSpec):
        raise UpscaleError(f"simulate() needs a DemoSpec, got {type(spec).__name__}", "upscale.sources.demo")
    f32 = np.float32
    res = spec.resolution
    wrap = _is_global(spec)
    time = pd.date_range(spec.start, spec.end, freq="D")
    lat, lon, land, cont, landness, ocean_east = _geography(spec)
    nt, ny, nx = time.size, lat.size, lon.size
    if nt * ny * nx > _MAX_CELLS:
        raise DataError(f"a demo world of {nt} days x {ny} x {nx} cells is too large to simulate in memory",
                        "demo world spec", "use a coarser resolution, a bbox or a shorter period")
    doy = time.day_of_year.values
    lat2 = lat[:, None]
    alat = np.abs(lat2)
    sin_lat = np.sin(np.deg2rad(alat))
    cos_lat = np.cos(np.deg2rad(lat2))
    landf = land.astype(float)

    # ---- static random modulations ----------------------------------------------------------
    rng_geo = _rng(spec, _S_GEO)
    p_mod = np.exp(0.35 * _static_noise(rng_geo, (ny, nx), 12.0 / res, wrap) - 0.35 ** 2 / 2)
    t_offset = 1.5 * _static_noise(rng_geo, (ny, nx), 6.0 / res, wrap) * landf

    # ---- precipitation climatology ----------------------------------------------------------
    p_clim_year = _precip_climatology(np.arange(1, 366), lat, landness, cont, ocean_east, p_mod)
    p_ann_rate = p_clim_year.mean(axis=0, dtype=np.float64)  # mm d-1
    p_ann = 365.25 * p_ann_rate  # mm yr-1
    del p_clim_year
    p_clim = _precip_climatology(doy, lat, landness, cont, ocean_east, p_mod)  # (nt, ny, nx)

    # ---- temperature ------------------------------------------------------------------------
    wet_ann = p_ann_rate / (p_ann_rate + 1.5)
    t_ann = (-15.0 + 42.0 * cos_lat ** 1.5 - 5.0 * cont * sin_lat ** 2
             + landf * 3.0 * (1.0 - wet_ann) * np.clip((40.0 - alat) / 15.0, 0.0, 1.0) + t_offset)
    amp = (0.8 + 26.0 * sin_lat ** 1.5) * np.where(land, 0.35 + 0.65 * cont, 0.25)
    hem = np.tanh(lat2 / 5.0)
    season = (hem[None] * _season_cos(doy, 202.0)[:, None, None]).astype(f32)  # (nt, ny, 1)
    sd_t = ((1.0 + 3.5 * sin_lat ** 1.5) * np.where(land, 0.8 + 0.4 * cont, 0.5)).astype(f32)
    noise_t = _weather_noise(_rng(spec, _S_TEMP), nt, (ny, nx), 6.0 / res, 4.0, wrap)
    tas = (t_ann.astype(f32)[None] + amp.astype(f32)[None] * season
           + sd_t[None] * (f32(1.0) + f32(0.3) * np.maximum(-season, 0)) * noise_t)
    tas = tas.astype(f32)

    # ---- precipitation, cloudiness ----------------------------------------------------------
    rng_p = _rng(spec, _S_PREC)
    latent = _weather_noise(rng_p, nt, (ny, nx), 4.0 / res, 1.5, wrap)
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
    doy_arr = doy[:, None, None]
    rsds_pot = np.broadcast_to(toa_shortwave_daily_mean(lat[None, :, None], doy_arr).astype(f32),
                               (nt, ny, nx))
    rsds = (rsds_pot * (f32(0.8) - f32(0.55) * cloud)).astype(f32)

    # ---- humidity ---------------------------------------------------------------------------
    rh_land = (f32(0.30) + f32(0.5) * wet_clim + f32(0.15) * (q - f32(0.3))
               + f32(0.08) * (f32(1.0) - cont.astype(f32))[None]
               - f32(0.006) * np.maximum(tas - f32(22.0), 0) - f32(0.03) * noise_t)
    rh_ocean = f32(0.75) + f32(0.1) * q + f32(0.05) * wet_clim
    rh = np.clip(np.where(land[None], rh_land, rh_ocean), 0.08, 0.97).astype(f32)
    del rh_land, rh_ocean, q, wet_clim, noise_t, p_clim
    es = saturation_vapour_pressure(tas).astype(f32)
    e = rh * es
    tdew = dewpoint_from_vapour_pressure(e).astype(f32)
    vpd = np.maximum(es - e, 0).astype(f32)
    del e, es, rh
    u10, v10 = _wind(spec, doy, lat, landness, wrap)
    ws = np.hypot(u10, v10)

    # ---- vegetation, water, fluxes (land pixels only) ---------------------------------------
    pft = _pft_map(spec, land, t_ann, p_ann, wrap)
    flat = np.flatnonzero(land.ravel())

    def on_land(a):
        return np.ascontiguousarray(a.reshape(nt, -1)[:, flat])

    drivers = {name: on_land(values) for name, values in
               (("tas", tas), ("vpd", vpd), ("rsds", rsds), ("pr", pr), ("cloud", cloud), ("ws", ws))}
    fluxes, wlim, sensitivity = _simulate_land(drivers, pft.ravel()[flat], _month_number(time))
    del drivers
    rng_ndvi = _rng(spec, _S_NDVI)
    ndvi_land = (f32(0.05) + f32(0.85) * fluxes["fapar"] ** f32(0.8)
                 + f32(0.02) * rng_ndvi.standard_normal(fluxes["fapar"].shape, dtype=f32))
    fluxes["ndvi"] = np.clip(ndvi_land, -0.1, 1.0).astype(f32)

    def to_grid(a):
        full = np.full((*a.shape[:-1], ny * nx), np.nan, f32)
        full[..., flat] = a
        return full.reshape(*a.shape[:-1], ny, nx)

    dims = ("time", "lat", "lon")
    data = {
        "tas": (dims, tas), "tdew": (dims, tdew), "vpd": (dims, vpd), "rsds": (dims, rsds),
        "rsds_pot": (dims, np.ascontiguousarray(rsds_pot)), "pr": (dims, pr), "cloud": (dims, cloud),
        "u10": (dims, u10), "v10": (dims, v10), "ws": (dims, ws),
        **{name: (dims, to_grid(fluxes[name])) for name in ("fapar", "ndvi", "soil_water", "gpp", "et")},
        "pft": (("lat", "lon"), pft), "land_mask": (("lat", "lon"), land.copy()),
        "water_limitation": (("lat", "lon"), to_grid(wlim)),
    }
    variables = {k: (d, v, {"units": _WORLD_ATTRS[k][0], "long_name": _WORLD_ATTRS[k][1]})
                 for k, (d, v) in data.items()}
    variables.update(_sensitivity_variables({k: to_grid(v) for k, v in sensitivity.items()}))
    months = pd.date_range(time[0].to_period("M").to_timestamp(), time[-1], freq="MS")
    world = xr.Dataset(
        variables,
        coords={
            "time": ("time", time.values, {"long_name": "time"}),
            "month": ("month", months.values, {"long_name": "first day of the calendar month"}),
            "lat": ("lat", lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"title": "upscale demo world (synthetic)", "demo_spec": json.dumps(spec.to_dict())},
    )
    sites = _choose_sites(spec, lat, lon, land, pft, t_ann, p_ann)
    return world, sites


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _site_cells(world: xr.Dataset, sites: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the grid cell that holds each site (sites lie within 0.3 cells of a centre)."""
    lat, lon = world.lat.values, world.lon.values
    iy = np.abs(lat[None, :] - sites["LOCATION_LAT"].values[:, None]).argmin(axis=1)
    ix = np.abs(lon[None, :] - sites["LOCATION_LONG"].values[:, None]).argmin(axis=1)
    return iy, ix


def _qc_fraction(rng, n, p_perfect=0.6):
    """QC as the fraction of good half-hours of the day: mostly > 0.8, never below 0.5."""
    k = np.where(rng.random(n) < p_perfect, 48,
                 np.where(rng.random(n) < 0.85, rng.integers(39, 48, n), rng.integers(24, 39, n)))
    return np.round(k / 48.0, 4)


def _site_table(spec, world, sites, j, iy, ix, rng) -> pd.DataFrame:
    """One site's FLUXNET2015 DD table (numbers; -9999 for missing)."""
    time = pd.DatetimeIndex(world.time.values)
    nt = time.size

    def px(name):
        return world[name].values[:, iy, ix].astype(np.float64)

    tas, rsds, vpd, pr = px("tas"), px("rsds"), px("vpd"), px("pr")
    gpp, et = px("gpp"), px("et")
    bias = float(sites["bias"].iloc[j])
    slat = float(sites["LOCATION_LAT"].iloc[j])
    sw_pot = toa_shortwave_daily_mean(slat, time.day_of_year.values)

    ta_f = np.round(tas + rng.normal(0, 0.3, nt), 3)
    sw_in = np.round(np.clip(rsds * (1 + rng.normal(0, 0.03, nt)), 0, sw_pot), 3)
    vpd_f = np.round(np.maximum(vpd * (1 + rng.normal(0, 0.05, nt)) + rng.normal(0, 0.05, nt), 0), 3)
    p_f = np.round(np.maximum(pr * (1 + rng.normal(0, 0.1, nt)), 0), 3)

    gpp_nt = gpp * (1 + bias) + rng.normal(0, 1, nt) * (0.15 * np.abs(gpp) + 0.3)
    gpp_dt = gpp_nt + rng.normal(0, 1, nt) * (0.05 * np.abs(gpp_nt) + 0.1)
    et_obs = et * (1 + bias) + rng.normal(0, 1, nt) * (0.15 * np.abs(et) + 0.3)
    le = et_obs * latent_heat_of_vaporisation(ta_f) / SECONDS_PER_DAY
    le_corr = le * rng.uniform(1.05, 1.15) * (1 + rng.normal(0, 0.02, nt))

    # Gaps: ~half of them in runs of 1-4 weeks, the rest single days; QC 0 there.
    gap = np.zeros(nt, bool)
    target = int(round(rng.uniform(0.08, 0.12) * nt))
    budget = max(target // 2, min(7, target))
    while budget > 0:
        length = min(int(rng.integers(7, 29)), budget)
        s = int(rng.integers(0, max(1, nt - length + 1)))
        gap[s:s + length] = True
        budget -= length
    missing = target - int(gap.sum())
    if missing > 0:
        gap[rng.choice(np.flatnonzero(~gap), size=missing, replace=False)] = True
    qc_le = _qc_fraction(rng, nt)
    qc_nee = _qc_fraction(rng, nt)
    poor = (~gap) & (rng.random(nt) < 0.03)
    qc_le[poor] = np.round(rng.integers(5, 20, int(poor.sum())) / 48.0, 4)
    qc_nee[poor] = np.round(rng.integers(5, 20, int(poor.sum())) / 48.0, 4)
    qc_le[gap] = 0.0
    qc_nee[gap] = 0.0

    def gapped(a, digits=4):
        return np.where(gap, -9999.0, np.round(a, digits))

    table = pd.DataFrame({
        "TIMESTAMP": time.strftime("%Y%m%d").astype(int),
        "TA_F": ta_f, "TA_F_QC": _qc_fraction(rng, nt, 0.8),
        "SW_IN_POT": np.round(sw_pot, 3), "SW_IN_F": sw_in, "SW_IN_F_QC": _qc_fraction(rng, nt, 0.8),
        "VPD_F": vpd_f, "VPD_F_QC": _qc_fraction(rng, nt, 0.8),
        "P_F": p_f, "P_F_QC": _qc_fraction(rng, nt, 0.9),
        "LE_F_MDS": gapped(le), "LE_F_MDS_QC": qc_le, "LE_CORR": gapped(le_corr),
        "NEE_VUT_REF_QC": qc_nee, "GPP_NT_VUT_REF": gapped(gpp_nt), "GPP_DT_VUT_REF": gapped(gpp_dt),
    })
    return table[_FLUXNET_COLUMNS]


def _write_fluxnet(spec, world, sites, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    y0, y1 = spec.start[:4], spec.end[:4]
    iy, ix = _site_cells(world, sites)
    for j, sid in enumerate(sites["SITE_ID"]):
        rng = _rng(spec, _S_OBS, j)
        table = _site_table(spec, world, sites, j, int(iy[j]), int(ix[j]), rng)
        table.to_csv(folder / f"FLX_{sid}_FLUXNET2015_SUBSET_DD_{y0}-{y1}_1-4.csv", index=False,
                     float_format="%.10g")
    meta = sites[["SITE_ID", "SITE_NAME", "LOCATION_LAT", "LOCATION_LONG", "LOCATION_ELEV", "IGBP"]]
    meta.to_csv(folder / "sites.csv", index=False)


_ERA5_VARS = {
    # name: (units, long_name, standard_name)
    "t2m": ("K", "2 metre temperature", "air_temperature"),
    "d2m": ("K", "2 metre dewpoint temperature", "dew_point_temperature"),
    "ssrd": ("J m-2", "Surface short-wave (solar) radiation downwards",
             "surface_downwelling_shortwave_flux_in_air"),
    "tp": ("m", "Total precipitation", "lwe_thickness_of_precipitation_amount"),
    "u10": ("m s-1", "10 metre U wind component", "eastward_wind"),
    "v10": ("m s-1", "10 metre V wind component", "northward_wind"),
}


def _write_era5(world, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lon360 = np.mod(world.lon.values, 360.0)
    order = np.argsort(lon360, kind="stable")
    lat_desc = world.lat.values[::-1]
    time = pd.DatetimeIndex(world.time.values)
    ny, nx = lat_desc.size, lon360.size
    for year in np.unique(time.year):
        sel = np.flatnonzero(time.year == year)
        t0, t1 = sel[0], sel[-1] + 1

        def cut(name):
            return world[name].values[t0:t1, ::-1, :][:, :, order]

        values = {
            "t2m": cut("tas") + np.float32(273.15),
            "d2m": cut("tdew") + np.float32(273.15),
            "ssrd": cut("rsds") * np.float32(SECONDS_PER_DAY),
            "tp": cut("pr") / np.float32(1000.0),
            "u10": cut("u10"),
            "v10": cut("v10"),
        }
        dims = ("valid_time", "latitude", "longitude")
        ds = xr.Dataset(
            {k: (dims, v.astype(np.float32),
                 {"units": _ERA5_VARS[k][0], "long_name": _ERA5_VARS[k][1],
                  "standard_name": _ERA5_VARS[k][2]}) for k, v in values.items()},
            coords={
                "valid_time": ("valid_time", time.values[t0:t1], {"long_name": "time", "standard_name": "time"}),
                "latitude": ("latitude", lat_desc, {"units": "degrees_north", "standard_name": "latitude",
                                                    "long_name": "latitude", "stored_direction": "decreasing"}),
                "longitude": ("longitude", lon360[order], {"units": "degrees_east",
                                                           "standard_name": "longitude",
                                                           "long_name": "longitude"}),
            },
            attrs={"Conventions": "CF-1.7", "institution": "upscale demo world (synthetic)",
                   "GRIB_centre": "ecmf",
                   "history": "synthetic daily statistics (daily mean / daily sum) in the layout of a CDS "
                              "ERA5 daily download"},
        )
        chunks = (min(t1 - t0, 31), min(ny, 360), min(nx, 720))
        enc = {k: {"zlib": True, "complevel": 1, "chunksizes": chunks, "_FillValue": np.float32(np.nan)}
               for k in values}
        enc["valid_time"] = {"units": "seconds since 1970-01-01", "calendar": "proleptic_gregorian",
                             "dtype": "int64"}
        ds.to_netcdf(folder / f"era5_daily_{year}.nc", engine="netcdf4", format="NETCDF4", encoding=enc)


def _cube_chunks(world) -> dict:
    return {"time": min(world.time.size, 365), "lat": min(world.lat.size, 512),
            "lon": min(world.lon.size, 512)}


def _to_zarr(ds: xr.Dataset, path: Path) -> None:
    # Zarr format 2: consolidated metadata and string coordinates are part of its specification.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, mode="w-", consolidated=True, zarr_format=2)


def _write_eo(world, path: Path) -> None:
    chunks = _cube_chunks(world)
    ds = world[["fapar", "ndvi"]].copy()
    ds.attrs = {"title": "upscale demo world (synthetic): Earth-observation cube",
                "institution": "upscale demo world (synthetic)"}
    ds["fapar"].attrs = {"units": "1", "long_name": "fraction of absorbed photosynthetically active radiation",
                         "standard_name": "fraction_of_surface_downwelling_photosynthetic_radiative_flux"
                                          "_absorbed_by_vegetation"}
    ds["ndvi"].attrs = {"units": "1", "long_name": "normalized difference vegetation index",
                        "standard_name": "normalized_difference_vegetation_index"}
    ds = ds.chunk(chunks)
    for v in ds.data_vars:
        ds[v].encoding = {}
    _to_zarr(ds, path)


def _write_static(world, path: Path) -> None:
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    path.parent.mkdir(parents=True, exist_ok=True)
    da = xr.DataArray(
        world["pft"].values[::-1, :].astype(np.uint8), dims=("y", "x"),
        coords={"y": world.lat.values[::-1], "x": world.lon.values},
        name="pft", attrs={"long_name": "plant functional type (IGBP)"},
    )
    da = da.rio.write_crs("EPSG:4326").rio.write_nodata(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # affine's `*` inside rioxarray
        warnings.simplefilter("ignore", DeprecationWarning)
        da.rio.to_raster(path, compress="DEFLATE")


def _write_truth(spec, world, sites, path: Path) -> None:
    chunks = _cube_chunks(world)
    ds = world[["gpp", "et", "soil_water", "water_limitation", "pft"]].copy()
    ds["land_mask"] = world["land_mask"].astype(np.int8)
    ds["land_mask"].attrs = {"units": "1", "long_name": "land (1) or water/ice (0)"}
    ds["pft"].attrs = {"units": "1", "long_name": "plant functional type (IGBP)", "comment": "0 = water"}
    ds = ds.assign_coords(site=("site", sites["SITE_ID"].values.astype(str)))
    ds["site_lat"] = ("site", sites["LOCATION_LAT"].values.astype(np.float64), {"units": "degrees_north"})
    ds["site_lon"] = ("site", sites["LOCATION_LONG"].values.astype(np.float64), {"units": "degrees_east"})
    ds["site_bias"] = ("site", sites["bias"].values.astype(np.float64),
                       {"units": "1", "long_name": "multiplicative bias of the site's observations "
                                                  "(obs = truth * (1 + bias) + noise)"})
    ds.attrs = {"title": "upscale demo world (synthetic): the truth",
                "institution": "upscale demo world (synthetic)",
                "demo_spec": json.dumps(spec.to_dict(), sort_keys=True),
                "world_version": WORLD_VERSION}
    cube = {k: chunks for k in ("gpp", "et", "soil_water")}
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


def _write_sensitivity(spec, world, path: Path) -> None:
    """The true sensitivities as CF Zarr: monthly means on time, period means on (lat, lon)."""
    names = [name for name in world.data_vars if "_sens_" in name]
    ds = world[names].rename(month="time")
    ds["time"].attrs = {"long_name": "time", "standard_name": "time", "axis": "T", "bounds": "time_bnds",
                        "comment": "first day of each calendar month of the period"}
    ds["time_bnds"] = (("time", "bnds"), _month_bounds(world.month.values, world.time.values))
    ds.attrs = {"title": "upscale demo world (synthetic): true sensitivities of GPP and ET to the drivers",
                "institution": "upscale demo world (synthetic)",
                "Conventions": "CF-1.8",
                "comment": f"each variable: {SENSITIVITY_DEFINITION}",
                "demo_spec": json.dumps(spec.to_dict(), sort_keys=True),
                "world_version": WORLD_VERSION}
    chunks = {"time": ds.sizes["time"], "lat": min(ds.sizes["lat"], 512), "lon": min(ds.sizes["lon"], 512)}
    for name in names:
        ds[name].encoding = {}
        ds[name] = ds[name].chunk({d: chunks[d] for d in ds[name].dims})
    ds["time"].encoding = {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian"}
    _to_zarr(ds, path)


def _write_catalog(spec, path: Path) -> None:
    box = "" if spec.bbox is None else f", bbox {list(spec.bbox)}"
    catalog = {
        "description": (f"upscale demo world (synthetic), seed {spec.seed}, {spec.resolution} deg, "
                        f"{spec.start}..{spec.end}, {spec.n_sites} sites{box}"),
        "entries": {
            "era5": {"driver": "era5", "path": "era5/era5_daily_*.nc"},
            "eo": {"driver": "cube", "path": "eo/eo_daily.zarr"},
            "static": {"driver": "geotiff", "path": "static/pft.tif", "variable": "pft", "categorical": True},
            "fluxnet": {"driver": "fluxnet", "path": "fluxnet/FLX_*_FLUXNET2015_SUBSET_DD_*.csv",
                        "site_list": "fluxnet/sites.csv"},
            "truth": {"driver": "cube", "path": "truth.zarr"},
            "sensitivity": {"driver": "cube", "path": "sensitivity.zarr"},
        },
    }
    import yaml

    path.write_text(yaml.safe_dump(catalog, sort_keys=False))


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
    exists_error = DataError("the output folder exists and is not empty", str(out_dir),
                             "choose a new folder, or delete this one first")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise exists_error
    world, sites = simulate(spec)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_era5(world, tmp / "era5")
        (tmp / "eo").mkdir()
        _write_eo(world, tmp / "eo" / "eo_daily.zarr")
        _write_static(world, tmp / "static" / "pft.tif")
        _write_fluxnet(spec, world, sites, tmp / "fluxnet")
        _write_truth(spec, world, sites, tmp / "truth.zarr")
        _write_sensitivity(spec, world, tmp / "sensitivity.zarr")
        _write_catalog(spec, tmp / "catalog.yaml")
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


def cached_world(spec: DemoSpec | None = None, cache_dir: str | Path | None = None) -> Path:
    """The catalog.yaml of the demo world of ``spec``, generated into the cache on first use.

    The world lives in ``<cache_dir>/demo-<spec.key()>/``; ``cache_dir`` defaults to
    ``$UPSCALE_CACHE`` or ``~/.cache/upscale``. Safe against concurrent callers: if another
    process finishes the same world first, its copy is used.
    """
    spec = DemoSpec() if spec is None else spec
    if cache_dir is None:
        cache_dir = os.environ.get("UPSCALE_CACHE") or Path.home() / ".cache" / "upscale"
    folder = Path(cache_dir).expanduser().absolute() / f"demo-{spec.key()}"
    catalog = folder / "catalog.yaml"
    if catalog.is_file():
        return catalog
    if folder.exists() and any(folder.iterdir()):
        raise DataError("the cached demo world has no catalog.yaml (it was changed by hand?)", str(folder),
                        "delete the folder; it is regenerated on the next call")
    try:
        return write_world(spec, folder)
    except DataError:
        if catalog.is_file():  # another process won the race
            return catalog
        raise
