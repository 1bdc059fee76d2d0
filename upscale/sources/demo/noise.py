"""The seeded random streams of the demo world and the smooth random fields drawn from them.

Each component draws from its own stream ``np.random.default_rng([seed, k])``, so for example the
climate of a world does not change when only the number of sites changes.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from upscale.sources.demo.spec import DemoSpec

# Random stream identifiers (sub-seeds), one per component.
S_GEO, S_TEMP, S_PREC, S_PFT, S_NDVI, S_SITES, S_OBS, S_WIND, S_HUMID = range(1, 10)


def rng(spec: DemoSpec, *keys: int) -> np.random.Generator:
    """The random stream ``keys`` (a component's identifier, then optional sub-keys) of ``spec``."""
    return np.random.default_rng([spec.seed, *keys])


def smooth2d(field: np.ndarray, sigma: float, wrap: bool) -> np.ndarray:
    """Gaussian smoothing over (lat, lon); longitudes wrap around on the globe."""
    if sigma < 0.3:
        return field
    return ndimage.gaussian_filter(field, sigma, mode=("nearest", "wrap" if wrap else "reflect"), truncate=3.0)


def static_noise(generator: np.random.Generator, shape, sigma: float, wrap: bool) -> np.ndarray:
    """A smooth 2-D standard-normal-ish field."""
    z = generator.standard_normal(shape)
    z = smooth2d(z, sigma, wrap)
    sd = z.std()
    return (z - z.mean()) / (sd if sd > 0 else 1.0)


def weather_noise(generator: np.random.Generator, nt: int, shape, sigma: float, tau: float, wrap: bool) -> np.ndarray:
    """AR(1) in time (correlation time ``tau`` days), Gaussian-smooth in space, unit variance, float32."""
    e = generator.standard_normal((nt + 1, *shape), dtype=np.float32)
    if sigma >= 0.3:
        e = ndimage.gaussian_filter(
            e, (0, sigma, sigma), mode=("nearest", "nearest", "wrap" if wrap else "reflect"), truncate=3.0
        )
        e /= e.std(dtype=np.float64)
    phi = np.float32(math.exp(-1.0 / tau))
    s = np.float32(math.sqrt(1.0 - float(phi) ** 2))
    out = e[1:]
    out[0] = s * out[0] + phi * e[0]  # e[0] is the stationary state of the day before
    for t in range(1, nt):
        out[t] *= s
        out[t] += phi * out[t - 1]
    return out
