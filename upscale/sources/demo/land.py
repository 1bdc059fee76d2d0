"""The land model of the demo world: snow, a soil-water bucket, phenology, GPP and ET, daily.

* a snow pack (degree-day melt) and a soil-water bucket W (capacity by PFT) with
  fW = clip(W / (0.6 Wmax), 0, 1), so fluxes remember weeks of weather;
* fapar = fapar_max(PFT) * greenness(smoothed temperature, smoothed fW);
* GPP = eps(PFT) fapar PAR fT fVPD fW; ET = Priestley-Taylor * (0.3 + 0.7 fapar) * fW.

The model is a pure daily step ``(start-of-day state, day's drivers) -> (day's fluxes, next
state)`` (:func:`land_step`). The true sensitivities (:mod:`upscale.sources.demo.sensitivity`)
are finite differences of that step, in float64. The day's own update of the smoothed
temperature is part of the day, so fapar's response to the day's tas counts. The wind's are
exactly zero, and so are GPP's to pr (GPP sees the start-of-day soil water) and ET's to vpd
(Priestley-Taylor).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from upscale.constants import (
    PAR_PER_SHORTWAVE,
    PRIESTLEY_TAYLOR_ALPHA,
    PSYCHROMETRIC_CONSTANT,
)
from upscale.sources.demo.pft import pft_table
from upscale.sources.demo.sensitivity import (
    NON_NEGATIVE_DRIVERS,
    SENSITIVITY_DRIVERS,
    SENSITIVITY_TARGETS,
)
from upscale.variables import (
    SECONDS_PER_DAY,
    latent_heat_of_vaporisation,
    saturation_vapour_pressure,
)

f32 = np.float32

# The constants stay float32 numbers in the float64 sensitivity pass too, so that pass
# differentiates exactly the model of the recorded float32 run.
_PAR_MJ = f32(PAR_PER_SHORTWAVE * SECONDS_PER_DAY * 1e-6)  # MJ m-2 d-1 of PAR per W m-2 of shortwave
_ALPHA = f32(PRIESTLEY_TAYLOR_ALPHA)
_GAMMA = f32(PSYCHROMETRIC_CONSTANT)  # kPa K-1
# hPa: GPP declines linearly with VPD from here to 35 hPa (to 0.3). Stomata respond at low VPD already
# (Novick et al. 2016); MOD17's 6.5 hPa onset left a fifth of the vegetated pixels with a VPD effect
# too small for any model to learn its sign.
VPD_ONSET = 2.0


class LandParams(NamedTuple):
    """PFT parameters of the land pixels, each (n_land,) float32 (see :data:`~.pft.PFT_PARAMS`)."""

    fapar_max: np.ndarray
    eps: np.ndarray
    t_opt: np.ndarray
    t_green: np.ndarray
    green_min: np.ndarray
    w_max: np.ndarray


class LandState(NamedTuple):
    """State of the land pixels at the start of a day, each (n_land,)."""

    soil_water: np.ndarray  # mm
    snow: np.ndarray  # mm
    t_smooth: np.ndarray  # degC, ~15-day exponential mean of tas
    green_water: np.ndarray  # 1, ~20-day exponential mean of fW (greenness memory)


#: Daily outputs of the land step that :func:`run_land` records, (nt, n_land) float32 each.
LAND_OUTPUTS = ("fapar", "gpp", "et", "soil_water", "fw", "gpp_unlimited")
_SPIN_UP_DAYS = 365


def land_params(pft_land: np.ndarray) -> LandParams:
    """The parameters of pixels of IGBP codes ``pft_land``, float32."""
    return LandParams(*(pft_table(k)[pft_land].astype(np.float32) for k in range(len(LandParams._fields))))


def initial_state(params: LandParams, tas_first_day: np.ndarray) -> LandState:
    """Half-full buckets, no snow, smoothed temperature at the first day's, mid greenness."""
    w = np.float32(0.5) * params.w_max
    return LandState(w, np.zeros_like(w), tas_first_day.copy(), np.full_like(w, 0.5))


def light_and_pet(params: LandParams, day: dict) -> tuple[np.ndarray, np.ndarray]:
    """The state-free part of a day: GPP per unit fapar without the water limit (g m-2 d-1) and
    Priestley-Taylor potential ET (kg m-2 d-1), in the dtype of the drivers."""
    tas, vpd, rsds, cloud = day["tas"], day["vpd"], day["rsds"], day["cloud"]
    par = _PAR_MJ * rsds  # MJ m-2 d-1
    f_t = np.exp(-(((tas - params.t_opt) / f32(12.0)) ** 2)) * np.clip((tas + f32(2.0)) / f32(4.0), 0, 1)
    f_vpd = np.clip(f32(1.0) - f32(0.7) * (vpd - f32(VPD_ONSET)) / f32(35.0 - VPD_ONSET), 0.3, 1.0)
    gpp_light = params.eps * par * f_t * f_vpd
    es_kpa = 0.1 * saturation_vapour_pressure(tas)
    delta = 4098.0 * es_kpa / (tas + f32(237.3)) ** 2  # kPa K-1
    rn = np.maximum(f32(0.72) * rsds - (f32(20.0) + f32(45.0) * (f32(1.0) - cloud)), 0)
    pet = _ALPHA * delta / (delta + _GAMMA) * rn * f32(SECONDS_PER_DAY) / latent_heat_of_vaporisation(tas)
    return gpp_light, pet


