"""Process models of upscale.physics against hand values, the formulas they cite, and their monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from upscale import physics
from upscale.variables import latent_heat_of_vaporisation, le_to_et, saturation_vapour_pressure

temperatures = st.floats(-40.0, 50.0, allow_nan=False)


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def slope_in_equilibrium_et(t_c: float) -> float:
    """Delta (kPa K-1) as equilibrium_et uses it, recovered from Delta / (Delta + gamma) = ET lambda / (Rn s)."""
    rn = 100.0
    ratio = float(physics.equilibrium_et(t64(rn), t64(t_c))) * latent_heat_of_vaporisation(t_c) / (rn * 86400.0)
    return physics.PSYCHROMETRIC_CONSTANT * ratio / (1.0 - ratio)


def test_process_formulas_against_hand_values():
    t = torch.tensor
    # Magnus (Alduchov & Eskridge): 0.61094 exp(17.625 x 20 / 263.04) = 0.61094 x 3.8194 = 2.3334 kPa
    es = 2.3334
    assert float(physics.saturation_vapour_pressure_kpa(t(20.0))) == pytest.approx(es, rel=1e-4)
    rn = physics.net_radiation(t(250.0), t(20.0), t(10.0), t(400.0))
    ea = es - 1.0
    ratio = 250.0 / (0.75 * 400.0)
    expected_rn = 0.77 * 250.0 - 5.670374e-8 * 293.16**4 * (0.34 - 0.14 * np.sqrt(ea)) * (1.35 * ratio - 0.35)
    assert float(rn) == pytest.approx(expected_rn, rel=1e-3)
    delta = 4098 * es / (20 + 237.3) ** 2
    lam = (2.501 - 0.002361 * 20) * 1e6
    expected_et = 1.26 * delta / (delta + 0.066) * expected_rn * 86400 / lam
    assert float(physics.priestley_taylor_et(1.26, rn, t(20.0))) == pytest.approx(expected_et, rel=1e-3)
    assert float(physics.equilibrium_et(t(-50.0), t(20.0))) == 0.0  # no negative evaporation


def test_saturation_vapour_pressure_at_0_degc_is_the_magnus_constant():
    # this module's Magnus form is Alduchov & Eskridge (1996): e_s(0) = 0.61094 kPa = 610.94 Pa
    assert float(physics.saturation_vapour_pressure_kpa(t64(0.0))) == pytest.approx(0.61094, rel=1e-12)


@pytest.mark.parametrize("t_c, reference_kpa", [(0.0, 0.61121), (20.0, 2.3392), (40.0, 7.3849)])
def test_saturation_vapour_pressure_is_within_0_4_percent_of_the_reference_curve(t_c, reference_kpa):
    # over water (Buck 1981 / IAPWS tables); the Magnus form claims < 0.4 % error between -40 and 50 degC
    assert float(physics.saturation_vapour_pressure_kpa(t64(t_c))) == pytest.approx(reference_kpa, rel=0.004)


@settings(max_examples=50, deadline=None)
@given(t_c=temperatures)
def test_saturation_vapour_pressure_in_kpa_is_the_hpa_form_of_variables_over_10(t_c):
    kpa = float(physics.saturation_vapour_pressure_kpa(t64(t_c)))
    assert kpa == pytest.approx(float(saturation_vapour_pressure(t_c)) / 10.0, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(t_c=temperatures)
def test_slope_in_equilibrium_et_is_the_derivative_of_the_curve(t_c):
    h = 1e-3
    es = physics.saturation_vapour_pressure_kpa
    finite_difference = float(es(t64(t_c + h)) - es(t64(t_c - h))) / (2 * h)
    # equilibrium_et uses FAO-56 eq. 13 (4098 e_s / (T + 237.3)^2, Tetens' constants) on the
    # Alduchov-Eskridge curve: 0.4 % from its derivative at 0..45 degC, 1.3 % at -40 degC
    tolerance = 0.005 if t_c >= 0 else 0.015
    assert slope_in_equilibrium_et(t_c) == pytest.approx(finite_difference, rel=tolerance)
    assert slope_in_equilibrium_et(t_c) == pytest.approx(4098.0 * float(es(t64(t_c))) / (t_c + 237.3) ** 2, rel=1e-9)


def test_priestley_taylor_at_0_degc_by_hand():
    # Delta = 4098 x 0.61094 / 237.3^2 = 0.044461 kPa K-1; Delta / (Delta + 0.066) = 0.40250
    # lambda(0) = 2.501e6 J kg-1; 0.40250 x 150 W m-2 x 86400 s / 2.501e6 = 2.0857 mm d-1
    assert float(physics.equilibrium_et(t64(150.0), t64(0.0))) == pytest.approx(2.0857, rel=1e-4)
    assert float(physics.priestley_taylor_et(1.26, t64(150.0), t64(0.0))) == pytest.approx(2.6280, rel=1e-4)


@settings(max_examples=50, deadline=None)
@given(rn=st.floats(0.0, 800.0), t_c=temperatures)
def test_equilibrium_et_is_the_latent_heat_conversion_of_a_share_of_rn(rn, t_c):
    # Delta / (Delta + gamma) of the net radiation, W m-2 -> kg m-2 d-1 as le_to_et converts latent heat
    delta = slope_in_equilibrium_et(t_c)
    share = delta / (delta + physics.PSYCHROMETRIC_CONSTANT)
    assert 0.0 < share < 1.0
    et = float(physics.equilibrium_et(t64(rn), t64(t_c)))
    assert et == pytest.approx(share * le_to_et(rn, t_c), rel=1e-9, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(rn=st.floats(-200.0, 800.0), extra=st.floats(0.1, 200.0), t_c=temperatures, warmer=st.floats(0.1, 20.0))
def test_equilibrium_et_grows_with_radiation_and_temperature(rn, extra, t_c, warmer):
    et = float(physics.equilibrium_et(t64(rn), t64(t_c)))
    assert et >= 0.0
    assert float(physics.equilibrium_et(t64(rn + extra), t64(t_c))) >= et
    if rn > 0:
        assert float(physics.equilibrium_et(t64(rn + extra), t64(t_c))) > et
        assert float(physics.equilibrium_et(t64(rn), t64(t_c + warmer))) > et


@settings(max_examples=50, deadline=None)
@given(t_c=temperatures, warmer=st.floats(0.01, 20.0))
def test_saturation_vapour_pressure_grows_with_temperature(t_c, warmer):
    es = physics.saturation_vapour_pressure_kpa
    assert 0.0 < float(es(t64(t_c))) < float(es(t64(t_c + warmer)))


@settings(max_examples=30, deadline=None)
@given(alpha=st.floats(0.0, 2.0), rn=st.floats(-100.0, 800.0), t_c=temperatures)
def test_priestley_taylor_is_alpha_times_equilibrium(alpha, rn, t_c):
    eq = float(physics.equilibrium_et(t64(rn), t64(t_c)))
    assert float(physics.priestley_taylor_et(alpha, t64(rn), t64(t_c))) == pytest.approx(
        alpha * eq, rel=1e-12, abs=1e-15
    )


def test_par_from_shortwave():
    # 100 W m-2 x 0.45 x 86400 s = 3.888e6 J m-2 d-1 = 3.888 MJ m-2 d-1
    assert float(physics.par_mj(t64(100.0))) == pytest.approx(3.888, rel=1e-12)


def test_net_radiation_without_potential_radiation_is_half_cloudy():
    # e_s(10) = 1.22602 kPa, e_a = 1.22602 - 0.4 = 0.82602 kPa, cloud factor 0.5:
    # 0.77 x 200 - sigma 283.16^4 (0.34 - 0.14 sqrt(0.82602)) 0.5 = 115.221 W m-2
    assert float(physics.net_radiation(t64(200.0), t64(10.0), t64(4.0))) == pytest.approx(115.221, rel=1e-5)


def test_net_radiation_cloud_factor_is_bounded():
    rsds, t_c, vpd = t64(200.0), t64(10.0), t64(4.0)
    ea = float(physics.saturation_vapour_pressure_kpa(t_c)) - 0.4
    longwave = physics.STEFAN_BOLTZMANN * 283.16**4 * (0.34 - 0.14 * math.sqrt(ea))
    clear = float(physics.net_radiation(rsds, t_c, vpd, t64(200.0)))  # rsds / (0.75 rsds_pot) > 1 -> clear sky
    assert clear == pytest.approx(0.77 * 200.0 - longwave * 1.0, rel=1e-12)
    overcast = float(physics.net_radiation(rsds, t_c, vpd, t64(5000.0)))  # ratio 0.053 -> floor 0.3
    assert overcast == pytest.approx(0.77 * 200.0 - longwave * (1.35 * 0.3 - 0.35), rel=1e-12)
    night = float(physics.net_radiation(t64(0.0), t_c, vpd, t64(0.0)))  # 0 / max(0, 1) = 0 -> floor 0.3
    assert night == pytest.approx(-longwave * (1.35 * 0.3 - 0.35), rel=1e-12)


def test_net_radiation_with_saturated_air_clamps_vapour_pressure_at_zero():
    # VPD larger than e_s (not physical) must not take a square root of a negative pressure
    rn = float(physics.net_radiation(t64(100.0), t64(0.0), t64(50.0)))
    assert rn == pytest.approx(77.0 - physics.STEFAN_BOLTZMANN * 273.16**4 * 0.34 * 0.5, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(rsds=st.floats(0.0, 500.0), extra=st.floats(1.0, 100.0), t_c=temperatures, vpd=st.floats(0.0, 60.0))
def test_net_radiation_grows_with_shortwave(rsds, extra, t_c, vpd):
    lower = float(physics.net_radiation(t64(rsds), t64(t_c), t64(vpd)))
    assert float(physics.net_radiation(t64(rsds + extra), t64(t_c), t64(vpd))) > lower


def test_temperature_and_vpd_scalars_by_hand():
    assert float(physics.temperature_scalar(t64(25.0), 25.0, 14.0)) == 1.0
    assert float(physics.temperature_scalar(t64(11.0), 25.0, 14.0)) == pytest.approx(math.exp(-1), rel=1e-12)
    assert float(physics.temperature_scalar(t64(39.0), 25.0, 14.0)) == pytest.approx(math.exp(-1), rel=1e-12)
    assert float(physics.vpd_scalar(t64(0.0), 0.05)) == 1.0
    assert float(physics.vpd_scalar(t64(20.0), 0.05)) == pytest.approx(math.exp(-1), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    vpd=st.floats(0.0, 100.0),
    drier=st.floats(0.1, 50.0),
    sensitivity=st.floats(0.001, 0.1),
    t_c=temperatures,
    t_opt=st.floats(0.0, 35.0),
)
def test_scalars_lie_in_0_1_and_fall_away_from_the_optimum(vpd, drier, sensitivity, t_c, t_opt):
    v = float(physics.vpd_scalar(t64(vpd), sensitivity))
    assert 0.0 < v <= 1.0 and float(physics.vpd_scalar(t64(vpd + drier), sensitivity)) < v
    s = float(physics.temperature_scalar(t64(t_c), t_opt, 14.0))
    assert 0.0 <= s <= 1.0
    mirrored = float(physics.temperature_scalar(t64(2 * t_opt - t_c), t_opt, 14.0))
    assert mirrored == pytest.approx(s, rel=1e-9, abs=1e-300)  # symmetric about t_opt


def test_lue_gpp_by_hand():
    # 2 g C MJ-1 x fAPAR 0.5 x PAR(200 W m-2) 7.776 MJ m-2 d-1 = 7.776 g C m-2 d-1; x 0.5 x 0.4 = 1.5552
    assert float(physics.lue_gpp(2.0, t64(0.5), t64(200.0))) == pytest.approx(7.776, rel=1e-12)
    assert float(physics.lue_gpp(2.0, t64(0.5), t64(200.0), t64(0.5), t64(0.4))) == pytest.approx(1.5552, rel=1e-12)
