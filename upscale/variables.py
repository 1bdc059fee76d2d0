"""The table of canonical variables, and the exact conversions into their units.

Every reader converts to these names and units on read; everything downstream
sees only them. Conversion functions are plain numpy arithmetic, so they work on
numpy arrays, xarray objects and Dask arrays alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECONDS_PER_DAY = 86400.0
SOLAR_CONSTANT = 1361.0  # W m-2 (Kopp & Lean 2011)
CARBON_MOLAR_MASS = 12.011  # g mol-1


@dataclass(frozen=True)
class Variable:
    """One canonical variable: its name, units and CF description."""

    name: str
    units: str
    long_name: str
    standard_name: str | None
    valid_min: float
    valid_max: float
    kind: str  # "dynamic", "static" or "target"
    lower_bound: float | None = None  # physical bound of a target's predictions (None: unbounded)


# IGBP classes used for plant functional types (code -> abbreviation).
IGBP_CLASSES: dict[int, str] = {
    1: "ENF",
    2: "EBF",
    3: "DNF",
    4: "DBF",
    5: "MF",
    6: "CSH",
    7: "OSH",
    8: "WSA",
    9: "SAV",
    10: "GRA",
    11: "WET",
    12: "CRO",
    13: "URB",
    14: "CVM",
    15: "SNO",
    16: "BSV",
}


_TABLE = [
    Variable("tas", "degC", "air temperature at 2 m, daily mean", "air_temperature", -90, 60, "dynamic"),
    Variable(
        "vpd", "hPa", "vapour pressure deficit, daily mean", "water_vapor_saturation_deficit_in_air", 0, 120, "dynamic"
    ),
    Variable(
        "rsds",
        "W m-2",
        "surface downwelling shortwave radiation, daily mean",
        "surface_downwelling_shortwave_flux_in_air",
        0,
        500,
        "dynamic",
    ),
    Variable(
        "rsds_pot",
        "W m-2",
        "top-of-atmosphere (potential) shortwave radiation, daily mean",
        "toa_incoming_shortwave_flux",
        0,
        600,
        "dynamic",
    ),
    Variable("pr", "mm d-1", "precipitation", "lwe_precipitation_rate", 0, 1000, "dynamic"),
    Variable("ps", "hPa", "surface air pressure, daily mean", "surface_air_pressure", 400, 1100, "dynamic"),
    Variable("ws", "m s-1", "wind speed at 10 m, daily mean", "wind_speed", 0, 60, "dynamic"),
    Variable(
        "fapar",
        "1",
        "fraction of absorbed photosynthetically active radiation",
        "fraction_of_surface_downwelling_photosynthetic_radiative_flux_absorbed_by_vegetation",
        0,
        1,
        "dynamic",
    ),
    Variable(
        "ndvi",
        "1",
        "normalized difference vegetation index",
        "normalized_difference_vegetation_index",
        -1,
        1,
        "dynamic",
    ),
    Variable("evi", "1", "enhanced vegetation index", None, -1, 1, "dynamic"),
    Variable("lai", "m2 m-2", "leaf area index", "leaf_area_index", 0, 15, "dynamic"),
    Variable("lst", "K", "land surface temperature", "surface_temperature", 180, 360, "dynamic"),
    Variable("pft", "1", "plant functional type (IGBP class)", "area_type", 0, 255, "static"),
    Variable("elevation", "m", "surface elevation", "surface_altitude", -500, 9000, "static"),
    Variable(
        "gpp",
        "g m-2 d-1",
        "gross primary productivity (as carbon)",
        "gross_primary_productivity_of_biomass_expressed_as_carbon",
        -5,
        40,
        "target",
        lower_bound=0.0,
    ),
    Variable("le", "W m-2", "latent heat flux", "surface_upward_latent_heat_flux", -100, 400, "target", 0.0),
    Variable(
        "et",
        "kg m-2 d-1",
        "evapotranspiration (1 kg m-2 d-1 = 1 mm d-1)",
        "water_evapotranspiration_flux",
        -2,
        20,
        "target",
        lower_bound=0.0,
    ),
]

# Fractions of a grid cell covered by each IGBP class (a categorical PFT map averaged onto a coarser grid).
_TABLE += [
    Variable(f"pft_{abbr}", "1", f"fraction of the cell covered by IGBP class {abbr}", "area_fraction", 0, 1, "static")
    for abbr in IGBP_CLASSES.values()
]

VARIABLES: dict[str, Variable] = {v.name: v for v in _TABLE}
TARGETS = tuple(v.name for v in _TABLE if v.kind == "target")
#: Targets whose bound ``output.negative_et`` lifts (dew: small negative evaporation).
WATER_FLUXES = ("et", "le")


def lower_bounds(targets, negative_et: bool = False) -> dict[str, float | None]:
    """The physical lower bound of each target's predictions (observations may lie below it).

    Parameters
    ----------
    targets : iterable of str
        Canonical target names.
    negative_et : bool
        Lift the bound of ET and LE (dew), as ``output.negative_et`` asks.

    Returns
    -------
    dict
        Target -> bound in its canonical units, or None where predictions are unbounded.
    """
    return {t: None if negative_et and t in WATER_FLUXES else VARIABLES[t].lower_bound for t in targets}


def kelvin_to_celsius(t_k):
    """Temperature from K to degC."""
    return t_k - 273.15


def saturation_vapour_pressure(t_c):
    """Saturation vapour pressure over water in hPa (Magnus, Alduchov & Eskridge 1996)."""
    return 6.1094 * np.exp(17.625 * t_c / (t_c + 243.04))


def vpd_from_dewpoint(t_c, td_c):
    """Vapour pressure deficit (hPa) from air and dew-point temperature (degC)."""
    vpd = saturation_vapour_pressure(t_c) - saturation_vapour_pressure(td_c)
    return np.maximum(vpd, 0.0)


def dewpoint_from_vapour_pressure(e_hpa):
    """Dew-point temperature (degC) of a vapour pressure (hPa); inverse of the Magnus formula."""
    x = np.log(e_hpa / 6.1094)
    return 243.04 * x / (17.625 - x)


def daily_accumulation_to_flux(j_m2):
    """A daily accumulated energy (J m-2 per day) as a daily mean flux (W m-2)."""
    return j_m2 / SECONDS_PER_DAY


def metres_to_mm(depth_m):
    """A water depth from m to mm (per day stays per day)."""
    return depth_m * 1000.0


def pascal_to_hpa(p_pa):
    """A pressure from Pa to hPa."""
    return p_pa / 100.0


def hourly_mean_to_daily_total(per_hour):
    """A daily mean of hourly accumulations (per hour) as the day's total (per day)."""
    return per_hour * 24.0


