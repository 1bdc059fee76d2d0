"""Tests of the synthetic demo world (upscale.sources.demo): physics, sites, written formats, cache."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from upscale.errors import DataError
from upscale.sources import demo
from upscale.sources.demo import DemoSpec, cached_world, simulate, write_world
from upscale.variables import IGBP_CLASSES, latent_heat_of_vaporisation, vpd_from_dewpoint

TINY = DemoSpec(resolution=10, start="2018-01-01", end="2018-04-30", n_sites=12)
# A regional world whose period spans two calendar years and whose bbox crosses the prime meridian.
BOX = DemoSpec(seed=5, resolution=5, start="2018-12-01", end="2019-01-31", n_sites=5, bbox=(-10, 35, 30, 60))
SMALL = DemoSpec(seed=1, resolution=10, start="2018-01-01", end="2018-01-20", n_sites=3)
ALLOWED_PFT = {1, 2, 4, 5, 7, 8, 9, 10, 12}
DYNAMIC = ["tas", "tdew", "vpd", "rsds", "rsds_pot", "pr", "cloud", "u10", "v10", "ws", "fapar", "ndvi",
           "soil_water", "gpp", "et"]
WIND = ["u10", "v10", "ws"]
DRIVERS = ["tas", "vpd", "rsds", "pr", "ws"]
# The contract of sensitivity.zarr: variable -> units.
SENSITIVITY_UNITS = {
    "gpp_sens_tas": "g m-2 d-1 K-1", "gpp_sens_vpd": "g m-2 d-1 hPa-1", "gpp_sens_rsds": "g m-2 d-1 W-1 m2",
    "gpp_sens_pr": "g m-2 d-1 mm-1 d", "gpp_sens_ws": "g m-2 d-1 m-1 s",
    "et_sens_tas": "kg m-2 d-1 K-1", "et_sens_vpd": "kg m-2 d-1 hPa-1", "et_sens_rsds": "kg m-2 d-1 W-1 m2",
    "et_sens_pr": "kg m-2 d-1 mm-1 d", "et_sens_ws": "kg m-2 d-1 m-1 s",
}
TARGET_COLUMNS = ["LE_F_MDS", "LE_CORR", "GPP_NT_VUT_REF", "GPP_DT_VUT_REF"]


@pytest.fixture(scope="module")
def tiny():
    return simulate(TINY)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return write_world(TINY, tmp_path_factory.mktemp("demo") / "world")


@pytest.fixture(scope="module")
def flux_tables(written, tiny) -> dict[str, pd.DataFrame]:
    _, sites = tiny
    folder = written.parent / "fluxnet"
    return {sid: pd.read_csv(folder / f"FLX_{sid}_FLUXNET2015_SUBSET_DD_2018-2018_1-4.csv")
            for sid in sites["SITE_ID"]}


def _site_truth(world, sites, name):
    """(n_sites, time) truth of ``name`` at each site's grid cell."""
    iy = np.abs(world.lat.values[None] - sites["LOCATION_LAT"].values[:, None]).argmin(axis=1)
    ix = np.abs(world.lon.values[None] - sites["LOCATION_LONG"].values[:, None]).argmin(axis=1)
    return world[name].values[:, iy, ix].T.astype(float)


def _corr_columns(a, b):
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, words", [
    ({"resolution": 7}, "divides 180"),
    ({"resolution": -2}, "divides 180"),
    ({"start": "2019-01-01", "end": "2018-01-01"}, "before start"),
    ({"start": "not a date"}, "not a date"),
    ({"n_sites": 0}, "n_sites"),
    ({"seed": -1}, "seed"),
    ({"bbox": (10, 0, 5, 20)}, "bbox"),
    ({"bbox": (0, 0, 10)}, "bbox"),
    ({"bbox": (170, -10, 190, 10)}, "antimeridian"),
])
def test_spec_rejects_bad_arguments(kwargs, words):
    with pytest.raises(DataError, match=words):
        DemoSpec(**kwargs)


