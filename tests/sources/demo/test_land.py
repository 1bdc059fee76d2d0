"""Tests of upscale.sources.demo.land: soil-water memory, and the true sensitivities against brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.sources.demo.common import DRIVERS, corr_columns
from upscale.sources.demo import SENSITIVITY_DRIVERS
from upscale.sources.demo import land as land_model
from upscale.sources.demo.pft import PFT_PARAMS


def test_water_bodies_are_nan_in_land_variables(tiny):
    world, _ = tiny
    ocean = ~world.land_mask.values
    for name in ["fapar", "ndvi", "gpp", "et", "soil_water"]:
        assert np.isnan(world[name].values[:, ocean]).all(), name
    assert np.isnan(world.water_limitation.values[ocean]).all()


def test_soil_water_gives_weeks_of_memory(tiny):
    world, _ = tiny
    land = world.land_mask.values
    sw = world.soil_water.values[:, land].astype(float)
    moving = sw.std(axis=0) > 5
    assert moving.sum() > 20
    assert np.median(corr_columns(sw[:-7, moving], sw[7:, moving])) > 0.5
    # Where water limits, GPP follows the rain of the past month more than the rain of the same day.
    gpp = world.gpp.values[:, land].astype(float)
    pr = world.pr.values[:, land].astype(float)
    limited = (world.water_limitation.values[land] > 0.3) & (gpp.std(axis=0) > 0)
    assert limited.sum() >= 10
    csum = np.cumsum(pr, axis=0)
    past30 = csum[30:] - csum[:-30]
    r_past = np.median(corr_columns(gpp[30:, limited], past30[:, limited]))
    r_same = np.median(corr_columns(gpp[30:, limited], pr[30:, limited]))
    assert r_past > r_same + 0.2


def _month_of_day(world) -> np.ndarray:
    time = pd.DatetimeIndex(world.time.values)
    return (time.year - time.year[0]) * 12 + time.month - time.month[0]


def _chosen_pixels(world) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of three land cells: the most water-limited, the most productive, a cold one."""
    land = world.land_mask.values
    limitation = np.where(land, world.water_limitation.values, -1)
    productive = np.where(land, world.gpp.mean("time").values, -1)
    cold = np.where(land & (world.gpp.mean("time").values > 0.1), -np.abs(world.tas.mean("time").values), -99)
    flat = [int(np.argmax(a)) for a in (limitation, productive, cold)]
    return np.unravel_index(flat, land.shape)


def _brute_force_derivatives(world, iy, ix, driver) -> dict:
    """Daily d(gpp, et)/d(driver) at cells (iy, ix) from re-simulations, (nt, n) float64 each.

    For each pixel and day, one run moves that day's driver up and another moves it down (forward
    difference where a non-negative driver is below the step); the days before, hence the
    start-of-day state, are untouched. All runs go side by side as columns of one run.
    """
    drivers = {
        name: np.ascontiguousarray(world[name].values[:, iy, ix])
        for name in ("tas", "vpd", "rsds", "pr", "cloud", "ws")
    }
    params = land_model.land_params(world.pft.values[iy, ix])
    start = land_model.spin_up(params, drivers)
    nt, n = drivers["tas"].shape
    step = SENSITIVITY_DRIVERS[driver][0]
    x = drivers[driver]
    upper = x + np.float32(step)
    lower = x - np.float32(step) if driver == "tas" else np.where(x >= step, x - np.float32(step), x)

    def columns(a):  # column j * 2 nt + 2 t + side: pixel j, day t moved up (side 0) or down (1)
        return np.repeat(a, 2 * nt, axis=-1)

    runs = {name: columns(values) for name, values in drivers.items()}
    days = np.arange(nt)
    for j in range(n):
        runs[driver][days, j * 2 * nt + 2 * days] = upper[:, j]
        runs[driver][days, j * 2 * nt + 2 * days + 1] = lower[:, j]
    out, _ = land_model.run_land(
        land_model.LandParams(*map(columns, params)), runs, land_model.LandState(*map(columns, start))
    )
    width = upper.astype(np.float64) - lower
    up = (np.arange(n) * 2 * nt)[None, :] + 2 * days[:, None]
    rows = days[:, None]
    return {
        target: (out[target][rows, up].astype(np.float64) - out[target][rows, up + 1]) / width
        for target in ("gpp", "et")
    }


