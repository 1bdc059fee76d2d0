"""FLUXNET2015 DD reader: the real US-AR1 file, synthetic files for every rule and error."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from upscale.errors import DataError
from upscale.sources import fluxnet
from upscale.variables import VARIABLES, le_to_et, umol_co2_to_gc_per_day

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
US_AR1 = SHARED_DATA / "fluxnet" / "FLX_US-AR1_FLUXNET2015_SUBSET_DD_2009-2012_1-3.csv"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def real_file() -> Path:
    if not US_AR1.is_file():
        pytest.skip(f"real FLUXNET2015 file not available: {US_AR1} (the shared data folder is absent)")
    return US_AR1


@pytest.fixture
def raw_real(real_file) -> pd.DataFrame:
    return pd.read_csv(real_file, na_values=[-9999])


def dd_frame(start: str = "2010-01-01", days: int = 10, seed: int = 0) -> pd.DataFrame:
    """A small, fully valid FLUXNET2015 DD table (all QC = 1)."""
    rng = np.random.default_rng(seed)
    time = pd.date_range(start, periods=days, freq="D")
    ones = np.ones(days)
    return pd.DataFrame({
        "TIMESTAMP": time.strftime("%Y%m%d"),
        "TA_F": rng.uniform(-5, 25, days).round(3), "TA_F_QC": ones,
        "SW_IN_POT": rng.uniform(100, 450, days).round(3),
        "SW_IN_F": rng.uniform(20, 300, days).round(3), "SW_IN_F_QC": ones,
        "VPD_F": rng.uniform(0, 20, days).round(3), "VPD_F_QC": ones,
        "P_F": rng.uniform(0, 5, days).round(3), "P_F_QC": ones,
        "LE_F_MDS": rng.uniform(5, 150, days).round(3), "LE_F_MDS_QC": ones,
        "LE_CORR": rng.uniform(5, 150, days).round(3),
        "NEE_VUT_REF_QC": ones,
        "GPP_NT_VUT_REF": rng.uniform(0, 12, days).round(4),
        "GPP_DT_VUT_REF": rng.uniform(0, 12, days).round(4),
    })


def write_dd(directory: Path, frame: pd.DataFrame, site: str = "US-Aaa", name: str | None = None) -> Path:
    """Write ``frame`` as a FLUXNET2015 SUBSET DD file named after its site and years."""
    if name is None:
        years = frame["TIMESTAMP"].astype(str).str[:4]
        name = f"FLX_{site}_FLUXNET2015_SUBSET_DD_{years.iloc[0]}-{years.iloc[-1]}_1-4.csv"
    path = directory / name
    frame.to_csv(path, index=False)
    return path


def write_site_list(directory: Path, rows: list[dict], name: str = "sites.csv") -> Path:
    path = directory / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- the real US-AR1 file


def test_real_file_reads_1461_days(real_file):
    ds = fluxnet.read(real_file, qc_min=0.5)
    assert dict(ds.sizes) == {"site": 1, "time": 1461}
    assert ds["time"].dtype == np.dtype("datetime64[ns]")
    assert str(ds["time"].values[0])[:10] == "2009-01-01" and str(ds["time"].values[-1])[:10] == "2012-12-31"
    assert ds["site"].values.tolist() == ["US-AR1"]
    for name in fluxnet.VARIABLE_ORDER:
        assert ds[name].dims == ("site", "time")
        assert ds[name].dtype == np.float32
        assert ds[name].attrs["units"] == VARIABLES[name].units
        assert ds[name].attrs["long_name"] == VARIABLES[name].long_name
    assert ds.attrs["qc_min"] == 0.5
    assert ds.attrs["gpp_partitioning"] == "NT" and ds.attrs["le_variant"] == "F_MDS"
    assert ds.attrs["source_files"] == [str(real_file.resolve())]
    assert np.isnan(ds["lat"].item()) and ds["igbp"].item() == ""


@pytest.mark.parametrize("qc_min", [0.5, 0.8])
def test_real_gpp_and_le_equal_raw_where_qc_passes(real_file, raw_real, qc_min):
    ds = fluxnet.read(real_file, qc_min=qc_min).isel(site=0)
    gpp_ok = (raw_real["NEE_VUT_REF_QC"] >= qc_min).to_numpy()
    le_ok = (raw_real["LE_F_MDS_QC"] >= qc_min).to_numpy()
    np.testing.assert_array_equal(ds["gpp"].values[gpp_ok], raw_real["GPP_NT_VUT_REF"].to_numpy(np.float32)[gpp_ok])
    assert np.isnan(ds["gpp"].values[~gpp_ok]).all()
    np.testing.assert_array_equal(ds["le"].values[le_ok], raw_real["LE_F_MDS"].to_numpy(np.float32)[le_ok])
    assert np.isnan(ds["le"].values[~le_ok]).all()
    assert np.array_equal(np.isnan(ds["et"].values), np.isnan(ds["le"].values))
    # Survival on US-AR1 (counted from the raw QC columns, 1461 days):
    # qc_min=0.5 keeps 1228 GPP / 1230 LE days, qc_min=0.8 keeps 1178 / 1216.
    expected = {0.5: (1228, 1230), 0.8: (1178, 1216)}[qc_min]
    assert (int(ds["gpp"].notnull().sum()), int(ds["le"].notnull().sum())) == expected


def test_real_et_by_hand(real_file, raw_real):
    ds = fluxnet.read(real_file, qc_min=0.0).isel(site=0)
    # (date, TA_F, LE_F_MDS) copied from the file; lambda = (2.501 - 0.002361 T) 1e6 J kg-1.
    rows = [("2009-01-01", 2.803, 67.1459), ("2010-06-15", 23.661, 158.344), ("2012-11-20", 12.282, 13.9438)]
    for date, ta, le in rows:
        raw = raw_real[raw_real["TIMESTAMP"] == int(date.replace("-", ""))].iloc[0]
        assert (raw["TA_F"], raw["LE_F_MDS"]) == (ta, le)  # the numbers above are the file's
        lam = (2.501 - 0.002361 * ta) * 1e6
        assert float(ds["et"].sel(time=date)) == pytest.approx(le * 86400.0 / lam, rel=1e-6)
    assert float(ds["et"].sel(time="2010-06-15")) == pytest.approx(5.59520, abs=1e-4)


@pytest.mark.parametrize("gpp, column", [("NT", "GPP_NT_VUT_REF"), ("DT", "GPP_DT_VUT_REF")])
def test_real_yearly_gpp_sums(real_file, raw_real, gpp, column):
    ds = fluxnet.read(real_file, qc_min=0.0, gpp=gpp)
    ours = ds["gpp"].isel(site=0).astype("float64").groupby("time.year").sum().to_series()
    direct = raw_real.groupby(raw_real["TIMESTAMP"] // 10000)[column].sum()
    assert ours.index.tolist() == [2009, 2010, 2011, 2012]
    np.testing.assert_allclose(ours.to_numpy(), direct.to_numpy(), rtol=1e-6)
    assert ds.attrs["gpp_partitioning"] == gpp


def test_real_le_corr_variant(real_file, raw_real):
    ds = fluxnet.read(real_file, qc_min=0.0, le="CORR").isel(site=0)
    np.testing.assert_array_equal(ds["le"].values, raw_real["LE_CORR"].to_numpy(np.float32))
    assert ds.attrs["le_variant"] == "CORR"


def test_real_site_list_coords(real_file, tmp_path):
    site_list = write_site_list(tmp_path, [
        {"SITE_ID": "US-AR1", "LOCATION_LAT": 36.4267, "LOCATION_LONG": -99.42, "LOCATION_ELEV": 611, "IGBP": "GRA"},
        {"SITE_ID": "DE-Tha", "LOCATION_LAT": 50.9626, "LOCATION_LONG": 13.5651, "LOCATION_ELEV": 385, "IGBP": "ENF"},
    ])
    ds = fluxnet.read(real_file, site_list=site_list)
    assert ds["lat"].item() == pytest.approx(36.4267)
    assert ds["lon"].item() == pytest.approx(-99.42)
    assert ds["elevation"].item() == pytest.approx(611.0)
    assert ds["igbp"].item() == "GRA"


# --------------------------------------------------------------------------- synthetic files: values


def test_missing_codes_become_nan(tmp_path):
    frame = dd_frame().astype({"GPP_NT_VUT_REF": object, "TA_F": object})
    frame.loc[1, "GPP_NT_VUT_REF"] = -9999
    frame.loc[2, "GPP_NT_VUT_REF"] = "-9999.0"
    frame.loc[3, "GPP_NT_VUT_REF"] = -9990.5
    frame.loc[4, "VPD_F"] = -9999
    frame.loc[5, "TA_F"] = "-9999.000"
    ds = fluxnet.read(write_dd(tmp_path, frame), qc_min=0.0).isel(site=0)
    assert np.isnan(ds["gpp"].values[[1, 2, 3]]).all()
    assert np.isfinite(ds["gpp"].values[[0, 4, 5]]).all()
    assert np.isnan(ds["vpd"].values[4]) and np.isnan(ds["tas"].values[5])
    assert int(ds["gpp"].isnull().sum()) == 3


def test_qc_masking_per_variable(tmp_path):
    frame = dd_frame(days=10)
    bad_rows = {"TA_F_QC": 0, "VPD_F_QC": 1, "SW_IN_F_QC": 2, "P_F_QC": 3, "LE_F_MDS_QC": 4, "NEE_VUT_REF_QC": 5}
    for column, row in bad_rows.items():
        frame.loc[row, column] = 0.49
    frame.loc[6, ["TA_F_QC", "LE_F_MDS_QC", "NEE_VUT_REF_QC"]] = 0.5  # exactly qc_min: kept
    frame.loc[7, "NEE_VUT_REF_QC"] = -9999  # unknown quality: masked
    path = write_dd(tmp_path, frame)
    expected_nan = {"tas": [0], "vpd": [1], "rsds": [2], "pr": [3], "le": [4], "et": [4], "gpp": [5, 7], "rsds_pot": []}
    for gpp, le in [("NT", "F_MDS"), ("DT", "CORR")]:
        ds = fluxnet.read(path, qc_min=0.5, gpp=gpp, le=le).isel(site=0)
        for name, rows in expected_nan.items():
            assert np.flatnonzero(np.isnan(ds[name].values)).tolist() == rows, (name, gpp, le)
    # with qc_min = 0 nothing is masked
    ds0 = fluxnet.read(path, qc_min=0.0).isel(site=0)
    assert all(int(ds0[name].isnull().sum()) == 0 for name in expected_nan)
    # unmasked values are the file's values, as float32
    np.testing.assert_array_equal(ds0["rsds"].values, frame["SW_IN_F"].to_numpy(np.float32))


def test_et_uses_gap_filled_ta_whatever_its_qc_and_20c_where_missing(tmp_path):
    frame = dd_frame(days=4).astype({"TA_F": object})
    frame.loc[0, ["TA_F", "LE_F_MDS"]] = [10.0, 100.0]
    frame.loc[1, ["TA_F", "TA_F_QC", "LE_F_MDS"]] = [30.0, 0.0, 100.0]  # bad TA QC: tas masked, ET still uses 30 degC
    frame.loc[2, ["TA_F", "LE_F_MDS"]] = [-9999, 100.0]  # no TA at all: 20 degC
    ds = fluxnet.read(write_dd(tmp_path, frame), qc_min=0.8).isel(site=0)
    et = ds["et"].values
    assert et[0] == pytest.approx(100.0 * 86400 / ((2.501 - 0.002361 * 10.0) * 1e6), rel=1e-6)  # 3.48754
    assert np.isnan(ds["tas"].values[1])
    assert et[1] == pytest.approx(100.0 * 86400 / ((2.501 - 0.002361 * 30.0) * 1e6), rel=1e-6)
    assert et[2] == pytest.approx(100.0 * 86400 / ((2.501 - 0.002361 * 20.0) * 1e6), rel=1e-6)
    assert et[0] == pytest.approx(3.48754, abs=1e-4)


def test_two_sites_of_different_periods_align_with_nan_padding(tmp_path):
    a = dd_frame("2010-01-01", 10, seed=1)
    b = dd_frame("2010-01-06", 15, seed=2)
    write_dd(tmp_path, a, site="US-Aaa")
    write_dd(tmp_path, b, site="DE-Bbb")
    ds = fluxnet.read(str(tmp_path / "FLX_*_DD_*.csv"), qc_min=0.5)
    assert ds["site"].values.tolist() == ["DE-Bbb", "US-Aaa"]
    assert ds.sizes["time"] == 20
    assert str(ds["time"].values[0])[:10] == "2010-01-01" and str(ds["time"].values[-1])[:10] == "2010-01-20"
    us = ds["gpp"].sel(site="US-Aaa").values
    de = ds["gpp"].sel(site="DE-Bbb").values
    np.testing.assert_array_equal(us[:10], a["GPP_NT_VUT_REF"].to_numpy(np.float32))
    assert np.isnan(us[10:]).all()
    assert np.isnan(de[:5]).all()
    np.testing.assert_array_equal(de[5:], b["GPP_NT_VUT_REF"].to_numpy(np.float32))
    assert len(ds.attrs["source_files"]) == 2


def test_files_of_one_site_are_joined_with_gaps_as_nan(tmp_path):
    first = write_dd(tmp_path, dd_frame("2010-12-25", 7, seed=3))  # to 2010-12-31
    second = write_dd(tmp_path, dd_frame("2011-01-04", 5, seed=4))  # gap 2011-01-01..03
    ds = fluxnet.read([first, second], qc_min=0.5)
    assert ds.sizes == {"site": 1, "time": 15}
    gpp = ds["gpp"].isel(site=0).values
    assert np.isnan(gpp[7:10]).all() and np.isfinite(gpp[:7]).all() and np.isfinite(gpp[10:]).all()


def test_site_list_alternative_headers(tmp_path):
    write_dd(tmp_path, dd_frame(), site="US-Aaa")
    write_dd(tmp_path, dd_frame(), site="DE-Bbb")
    site_list = write_site_list(tmp_path, [
        {"Site": "US-Aaa", "Lat": 40.5, "LON": -105.25, "Elevation": 1500, "igbp": "ENF"},
        {"Site": "DE-Bbb", "Lat": 51.0, "LON": 10.0, "Elevation": -9999, "igbp": ""},
    ])
    ds = fluxnet.read(str(tmp_path / "FLX_*.csv"), site_list=site_list)
    assert ds["lat"].values.tolist() == [51.0, 40.5]  # sorted sites: DE-Bbb, US-Aaa
    assert ds["lon"].values.tolist() == [10.0, -105.25]
    assert np.isnan(ds["elevation"].values[0]) and ds["elevation"].values[1] == 1500.0
    assert ds["igbp"].values.tolist() == ["", "ENF"]


def test_site_missing_from_site_list(tmp_path):
    write_dd(tmp_path, dd_frame(), site="US-Aaa")
    write_dd(tmp_path, dd_frame(), site="DE-Bbb")
    site_list = write_site_list(tmp_path, [{"SITE_ID": "US-Aaa", "LOCATION_LAT": 1, "LOCATION_LONG": 2}],
                                name="my_sites.csv")
    message = error_of(fluxnet.read, str(tmp_path / "FLX_*.csv"), site_list=site_list)
    assert "DE-Bbb" in message and "my_sites.csv" in message and "site list" in message
    # ... but leaving the site out with sites= works
    ds = fluxnet.read(str(tmp_path / "FLX_*.csv"), site_list=site_list, sites=["US-Aaa"])
    assert ds["site"].values.tolist() == ["US-Aaa"] and ds["lon"].item() == 2.0


def test_site_list_without_latitude_column(tmp_path):
    path = write_dd(tmp_path, dd_frame())
    site_list = write_site_list(tmp_path, [{"SITE_ID": "US-Aaa", "y": 1, "LOCATION_LONG": 2}])
    message = error_of(fluxnet.read, path, site_list=site_list)
    assert "sites.csv" in message and "lat" in message


def test_sites_filter_and_unknown_sites(tmp_path):
    write_dd(tmp_path, dd_frame(), site="US-Aaa")
    write_dd(tmp_path, dd_frame(), site="DE-Bbb")
    pattern = str(tmp_path / "FLX_*.csv")
    assert fluxnet.read(pattern, sites=["US-Aaa"])["site"].values.tolist() == ["US-Aaa"]
    message = error_of(fluxnet.read, pattern, sites=["US-Aab", "XX-Zzz"])
    assert "US-Aab" in message and "did you mean US-Aaa" in message and "XX-Zzz" in message


def test_missing_optional_met_column_is_all_nan_with_warning(tmp_path, caplog):
    path = write_dd(tmp_path, dd_frame().drop(columns=["VPD_F", "VPD_F_QC"]))
    with caplog.at_level(logging.WARNING, logger="upscale.sources.fluxnet"):
        ds = fluxnet.read(path)
    assert ds["vpd"].isnull().all()
    assert any("VPD_F" in r.getMessage() and path.name in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- synthetic files: errors


def test_file_not_found_and_empty_glob(tmp_path):
    missing = tmp_path / "FLX_US-Aaa_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv"
    message = error_of(fluxnet.read, missing)
    assert "not found" in message and missing.name in message
    message = error_of(fluxnet.read, [str(tmp_path / "nothing_*.csv")])
    assert "matches no file" in message and "nothing_*.csv" in message
    assert "no FLUXNET files" in error_of(fluxnet.read, [])
    assert "directory" in error_of(fluxnet.read, tmp_path)


def test_unreadable_files(tmp_path):
    binary = tmp_path / "FLX_US-Aaa_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00garbage")
    message = error_of(fluxnet.read, binary)
    assert binary.name in message and "cannot read" in message
    ragged = tmp_path / "FLX_US-Bbb_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv"
    ragged.write_text("TIMESTAMP,TA_F\n20100101,1.0\n20100102,1.0,3,4,5\n")
    message = error_of(fluxnet.read, ragged)
    assert ragged.name in message and "cannot read" in message
    empty = tmp_path / "FLX_US-Ccc_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv"
    empty.write_text("")
    assert "empty" in error_of(fluxnet.read, empty)
    header_only = write_dd(tmp_path, dd_frame().iloc[:0], name="FLX_US-Ddd_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv")
    assert "no data rows" in error_of(fluxnet.read, header_only)


def test_no_timestamp_column(tmp_path):
    path = write_dd(tmp_path, dd_frame().rename(columns={"TIMESTAMP": "DATE"}),
                    name="FLX_US-Aaa_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv")
    message = error_of(fluxnet.read, path)
    assert "no TIMESTAMP column" in message and path.name in message


@pytest.mark.parametrize("bad", ["2010-01-03", "201001030000", "20100230", "2010013"])
def test_timestamp_not_yyyymmdd(tmp_path, bad):
    frame = dd_frame()
    frame.loc[2, "TIMESTAMP"] = bad
    path = write_dd(tmp_path, frame, name="FLX_US-Aaa_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv")
    message = error_of(fluxnet.read, path)
    assert "YYYYMMDD" in message and bad in message and path.name in message and "line 4" in message


def test_duplicate_timestamps(tmp_path):
    frame = dd_frame()
    frame.loc[5, "TIMESTAMP"] = frame.loc[4, "TIMESTAMP"]
    path = write_dd(tmp_path, frame)
    message = error_of(fluxnet.read, path)
    assert "duplicate" in message and "20100105" in message and path.name in message


def test_unordered_timestamps(tmp_path):
    frame = dd_frame()
    frame.loc[[3, 4], "TIMESTAMP"] = frame.loc[[4, 3], "TIMESTAMP"].to_numpy()
    path = write_dd(tmp_path, frame)
    message = error_of(fluxnet.read, path)
    assert "increasing order" in message and path.name in message


def test_overlapping_files_of_one_site(tmp_path):
    first = write_dd(tmp_path, dd_frame("2010-01-01", 10), name="FLX_US-Aaa_FLUXNET2015_SUBSET_DD_2010-2010_1-3.csv")
    second = write_dd(tmp_path, dd_frame("2010-01-08", 10), name="FLX_US-Aaa_FLUXNET2015_FULLSET_DD_2010-2010_1-4.csv")
    message = error_of(fluxnet.read, [first, second])
    assert "overlap" in message and "US-Aaa" in message
    assert first.name in message and second.name in message and "2010-01-08" in message


@pytest.mark.parametrize("qc_column, target", [("NEE_VUT_REF_QC", "gpp"), ("LE_F_MDS_QC", "et")])
def test_target_all_missing_after_qc(tmp_path, qc_column, target):
    frame = dd_frame()
    frame[qc_column] = 0.3
    path = write_dd(tmp_path, frame, site="US-Qcx")
    message = error_of(fluxnet.read, path, qc_min=0.5)
    assert "US-Qcx" in message and target in message and path.name in message
    assert "qc_min=0.5" in message and "Lower qc_min below 0.5" in message and "drop site US-Qcx" in message
    assert fluxnet.read(path, qc_min=0.25)[target].notnull().all()  # lowering qc_min helps


@pytest.mark.parametrize("drop, kwargs", [
    ("GPP_NT_VUT_REF", {}), ("GPP_DT_VUT_REF", {"gpp": "DT"}),
    ("LE_F_MDS", {}), ("LE_CORR", {"le": "CORR"}),
])
def test_missing_target_column(tmp_path, drop, kwargs):
    path = write_dd(tmp_path, dd_frame().drop(columns=[drop]))
    message = error_of(fluxnet.read, path, **kwargs)
    assert drop in message and path.name in message and "missing" in message


def test_missing_qc_column_needs_qc_min_zero(tmp_path):
    path = write_dd(tmp_path, dd_frame().drop(columns=["NEE_VUT_REF_QC"]))
    message = error_of(fluxnet.read, path, qc_min=0.5)
    assert "NEE_VUT_REF_QC" in message and path.name in message and "qc_min=0" in message
    assert fluxnet.read(path, qc_min=0)["gpp"].notnull().all()


def test_qc_outside_unit_interval(tmp_path):
    frame = dd_frame()
    frame.loc[3, "LE_F_MDS_QC"] = 2
    path = write_dd(tmp_path, frame)
    message = error_of(fluxnet.read, path)
    assert "LE_F_MDS_QC" in message and "between 0 and 1" in message and path.name in message


def test_non_numeric_value(tmp_path):
    frame = dd_frame().astype({"P_F": object})
    frame.loc[6, "P_F"] = "1.2.3"
    path = write_dd(tmp_path, frame)
    message = error_of(fluxnet.read, path)
    assert "'1.2.3'" in message and "P_F" in message and "line 8" in message and path.name in message


def test_other_formats_are_refused(tmp_path):
    hh = pd.DataFrame({"TIMESTAMP_START": ["201001010000"], "TIMESTAMP_END": ["201001010030"], "TA_F": [1.0]})
    # a DD name with a half-hourly header
    dd_named = tmp_path / "FLX_US-Bbb_FLUXNET2015_FULLSET_DD_2010-2010_1-4.csv"
    hh.to_csv(dd_named, index=False)
    message = error_of(fluxnet.read, dd_named)
    assert "no TIMESTAMP column" in message and "TIMESTAMP_START" in message
    # an unknown name with a half-hourly header
    odd = tmp_path / "tower_halfhours.csv"
    hh.to_csv(odd, index=False)
    message = error_of(fluxnet.read, odd)
    assert "cannot recognise" in message and "TIMESTAMP_START" in message and "tower_halfhours.csv" in message
    # an HH name without TIMESTAMP_START
    hh_named = write_dd(tmp_path, dd_frame(), name="FLX_US-Ccc_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    assert "no TIMESTAMP_START column" in error_of(fluxnet.read, hh_named)
    base_daily = tmp_path / "AMF_US-Aaa_BASE_DD_5-5.csv"
    hh.to_csv(base_daily, index=False)
    assert "AmeriFlux BASE files are half-hourly" in error_of(fluxnet.read, base_daily)
    weekly = write_dd(tmp_path, dd_frame(), name="FLX_US-Aaa_FLUXNET2015_SUBSET_WW_2010-2010_1-4.csv")
    assert "only daily (DD), half-hourly (HH) and hourly (HR)" in error_of(fluxnet.read, weekly)
    unknown = write_dd(tmp_path, dd_frame(), name="my_site_daily.csv")
    message = error_of(fluxnet.read, unknown)
    assert "cannot recognise" in message and "my_site_daily.csv" in message


def test_detect_format(tmp_path):
    path = write_dd(tmp_path, dd_frame(), site="CH-Dav")
    src = fluxnet.detect_format(path)
    assert (src.site, src.format, src.records_per_day) == ("CH-Dav", fluxnet.FORMAT_FLUXNET_DD, 1)
    oneflux_dd = write_dd(tmp_path, dd_frame(), name="AMF_US-Ha1_FLUXNET_SUBSET_DD_1991-2020_3-5.csv")
    assert fluxnet.detect_format(oneflux_dd).format == fluxnet.FORMAT_FLUXNET_DD
    hh = hh_frame(days=1)
    hr = write_sub(tmp_path, hh, "AMF_US-Ha1_FLUXNET_FULLSET_HR_1991-2020_3-5.csv")
    assert (fluxnet.detect_format(hr).format, fluxnet.detect_format(hr).records_per_day) == ("fluxnet-hh", 24)
    base = write_base(tmp_path, base_frame(days=1), "AMF_US-Xyz_BASE_HH_2-5.csv")
    src = fluxnet.detect_format(base)
    assert (src.site, src.format, src.records_per_day) == ("US-Xyz", fluxnet.FORMAT_AMERIFLUX_BASE, 48)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"gpp": "XX"}, "gpp='XX'"), ({"le": "raw"}, "le='raw'"),
    ({"qc_min": 1.5}, "qc_min=1.5"), ({"qc_min": "high"}, "qc_min='high'"),
])
def test_bad_arguments(tmp_path, kwargs, fragment):
    path = write_dd(tmp_path, dd_frame())
    assert fragment in error_of(fluxnet.read, path, **kwargs)


# --------------------------------------------------------------------------- conversions (properties)

finite_le = st.floats(min_value=-200.0, max_value=1000.0, allow_nan=False)
finite_t = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False)


@given(le=finite_le, t=finite_t)
def test_le_to_et_round_trip(le, t):
    lam = (2.501 - 0.002361 * t) * 1e6  # J kg-1, by hand
    et = le_to_et(le, t)
    assert et * lam / 86400.0 == pytest.approx(le, rel=1e-12, abs=1e-9)


@given(le=finite_le, t=finite_t, k=st.floats(min_value=0.0, max_value=10.0, allow_nan=False))
def test_le_to_et_is_proportional_to_le(le, t, k):
    assert le_to_et(k * le, t) == pytest.approx(k * le_to_et(le, t), rel=1e-12, abs=1e-12)
    # warmer air needs less energy per kg: same LE gives (slightly) more ET
    if le > 1e-6:  # not subnormal: the difference must be representable
        assert le_to_et(le, t + 1.0) > le_to_et(le, t)


def test_le_to_et_hand_values():
    # 1 mm d-1 needs lambda / 86400 W m-2: 2.501e6 / 86400 = 28.946759 W m-2 at 0 degC,
    # (2.501e6 - 47220) / 86400 = 28.400231 W m-2 at 20 degC.
    assert le_to_et(28.946759, 0.0) == pytest.approx(1.0, abs=1e-6)
    assert le_to_et(28.400231, 20.0) == pytest.approx(1.0, abs=1e-6)


@given(flux=st.floats(min_value=-50.0, max_value=100.0, allow_nan=False))
def test_umol_co2_to_gc_per_day(flux):
    # 1 umol CO2 m-2 s-1 = 1e-6 mol * 12.011 g mol-1 * 86400 s d-1 = 1.0377504 g C m-2 d-1
    assert umol_co2_to_gc_per_day(flux) == pytest.approx(flux * 1.0377504, rel=1e-12, abs=1e-12)


def test_umol_co2_to_gc_hand_value():
    assert umol_co2_to_gc_per_day(10.0) == pytest.approx(10.377504)
    assert math.isnan(umol_co2_to_gc_per_day(float("nan")))


# --------------------------------------------------------------------------- sub-daily files (HH, HR, BASE)


def hh_frame(days: int = 2, per_day: int = 48, start: str = "2010-07-01") -> pd.DataFrame:
    """A FLUXNET/ONEFlux HH (or HR) table: TA 10 degC in the first half of each day, 20 in the second,
    GPP 5 umol m-2 s-1, LE 100 W m-2, 0.1 mm of rain in each of the first 10 records, all QC 0."""
    step = pd.Timedelta(days=1) / per_day
    start_times = pd.date_range(start, periods=days * per_day, freq=step)
    n = start_times.size
    half = np.tile(np.repeat([10.0, 20.0], per_day // 2), days)
    zeros = np.zeros(n, dtype=int)
    rain = np.tile(np.r_[np.full(10, 0.1), np.zeros(per_day - 10)], days)
    return pd.DataFrame({
        "TIMESTAMP_START": start_times.strftime("%Y%m%d%H%M"),
        "TIMESTAMP_END": (start_times + step).strftime("%Y%m%d%H%M"),
        "TA_F": half, "TA_F_QC": zeros, "SW_IN_POT": np.full(n, 300.0),
        "SW_IN_F": np.full(n, 150.0), "SW_IN_F_QC": zeros, "VPD_F": np.full(n, 8.0), "VPD_F_QC": zeros,
        "P_F": rain, "P_F_QC": zeros, "LE_F_MDS": np.full(n, 100.0), "LE_F_MDS_QC": zeros,
        "LE_CORR": np.full(n, 120.0), "NEE_VUT_REF_QC": zeros,
        "GPP_NT_VUT_REF": np.full(n, 5.0), "GPP_DT_VUT_REF": np.full(n, 6.0),
    })


def write_sub(directory: Path, frame: pd.DataFrame, name: str) -> Path:
    path = directory / name
    frame.to_csv(path, index=False)
    return path


def et_by_hand(le: float, ta: float) -> float:
    return le * 86400.0 / ((2.501 - 0.002361 * ta) * 1e6)


@pytest.mark.parametrize("per_day, res", [(48, "HH"), (24, "HR")])
def test_oneflux_subdaily_aggregates_to_hand_values(tmp_path, per_day, res):
    path = write_sub(tmp_path, hh_frame(per_day=per_day), f"AMF_US-Hhh_FLUXNET_FULLSET_{res}_2010-2010_3-5.csv")
    ds = fluxnet.read(path).isel(site=0)
    assert ds["time"].values.astype("datetime64[D]").astype(str).tolist() == ["2010-07-01", "2010-07-02"]
    np.testing.assert_allclose(ds["tas"].values, [15.0, 15.0])  # (10 + 20) / 2
    np.testing.assert_allclose(ds["pr"].values, [1.0, 1.0], rtol=1e-6)  # 10 records of 0.1 mm
    np.testing.assert_allclose(ds["gpp"].values, [5.188752] * 2, rtol=1e-6)  # 5 * 1e-6 * 12.011 * 86400
    np.testing.assert_allclose(ds["le"].values, [100.0, 100.0])
    # ET per record, lambda at that record's TA, then the daily mean
    np.testing.assert_allclose(ds["et"].values, [(et_by_hand(100, 10) + et_by_hand(100, 20)) / 2] * 2, rtol=1e-6)
    np.testing.assert_allclose(ds["rsds_pot"].values, [300.0, 300.0])
    assert ds["gpp"].attrs["units"] == "g m-2 d-1" and ds["et"].attrs["units"] == "kg m-2 d-1"


def test_subdaily_gpp_dt_and_le_corr(tmp_path):
    path = write_sub(tmp_path, hh_frame(), "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    ds = fluxnet.read(path, gpp="DT", le="CORR").isel(site=0)
    np.testing.assert_allclose(ds["gpp"].values, [6.0 * 1.0377504] * 2, rtol=1e-6)
    np.testing.assert_allclose(ds["le"].values, [120.0, 120.0])


def test_subdaily_qc_is_the_share_of_good_records(tmp_path):
    frame = hh_frame()
    day2 = np.arange(48, 96)
    frame.loc[day2[:12], "NEE_VUT_REF_QC"] = 2  # 36 of 48 good: QC 0.75
    frame.loc[day2[:6], "LE_F_MDS_QC"] = 3      # 42 of 48 good: QC 0.875
    path = write_sub(tmp_path, frame, "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    strict = fluxnet.read(path, qc_min=0.8).isel(site=0)
    assert np.isfinite(strict["gpp"].values[0]) and np.isnan(strict["gpp"].values[1])
    assert np.isfinite(strict["le"].values).all() and np.isfinite(strict["et"].values).all()
    assert np.isfinite(fluxnet.read(path, qc_min=0.75)["gpp"].values).all()
    assert np.isnan(fluxnet.read(path, qc_min=0.9)["et"].values[0, 1])


def test_subdaily_coverage_rule(tmp_path):
    frame = hh_frame()
    frame.loc[48:67, "TA_F"] = -9999  # day 2: 20 missing, 28 of 48 left (0.583); all of them 20 degC
    frame.loc[48:67, "TA_F_QC"] = 3
    path = write_sub(tmp_path, frame, "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    assert np.isnan(fluxnet.read(path, qc_min=0)["tas"].values[0, 1])
    loose = fluxnet.read(path, qc_min=0, min_coverage=0.5)["tas"].values[0]
    np.testing.assert_allclose(loose, [15.0, (4 * 10.0 + 24 * 20.0) / 28])
    # ET where TA is missing uses lambda at 20 degC
    et = fluxnet.read(path, qc_min=0)["et"].values[0, 1]
    assert et == pytest.approx((24 * et_by_hand(100, 20) + 4 * et_by_hand(100, 10) + 20 * et_by_hand(100, 20)) / 48)


def base_frame(days: int = 2) -> pd.DataFrame:
    """AmeriFlux BASE half hours: two TA sensors, RH (no VPD), measured and gap-filled LE and GPP."""
    n = days * 48
    start_times = pd.date_range("2015-03-01", periods=n, freq="30min")
    le = np.full(n, 80.0)
    le[:8] = -9999.0  # 8 of day 1's 48 records measured-missing: QC 40/48
    nee = np.full(n, -4.0)
    nee[48:48 + 24] = -9999.0  # day 2: half the NEE records missing: GPP QC 0.5
    return pd.DataFrame({
        "TIMESTAMP_START": start_times.strftime("%Y%m%d%H%M"),
        "TIMESTAMP_END": (start_times + pd.Timedelta("30min")).strftime("%Y%m%d%H%M"),
        "TA_1_1_1": np.full(n, 20.0), "TA_1_2_1": np.full(n, 5.0), "RH_1_1_1": np.full(n, 50.0),
        "SW_IN_1_1_1": np.full(n, 200.0), "P": np.where(np.arange(n) % 48 < 4, 0.5, 0.0),
        "NEE_PI": nee, "LE": le, "LE_PI_F": np.full(n, 90.0), "GPP_PI_F": np.full(n, 10.0),
    })


def write_base(directory: Path, frame: pd.DataFrame, name: str = "AMF_US-Xyz_BASE_HH_2-5.csv") -> Path:
    path = directory / name
    with open(path, "w") as handle:
        handle.write("# Site: US-Xyz\n# Version: 2-5\n")
        frame.to_csv(handle, index=False)
    return path


def test_ameriflux_base_to_hand_values(tmp_path):
    ds = fluxnet.read(write_base(tmp_path, base_frame()), qc_min=0).isel(site=0)
    assert ds.site.item() == "US-Xyz" and ds.sizes["time"] == 2
    np.testing.assert_allclose(ds["tas"].values, [20.0, 20.0])  # TA_1_1_1, not TA_1_2_1
    # VPD from TA and RH: es(20 degC) = 6.1094 exp(17.625 * 20 / 263.04) = 23.3344 hPa; half of it
    es20 = 6.1094 * math.exp(17.625 * 20.0 / (20.0 + 243.04))
    np.testing.assert_allclose(ds["vpd"].values, [es20 * 0.5] * 2, rtol=1e-6)
    assert es20 * 0.5 == pytest.approx(11.6672, abs=1e-3)
    np.testing.assert_allclose(ds["pr"].values, [2.0, 2.0])  # 4 records of 0.5 mm
    np.testing.assert_allclose(ds["le"].values, [90.0, 90.0])  # the gap-filled LE_PI_F
    np.testing.assert_allclose(ds["gpp"].values, [10.377504] * 2, rtol=1e-6)
    np.testing.assert_allclose(ds["et"].values, [et_by_hand(90.0, 20.0)] * 2, rtol=1e-6)
    assert np.isnan(ds["rsds_pot"].values).all()
    assert ds["gpp"].attrs["source_column"].startswith("GPP (AmeriFlux BASE")


def test_ameriflux_base_qc_from_measured_columns(tmp_path):
    ds = fluxnet.read(write_base(tmp_path, base_frame()), qc_min=0.8).isel(site=0)
    assert np.isfinite(ds["le"].values).all()  # 40/48 = 0.833 measured
    assert np.isfinite(ds["gpp"].values[0]) and np.isnan(ds["gpp"].values[1])  # NEE 24/48 measured
    assert np.isnan(fluxnet.read(write_base(tmp_path, base_frame()), qc_min=0.9)["le"].values[0, 0])


@pytest.mark.parametrize("change, fragment", [
    (lambda f: f.drop(columns=["LE", "LE_PI_F"]), "no LE column"),
    (lambda f: f.drop(columns=["GPP_PI_F"]), "no GPP column"),
    (lambda f: pd.concat([f.iloc[:3], f.iloc[2:]]), "duplicate timestamps: 201503010100"),
    (lambda f: pd.concat([f.iloc[5:], f.iloc[:5]]), "not in increasing order"),
    (lambda f: f.assign(TIMESTAMP_START=f["TIMESTAMP_START"].str[:8]), "is not a time as YYYYMMDDHHMM"),
    (lambda f: f.assign(GPP_PI_F=-9999.0), "no gpp value left"),
])
def test_bad_ameriflux_base_files(tmp_path, change, fragment):
    path = write_base(tmp_path, change(base_frame()))
    message = error_of(fluxnet.read, path, qc_min=0)
    assert fragment in message and path.name in message


def test_subdaily_records_of_the_wrong_length(tmp_path):
    path = write_sub(tmp_path, hh_frame(per_day=24), "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    message = error_of(fluxnet.read, path)
    assert "is not 30 minutes long" in message and path.name in message


def test_subdaily_bad_qc_flag_and_le_corr_in_base(tmp_path):
    frame = hh_frame().astype({"LE_F_MDS_QC": float})
    frame.loc[3, "LE_F_MDS_QC"] = 0.5
    path = write_sub(tmp_path, frame, "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    assert "QC value 0.5 on line 5 is not one of the flags" in error_of(fluxnet.read, path)
    assert "no energy-balance corrected LE" in error_of(fluxnet.read, write_base(tmp_path, base_frame()), le="CORR")


def test_real_yearly_et_sums(real_file, raw_real):
    ds = fluxnet.read(real_file, qc_min=0.0)
    ours = ds["et"].isel(site=0).astype("float64").groupby("time.year").sum().to_series()
    lam = (2.501 - 0.002361 * raw_real["TA_F"].fillna(20.0)) * 1e6
    et = raw_real["LE_F_MDS"] * 86400.0 / lam
    direct = et.groupby(raw_real["TIMESTAMP"] // 10000).sum()
    np.testing.assert_allclose(ours.to_numpy(), direct.to_numpy(), rtol=1e-5)
    assert ds["et"].attrs["units"] == "kg m-2 d-1"  # = mm d-1
    # US-AR1 (switchgrass, Oklahoma): a few hundred mm of ET a year
    assert ((ours > 200) & (ours < 900)).all()


def test_base_error_lines_count_the_comment_lines(tmp_path):
    frame = base_frame().astype({"LE": object})
    frame.loc[5, "LE"] = "12,5"
    path = write_base(tmp_path, frame)
    message = error_of(fluxnet.read, path)
    # two comment lines and the header come first: data row 5 (0-based) is line 9
    assert "non-numeric value '12,5' on line 9" in message and "column LE" in message


half_hours = st.lists(st.floats(min_value=-5.0, max_value=60.0, allow_nan=False, width=32), min_size=48, max_size=48)


@settings(max_examples=20, deadline=None)
@given(gpp=half_hours, rain=st.lists(st.floats(min_value=0.0, max_value=5.0, width=32), min_size=48, max_size=48))
def test_half_hours_aggregate_to_mean_fluxes_and_total_rain(tmp_path_factory, gpp, rain):
    frame = hh_frame(days=1)
    frame["GPP_NT_VUT_REF"] = np.round(gpp, 4)
    frame["P_F"] = np.round(rain, 4)
    path = write_sub(tmp_path_factory.mktemp("hh"), frame, "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    ds = fluxnet.read(path).isel(site=0, time=0)
    assert float(ds["gpp"]) == pytest.approx(np.mean(np.round(gpp, 4)) * 1.0377504, rel=1e-5, abs=1e-5)
    assert float(ds["pr"]) == pytest.approx(np.sum(np.round(rain, 4)), rel=1e-5, abs=1e-5)
