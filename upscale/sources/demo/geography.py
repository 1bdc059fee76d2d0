"""The geography of the demo world: grid axes, land and coasts, the PFT map and pseudo countries."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from upscale.errors import DataError
from upscale.sources.demo.noise import S_PFT, rng, static_noise
from upscale.sources.demo.pft import PFT_CODES, PFT_NICHES
from upscale.sources.demo.spec import DemoSpec

_KM_PER_DEG = 111.2

# Pseudo country codes of sites: (lat_min, lat_max, lon_min, lon_max, code), first match wins.
COUNTRY_BOXES = [
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


class Geography(NamedTuple):
    """The static geography of a spec's grid, (ny, nx) arrays on the (lat, lon) axes."""

    lat: np.ndarray  # (ny,) cell centres, ascending
    lon: np.ndarray  # (nx,) cell centres, ascending, in [-180, 180)
    land: np.ndarray  # bool, land without Antarctica
    cont: np.ndarray  # continentality, 0 at the coast .. 1 deep inland
    landness: np.ndarray  # land fraction smoothed over ~5 degrees
    ocean_east: np.ndarray  # fraction of ocean in the 15 degrees east of each cell
    wrap: bool  # the grid is global: longitudes wrap around


def global_axes(res: float) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes of the cell centres of the global grid at ``res`` degrees."""
    n_lat = int(round(180.0 / res))
    n_lon = 2 * n_lat
    lat = -90.0 + res * (np.arange(n_lat) + 0.5)
    lon = -180.0 + res * (np.arange(n_lon) + 0.5)
    return lat, lon


def grid_slices(spec: DemoSpec) -> tuple[slice, slice]:
    """Index ranges of the spec's grid inside the global grid at its resolution."""
    glat, glon = global_axes(spec.resolution)
    if spec.bbox is None:
        return slice(0, glat.size), slice(0, glon.size)
    lon0, lat0, lon1, lat1 = spec.bbox
    eps = 1e-9
    iy = np.flatnonzero((glat >= lat0 - eps) & (glat <= lat1 + eps))
    ix = np.flatnonzero((glon >= lon0 - eps) & (glon <= lon1 + eps))
    if iy.size == 0 or ix.size == 0:
        raise DataError(
            f"bbox {spec.bbox} contains no cell centre of the {spec.resolution} degree grid",
            "demo world spec",
            "enlarge the box or use a finer resolution",
        )
    return slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1)


def build_geography(spec: DemoSpec) -> Geography:
    """Land mask, continentality, smoothed land fraction and eastern ocean on the spec grid.

    Computed on the global grid at the spec's resolution and cut out, so that the distance to
    the coast of a regional world is the same as in the global one.
    """
    from global_land_mask import globe

    res = spec.resolution
    glat, glon = global_axes(res)
    la, lo = np.meshgrid(glat, glon, indexing="ij")
    land_any = np.asarray(globe.is_land(la, lo), dtype=bool)
    n_lon = glon.size
    pad = n_lon // 2
    wrapped = np.concatenate([land_any[:, -pad:], land_any, land_any[:, :pad]], axis=1)
    dist = ndimage.distance_transform_edt(wrapped)[:, pad : pad + n_lon] * res * _KM_PER_DEG
    cont = (1.0 - np.exp(-dist / 1000.0)) * land_any
    landness = ndimage.gaussian_filter(land_any.astype(float), 5.0 / res, mode=("nearest", "wrap"), truncate=3.0)
    # Fraction of ocean in the 15 degrees east of each cell (east coasts are wetter in the subtropics).
    ocean = (~land_any).astype(float)
    n_east = max(1, int(round(15.0 / res)))
    ocean_east = sum(np.roll(ocean, -k, axis=1) for k in range(1, n_east + 1)) / n_east
    land = land_any & (la >= -60.0)
    sy, sx = grid_slices(spec)
    return Geography(
        glat[sy], glon[sx], land[sy, sx], cont[sy, sx], landness[sy, sx], ocean_east[sy, sx], spec.bbox is None
    )


def pft_map(spec: DemoSpec, land: np.ndarray, t_ann: np.ndarray, p_ann: np.ndarray, wrap: bool) -> np.ndarray:
    """IGBP code per cell from the climate niches, with a seeded random mix; 0 over water.

    Parameters
    ----------
    spec : DemoSpec
        Seed and resolution.
    land : numpy.ndarray
        (ny, nx) bool land mask.
    t_ann, p_ann : numpy.ndarray
        (ny, nx) annual mean temperature (degC) and annual precipitation (mm).
    wrap : bool
        Whether longitudes wrap around (a global grid).

    Returns
    -------
    numpy.ndarray
        (ny, nx) uint8 IGBP codes.
    """
    generator = rng(spec, S_PFT)
    ny, nx = land.shape
    logp = np.log(np.maximum(p_ann, 5.0))
    scores = np.zeros((len(PFT_CODES), ny, nx))
    for code, tc, pc, w in PFT_NICHES:
        k = PFT_CODES.index(code)
        d2 = ((t_ann - tc) / 5.0) ** 2 + ((logp - np.log(pc)) / 0.45) ** 2
        scores[k] += w * np.exp(-0.5 * d2)
    scores += 1e-6
    # A smooth random preference per class keeps patches coherent, a per-cell draw mixes them.
    sigma = 2.0 / spec.resolution
    for k in range(len(PFT_CODES)):
        scores[k] *= np.exp(0.5 * static_noise(generator, (ny, nx), sigma, wrap))
    prob = scores**2
    prob /= prob.sum(axis=0, keepdims=True)
    u = generator.random((ny, nx))
    k = (np.cumsum(prob, axis=0) < u[None]).sum(axis=0)
    k = np.minimum(k, len(PFT_CODES) - 1)
    pft = np.asarray(PFT_CODES, dtype=np.uint8)[k]
    return np.where(land, pft, 0).astype(np.uint8)


def country_code(lat: float, lon: float) -> str:
    """A pseudo country code: the first box that holds the point, else the box with the nearest centre."""
    best, best_d = "XX", np.inf
    for la0, la1, lo0, lo1, code in COUNTRY_BOXES:
        if la0 <= lat <= la1 and lo0 <= lon <= lo1:
            return code
        d = (lat - (la0 + la1) / 2) ** 2 + ((lon - (lo0 + lo1) / 2) * math.cos(math.radians(lat))) ** 2
        if d < best_d:
            best, best_d = code, d
    return best
