"""The site-table reader: CSV, Parquet and NetCDF alike, column mappings, units, time stamps, bad tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.sources.fluxnet.builders import error_of
from upscale.sources.sitetable import DAILY, IRREGULAR, read_site_table

VARIABLES = ["tas", "vpd", "rsds", "pr", "gpp", "et"]


@pytest.fixture(scope="module")
def rows(site_table) -> pd.DataFrame:
    return pd.read_csv(site_table["daily"], parse_dates=["time"])


def read(path, site_table, variables=VARIABLES, **kwargs):
    return read_site_table(path, site_table["site_list"], variables, **kwargs)


def test_a_daily_csv_table_reads_to_the_site_files_values(site_table, rows):
    ds = read(site_table["daily"], site_table)
    assert ds.attrs["time_sampling"] == DAILY
    assert ds.sizes == {"site": 12, "time": 181}  # the tiny world: 12 sites, 2018-01-01..06-30
    site = ds.site.values[3]
    mine = rows[rows["site"] == site].set_index("time")
    np.testing.assert_allclose(ds["gpp"].sel(site=site).to_series().reindex(mine.index), mine["gpp"], rtol=1e-6)
    assert ds["et"].attrs["units"] == "kg m-2 d-1" and ds["gpp"].dtype == np.float32
    sites = pd.read_csv(site_table["site_list"]).set_index("SITE_ID")
    assert ds.lat.sel(site=site) == pytest.approx(sites.loc[site, "LOCATION_LAT"])
    assert str(ds.igbp.sel(site=site).values) == sites.loc[site, "IGBP"]


def test_csv_parquet_and_netcdf_read_alike(site_table, rows, tmp_path):
    renamed = rows.rename(columns={"site": "SITE_ID", "time": "date", "gpp": "GPP_NT"})
    csv = tmp_path / "t.csv"
    renamed.to_csv(csv, index=False)
    parquet = tmp_path / "t.parquet"
    renamed.to_parquet(parquet)
    netcdf = tmp_path / "t.nc"
    table = renamed.to_xarray()
    table["GPP_NT"].attrs["units"] = "gC m-2 d-1"  # spelled otherwise, the same units
    table.to_netcdf(netcdf)
    columns = {"gpp": "GPP_NT", "time": "date"}  # SITE_ID is found by itself
    expected = read(site_table["daily"], site_table)
    for path in (csv, parquet, netcdf):
        got = read(path, site_table, columns=columns)
        xr.testing.assert_identical(got[VARIABLES].drop_attrs(), expected[VARIABLES].drop_attrs())
        assert got["gpp"].attrs["source_column"] == "GPP_NT"


def test_irregular_time_stamps_keep_their_stamps(site_table):
    ds = read(site_table["irregular"], site_table)
    assert ds.attrs["time_sampling"] == IRREGULAR
    assert ds.sizes["time"] == 60 and (ds.time.dt.hour == 10).all() and (ds.time.dt.minute == 30).all()


def test_dates_every_eighth_day_are_irregular_and_a_few_gaps_are_not(rows, site_table, tmp_path):
    sparse, gappy = tmp_path / "sparse.csv", tmp_path / "gappy.csv"
    rows[rows["time"].dt.day_of_year % 8 == 0].to_csv(sparse, index=False)
    rows[rows["time"].dt.day_of_year % 10 != 0].to_csv(gappy, index=False)
    assert read(sparse, site_table).attrs["time_sampling"] == IRREGULAR
    daily = read(gappy, site_table)
    assert daily.attrs["time_sampling"] == DAILY and daily.sizes["time"] == 181
    assert np.isnan(daily["gpp"].sel(time="2018-01-10").values).all()  # the dropped days are NaN days


def write(frame: pd.DataFrame, path, **renames):
    frame.rename(columns=renames).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "change, kwargs, expected",
    [
        (lambda f: f.drop(columns="vpd"), {}, "the site table has no column 'vpd'"),
        (lambda f: f, {"columns": {"gpp": "GPP"}}, "maps 'gpp' to the column 'GPP', which the table does not have"),
        (lambda f: f, {"columns": {"gross": "gpp"}}, "sites.columns maps 'gross', which is not a canonical name"),
        (lambda f: f.rename(columns={"tas": "tas [K]"}), {}, "column 'tas' (tas) is in 'K', upscale expects 'degC'"),
        (lambda f: f.assign(tas=f["tas"] + 273.15), {}, "values of tas lie outside -90..60 degC"),
        (lambda f: f.assign(gpp=f["gpp"] * 40), {}, "are they in other units?"),
        (lambda f: pd.concat([f, f.iloc[[5]]]), {}, "duplicate rows: site AU-Jh2 at 2018-01-06"),
        (lambda f: f.assign(time=f["time"].astype(str).where(f.index != 7, "day 8")), {}, "'day 8' on data row 8"),
        (lambda f: f.assign(pr=f["pr"].astype(str).where(f.index != 2, "wet")), {}, "non-numeric value 'wet'"),
        (lambda f: f, {"sites": ["XX-Nop"]}, "sites.include names sites the table does not have: XX-Nop"),
    ],
    ids=[
        "missing column",
        "mapped to nothing",
        "unknown name",
        "declared units",
        "kelvin",
        "umol",
        "duplicates",
        "bad time",
        "text value",
        "unknown site",
    ],
)
def test_bad_tables_are_refused_naming_what_and_where(rows, site_table, tmp_path, change, kwargs, expected):
    path = write(change(rows.copy()), tmp_path / "bad.csv")
    assert expected in error_of(read, path, site_table, **kwargs)


def test_fluxnet_missing_codes_are_missing(rows, site_table, tmp_path):
    path = write(rows.assign(tas=rows["tas"].where(rows.index % 5 != 0, -9999)), tmp_path / "m.csv")
    got = read(path, site_table)
    assert np.isnan(got["tas"].sel(site="AU-Jh2", time="2018-01-01").values)
    before = int(np.isnan(read(site_table["daily"], site_table)["tas"].values).sum())
    masked = int(((rows.index % 5 == 0) & rows["tas"].notna()).sum())
    assert int(np.isnan(got["tas"].values).sum()) == before + masked


def test_declared_units_spelled_otherwise_are_accepted(rows, site_table, tmp_path):
    path = write(rows, tmp_path / "u.csv", rsds="rsds [W/m2]", et="et (mm/day)", gpp="gpp [g C m-2 day-1]")
    got = read(path, site_table)
    np.testing.assert_array_equal(got["rsds"].values, read(site_table["daily"], site_table)["rsds"].values)


def test_a_site_missing_from_the_site_list_is_refused(rows, site_table, tmp_path):
    path = write(rows.replace({"site": {"AU-Jh2": "AU-New"}}), tmp_path / "new.csv")
    assert "sites missing from the site list: AU-New" in error_of(read, path, site_table)


@pytest.mark.parametrize("name, expected", [("t.xlsx", "from its suffix '.xlsx'"), ("none.csv", "not found")])
def test_unknown_formats_and_missing_files(site_table, tmp_path, name, expected):
    (tmp_path / "t.xlsx").write_bytes(b"PK")
    assert expected in error_of(read, tmp_path / name, site_table)
