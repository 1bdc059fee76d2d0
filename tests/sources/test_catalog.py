"""Real-data catalogs: the templates in catalogs/, entry keys, regridding between entries, and a run
end to end on the US-AR1 file with an ERA5-format cube (site pixel checks: tests/test_features.py)."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
import yaml
from typer.testing import CliRunner

from upscale.cli import app
from upscale.errors import CatalogError
from upscale.sources.catalog import load_catalog
from upscale.variables import dewpoint_from_vapour_pressure, saturation_vapour_pressure

REPO = Path(__file__).resolve().parents[2]
CATALOGS = REPO / "catalogs"
US_AR1 = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "fluxnet"
    / "FLX_US-AR1_FLUXNET2015_SUBSET_DD_2009-2012_1-3.csv"
)
SITE = {"SITE_ID": "US-AR1", "LOCATION_LAT": 36.4267, "LOCATION_LONG": -99.42, "LOCATION_ELEV": 611, "IGBP": "GRA"}
# ERA5-format grid around the site: 1 degree cells, latitudes descending, longitudes 0..360
LAT_DESC = np.array([37.5, 36.5, 35.5])
LON_360 = np.array([259.5, 260.5, 261.5])  # -100.5, -99.5, -98.5


# --------------------------------------------------------------------------- templates and keys


@pytest.mark.parametrize(
    "name, drivers",
    [
        ("era5_cds.yaml", {"era5": "era5", "era5_daily": "era5"}),
        ("era5_arco.yaml", {"era5": "era5"}),
        ("modis.yaml", {"era5": "era5", "fapar": "geotiff", "lai": "geotiff", "ndvi": "geotiff", "pft": "geotiff"}),
        ("fluxnet2015.yaml", {"fluxnet": "fluxnet", "oneflux": "fluxnet", "ameriflux_base": "fluxnet"}),
        (
            "real.yaml",
            {"era5": "era5", "fapar": "geotiff", "ndvi": "geotiff", "static": "geotiff", "fluxnet": "fluxnet"},
        ),
    ],
)
def test_templates_load_without_touching_data(name, drivers, monkeypatch, tmp_path):
    monkeypatch.setenv("UPSCALE_DATA", str(tmp_path))
    catalog = load_catalog(CATALOGS / name)
    assert {n: e.driver for n, e in catalog.entries.items()} == drivers
    for entry in catalog.entries.values():
        assert entry.path.startswith(str(tmp_path)) or entry.path.startswith("gs://")


def test_arco_template_keeps_the_url_and_its_options():
    entry = load_catalog(CATALOGS / "era5_arco.yaml").entry("era5")
    assert entry.path == "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3"
    assert entry.options["storage_options"] == {"token": "anon"} and len(entry.options["bbox"]) == 4


@pytest.mark.parametrize(
    "entry, fragment",
    [
        ({"driver": "era5", "path": "x.nc", "scale_factor": 2}, "key 'scale_factor' does not apply to driver 'era5'"),
        ({"driver": "fluxnet", "path": "x.csv", "grid": "era5"}, "key 'grid' does not apply to driver 'fluxnet'"),
        ({"driver": "cube", "path": "x.zarr", "compsite_days": 8}, "did you mean 'composite_days'"),
    ],
)
def test_bad_entry_keys(tmp_path, entry, fragment):
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"entries": {"bad": entry}}))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert fragment in str(info.value) and "entries.bad" in str(info.value)


def test_grid_must_name_another_plain_entry(tmp_path):
    path = tmp_path / "catalog.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "entries": {
                    "a": {"driver": "cube", "path": "a.zarr", "grid": "a"},
                    "b": {"driver": "cube", "path": "b.zarr", "grid": "c"},
                    "c": {"driver": "cube", "path": "c.zarr", "grid": "a"},
                }
            }
        )
    )
    catalog = load_catalog(path)
    with pytest.raises(CatalogError, match="must name another entry"):
        catalog.open("a")
    with pytest.raises(CatalogError, match="names an entry that is regridded itself"):
        catalog.open("b")


# --------------------------------------------------------------------------- real data end to end


def write_era5_hourly_from_site(path: Path, raw: pd.DataFrame, start="2010-01-01", end="2010-12-31") -> None:
    """An hourly CDS-format cube whose pixel (36.5 N, 99.5 W) holds the site's own daily weather:
    temperature constant through each day, dew point from its VPD, radiation and rain spread evenly
    over the hours ending in the day. Other pixels are shifted a little; (37.5 N, 98.5 W) is all NaN."""
    daily = raw.assign(day=pd.to_datetime(raw["TIMESTAMP"].astype(str))).set_index("day")
    stamps = pd.date_range(start, pd.Timestamp(end) + pd.Timedelta(days=1), freq="h")
    same_day = daily.reindex(stamps.floor("D"), method="nearest")
    hour_ending = daily.reindex((stamps - pd.Timedelta(hours=1)).floor("D"), method="nearest")
    t_c = same_day["TA_F"].to_numpy()
    td_c = dewpoint_from_vapour_pressure(saturation_vapour_pressure(t_c) - same_day["VPD_F"].to_numpy())
    per_pixel = {
        "t2m": (t_c + 273.15, 1.0),
        "d2m": (td_c + 273.15, 1.0),
        "ssrd": (hour_ending["SW_IN_F"].to_numpy() * 3600.0, 0.0),
        "tp": (hour_ending["P_F"].to_numpy() / 24.0 / 1000.0, 0.0),
    }
    offsets = (np.arange(3)[:, None] - 1) * 0.5 + (np.arange(3)[None, :] - 1) * 0.25  # 0 at the site pixel
    data = {}
    for name, (series, scale) in per_pixel.items():
        cube = (
            series[:, None, None] + scale * offsets[None]
            if scale
            else series[:, None, None] * (1 + 0.1 * offsets[None])
        )
        cube = cube.astype("float32")
        cube[:, 0, 2] = np.nan
        data[name] = (
            ("valid_time", "latitude", "longitude"),
            cube,
            {"units": {"t2m": "K", "d2m": "K", "ssrd": "J m**-2", "tp": "m"}[name]},
        )
    xr.Dataset(data, coords={"valid_time": stamps, "latitude": LAT_DESC, "longitude": LON_360}).to_netcdf(
        path, engine="netcdf4"
    )


def write_land_cover(path: Path) -> None:
    """MCD12Q1-like IGBP map in EPSG:4326 at 0.25 degree: grassland (10) with a cropland (12) quarter."""
    x = -100.875 + 0.25 * np.arange(12)
    y = 37.875 - 0.25 * np.arange(12)
    classes = np.full((12, 12), 10, dtype="uint8")
    classes[4:8, 4:6] = 12  # half of the site's cell (36..37 N, 100..99 W) is cropland
    classes[0, 0] = 255  # fill
    da = xr.DataArray(classes, dims=("y", "x"), coords={"y": y, "x": x}).rio.write_crs("EPSG:4326")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        da.rio.write_nodata(255).rio.to_raster(path)


@pytest.fixture(scope="module")
def real_world(tmp_path_factory):
    """$UPSCALE_DATA for catalogs/real.yaml: the US-AR1 DD file, a site list, ERA5 and land cover."""
    if not US_AR1.is_file():
        pytest.fail(f"the shared US-AR1 file is missing: {US_AR1}")
    root = tmp_path_factory.mktemp("real")
    (root / "fluxnet").mkdir()
    shutil.copy(US_AR1, root / "fluxnet" / US_AR1.name)
    pd.DataFrame([SITE]).to_csv(root / "fluxnet" / "sites.csv", index=False)
    (root / "era5" / "hourly").mkdir(parents=True)
    raw = pd.read_csv(US_AR1, na_values=[-9999])
    write_era5_hourly_from_site(root / "era5" / "hourly" / "era5_hourly_2010.nc", raw)
    (root / "modis" / "MCD12Q1").mkdir(parents=True)
    write_land_cover(root / "modis" / "MCD12Q1" / "MCD12Q1_LC_Type1_2010.tif")
    return root, raw


def test_real_catalog_opens_era5_and_pft_fractions(real_world, monkeypatch):
    root, _ = real_world
    monkeypatch.setenv("UPSCALE_DATA", str(root))
    catalog = load_catalog(CATALOGS / "real.yaml")
    era5 = catalog.open("era5")
    assert era5.sizes == {"time": 365, "lat": 3, "lon": 3}
    static = catalog.open("static")
    assert sorted(static.data_vars) == ["pft_CRO", "pft_GRA"]
    assert float(static["pft_CRO"].sel(lat=36.5, lon=-99.5)) == pytest.approx(8 / 16)
    assert float(static["pft_GRA"].sel(lat=37.5, lon=-100.5)) == pytest.approx(1.0)  # 15 valid of 16


def test_real_data_recipe_trains_and_applies_end_to_end(real_world, tmp_path, monkeypatch):
    root, raw = real_world
    monkeypatch.setenv("UPSCALE_DATA", str(root))
    recipe = {
        "name": "us-ar1",
        "catalog": str(CATALOGS / "real.yaml"),
        "targets": ["gpp", "et"],
        "predictors": {"era5": ["tas", "vpd", "rsds", "rsds_pot", "pr"], "static": ["pft_GRA", "pft_CRO"]},
        "sites": {"source": "fluxnet", "qc_min": 0.5},
        "model": {"type": "mlp", "hidden": [16]},
        "training": {"ensemble": 1, "epochs": 3, "patience": 2, "batch_size": 128, "seed": 0, "site_fraction": 1.0},
        "validation": {"scheme": "none"},
        "apply": {"tile_lat": 3, "tile_lon": 3, "time_chunk": 365},
        "output": {"run_dir": str(tmp_path / "run")},
        "cluster": {"type": "synchronous"},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    sites = xr.open_zarr(tmp_path / "run" / "sites.zarr").load()
    assert sites.sizes["time"] == 365 and sites.site.values.tolist() == ["US-AR1"]
    # the chosen pixel is (36.5 N, 99.5 W); distance by hand (haversine, R = 6371 km)
    p1, p2 = math.radians(36.4267), math.radians(36.5)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(-0.08) / 2) ** 2
    assert float(sites["distance_km"].item()) == pytest.approx(2 * 6371.0 * math.asin(math.sqrt(h)), rel=1e-5)
    assert (float(sites["pixel_lat"].item()), float(sites["pixel_lon"].item())) == (36.5, -99.5)
    # ERA5 read back at the site pixel gives the site's own daily weather
    days = raw["TIMESTAMP"].astype(str).between("20100101", "20101231").to_numpy()
    np.testing.assert_allclose(sites["tas"].values[0], raw["TA_F"].to_numpy()[days], atol=1e-3)  # float32 K
    np.testing.assert_allclose(sites["rsds"].values[0], raw["SW_IN_F"].to_numpy()[days], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(sites["pr"].values[0], raw["P_F"].to_numpy()[days], rtol=1e-5, atol=1e-5)
    vpd_ok = np.isfinite(raw["VPD_F"].to_numpy()[days])
    np.testing.assert_allclose(sites["vpd"].values[0][vpd_ok], raw["VPD_F"].to_numpy()[days][vpd_ok], atol=2e-3)
    product = xr.open_zarr(tmp_path / "run" / "product.zarr")
    gpp = product["gpp"].load()
    assert gpp.sizes["time"] == 365
    finite = np.isfinite(gpp.values).all(axis=0)
    assert finite.sum() == 8 and not finite[gpp.lat.values == 37.5][:, gpp.lon.values == -98.5].any()


@pytest.mark.parametrize(
    "site_row, fragment",
    [
        ({**SITE, "LOCATION_LAT": 50.0, "LOCATION_LONG": 10.0}, "sites outside the predictor cubes"),
        ({"SITE_ID": "US-AR1", "LOCATION_LAT": "", "LOCATION_LONG": ""}, "sites without coordinates: US-AR1"),
    ],
)
def test_validate_refuses_sites_the_cube_cannot_serve(real_world, tmp_path, site_row, fragment):
    root, _ = real_world
    pd.DataFrame([site_row]).to_csv(tmp_path / "sites.csv", index=False)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        yaml.safe_dump(
            {
                "entries": {
                    "era5": {"driver": "era5", "path": str(root / "era5" / "hourly" / "era5_hourly_*.nc")},
                    "fluxnet": {
                        "driver": "fluxnet",
                        "path": str(root / "fluxnet" / US_AR1.name),
                        "site_list": str(tmp_path / "sites.csv"),
                    },
                }
            }
        )
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "catalog": str(catalog),
                "targets": ["gpp"],
                "predictors": {"era5": ["tas", "rsds"]},
                "validation": {"scheme": "none"},
                "output": {"run_dir": str(tmp_path / "run")},
            }
        )
    )
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split())


def test_fluxnet_entry_min_coverage_reaches_the_reader(tmp_path):
    from tests.sources.fluxnet.builders import hh_frame

    frame = hh_frame()
    frame.loc[48:67, ["LE_F_MDS", "LE_F_MDS_QC"]] = -9999  # day 2: 28 of 48 LE records left (0.583)
    frame.to_csv(tmp_path / "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv", index=False)
    pd.DataFrame([{**SITE, "SITE_ID": "US-Hhh"}]).to_csv(tmp_path / "sites.csv", index=False)
    entries = {
        name: {"driver": "fluxnet", "path": "FLX_*_HH_*.csv", "site_list": "sites.csv", **extra}
        for name, extra in (("strict", {}), ("loose", {"min_coverage": 0.5}))
    }
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump({"entries": entries}))
    catalog = load_catalog(tmp_path / "catalog.yaml")
    assert np.isnan(catalog.open_sites("strict", qc_min=0)["le"].values[0, 1])
    assert float(catalog.open_sites("loose", qc_min=0)["le"].values[0, 1]) == pytest.approx(100.0)
