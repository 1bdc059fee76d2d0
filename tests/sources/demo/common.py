"""What the demo world tests share: the specs they build and helpers that read the worlds."""

from __future__ import annotations

import numpy as np

from upscale.sources.demo import DemoSpec

TINY = DemoSpec(resolution=10, start="2018-01-01", end="2018-04-30", n_sites=12)
# A regional world whose period spans two calendar years and whose bbox crosses the prime meridian.
BOX = DemoSpec(seed=5, resolution=5, start="2018-12-01", end="2019-01-31", n_sites=5, bbox=(-10, 35, 30, 60))
SMALL = DemoSpec(seed=1, resolution=10, start="2018-01-01", end="2018-01-20", n_sites=3)
ALLOWED_PFT = {1, 2, 4, 5, 7, 8, 9, 10, 12}
DYNAMIC = [
    "tas",
    "tdew",
    "vpd",
    "rsds",
    "rsds_pot",
    "pr",
    "cloud",
    "u10",
    "v10",
    "ws",
    "fapar",
    "ndvi",
    "soil_water",
    "gpp",
    "et",
]
WIND = ["u10", "v10", "ws"]
DRIVERS = ["tas", "vpd", "rsds", "pr", "ws"]
# The contract of sensitivity.zarr: variable -> units.
SENSITIVITY_UNITS = {
    "gpp_sens_tas": "g m-2 d-1 K-1",
    "gpp_sens_vpd": "g m-2 d-1 hPa-1",
    "gpp_sens_rsds": "g m-2 d-1 W-1 m2",
    "gpp_sens_pr": "g m-2 d-1 mm-1 d",
    "gpp_sens_ws": "g m-2 d-1 m-1 s",
    "et_sens_tas": "kg m-2 d-1 K-1",
    "et_sens_vpd": "kg m-2 d-1 hPa-1",
    "et_sens_rsds": "kg m-2 d-1 W-1 m2",
    "et_sens_pr": "kg m-2 d-1 mm-1 d",
    "et_sens_ws": "kg m-2 d-1 m-1 s",
}
TARGET_COLUMNS = ["LE_F_MDS", "LE_CORR", "GPP_NT_VUT_REF", "GPP_DT_VUT_REF"]


def site_truth(world, sites, name):
    """(n_sites, time) truth of ``name`` at each site's grid cell."""
    iy = np.abs(world.lat.values[None] - sites["LOCATION_LAT"].values[:, None]).argmin(axis=1)
    ix = np.abs(world.lon.values[None] - sites["LOCATION_LONG"].values[:, None]).argmin(axis=1)
    return world[name].values[:, iy, ix].T.astype(float)


def corr_columns(a, b):
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