def test_land_model_rerun_reproduces_the_world(tiny):
    world, _ = tiny
    iy, ix = _chosen_pixels(world)
    drivers = {
        name: np.ascontiguousarray(world[name].values[:, iy, ix])
        for name in ("tas", "vpd", "rsds", "pr", "cloud", "ws")
    }
    params = land_model.land_params(world.pft.values[iy, ix])
    out, _ = land_model.run_land(params, drivers, land_model.spin_up(params, drivers))
    for name in ("gpp", "et", "fapar", "soil_water"):
        np.testing.assert_array_equal(out[name], world[name].values[:, iy, ix])


@pytest.mark.parametrize("driver", DRIVERS)
def test_sensitivity_is_the_mean_of_brute_force_daily_derivatives(tiny, driver):
    world, _ = tiny
    iy, ix = _chosen_pixels(world)
    daily = _brute_force_derivatives(world, iy, ix, driver)
    month = _month_of_day(world)
    for target, values in daily.items():
        name = f"{target}_sens_{driver}"
        monthly = pd.DataFrame(values).groupby(month).mean().to_numpy()
        scale = max(np.abs(values).mean(), 1e-3)  # float32 round-off of the re-simulations: ~1e-5 of it
        np.testing.assert_allclose(world[name].values[:, iy, ix], monthly, rtol=5e-4, atol=2e-4 * scale)
        np.testing.assert_allclose(
            world[f"{name}_mean"].values[iy, ix], values.mean(axis=0), rtol=5e-4, atol=2e-4 * scale
        )
    assert np.abs(daily["gpp"]).max() > 0 or driver in ("pr", "ws")


def test_sensitivity_signs_and_exact_zeros(tiny):
    world, _ = tiny
    land = world.land_mask.values

    def over_land(name):
        return np.concatenate([world[name].values[:, land].ravel(), world[f"{name}_mean"].values[land]])

    for name in ("gpp_sens_rsds", "et_sens_rsds", "et_sens_pr"):
        assert over_land(name).min() >= 0, name  # more light: more GPP and ET; more rain: never less ET
    assert over_land("gpp_sens_vpd").max() <= 0  # drier air closes stomata
    # GPP sees the start-of-day soil water, Priestley-Taylor ignores the humidity, nothing sees the wind.
    for name in ("gpp_sens_pr", "gpp_sens_ws", "et_sens_ws", "et_sens_vpd"):
        assert (over_land(name) == 0).all(), name
    assert over_land("gpp_sens_rsds").max() > 0.01 and over_land("gpp_sens_vpd").min() < -0.01
    tas = world.tas.mean("time").values[land]
    gpp_tas = world.gpp_sens_tas_mean.values[land]
    assert (gpp_tas[tas < 5] >= 0).all() and gpp_tas.min() < 0  # warmer helps the cold, not the hot
    for name in (f"{t}_sens_{d}" for t in ("gpp", "et") for d in DRIVERS):
        assert np.isnan(world[name].values[:, ~land]).all() and np.isnan(world[f"{name}_mean"].values[~land]).all()


def test_sensitivity_to_light_is_the_light_use_efficiency(tiny):
    world, _ = tiny
    land = world.land_mask.values
    params = np.array([PFT_PARAMS[int(code)] for code in world.pft.values[land]])
    eps, t_opt, w_max = params[:, 1], params[:, 2], params[:, 5]
    tas, vpd = world.tas.values[:, land].astype(float), world.vpd.values[:, land].astype(float)
    fapar, w = world.fapar.values[:, land].astype(float), world.soil_water.values[:, land].astype(float)
    f_t = np.exp(-(((tas - t_opt) / 12.0) ** 2)) * np.clip((tas + 2.0) / 4.0, 0, 1)
    f_vpd = np.clip(1.0 - 0.7 * (vpd - land_model.VPD_ONSET) / (35.0 - land_model.VPD_ONSET), 0.3, 1.0)
    f_w = np.clip(w / (0.6 * w_max), 0, 1)
    # GPP = eps fapar PAR fT fVPD fW with PAR = 0.45 rsds (W m-2 -> MJ m-2 d-1: x 0.0864); cloud held fixed
    daily = eps * 0.45 * 0.0864 * f_t * f_vpd * fapar * f_w
    monthly = pd.DataFrame(daily).groupby(_month_of_day(world)).mean().to_numpy()
    np.testing.assert_allclose(world.gpp_sens_rsds.values[:, land], monthly, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(world.gpp_sens_rsds_mean.values[land], daily.mean(axis=0), rtol=1e-5, atol=1e-9)