def land_step(params: LandParams, state: LandState, day: dict) -> tuple[dict, LandState]:
    """One day of snow, soil water, phenology, GPP and ET over land pixels; a pure function.

    Parameters
    ----------
    params : LandParams
        (n_land,) arrays.
    state : LandState
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
    state : LandState
        The state at the start of the next day.
    """
    one = f32(1.0)
    temp, pr = day["tas"], day["pr"]
    gpp_light, pet = light_and_pet(params, day)
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
    return outputs, LandState(w_next, snow, t_smooth, green_water)


def _day(drivers: dict, t: int) -> dict:
    return {name: values[t] for name, values in drivers.items()}


def spin_up(params: LandParams, drivers: dict) -> LandState:
    """The state at the start of the run: the first year (or the whole period, if shorter) run once."""
    state = initial_state(params, drivers["tas"][0])
    for t in range(min(_SPIN_UP_DAYS, drivers["tas"].shape[0])):
        _, state = land_step(params, state, _day(drivers, t))
    return state


def day_sensitivities(params64: LandParams, state: LandState, day: dict) -> dict:
    """Partial derivatives of the day's GPP and ET with respect to each of its drivers.

    The start-of-day ``state``, the other drivers and the cloud fraction are held fixed. Central
    differences, forward ones where a non-negative driver is below its step; all 2 x
    len(SENSITIVITY_DRIVERS) variants of the day go through one vectorised step, in float64
    (float32 round-off would show at ~1e-4 of the monthly means).

    Parameters
    ----------
    params64 : LandParams
        (n_land,) float64 arrays.
    state : LandState
        The state at the start of the day, (n_land,) arrays.
    day : dict
        The day's drivers, (n_land,) arrays (see :func:`land_step`).

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
        lower = np.where(x >= step, x - step, x) if name in NON_NEGATIVE_DRIVERS else x - step
        variants[name][2 * k] = x + step
        variants[name][2 * k + 1] = lower
        widths[name] = (x + step) - lower
    state64 = LandState(*(values.astype(np.float64) for values in state))
    outputs, _ = land_step(params64, state64, variants)
    return {
        (target, name): (outputs[target][2 * k] - outputs[target][2 * k + 1]) / widths[name]
        for target in SENSITIVITY_TARGETS
        for k, name in enumerate(SENSITIVITY_DRIVERS)
    }


def run_land(
    params: LandParams, drivers: dict, state: LandState, month: np.ndarray | None = None
) -> tuple[dict, dict | None]:
    """Run the land model over all days from ``state``, recording the daily outputs.

    Parameters
    ----------
    params, state : LandParams, LandState
        (n_land,) arrays; ``state`` is the state at the start of the first day.
    drivers : dict
        (nt, n_land) float32 arrays of tas, vpd, rsds, pr, cloud, ws.
    month : numpy.ndarray, optional
        (nt,) month number (0, 1, ...) of each day. If given, the true sensitivities are summed
        per month.

    Returns
    -------
    outputs : dict
        (nt, n_land) float32 arrays of :data:`LAND_OUTPUTS`.
    sensitivity_sums : dict or None
        ``(target, driver) -> (n_months, n_land)`` float64 sums of the daily derivatives.
    """
    nt, n_land = drivers["tas"].shape
    out = {name: np.empty((nt, n_land), np.float32) for name in LAND_OUTPUTS}
    sums = None
    if month is not None:
        params64 = LandParams(*(values.astype(np.float64) for values in params))
        sums = {
            (target, name): np.zeros((int(month.max()) + 1, n_land))
            for target in SENSITIVITY_TARGETS
            for name in SENSITIVITY_DRIVERS
        }
    for t in range(nt):
        day = _day(drivers, t)
        outputs, next_state = land_step(params, state, day)
        for name in LAND_OUTPUTS:
            out[name][t] = outputs[name]
        if sums is not None:
            for key, derivative in day_sensitivities(params64, state, day).items():
                sums[key][month[t]] += derivative
        state = next_state
    return out, sums


def _water_limitation(out: dict) -> np.ndarray:
    """Growing-season mean reduction of GPP by soil water, (n_land,) float32 in [0, 1]."""
    total = out["gpp_unlimited"].sum(axis=0, dtype=np.float64)
    limited = ((np.float32(1.0) - out["fw"]) * out["gpp_unlimited"]).sum(axis=0, dtype=np.float64)
    water_limitation = np.where(total > 0, limited / np.where(total > 0, total, 1.0), 0.0)
    return np.clip(water_limitation, 0, 1).astype(np.float32)


def simulate_land(drivers: dict, pft_land: np.ndarray, month: np.ndarray):
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
        (nt, n_land) float32 arrays of :data:`LAND_OUTPUTS`.
    water_limitation : numpy.ndarray
        (n_land,) float32.
    sensitivity : dict
        ``"<target>_sens_<driver>"`` -> (n_months, n_land) monthly mean and
        ``"<target>_sens_<driver>_mean"`` -> (n_land,) period mean of the daily derivative, float32.
    """
    params = land_params(pft_land)
    out, sums = run_land(params, drivers, spin_up(params, drivers), month)
    days_per_month = np.bincount(month)[:, None]
    sensitivity = {}
    for (target, name), total in sums.items():
        sensitivity[f"{target}_sens_{name}"] = (total / days_per_month).astype(np.float32)
        sensitivity[f"{target}_sens_{name}_mean"] = (total.sum(axis=0) / month.size).astype(np.float32)
    return out, _water_limitation(out), sensitivity