def test_spec_key_is_short_stable_and_normalised():
    a = DemoSpec(resolution=10, bbox=[-10, 35, 30, 60], start="2018-01-01")
    b = DemoSpec(resolution=10.0, bbox=(-10.0, 35.0, 30.0, 60.0), start=pd.Timestamp("2018-01-01"))
    assert a == b and a.key() == b.key()
    assert re.fullmatch(r"[0-9a-f]{12}", a.key())
    assert DemoSpec(seed=1).key() != DemoSpec(seed=2).key()
    assert DemoSpec(n_sites=10).key() != DemoSpec(n_sites=11).key()
    assert isinstance(hash(a), int)  # frozen, usable as a dict key


def test_bbox_without_cells_and_too_many_sites_are_data_errors():
    with pytest.raises(DataError, match="no cell centre"):
        simulate(DemoSpec(resolution=10, bbox=(1, 1, 2, 2)))
    with pytest.raises(DataError, match="land cells"):
        simulate(DemoSpec(resolution=10, bbox=(0, 40, 20, 60), n_sites=50, end="2018-01-10"))


# ---------------------------------------------------------------------------------------------
# The simulated world
# ---------------------------------------------------------------------------------------------


def test_simulate_is_deterministic_and_seeded(tiny):
    world, sites = tiny
    again, sites_again = simulate(TINY)
    xr.testing.assert_identical(world, again)
    pd.testing.assert_frame_equal(sites, sites_again)
    other, other_sites = simulate(DemoSpec(**{**TINY.to_dict(), "seed": 1}))
    assert not np.array_equal(world.tas.values, other.tas.values)
    assert not np.array_equal(world.pr.values, other.pr.values)
    assert not sites["SITE_ID"].equals(other_sites["SITE_ID"])


def test_grid_layout_and_dtypes(tiny):
    world, _ = tiny
    assert world.tas.dims == ("time", "lat", "lon")
    np.testing.assert_allclose(world.lat.values, np.arange(-85, 90, 10))
    np.testing.assert_allclose(world.lon.values, np.arange(-175, 180, 10))
    assert world.time.size == 120 and str(world.time.values[0])[:10] == "2018-01-01"
    for name in DYNAMIC + ["water_limitation"]:
        assert world[name].dtype == np.float32, name
    assert world.pft.dtype == np.uint8 and world.pft.dims == ("lat", "lon")
    assert world.land_mask.dtype == bool
    assert world.gpp.attrs["units"] == "g m-2 d-1" and world.et.attrs["units"] == "kg m-2 d-1"


def test_land_mask_matches_global_land_mask_without_antarctica(tiny):
    from global_land_mask import globe

    world, _ = tiny
    lat, lon = np.meshgrid(world.lat.values, world.lon.values, indexing="ij")
    expected = globe.is_land(lat, lon) & (lat >= -60)
    np.testing.assert_array_equal(world.land_mask.values, expected)
    assert expected.sum() > 100
    pft = world.pft.values
    assert np.all((pft > 0) == expected)
    assert set(np.unique(pft[expected]).tolist()) <= ALLOWED_PFT
    assert len(np.unique(pft[expected])) >= 6  # a mix of vegetation, not one class


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
    assert -70 <= world.tas.min() and world.tas.max() <= 50
    assert (world.tdew <= world.tas + 1e-3).all()
    assert world.vpd.min() >= 0
    assert world.pr.min() >= 0 and world.pr.max() < 500
    fapar = world.fapar.values[:, land]
    assert fapar.min() >= 0 and fapar.max() <= 1
    ndvi = world.ndvi.values[:, land]
    assert -1 <= ndvi.min() and ndvi.max() <= 1
    assert np.corrcoef(fapar.ravel(), ndvi.ravel())[0, 1] > 0.95
    assert world.rsds.min() >= 0
    assert (world.rsds <= world.rsds_pot + 1e-3).all()
    wl = world.water_limitation.values[land]
    assert wl.min() >= 0 and wl.max() <= 1 and (wl > 0.3).any() and (wl < 0.05).any()
    assert (world.soil_water.values[:, land] >= 0).all()


def test_water_bodies_are_nan_in_land_variables(tiny):
    world, _ = tiny
    ocean = ~world.land_mask.values
    for name in ["fapar", "ndvi", "gpp", "et", "soil_water"]:
        assert np.isnan(world[name].values[:, ocean]).all(), name
    assert np.isnan(world.water_limitation.values[ocean]).all()


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