def latent_heat_of_vaporisation(t_c):
    """Latent heat of vaporisation (J kg-1) at temperature t_c (degC), Henderson-Sellers-like linear fit."""
    return (2.501 - 0.002361 * t_c) * 1e6


def le_to_et(le_w_m2, t_c):
    """Evapotranspiration (kg m-2 d-1 = mm d-1) from latent heat flux (W m-2) and air temperature (degC)."""
    return le_w_m2 * SECONDS_PER_DAY / latent_heat_of_vaporisation(t_c)


def umol_co2_to_gc_per_day(flux_umol_m2_s):
    """A carbon flux from micromol CO2 m-2 s-1 to g C m-2 d-1."""
    return flux_umol_m2_s * 1e-6 * CARBON_MOLAR_MASS * SECONDS_PER_DAY


def toa_shortwave_daily_mean(lat_deg, day_of_year):
    """Daily mean top-of-atmosphere shortwave radiation (W m-2), FAO-56 eq. 21-25.

    Parameters
    ----------
    lat_deg : array_like
        Latitude in degrees north.
    day_of_year : array_like
        Day of the year, 1..366. Broadcasts against ``lat_deg``.
    """
    phi = np.deg2rad(lat_deg)
    doy = np.asarray(day_of_year, dtype=float)
    dr = 1 + 0.033 * np.cos(2 * np.pi * doy / 365.0)
    decl = 0.409 * np.sin(2 * np.pi * doy / 365.0 - 1.39)
    cos_ws = np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0)
    ws = np.arccos(cos_ws)
    return (SOLAR_CONSTANT / np.pi) * dr * (ws * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(ws))
