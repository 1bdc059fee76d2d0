"""Flux-tower quantities converted to canonical variables and units (see :mod:`upscale.variables`).

GPP goes from umol CO2 m-2 s-1 to g C m-2 d-1 (sub-daily files; DD files are in g C already),
ET is computed from LE with the latent heat of vaporisation at the air temperature, and VPD
comes from air temperature and relative humidity where an AmeriFlux BASE file has no VPD.
Where a site's files have no SW_IN_POT, the potential radiation comes from astronomy (FAO-56, the
site's latitude and the day of year), as the ERA5 reader computes it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from upscale.sources.fluxnet.columns import base_column
from upscale.sources.fluxnet.qc import Records
from upscale.sources.fluxnet.table import numeric
from upscale.variables import le_to_et, saturation_vapour_pressure, toa_shortwave_daily_mean, umol_co2_to_gc_per_day

log = logging.getLogger(__package__)

#: Air temperature (degC) used for the latent heat of vaporisation where TA_F is missing.
FALLBACK_TA_FOR_LAMBDA = 20.0


def et_from_le(le: pd.Series, table: pd.DataFrame, where: str) -> pd.Series:
    """ET (kg m-2 d-1) from the QC-masked daily LE, with lambda at the gap-filled TA_F whatever its QC."""
    if "TA_F" in table.columns:
        t_lambda = numeric(table, "TA_F", where).fillna(FALLBACK_TA_FOR_LAMBDA)
    else:
        t_lambda = pd.Series(FALLBACK_TA_FOR_LAMBDA, index=le.index)
    return le_to_et(le, t_lambda)


def to_canonical_units(records: Records) -> None:
    """Sub-daily GPP to g C m-2 d-1, and ET per record from LE (its quality is LE's)."""
    records.values["gpp"] = umol_co2_to_gc_per_day(records.values["gpp"])
    _add_et(records)


def _add_et(records: Records) -> None:
    """ET per record from LE, with lambda at that record's air temperature (20 degC where missing)."""
    t_lambda = records.values["tas"].fillna(FALLBACK_TA_FOR_LAMBDA)
    records.values["et"] = le_to_et(records.values["le"], t_lambda)
    records.good["et"] = records.good["le"]


def vpd_from_rh(records: Records, table: pd.DataFrame, where: str) -> None:
    """VPD (hPa) from TA and RH (%) where the BASE file gives no VPD."""
    if "vpd" in records.values or "tas" not in records.values:
        return
    column, measured = base_column(table.columns, "RH", where, required=False)
    if column is None:
        return
    rh = numeric(table, column, where)
    vpd = saturation_vapour_pressure(records.values["tas"]) * (1.0 - rh / 100.0)
    records.values["vpd"] = vpd.clip(lower=0.0)
    rh_good = rh.notna() & (numeric(table, measured, where).notna() if measured else True)
    records.good["vpd"] = records.values["vpd"].notna() & records.good["tas"] & rh_good


def potential_radiation(frame: pd.DataFrame, lat: float, site: str) -> bool:
    """Fill a site's ``rsds_pot`` from astronomy where its files have none (no SW_IN_POT); True if it did.

    Without a latitude (no site list) it stays NaN, with a warning.
    """
    if frame["rsds_pot"].notna().any():
        return False
    if not np.isfinite(lat):
        log.warning("site %s: no SW_IN_POT and no latitude (no site list): rsds_pot is all NaN", site)
        return False
    frame["rsds_pot"] = toa_shortwave_daily_mean(lat, frame.index.dayofyear.to_numpy())
    return True