def test_soil_water_gives_weeks_of_memory(tiny):
    world, _ = tiny
    land = world.land_mask.values
    sw = world.soil_water.values[:, land].astype(float)
    moving = sw.std(axis=0) > 5
    assert moving.sum() > 20
    assert np.median(_corr_columns(sw[:-7, moving], sw[7:, moving])) > 0.5
    # Where water limits, GPP follows the rain of the past month more than the rain of the same day.
    gpp = world.gpp.values[:, land].astype(float)
    pr = world.pr.values[:, land].astype(float)
    limited = (world.water_limitation.values[land] > 0.3) & (gpp.std(axis=0) > 0)
    assert limited.sum() >= 10
    csum = np.cumsum(pr, axis=0)
    past30 = csum[30:] - csum[:-30]
    r_past = np.median(_corr_columns(gpp[30:, limited], past30[:, limited]))
    r_same = np.median(_corr_columns(gpp[30:, limited], pr[30:, limited]))
    assert r_past > r_same + 0.2


def test_sites_are_unique_land_cells_with_realistic_ids(tiny):
    world, sites = tiny
    assert list(sites.columns) == ["SITE_ID", "SITE_NAME", "LOCATION_LAT", "LOCATION_LONG", "LOCATION_ELEV",
                                   "IGBP", "bias"]
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


# ---------------------------------------------------------------------------------------------
# Written files
# ---------------------------------------------------------------------------------------------


