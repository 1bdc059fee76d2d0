"""Process-model baselines at the sites: the P-model (pyrealm) for GPP, Priestley-Taylor for ET.

They take the same site predictors as the learned models (the cubes' values at each site's
pixel), so the comparison in ``cv/baselines.csv`` is between models, not between inputs.
Neither is fitted to the site observations: they are the physics a learned model must beat.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import torch
import xarray as xr

from upscale import physics
from upscale.constants import PRIESTLEY_TAYLOR_ALPHA
from upscale.metrics import METRIC_COLUMNS, score

log = logging.getLogger("upscale")

CO2_PPM = 410.0  # atmospheric CO2 when no CO2 series is given (about the 2018-2019 mean)
SEA_LEVEL_PRESSURE = 101325.0  # Pa
PPFD_PER_SHORTWAVE = 2.04  # umol photons J-1 of global radiation (pyrealm's swdown_to_ppfd_factor)
NEEDED = {"pmodel": ("tas", "vpd", "rsds", "fapar"), "priestley_taylor": ("tas", "vpd", "rsds")}
TARGET_OF = {"pmodel": "gpp", "priestley_taylor": "et"}


def pmodel_gpp(tas, vpd, rsds, fapar, elevation=None, co2: float = CO2_PPM) -> np.ndarray:
    """Daily GPP (g C m-2 d-1) of the P-model (Stocker et al. 2020) through pyrealm.

    Parameters
    ----------
    tas, vpd, rsds, fapar : array_like
        Air temperature (degC), VPD (hPa), shortwave radiation (W m-2, daily mean), fAPAR (1).
    elevation : array_like, optional
        Site elevation (m) for the air pressure; sea level where missing.
    co2 : float
        Atmospheric CO2 (ppm).

    Returns
    -------
    numpy.ndarray
        GPP of the shape of ``tas``; NaN where an input is missing, 0 where the P-model
        has no photosynthesis (e.g. below its temperature range).
    """
    format_warning = warnings.formatwarning
    from pyrealm.core.pressure import calc_patm
    from pyrealm.pmodel import PModel, PModelEnvironment

    warnings.formatwarning = format_warning  # pyrealm's import replaces it, naming itself as every warning's source

    tas, vpd, rsds, fapar = (np.asarray(a, dtype="float64") for a in (tas, vpd, rsds, fapar))
    elev = np.zeros_like(tas) if elevation is None else np.broadcast_to(np.nan_to_num(elevation), tas.shape)
    missing = ~(np.isfinite(tas) & np.isfinite(vpd) & np.isfinite(rsds) & np.isfinite(fapar))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        env = PModelEnvironment(
            tc=np.clip(np.nan_to_num(tas), -25, 80),
            vpd=np.clip(np.nan_to_num(vpd), 0, None) * 100,
            co2=np.full_like(tas, co2),
            patm=calc_patm(elev),
            fapar=np.clip(np.nan_to_num(fapar), 0, 1),
            ppfd=np.clip(np.nan_to_num(rsds), 0, None) * PPFD_PER_SHORTWAVE,
        )
        gpp_ug_per_s = PModel(env).gpp  # micrograms C m-2 s-1
    gpp = np.nan_to_num(gpp_ug_per_s, nan=0.0) * 1e-6 * physics.SECONDS_PER_DAY
    return np.where(missing, np.nan, gpp)


def priestley_taylor_et(tas, vpd, rsds, rsds_pot=None, alpha: float = PRIESTLEY_TAYLOR_ALPHA) -> np.ndarray:
    """Daily ET (mm d-1) of Priestley-Taylor with alpha 1.26 and FAO-56 net radiation (no water limit)."""
    t = {k: torch.as_tensor(np.asarray(v, dtype="float64")) for k, v in dict(tas=tas, vpd=vpd, rsds=rsds).items()}
    pot = None if rsds_pot is None else torch.as_tensor(np.asarray(rsds_pot, dtype="float64"))
    rn = physics.net_radiation(t["rsds"], t["tas"], t["vpd"], pot)
    return physics.priestley_taylor_et(alpha, rn, t["tas"]).numpy()


def baseline_predictions(sites: xr.Dataset, targets: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Predictions [S, T] of each baseline whose target is wanted and whose predictors are present.

    Returns
    -------
    dict
        baseline name -> {target: array}.
    """
    out = {}
    for name, needed in NEEDED.items():
        target = TARGET_OF[name]
        if target not in targets:
            continue
        missing = [v for v in needed if v not in sites]
        if missing:
            log.info("baseline %s skipped: the recipe has no %s", name, ", ".join(missing))
            continue
        x = {v: sites[v].transpose("site", "time").values for v in needed}
        if name == "pmodel":
            elevation = sites["elevation"].values[:, None] if "elevation" in sites.coords else None
            out[name] = {target: pmodel_gpp(**x, elevation=elevation)}
        else:
            pot = sites["rsds_pot"].transpose("site", "time").values if "rsds_pot" in sites else None
            out[name] = {target: priestley_taylor_et(**x, rsds_pot=pot)}
    return out


def baseline_metrics(sites: xr.Dataset, targets: list[str]) -> pd.DataFrame:
    """Per-site metrics of every baseline against the site observations (columns of cv/metrics.csv + model)."""
    rows = []
    for name, preds in baseline_predictions(sites, targets).items():
        for target, pred in preds.items():
            obs = sites[target].transpose("site", "time").values
            for i, site in enumerate(sites.site.values):
                rows.append({"model": name, "site": str(site), "target": target, **score(obs[i], pred[i])})
    return pd.DataFrame(rows, columns=["model", "site", "target", *METRIC_COLUMNS])
