"""The canonical variable table and the unit conversions into it, checked against UDUNITS (cf_units)."""

from __future__ import annotations

import re

import cf_units
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upscale import variables
from upscale.variables import (
    IGBP_CLASSES,
    SECONDS_PER_DAY,
    SOLAR_CONSTANT,
    TARGETS,
    VARIABLES,
    daily_accumulation_to_flux,
    dewpoint_from_vapour_pressure,
    hourly_mean_to_daily_total,
    kelvin_to_celsius,
    latent_heat_of_vaporisation,
    le_to_et,
    metres_to_mm,
    pascal_to_hpa,
    saturation_vapour_pressure,
    toa_shortwave_daily_mean,
    umol_co2_to_gc_per_day,
    vpd_from_dewpoint,
)

temperatures = st.floats(-40.0, 50.0, allow_nan=False)
# the physical dimension of each canonical variable (a UDUNITS unit it converts to); pr is a
# liquid-water-equivalent rate (lwe_precipitation_rate), a speed, while et is a mass flux
DIMENSION = {
    "tas": "K",
    "vpd": "Pa",
    "ps": "Pa",
    "rsds": "W m-2",
    "rsds_pot": "W m-2",
    "le": "W m-2",
    "pr": "m s-1",
    "et": "kg m-2 s-1",
    "gpp": "kg m-2 s-1",
    "ws": "m s-1",
    "lst": "K",
    "elevation": "m",
}


def test_table_names_are_unique_and_keyed_by_name():
    assert len(variables._TABLE) == len(VARIABLES)  # a repeated name would silently replace an entry
    assert all(key == var.name for key, var in VARIABLES.items())


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_every_entry_is_well_formed(name):
    var = VARIABLES[name]
    cf_units.Unit(var.units)  # raises ValueError for a string UDUNITS-2 cannot parse
    assert var.kind in {"dynamic", "static", "target"}
    assert var.valid_min < var.valid_max
    assert var.long_name and var.long_name == var.long_name.strip()
    assert var.standard_name is None or re.fullmatch(r"[a-z][a-z0-9_]*", var.standard_name)


@pytest.mark.parametrize("name, dimension", sorted(DIMENSION.items()))
def test_units_have_the_right_dimension(name, dimension):
    assert cf_units.Unit(VARIABLES[name].units).is_convertible(cf_units.Unit(dimension))


def test_dimensionless_variables_are_1():
    for name in ("fapar", "ndvi", "evi", "pft", *(f"pft_{a}" for a in IGBP_CLASSES.values())):
        assert cf_units.Unit(VARIABLES[name].units).is_dimensionless(), name
    assert cf_units.Unit(VARIABLES["lai"].units).is_dimensionless()  # m2 m-2


def test_targets_and_kinds():
    assert TARGETS == ("gpp", "le", "et")
    assert {n for n, v in VARIABLES.items() if v.kind == "target"} == set(TARGETS)
    assert VARIABLES["pft"].kind == VARIABLES["elevation"].kind == "static"


def test_igbp_classes_and_their_cover_fractions():
    assert sorted(IGBP_CLASSES) == list(range(1, 17))
    assert len(set(IGBP_CLASSES.values())) == 16
    for abbr in IGBP_CLASSES.values():
        var = VARIABLES[f"pft_{abbr}"]
        assert (var.kind, var.valid_min, var.valid_max) == ("static", 0, 1)


@pytest.mark.parametrize(
    "convert, source, target, value",
    [
        (kelvin_to_celsius, "K", "degC", 300.0),
        (pascal_to_hpa, "Pa", "hPa", 101325.0),
        (metres_to_mm, "m d-1", "mm d-1", 0.0042),
        (daily_accumulation_to_flux, "J m-2 d-1", "W m-2", 2.16e7),
        (hourly_mean_to_daily_total, "mm h-1", "mm d-1", 0.25),
    ],
)
def test_conversions_agree_with_udunits(convert, source, target, value):
    assert convert(value) == pytest.approx(cf_units.Unit(source).convert(value, target), rel=1e-12)


def test_carbon_flux_conversion():
    # 1 umol CO2 m-2 s-1 carries 1 umol C: 1e-6 mol x 12.011 g mol-1 x 86400 s d-1 = 1.0377504 g C m-2 d-1
    assert umol_co2_to_gc_per_day(1.0) == pytest.approx(1.0377504, rel=1e-12)
    mol_per_day = cf_units.Unit("umol m-2 s-1").convert(5.0, "mol m-2 d-1")
    assert umol_co2_to_gc_per_day(5.0) == pytest.approx(mol_per_day * variables.CARBON_MOLAR_MASS, rel=1e-12)