def test_catalog_points_at_every_file(written):
    catalog = yaml.safe_load(written.read_text())
    assert catalog["description"] == ("upscale demo world (synthetic), seed 0, 10.0 deg, "
                                      "2018-01-01..2018-04-30, 12 sites")
    entries = catalog["entries"]
    assert entries["era5"] == {"driver": "era5", "path": "era5/era5_daily_*.nc"}
    assert entries["eo"] == {"driver": "cube", "path": "eo/eo_daily.zarr"}
    assert entries["static"] == {"driver": "geotiff", "path": "static/pft.tif", "variable": "pft",
                                 "categorical": True}
    assert entries["fluxnet"] == {"driver": "fluxnet", "path": "fluxnet/FLX_*_FLUXNET2015_SUBSET_DD_*.csv",
                                  "site_list": "fluxnet/sites.csv"}
    assert entries["truth"] == {"driver": "cube", "path": "truth.zarr"}
    assert entries["sensitivity"] == {"driver": "cube", "path": "sensitivity.zarr"}
    root = written.parent
    for entry in entries.values():
        assert list(root.glob(entry["path"])), entry
    assert len(list(root.glob(entries["fluxnet"]["path"]))) == TINY.n_sites
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_era5_file_layout_units_and_values(written, tiny):
    world, _ = tiny
    files = sorted((written.parent / "era5").glob("*.nc"))
    assert [f.name for f in files] == ["era5_daily_2018.nc"]
    with xr.open_dataset(files[0]) as ds:
        assert set(ds.data_vars) == {"t2m", "d2m", "ssrd", "tp", "u10", "v10"}
        assert ds.t2m.dims == ("valid_time", "latitude", "longitude")
        units = {"t2m": "K", "d2m": "K", "ssrd": "J m-2", "tp": "m", "u10": "m s-1", "v10": "m s-1"}
        standard = {"t2m": "air_temperature", "d2m": "dew_point_temperature",
                    "ssrd": "surface_downwelling_shortwave_flux_in_air", "u10": "eastward_wind",
                    "v10": "northward_wind"}
        for name, unit in units.items():
            assert ds[name].attrs["units"] == unit and ds[name].dtype == np.float32
            assert ds[name].attrs["long_name"] and ds[name].attrs["standard_name"]
            assert ds[name].encoding["zlib"] and ds[name].encoding["complevel"] == 1
            assert np.isfinite(ds[name].values).all()
        for name, std in standard.items():
            assert ds[name].attrs["standard_name"] == std
        assert ds.attrs["Conventions"] == "CF-1.7"
        assert ds.attrs["institution"] == "upscale demo world (synthetic)"
        lat, lon = ds.latitude.values, ds.longitude.values
        assert np.all(np.diff(lat) < 0) and lat[0] == 85 and lat[-1] == -85
        assert np.all(np.diff(lon) > 0) and lon[0] == 5 and lon[-1] == 355
        assert np.issubdtype(ds.valid_time.dtype, np.datetime64)
        canon = ds.assign_coords(longitude=(lon + 180) % 360 - 180).sortby("longitude").sortby("latitude")
        t = canon.t2m.values - 273.15
        np.testing.assert_allclose(t, world.tas.values, rtol=0, atol=1e-4)
        np.testing.assert_allclose(canon.ssrd.values / 86400, world.rsds.values, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(canon.tp.values * 1000, world.pr.values, rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(canon.u10.values, world.u10.values)
        np.testing.assert_array_equal(canon.v10.values, world.v10.values)
        assert ds.u10.attrs["long_name"] == "10 metre U wind component"
        vpd = vpd_from_dewpoint(t, canon.d2m.values - 273.15)
        np.testing.assert_allclose(vpd, world.vpd.values, rtol=1e-4, atol=1e-3)


def test_eo_cube(written, tiny):
    world, _ = tiny
    path = written.parent / "eo" / "eo_daily.zarr"
    assert (path / ".zmetadata").exists()  # consolidated
    with xr.open_zarr(path) as eo:
        assert set(eo.data_vars) == {"fapar", "ndvi"}
        assert eo.fapar.dims == ("time", "lat", "lon") and eo.fapar.dtype == np.float32
        assert eo.fapar.attrs["units"] == "1" and eo.ndvi.attrs["long_name"]
        assert np.all(np.diff(eo.lat.values) > 0) and np.all(np.diff(eo.lon.values) > 0)
        np.testing.assert_array_equal(eo.fapar.values, world.fapar.values)
        np.testing.assert_array_equal(eo.ndvi.values, world.ndvi.values)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_pft_geotiff(written, tiny):
    import rioxarray

    world, _ = tiny
    with rioxarray.open_rasterio(written.parent / "static" / "pft.tif") as da:
        assert da.rio.crs.to_epsg() == 4326
        assert da.rio.nodata == 0 and da.dtype == np.uint8 and da.sizes["band"] == 1
        assert np.all(np.diff(da.y.values) < 0)
        np.testing.assert_allclose(da.x.values, world.lon.values)
        np.testing.assert_allclose(da.y.values[::-1], world.lat.values)
        np.testing.assert_array_equal(da.values[0][::-1], world.pft.values)
        assert da.attrs["long_name"] == "plant functional type (IGBP)"


def test_truth_store(written, tiny):
    world, sites = tiny
    with xr.open_zarr(written.parent / "truth.zarr") as truth:
        assert json.loads(truth.attrs["demo_spec"]) == TINY.to_dict()
        for name, unit in {"gpp": "g m-2 d-1", "et": "kg m-2 d-1", "soil_water": "mm",
                           "water_limitation": "1"}.items():
            assert truth[name].attrs["units"] == unit
            np.testing.assert_array_equal(truth[name].values, world[name].values)
        assert truth.land_mask.dtype == np.int8 and truth.pft.dtype == np.uint8
        np.testing.assert_array_equal(truth.land_mask.values, world.land_mask.values.astype(np.int8))
        np.testing.assert_array_equal(truth.pft.values, world.pft.values)
        assert list(truth.site.values) == list(sites["SITE_ID"])
        np.testing.assert_allclose(truth.site_bias.values, sites["bias"].values)
        np.testing.assert_allclose(truth.site_lat.values, sites["LOCATION_LAT"].values)
        np.testing.assert_allclose(truth.site_lon.values, sites["LOCATION_LONG"].values)


def test_site_list_csv(written, tiny):
    _, sites = tiny
    table = pd.read_csv(written.parent / "fluxnet" / "sites.csv")
    assert list(table.columns) == ["SITE_ID", "SITE_NAME", "LOCATION_LAT", "LOCATION_LONG", "LOCATION_ELEV", "IGBP"]
    pd.testing.assert_frame_equal(table, sites.drop(columns="bias"), check_dtype=False)


def test_fluxnet_files_format(written, flux_tables):
    expected = ["TIMESTAMP", "TA_F", "TA_F_QC", "SW_IN_POT", "SW_IN_F", "SW_IN_F_QC", "VPD_F", "VPD_F_QC",
                "P_F", "P_F_QC", "LE_F_MDS", "LE_F_MDS_QC", "LE_CORR", "NEE_VUT_REF_QC", "GPP_NT_VUT_REF",
                "GPP_DT_VUT_REF"]
    for sid, table in flux_tables.items():
        assert list(table.columns) == expected
        assert table["TIMESTAMP"].dtype == np.int64
        assert table["TIMESTAMP"].iloc[0] == 20180101 and table["TIMESTAMP"].iloc[-1] == 20180430
        assert len(table) == 120
        for col in expected[1:]:
            if col not in TARGET_COLUMNS:
                assert (table[col] > -9999).all(), (sid, col)
        qc = table.filter(like="_QC")
        assert qc.min().min() >= 0 and qc.max().max() <= 1
    text = next((written.parent / "fluxnet").glob("FLX_*.csv")).read_text()
    assert re.search(r",-9999(,|\n)", text) and "-9999.0" not in text


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
    gpp_truth = _site_truth(world, sites, "gpp")
    et_truth = _site_truth(world, sites, "et")
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
        ratio = table["LE_CORR"].values[ok] / np.where(table["LE_F_MDS"].values[ok] == 0, np.nan,
                                                       table["LE_F_MDS"].values[ok])
        assert 1.0 < np.nanmedian(ratio) < 1.25
        dt_diff = table["GPP_DT_VUT_REF"].values[ok] - obs
        assert 0 < np.std(dt_diff) < 0.5 * np.std(obs) + 0.3
    for z in (np.concatenate(z_gpp), np.concatenate(z_et)):
        assert abs(z.mean()) < 0.15 and 0.8 < z.std() < 1.2
    assert slopes and np.all(np.abs(np.array(slopes) - 1) < 0.15)


def test_fluxnet_met_is_pixel_met_plus_small_noise(flux_tables, tiny):
    world, sites = tiny
    tas = _site_truth(world, sites, "tas")
    pr = _site_truth(world, sites, "pr")
    for j, sid in enumerate(sites["SITE_ID"]):
        table = flux_tables[sid]
        d = table["TA_F"].values - tas[j]
        assert 0.1 < d.std() < 1 and abs(d.mean()) < 0.3
        assert np.corrcoef(table["P_F"].values, pr[j])[0, 1] > 0.95
        assert (table["SW_IN_F"] <= table["SW_IN_POT"] + 1e-6).all()


def test_fluxnet_reader_reads_the_demo_sites(written, tiny):
    from upscale.sources import fluxnet

    _, sites = tiny
    root = written.parent
    ds = fluxnet.read(str(root / "fluxnet" / "FLX_*_FLUXNET2015_SUBSET_DD_*.csv"),
                      site_list=root / "fluxnet" / "sites.csv", qc_min=0.5)
    assert set(ds.site.values) == set(sites["SITE_ID"])
    ds = ds.sel(site=list(sites["SITE_ID"]))
    np.testing.assert_allclose(ds.lat.values, sites["LOCATION_LAT"].values)
    assert ds.gpp.sizes["time"] == 120
    missing = np.isnan(ds.gpp.values).mean()
    assert 0.05 < missing < 0.2
    assert np.nanmax(ds.et.values) < 20


# ---------------------------------------------------------------------------------------------
# The wind (a decoy predictor)
# ---------------------------------------------------------------------------------------------


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


def test_era5_entry_yields_wind_speed(written, tiny):
    from upscale.catalog import load_catalog

    world, _ = tiny
    era5 = load_catalog(written).open("era5")
    assert era5.ws.attrs["units"] == "m s-1" and era5.ws.dims == ("time", "lat", "lon")
    np.testing.assert_allclose(era5.ws.values, world.ws.values, rtol=1e-6, atol=1e-6)


def test_climate_and_fluxes_ignore_the_wind(monkeypatch):
    world, sites = simulate(SMALL)

    def no_wind(spec, doy, lat, landness, wrap):
        calm = np.zeros((len(doy), *landness.shape), np.float32)
        return calm, calm.copy()

    monkeypatch.setattr(demo, "_wind", no_wind)
    calm_world, calm_sites = simulate(SMALL)
    assert (calm_world.ws == 0).all() and (world.ws > 0).all()
    xr.testing.assert_identical(world.drop_vars(WIND), calm_world.drop_vars(WIND))
    pd.testing.assert_frame_equal(sites, calm_sites)


# ---------------------------------------------------------------------------------------------
# The true sensitivities
# ---------------------------------------------------------------------------------------------


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
    drivers = {name: np.ascontiguousarray(world[name].values[:, iy, ix])
               for name in ("tas", "vpd", "rsds", "pr", "cloud", "ws")}
    params = demo._land_params(world.pft.values[iy, ix])
    start = demo._spin_up(params, drivers)
    nt, n = drivers["tas"].shape
    step = demo.SENSITIVITY_DRIVERS[driver][0]
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
    out, _ = demo._run_land(demo._LandParams(*map(columns, params)), runs, demo._LandState(*map(columns, start)))
    width = upper.astype(np.float64) - lower
    up = (np.arange(n) * 2 * nt)[None, :] + 2 * days[:, None]
    rows = days[:, None]
    return {target: (out[target][rows, up].astype(np.float64) - out[target][rows, up + 1]) / width
            for target in ("gpp", "et")}


def test_land_model_rerun_reproduces_the_world(tiny):
    world, _ = tiny
    iy, ix = _chosen_pixels(world)
    drivers = {name: np.ascontiguousarray(world[name].values[:, iy, ix])
               for name in ("tas", "vpd", "rsds", "pr", "cloud", "ws")}
    params = demo._land_params(world.pft.values[iy, ix])
    out, _ = demo._run_land(params, drivers, demo._spin_up(params, drivers))
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
        np.testing.assert_allclose(world[f"{name}_mean"].values[iy, ix], values.mean(axis=0), rtol=5e-4,
                                   atol=2e-4 * scale)
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
    params = np.array([demo._PFT_PARAMS[int(code)] for code in world.pft.values[land]])
    eps, t_opt, w_max = params[:, 1], params[:, 2], params[:, 5]
    tas, vpd = world.tas.values[:, land].astype(float), world.vpd.values[:, land].astype(float)
    fapar, w = world.fapar.values[:, land].astype(float), world.soil_water.values[:, land].astype(float)
    f_t = np.exp(-(((tas - t_opt) / 12.0) ** 2)) * np.clip((tas + 2.0) / 4.0, 0, 1)
    f_vpd = np.clip(1.0 - 0.7 * (vpd - 6.0) / 29.0, 0.3, 1.0)
    f_w = np.clip(w / (0.6 * w_max), 0, 1)
    # GPP = eps fapar PAR fT fVPD fW with PAR = 0.45 rsds (W m-2 -> MJ m-2 d-1: x 0.0864); cloud held fixed
    daily = eps * 0.45 * 0.0864 * f_t * f_vpd * fapar * f_w
    monthly = pd.DataFrame(daily).groupby(_month_of_day(world)).mean().to_numpy()
    np.testing.assert_allclose(world.gpp_sens_rsds.values[:, land], monthly, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(world.gpp_sens_rsds_mean.values[land], daily.mean(axis=0), rtol=1e-5, atol=1e-9)


def test_sensitivity_store(written, tiny):
    from upscale.catalog import load_catalog

    world, _ = tiny
    path = written.parent / "sensitivity.zarr"
    assert (path / ".zmetadata").exists()
    with xr.open_zarr(path) as ds:
        expected = set(SENSITIVITY_UNITS) | {f"{name}_mean" for name in SENSITIVITY_UNITS} | {"time_bnds"}
        assert set(ds.data_vars) == expected
        np.testing.assert_array_equal(ds.lat.values, world.lat.values)
        np.testing.assert_array_equal(ds.lon.values, world.lon.values)
        months = pd.date_range("2018-01-01", "2018-04-01", freq="MS")
        np.testing.assert_array_equal(ds.time.values, months.values)
        np.testing.assert_array_equal(ds.time_bnds.values[:, 0], months.values)
        np.testing.assert_array_equal(ds.time_bnds.values[:, 1], (months + pd.offsets.MonthBegin(1)).values)
        assert ds.time.attrs["bounds"] == "time_bnds"
        land = world.land_mask.values
        days = (ds.time_bnds.values[:, 1] - ds.time_bnds.values[:, 0]) / np.timedelta64(1, "D")
        for name, units in SENSITIVITY_UNITS.items():
            for var, dims in ((ds[name], ("time", "lat", "lon")), (ds[f"{name}_mean"], ("lat", "lon"))):
                assert var.dims == dims and var.dtype == np.float32, var.name
                assert var.attrs["units"] == units and var.attrs["cell_methods"] == "time: mean"
                assert "instantaneous partial derivative" in var.attrs["long_name"]
                assert "held fixed" in var.attrs["comment"]
                np.testing.assert_array_equal(var.values, world[var.name].values)
                assert np.isnan(var.values[..., ~land]).all() and np.isfinite(var.values[..., land]).all()
            weighted = (ds[name].values * days[:, None, None]).sum(axis=0) / days.sum()
            np.testing.assert_allclose(ds[f"{name}_mean"].values, weighted, rtol=1e-5, atol=1e-9)
        assert ds.gpp_sens_tas.attrs["long_name"] == ("sensitivity of GPP to air temperature "
                                                      "(instantaneous partial derivative)")
        assert json.loads(ds.attrs["demo_spec"]) == TINY.to_dict()
        assert ds.attrs["world_version"] == demo.WORLD_VERSION and ds.attrs["title"]
    opened = load_catalog(written).open("sensitivity")
    assert set(SENSITIVITY_UNITS) <= set(opened.data_vars)


def test_sensitivity_months_of_a_partial_period(tmp_path):
    spec = DemoSpec(seed=2, resolution=10, start="2018-01-20", end="2018-02-10", n_sites=3)
    catalog = write_world(spec, tmp_path / "partial")
    world, _ = simulate(spec)
    with xr.open_zarr(catalog.parent / "sensitivity.zarr") as ds:
        np.testing.assert_array_equal(ds.time.values, pd.to_datetime(["2018-01-01", "2018-02-01"]).values)
        bounds = np.array([["2018-01-20", "2018-02-01"], ["2018-02-01", "2018-02-11"]], "datetime64[ns]")
        np.testing.assert_array_equal(ds.time_bnds.values, bounds)  # the days averaged
        land = world.land_mask.values
        days = np.array([12.0, 10.0])
        weighted = (ds.gpp_sens_tas.values * days[:, None, None]).sum(axis=0) / days.sum()
        np.testing.assert_allclose(ds.gpp_sens_tas_mean.values[land], weighted[land], rtol=1e-5, atol=1e-9)


def test_demo_data_command_writes_the_sensitivities(tmp_path):
    from typer.testing import CliRunner

    from upscale.cli import app

    out = tmp_path / "world"
    result = CliRunner().invoke(app, ["demo-data", str(out), "--resolution", "10", "--start", "2018-01-01",
                                      "--end", "2018-01-20", "--sites", "3"])
    assert result.exit_code == 0, result.output
    with xr.open_zarr(out / "sensitivity.zarr") as ds:
        assert set(SENSITIVITY_UNITS) <= set(ds.data_vars)
    assert "sensitivity" in yaml.safe_load((out / "catalog.yaml").read_text())["entries"]


# ---------------------------------------------------------------------------------------------
# A regional world
# ---------------------------------------------------------------------------------------------


def test_bbox_world_is_a_cutout_of_the_global_grid(tmp_path):
    from global_land_mask import globe

    world, sites = simulate(BOX)
    np.testing.assert_allclose(world.lat.values, np.arange(37.5, 60, 5))
    np.testing.assert_allclose(world.lon.values, np.arange(-7.5, 30, 5))
    lat, lon = np.meshgrid(world.lat.values, world.lon.values, indexing="ij")
    np.testing.assert_array_equal(world.land_mask.values, globe.is_land(lat, lon))
    assert sites["LOCATION_LAT"].between(35, 60).all() and sites["LOCATION_LONG"].between(-10, 30).all()

    catalog = write_world(BOX, tmp_path / "box")
    files = sorted((catalog.parent / "era5").glob("*.nc"))
    assert [f.name for f in files] == ["era5_daily_2018.nc", "era5_daily_2019.nc"]
    parts = []
    for f in files:
        with xr.open_dataset(f) as ds:
            assert ds.sizes["valid_time"] == 31
            lon = ds.longitude.values
            np.testing.assert_allclose(lon, [2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 352.5, 357.5])
            assert np.all(np.diff(ds.latitude.values) < 0)
            parts.append(ds.t2m.assign_coords(longitude=(lon + 180) % 360 - 180)
                         .sortby("longitude").sortby("latitude").load())
    t2m = xr.concat(parts, "valid_time")
    np.testing.assert_allclose(t2m.values - 273.15, world.tas.values, atol=1e-4)
    assert "bbox [-10.0, 35.0, 30.0, 60.0]" in yaml.safe_load(catalog.read_text())["description"]


# ---------------------------------------------------------------------------------------------
# write_world safety and the cache
# ---------------------------------------------------------------------------------------------


def test_write_world_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        write_world(SMALL, out)
    assert (out / "mine.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_world(SMALL, empty) == empty.absolute() / "catalog.yaml"


def test_write_world_crash_leaves_nothing(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(demo, "_write_truth", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_world(SMALL, tmp_path / "world")
    assert list(tmp_path.iterdir()) == []


def test_cached_world_honours_env_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSCALE_CACHE", str(tmp_path / "cache"))
    catalog = cached_world(SMALL)
    assert catalog == (tmp_path / "cache" / f"demo-{SMALL.key()}" / "catalog.yaml").absolute()
    assert catalog.is_file()
    stamp = catalog.stat().st_mtime_ns
    time.sleep(0.01)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached world was regenerated")

    monkeypatch.setattr(demo, "write_world", must_not_run)
    assert cached_world(SMALL) == catalog
    assert catalog.stat().st_mtime_ns == stamp
    # An explicit cache_dir wins over the environment.
    monkeypatch.undo()
    monkeypatch.setenv("UPSCALE_CACHE", str(tmp_path / "cache"))
    other = cached_world(SMALL, cache_dir=tmp_path / "elsewhere")
    assert other.parent.parent == (tmp_path / "elsewhere").absolute()


def test_cached_world_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv("UPSCALE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    catalog = cached_world(SMALL)
    assert catalog == tmp_path / ".cache" / "upscale" / f"demo-{SMALL.key()}" / "catalog.yaml"


def test_cached_world_loses_a_race_gracefully(tmp_path, monkeypatch):
    target = tmp_path / f"demo-{SMALL.key()}"
    real_simulate = demo.simulate

    def simulate_while_another_process_finishes(spec):
        result = real_simulate(spec)
        target.mkdir()
        (target / "catalog.yaml").write_text("description: the other process's world\n")
        return result

    monkeypatch.setattr(demo, "simulate", simulate_while_another_process_finishes)
    catalog = cached_world(SMALL, cache_dir=tmp_path)
    assert catalog == target / "catalog.yaml"
    assert "other process" in catalog.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # temp folder cleaned up


# ---------------------------------------------------------------------------------------------
# The default world (slow: run with -m slow)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_world_is_plausible(tmp_path):
    catalog = write_world(DemoSpec(), tmp_path / "default")
    with xr.open_zarr(catalog.parent / "truth.zarr") as truth:
        lat = truth.lat.values
        res = 2.0
        area = (6371e3 ** 2 * np.deg2rad(res)
                * (np.sin(np.deg2rad(lat + res / 2)) - np.sin(np.deg2rad(lat - res / 2))))[:, None]
        years = truth.sizes["time"] / 365.25
        gpp = float((truth.gpp.sum("time").values * area).sum() / years / 1e15)  # Pg C / yr
        et = float((truth.et.sum("time").values * area).sum() / years / 1e15)  # 10^3 km3 / yr (mm m2 = 1e-3 m3)
    assert 60 < gpp < 250
    assert 40 < et < 130
