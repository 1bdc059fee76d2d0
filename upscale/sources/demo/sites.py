"""The flux-tower sites of the demo world: where they are, what they are called, what they measure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import DataError
from upscale.sources.demo.geography import country_code
from upscale.sources.demo.noise import S_SITES, rng
from upscale.sources.demo.pft import PFT_SITE_WORDS
from upscale.sources.demo.spec import DemoSpec
from upscale.variables import (
    IGBP_CLASSES,
    SECONDS_PER_DAY,
    latent_heat_of_vaporisation,
    toa_shortwave_daily_mean,
)

_SYLLABLES = [
    "ka",
    "lo",
    "ren",
    "ha",
    "mi",
    "tor",
    "vel",
    "an",
    "su",
    "bri",
    "do",
    "mar",
    "ne",
    "ti",
    "gal",
    "ros",
    "wen",
    "pa",
    "lu",
    "ost",
]
# Where the flux networks are dense: (lat_min, lat_max, lon_min, lon_max, weight).
_NETWORKS = [(25, 55, -130, -60, 10.0), (35, 62, -11, 35, 10.0), (20, 50, 100, 146, 4.0), (-45, -10, 110, 155, 3.0)]
_ID_LETTERS = (
    np.array(list("ABCDEFGHIJKLMNOPRSTUVW")),
    np.array(list("abcdefghiklmnoprstuvwy")),
    np.array(list("abcdeghiklmnoprstuvw123456789")),
)

#: The columns of a FLUXNET2015 DD file of the demo world, in order.
FLUXNET_COLUMNS = [
    "TIMESTAMP",
    "TA_F",
    "TA_F_QC",
    "SW_IN_POT",
    "SW_IN_F",
    "SW_IN_F_QC",
    "VPD_F",
    "VPD_F_QC",
    "P_F",
    "P_F_QC",
    "LE_F_MDS",
    "LE_F_MDS_QC",
    "LE_CORR",
    "NEE_VUT_REF_QC",
    "GPP_NT_VUT_REF",
    "GPP_DT_VUT_REF",
]


def choose_sites(spec: DemoSpec, lat, lon, land, pft, t_ann, p_ann) -> pd.DataFrame:
    """Draw ``spec.n_sites`` distinct land cells, dense where the real networks are, and name them.

    Returns
    -------
    pandas.DataFrame
        SITE_ID, SITE_NAME, LOCATION_LAT, LOCATION_LONG, LOCATION_ELEV, IGBP and bias (the
        multiplicative bias of the site's observations).

    Raises
    ------
    DataError
        If the world has fewer land cells than sites.
    """
    generator = rng(spec, S_SITES)
    iy, ix = np.nonzero(land)
    n_land = iy.size
    if spec.n_sites > n_land:
        raise DataError(
            f"{spec.n_sites} sites asked for, but the demo world has only {n_land} land cells",
            "demo world spec (n_sites)",
            "ask for fewer sites, a finer resolution or a larger bbox",
        )
    la, lo = lat[iy], lon[ix]
    w = _site_weights(la, lo, t_ann[iy, ix], p_ann[iy, ix])
    pick = generator.choice(n_land, size=spec.n_sites, replace=False, p=w / w.sum())
    jitter = generator.uniform(-0.29, 0.29, size=(spec.n_sites, 2)) * spec.resolution
    elev = np.clip(generator.lognormal(np.log(350.0), 0.9, size=spec.n_sites), 2.0, 3800.0)
    bias = generator.uniform(-0.10, 0.10, size=spec.n_sites)
    rows, used = [], set()
    for j, k in enumerate(pick):
        sid = _site_id(generator, country_code(float(la[k]), float(lo[k])), used)
        code = int(pft[iy[k], ix[k]])
        word = "".join(generator.choice(_SYLLABLES, size=generator.integers(2, 4))).capitalize()
        rows.append(
            {
                "SITE_ID": sid,
                "SITE_NAME": f"{word} {PFT_SITE_WORDS[code]} (synthetic)",
                "LOCATION_LAT": round(float(la[k] + jitter[j, 0]), 4),
                "LOCATION_LONG": round(float(lo[k] + jitter[j, 1]), 4),
                "LOCATION_ELEV": int(round(float(elev[j]))),
                "IGBP": IGBP_CLASSES[code],
                "bias": float(bias[j]),
            }
        )
    return pd.DataFrame(rows)


def _site_weights(la, lo, t, p) -> np.ndarray:
    """Sampling weight of land cells at (la, lo) of annual mean temperature t and precipitation p."""
    w = np.ones(la.size)
    for la0, la1, lo0, lo1, weight in _NETWORKS:
        inside = (la >= la0) & (la <= la1) & (lo >= lo0) & (lo <= lo1)
        w = np.where(inside, weight, w)
    w *= (p / (p + 400.0)) ** 1.5
    w *= np.where(np.abs(la) < 23.0, 0.6, 1.0)
    w *= np.where(t < -8.0, 0.1, np.where(t < 0.0, 0.35, 1.0))
    return np.maximum(w, 1e-9)


def _site_id(generator: np.random.Generator, country: str, used: set) -> str:
    """A FLUXNET-like id CC-Xxx not in ``used`` (which it joins)."""
    letters, lower, last = _ID_LETTERS
    while True:
        sid = f"{country}-{generator.choice(letters)}{generator.choice(lower)}{generator.choice(last)}"
        if sid not in used:
            used.add(sid)
            return sid


def site_cells(world: xr.Dataset, sites: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the grid cell that holds each site (sites lie within 0.3 cells of a centre)."""
    lat, lon = world.lat.values, world.lon.values
    iy = np.abs(lat[None, :] - sites["LOCATION_LAT"].values[:, None]).argmin(axis=1)
    ix = np.abs(lon[None, :] - sites["LOCATION_LONG"].values[:, None]).argmin(axis=1)
    return iy, ix


def _qc_fraction(generator, n, p_perfect=0.6):
    """QC as the fraction of good half-hours of the day: mostly > 0.8, never below 0.5."""
    k = np.where(
        generator.random(n) < p_perfect,
        48,
        np.where(generator.random(n) < 0.85, generator.integers(39, 48, n), generator.integers(24, 39, n)),
    )
    return np.round(k / 48.0, 4)


def site_table(
    world: xr.Dataset, sites: pd.DataFrame, j: int, iy: int, ix: int, generator: np.random.Generator
) -> pd.DataFrame:
    """Site ``j``'s FLUXNET2015 DD table (numbers; -9999 for missing): its cell's truth, observed.

    Parameters
    ----------
    world, sites : xarray.Dataset, pandas.DataFrame
        What :func:`upscale.sources.demo.simulate` returns.
    j : int
        Row of the site in ``sites``.
    iy, ix : int
        Its grid cell (:func:`site_cells`).
    generator : numpy.random.Generator
        The site's random stream of observation errors.
    """
    time = pd.DatetimeIndex(world.time.values)
    nt = time.size

    def px(name):
        return world[name].values[:, iy, ix].astype(np.float64)

    sw_pot = toa_shortwave_daily_mean(float(sites["LOCATION_LAT"].iloc[j]), time.day_of_year.values)
    ta_f, sw_in, vpd_f, p_f = _observed_met(generator, px("tas"), px("rsds"), px("vpd"), px("pr"), sw_pot)
    fluxes = _observed_fluxes(generator, px("gpp"), px("et"), float(sites["bias"].iloc[j]), ta_f)
    gap = _gaps(generator, nt)
    qc_le, qc_nee = _target_qc(generator, gap)

    def gapped(a, digits=4):
        return np.where(gap, -9999.0, np.round(a, digits))

    table = pd.DataFrame(
        {
            "TIMESTAMP": time.strftime("%Y%m%d").astype(int),
            "TA_F": ta_f,
            "TA_F_QC": _qc_fraction(generator, nt, 0.8),
            "SW_IN_POT": np.round(sw_pot, 3),
            "SW_IN_F": sw_in,
            "SW_IN_F_QC": _qc_fraction(generator, nt, 0.8),
            "VPD_F": vpd_f,
            "VPD_F_QC": _qc_fraction(generator, nt, 0.8),
            "P_F": p_f,
            "P_F_QC": _qc_fraction(generator, nt, 0.9),
            "LE_F_MDS": gapped(fluxes["le"]),
            "LE_F_MDS_QC": qc_le,
            "LE_CORR": gapped(fluxes["le_corr"]),
            "NEE_VUT_REF_QC": qc_nee,
            "GPP_NT_VUT_REF": gapped(fluxes["gpp_nt"]),
            "GPP_DT_VUT_REF": gapped(fluxes["gpp_dt"]),
        }
    )
    return table[FLUXNET_COLUMNS]


def _observed_met(generator, tas, rsds, vpd, pr, sw_pot):
    """The tower's TA_F, SW_IN_F, VPD_F and P_F: the cell's meteorology plus small errors, rounded."""
    nt = tas.size
    ta_f = np.round(tas + generator.normal(0, 0.3, nt), 3)
    sw_in = np.round(np.clip(rsds * (1 + generator.normal(0, 0.03, nt)), 0, sw_pot), 3)
    vpd_f = np.round(np.maximum(vpd * (1 + generator.normal(0, 0.05, nt)) + generator.normal(0, 0.05, nt), 0), 3)
    p_f = np.round(np.maximum(pr * (1 + generator.normal(0, 0.1, nt)), 0), 3)
    return ta_f, sw_in, vpd_f, p_f


def _observed_fluxes(generator, gpp, et, bias, ta_f) -> dict:
    """GPP (NT and DT partitioning) and LE (plain and energy-balance corrected): biased noisy truth."""
    nt = gpp.size
    gpp_nt = gpp * (1 + bias) + generator.normal(0, 1, nt) * (0.15 * np.abs(gpp) + 0.3)
    gpp_dt = gpp_nt + generator.normal(0, 1, nt) * (0.05 * np.abs(gpp_nt) + 0.1)
    et_obs = et * (1 + bias) + generator.normal(0, 1, nt) * (0.15 * np.abs(et) + 0.3)
    le = et_obs * latent_heat_of_vaporisation(ta_f) / SECONDS_PER_DAY
    le_corr = le * generator.uniform(1.05, 1.15) * (1 + generator.normal(0, 0.02, nt))
    return {"gpp_nt": gpp_nt, "gpp_dt": gpp_dt, "le": le, "le_corr": le_corr}


def _gaps(generator, nt: int) -> np.ndarray:
    """Missing days of the fluxes: ~half of them in runs of 1-4 weeks, the rest single days."""
    gap = np.zeros(nt, bool)
    target = int(round(generator.uniform(0.08, 0.12) * nt))
    budget = max(target // 2, min(7, target))
    while budget > 0:
        length = min(int(generator.integers(7, 29)), budget)
        s = int(generator.integers(0, max(1, nt - length + 1)))
        gap[s : s + length] = True
        budget -= length
    missing = target - int(gap.sum())
    if missing > 0:
        gap[generator.choice(np.flatnonzero(~gap), size=missing, replace=False)] = True
    return gap


def _target_qc(generator, gap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """QC of LE and NEE: mostly good, ~3 % poor days, 0 in the gaps."""
    nt = gap.size
    qc_le = _qc_fraction(generator, nt)
    qc_nee = _qc_fraction(generator, nt)
    poor = (~gap) & (generator.random(nt) < 0.03)
    qc_le[poor] = np.round(generator.integers(5, 20, int(poor.sum())) / 48.0, 4)
    qc_nee[poor] = np.round(generator.integers(5, 20, int(poor.sum())) / 48.0, 4)
    qc_le[gap] = 0.0
    qc_nee[gap] = 0.0
    return qc_le, qc_nee