def test_latent_heat_and_le_to_et_by_hand():
    assert latent_heat_of_vaporisation(0.0) == 2.501e6
    assert latent_heat_of_vaporisation(20.0) == pytest.approx(2.45378e6, rel=1e-12)
    # 100 W m-2 x 86400 s d-1 / 2.45378e6 J kg-1 = 3.52110 kg m-2 d-1 (= mm d-1)
    assert le_to_et(100.0, 20.0) == pytest.approx(3.52110, rel=1e-5)
    np.testing.assert_allclose(
        le_to_et(np.array([0.0, 50.0, -10.0]), np.array([0.0, 0.0, 0.0])),
        np.array([0.0, 50.0, -10.0]) * SECONDS_PER_DAY / 2.501e6,
        rtol=1e-12,
    )


@settings(max_examples=50, deadline=None)
@given(le=st.floats(-100.0, 400.0), t_c=temperatures)
def test_le_to_et_round_trips(le, t_c):
    assert le_to_et(le, t_c) * latent_heat_of_vaporisation(t_c) / SECONDS_PER_DAY == pytest.approx(le, abs=1e-9)


def test_saturation_vapour_pressure_at_0_degc():
    # Magnus, Alduchov & Eskridge (1996): 6.1094 hPa at 0 degC (Bolton's 6.112 is another fit)
    assert saturation_vapour_pressure(0.0) == 6.1094
    assert saturation_vapour_pressure(20.0) == pytest.approx(6.1094 * np.exp(17.625 * 20 / 263.04), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(t_c=temperatures)
def test_dewpoint_inverts_saturation_vapour_pressure(t_c):
    assert dewpoint_from_vapour_pressure(saturation_vapour_pressure(t_c)) == pytest.approx(t_c, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(t_c=temperatures, depression=st.floats(0.0, 40.0))
def test_vpd_from_dewpoint(t_c, depression):
    td = t_c - depression
    vpd = vpd_from_dewpoint(t_c, td)
    assert vpd == pytest.approx(saturation_vapour_pressure(t_c) - saturation_vapour_pressure(td), abs=1e-12)
    assert vpd >= 0.0
    assert vpd_from_dewpoint(t_c, t_c) == 0.0  # saturated air
    assert vpd_from_dewpoint(t_c, t_c + 1.0) == 0.0  # supersaturated readings are clipped, not negative


def test_toa_shortwave_against_fao56_example_8():
    # FAO-56 example 8: 20 S on 3 September (day 246) has Ra = 32.2 MJ m-2 d-1 with Gsc = 0.0820 MJ m-2 min-1;
    # scaled to this module's solar constant and to W m-2
    expected = 32.2e6 / SECONDS_PER_DAY * SOLAR_CONSTANT / (0.0820e6 / 60.0)
    assert float(toa_shortwave_daily_mean(-20.0, 246)) == pytest.approx(expected, rel=0.002)


def test_toa_shortwave_at_the_poles():
    assert float(toa_shortwave_daily_mean(80.0, 355)) == 0.0  # polar night
    # polar day at the pole: the sun circles at height delta all day, S0 dr sin(delta)
    dr = 1 + 0.033 * np.cos(2 * np.pi * 172 / 365.0)
    decl = 0.409 * np.sin(2 * np.pi * 172 / 365.0 - 1.39)
    assert float(toa_shortwave_daily_mean(90.0, 172)) == pytest.approx(SOLAR_CONSTANT * dr * np.sin(decl), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(lat=st.floats(-90.0, 90.0), doy=st.integers(1, 366))
def test_toa_shortwave_lies_in_the_valid_range_of_rsds_pot(lat, doy):
    var = VARIABLES["rsds_pot"]
    value = float(toa_shortwave_daily_mean(lat, doy))
    assert var.valid_min - 1e-9 <= value <= var.valid_max


def test_toa_shortwave_broadcasts_latitude_against_day():
    lat, doy = np.array([-45.0, 0.0, 45.0])[:, None], np.arange(1, 366)[None, :]
    grid = toa_shortwave_daily_mean(lat, doy)
    assert grid.shape == (3, 365)
    np.testing.assert_allclose(grid[1], [toa_shortwave_daily_mean(0.0, d) for d in range(1, 366)], rtol=1e-12)
    assert grid[2, 171] > grid[0, 171] and grid[0, 354] > grid[2, 354]  # northern and southern summers
