"""Tests of upscale.sources.demo.sites: site choice, ids, and what the FLUXNET tables observe."""

from __future__ import annotations

import numpy as np

from tests.sources.demo.common import TARGET_COLUMNS, TINY, site_truth
from upscale.sources.demo import DemoSpec, simulate
from upscale.variables import IGBP_CLASSES, latent_heat_of_vaporisation


def test_sites_are_unique_land_cells_with_realistic_ids(tiny):
    world, sites = tiny
    assert list(sites.columns) == [
        "SITE_ID",
        "SITE_NAME",
        "LOCATION_LAT",
        "LOCATION_LONG",
        "LOCATION_ELEV",
        "IGBP",
        "bias",
    ]
    assert len(sites) == TINY.n_sites and sites["SITE_ID"].is_unique
    assert sites["SITE_ID"].str.fullmatch(r"[A-Z]{2}-[A-Za-z0-9]{3}").all()
    iy = np.abs(world.lat.values[None] - sites["LOCATION_LAT"].values[:, None]).argmin(axis=1)
    ix = np.abs(world.lon.values[None] - sites["LOCATION_LONG"].values[:, None]).argmin(axis=1)
    assert world.land_mask.values[iy, ix].all()
    assert len(set(zip(iy, ix))) == len(sites)  # without replacement
    res = TINY.resolution
    assert (np.abs(sites["LOCATION_LAT"] - world.lat.values[iy]) < 0.3 * res).all()
    assert (np.abs(sites["LOCATION_LONG"] - world.lon.values[ix]) < 0.3 * res).all()
    assert list(sites["IGBP"]) == [IGBP_CLASSES[int(c)] for c in world.pft.values[iy, ix]]
    assert sites["bias"].between(-0.1, 0.1).all() and sites["bias"].std() > 0.01
    assert sites["LOCATION_ELEV"].between(-50, 5000).all()


def test_site_sampling_prefers_temperate_northern_networks():
    spec = DemoSpec(resolution=5, start="2018-01-01", end="2018-01-05", n_sites=120)
    world, sites = simulate(spec)
    temperate_north = sites["LOCATION_LAT"].between(25, 60).mean()
    land = world.land_mask.values
    lat = np.broadcast_to(world.lat.values[:, None], land.shape)[land]
    land_share = np.mean((lat >= 25) & (lat <= 60))
    assert temperate_north > land_share + 0.15
    tropics = sites["LOCATION_LAT"].abs().lt(23).mean()
    assert tropics < np.mean(np.abs(lat) < 23)


def test_fluxnet_gaps_and_qc(flux_tables):
    poor, total = 0, 0
    for sid, table in flux_tables.items():
        gap = table["GPP_NT_VUT_REF"] == -9999
        assert 0.05 <= gap.mean() <= 0.15, sid
        for col in TARGET_COLUMNS:
            assert ((table[col] == -9999) == gap).all(), (sid, col)
        assert (table.loc[gap, "NEE_VUT_REF_QC"] == 0).all() and (table.loc[gap, "LE_F_MDS_QC"] == 0).all()
        qc = table.loc[~gap, "NEE_VUT_REF_QC"]
        assert (qc > 0).all() and ((qc >= 0.5) | qc.between(0.1, 0.4)).all()
        assert (qc > 0.8).mean() > 0.7
        poor += int(qc.between(0.1, 0.4).sum())
        total += len(qc)
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, gap.values.astype(int), 0])))[::2]
        assert runs.max() >= 7, sid  # some gaps come in runs of 1-4 weeks
        assert runs.max() <= 28 and (runs == 1).any(), sid
    assert 0.01 <= poor / total <= 0.06


def test_fluxnet_targets_are_noisy_biased_truth(flux_tables, tiny):
    world, sites = tiny
    gpp_truth = site_truth(world, sites, "gpp")
    et_truth = site_truth(world, sites, "et")
    z_gpp, z_et, slopes = [], [], []
    for j, sid in enumerate(sites["SITE_ID"]):
        table = flux_tables[sid]
        ok = table["GPP_NT_VUT_REF"].values != -9999
        scale = 1 + sites["bias"].iloc[j]
        obs = table["GPP_NT_VUT_REF"].values[ok]
        truth = gpp_truth[j, ok]
        assert not np.allclose(obs, truth)
        z_gpp.append((obs - truth * scale) / (0.15 * truth + 0.3))
        if truth.mean() > 1:
            slopes.append((obs @ truth) / (truth @ truth) / scale)
        et_obs = table["LE_F_MDS"].values[ok] * 86400 / latent_heat_of_vaporisation(table["TA_F"].values[ok])
        z_et.append((et_obs - et_truth[j, ok] * scale) / (0.15 * et_truth[j, ok] + 0.3))
        ratio = table["LE_CORR"].values[ok] / np.where(
            table["LE_F_MDS"].values[ok] == 0, np.nan, table["LE_F_MDS"].values[ok]
        )
        assert 1.0 < np.nanmedian(ratio) < 1.25
        dt_diff = table["GPP_DT_VUT_REF"].values[ok] - obs
        assert 0 < np.std(dt_diff) < 0.5 * np.std(obs) + 0.3
    for z in (np.concatenate(z_gpp), np.concatenate(z_et)):
        assert abs(z.mean()) < 0.15 and 0.8 < z.std() < 1.2
    assert slopes and np.all(np.abs(np.array(slopes) - 1) < 0.15)


def test_fluxnet_met_is_pixel_met_plus_small_noise(flux_tables, tiny):
    world, sites = tiny
    tas = site_truth(world, sites, "tas")
    pr = site_truth(world, sites, "pr")
    for j, sid in enumerate(sites["SITE_ID"]):
        table = flux_tables[sid]
        d = table["TA_F"].values - tas[j]
        assert 0.1 < d.std() < 1 and abs(d.mean()) < 0.3
        assert np.corrcoef(table["P_F"].values, pr[j])[0, 1] > 0.95
        assert (table["SW_IN_F"] <= table["SW_IN_POT"] + 1e-6).all()
