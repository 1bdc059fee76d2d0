"""Tests of upscale.sources.demo.climate: ranges, geography of the climate, the decoy wind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from tests.sources.demo.common import SMALL, WIND
from upscale.sources.demo import climate, simulate


def test_physical_ranges(tiny):
    world, _ = tiny
    land = world.land_mask.values
    for name in ["tas", "tdew", "vpd", "rsds", "rsds_pot", "pr", "cloud", "u10", "v10", "ws"]:
        assert np.isfinite(world[name].values).all(), f"{name} not finite everywhere (ERA5 is)"
    for name in ["fapar", "ndvi", "soil_water", "gpp", "et"]:
        assert np.isfinite(world[name].values[:, land]).all(), f"{name} has NaN over land"
    gpp, et = world.gpp.values[:, land], world.et.values[:, land]
    assert gpp.min() >= 0 and 5 < gpp.max() < 30
    assert et.min() >= 0 and et.max() <= 15
    assert world.tas.min() >= -70 and world.tas.max() <= 50
    assert (world.tdew <= world.tas + 1e-3).all()
    assert world.vpd.min() >= 0
    assert world.pr.min() >= 0 and world.pr.max() < 500
    fapar = world.fapar.values[:, land]
    assert fapar.min() >= 0 and fapar.max() <= 1
    ndvi = world.ndvi.values[:, land]
    assert ndvi.min() >= -1 and ndvi.max() <= 1
    assert np.corrcoef(fapar.ravel(), ndvi.ravel())[0, 1] > 0.95
    assert world.rsds.min() >= 0
    assert (world.rsds <= world.rsds_pot + 1e-3).all()
    wl = world.water_limitation.values[land]
    assert wl.min() >= 0 and wl.max() <= 1 and (wl > 0.3).any() and (wl < 0.05).any()
    assert (world.soil_water.values[:, land] >= 0).all()


def test_climate_has_plausible_geography(tiny):
    world, _ = tiny
    lat = world.lat.values
    tas = world.tas.mean("time").values
    tropics, arctic = np.abs(lat) < 15, lat > 60
    assert np.nanmean(tas[tropics]) > 20 and np.nanmean(tas[arctic]) < 0
    # January-April: the northern interior warms, so April is warmer than January there.
    north = (lat > 35) & (lat < 65)
    land = world.land_mask.values
    jan = world.tas.isel(time=slice(0, 31)).mean("time").values
    apr = world.tas.isel(time=slice(90, 120)).mean("time").values
    assert np.mean((apr - jan)[north][land[north]]) > 5
    # Rainforest cells get more rain than subtropical shrubland cells.
    pr = world.pr.mean("time").values
    pft = world.pft.values
    assert pr[pft == 2].mean() > 2 * pr[pft == 7].mean()


def test_wind_is_plausible(tiny):
    world, _ = tiny
    for name in WIND:
        assert world[name].dtype == np.float32 and world[name].attrs["units"] == "m s-1"
    ws = world.ws.values
    np.testing.assert_allclose(ws, np.hypot(world.u10.values, world.v10.values), rtol=1e-6)
    p5, p50, p95 = np.percentile(ws, [5, 50, 95])
    assert 0.3 < p5 < 1.5 and 2 < p50 < 6 and 8 < p95 < 14 and ws.max() < 40
    land = world.land_mask.values
    assert ws[:, ~land].mean() > ws[:, land].mean() + 0.5  # land slows the surface wind
    lat = world.lat.values
    zonal_u = world.u10.mean(("time", "lon")).values
    assert (zonal_u[np.abs(np.abs(lat) - 50) < 6] > 3).all()  # westerlies in the storm tracks
    assert (zonal_u[np.abs(np.abs(lat) - 15) < 1] < -3).all()  # trade easterlies
    storm_tracks = ws[:, (np.abs(lat) > 40) & (np.abs(lat) < 60)].mean()
    assert storm_tracks > ws[:, np.abs(lat) < 10].mean() + 2
    anomaly = ws - ws.mean(axis=0)
    lag1 = np.corrcoef(anomaly[:-1].ravel(), anomaly[1:].ravel())[0, 1]
    neighbour = np.corrcoef(anomaly[:, :, :-1].ravel(), anomaly[:, :, 1:].ravel())[0, 1]
    assert 0.3 < lag1 < 0.8 and neighbour > 0.1  # AR(1) weather, smooth in space


def test_climate_and_fluxes_ignore_the_wind(monkeypatch):
    world, sites = simulate(SMALL)

    def no_wind(spec, doy, lat, landness, wrap):
        calm = np.zeros((len(doy), *landness.shape), np.float32)
        return calm, calm.copy()

    monkeypatch.setattr(climate, "wind", no_wind)
    calm_world, calm_sites = simulate(SMALL)
    assert (calm_world.ws == 0).all() and (world.ws > 0).all()
    xr.testing.assert_identical(world.drop_vars(WIND), calm_world.drop_vars(WIND))
    pd.testing.assert_frame_equal(sites, calm_sites)
