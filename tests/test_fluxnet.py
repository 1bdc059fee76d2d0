"""FLUXNET2015 DD reader: the real US-AR1 file, synthetic files for every rule and error."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
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


def test_half_hourly_and_other_formats_are_refused(tmp_path):
    hh = pd.DataFrame({"TIMESTAMP_START": ["201001010000"], "TIMESTAMP_END": ["201001010030"], "TA_F": [1.0]})
    hh_path = tmp_path / "FLX_US-Aaa_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv"
    hh.to_csv(hh_path, index=False)
    message = error_of(fluxnet.read, hh_path)
    assert "half-hourly" in message and "not supported yet" in message and hh_path.name in message
    # a DD name with a half-hourly header
    dd_named = tmp_path / "FLX_US-Bbb_FLUXNET2015_FULLSET_DD_2010-2010_1-4.csv"
    hh.to_csv(dd_named, index=False)
    message = error_of(fluxnet.read, dd_named)
    assert "no TIMESTAMP column" in message and "TIMESTAMP_START" in message
    # an unknown name with a half-hourly header
    odd = tmp_path / "tower_halfhours.csv"
    hh.to_csv(odd, index=False)
    assert "half-hourly files are not supported yet" in error_of(fluxnet.read, odd)
    base = tmp_path / "AMF_US-Aaa_BASE_HH_5-5.csv"
    hh.to_csv(base, index=False)
    assert "AmeriFlux BASE" in error_of(fluxnet.read, base)
    weekly = write_dd(tmp_path, dd_frame(), name="FLX_US-Aaa_FLUXNET2015_SUBSET_WW_2010-2010_1-4.csv")
    assert "only daily (DD)" in error_of(fluxnet.read, weekly)
    unknown = write_dd(tmp_path, dd_frame(), name="my_site_daily.csv")
    message = error_of(fluxnet.read, unknown)
    assert "cannot recognise" in message and "my_site_daily.csv" in message


def test_detect_format(tmp_path):
    path = write_dd(tmp_path, dd_frame(), site="CH-Dav")
    src = fluxnet.detect_format(path)
    assert (src.site, src.format) == ("CH-Dav", fluxnet.FORMAT_FLUXNET_DD)


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
