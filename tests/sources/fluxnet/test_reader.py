"""The reader end to end: the real US-AR1 file, several files and sites, the checks across files."""

from __future__ import annotations

import numpy as np
import pytest

from tests.sources.fluxnet.builders import dd_frame, error_of, write_dd
from upscale.errors import DataError
from upscale.sources import fluxnet
from upscale.variables import VARIABLES


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


@pytest.mark.parametrize("gpp, column", [("NT", "GPP_NT_VUT_REF"), ("DT", "GPP_DT_VUT_REF")])
def test_real_yearly_gpp_sums(real_file, raw_real, gpp, column):
    ds = fluxnet.read(real_file, qc_min=0.0, gpp=gpp)
    ours = ds["gpp"].isel(site=0).astype("float64").groupby("time.year").sum().to_series()
    direct = raw_real.groupby(raw_real["TIMESTAMP"] // 10000)[column].sum()
    assert ours.index.tolist() == [2009, 2010, 2011, 2012]
    np.testing.assert_allclose(ours.to_numpy(), direct.to_numpy(), rtol=1e-6)
    assert ds.attrs["gpp_partitioning"] == gpp


def test_files_of_one_site_are_joined_with_gaps_as_nan(tmp_path):
    first = write_dd(tmp_path, dd_frame("2010-12-25", 7, seed=3))  # to 2010-12-31
    second = write_dd(tmp_path, dd_frame("2011-01-04", 5, seed=4))  # gap 2011-01-01..03
    ds = fluxnet.read([first, second], qc_min=0.5)
    assert ds.sizes == {"site": 1, "time": 15}
    gpp = ds["gpp"].isel(site=0).values
    assert np.isnan(gpp[7:10]).all() and np.isfinite(gpp[:7]).all() and np.isfinite(gpp[10:]).all()


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


def test_scan_finds_the_sites_and_coordinates_read_finds(tmp_path):
    from tests.sources.fluxnet.builders import write_site_list

    for site, seed in (("US-Bbb", 1), ("US-Aaa", 0)):
        write_dd(tmp_path, dd_frame(seed=seed), site=site)
    site_list = write_site_list(
        tmp_path,
        [
            {"SITE_ID": "US-Aaa", "LOCATION_LAT": 40.5, "LOCATION_LONG": -105.5, "LOCATION_ELEV": 3050, "IGBP": "ENF"},
            {"SITE_ID": "US-Bbb", "LOCATION_LAT": 35.0, "LOCATION_LONG": -98.0, "LOCATION_ELEV": 400, "IGBP": "GRA"},
        ],
    )
    read = fluxnet.read(str(tmp_path / "FLX_*.csv"), site_list=site_list)
    scanned = fluxnet.scan_sites(str(tmp_path / "FLX_*.csv"), site_list=site_list)
    assert scanned.site.values.tolist() == ["US-Aaa", "US-Bbb"] == read.site.values.tolist()
    for name in ("lat", "lon", "elevation", "igbp"):
        np.testing.assert_array_equal(scanned[name].values, read[name].values)
    assert not scanned.data_vars and "time" not in scanned.dims
    only = fluxnet.scan_sites(str(tmp_path / "FLX_*.csv"), site_list=site_list, sites=["US-Bbb"])
    assert only.site.values.tolist() == ["US-Bbb"] and only.igbp.item() == "GRA"


def test_scan_reads_headers_not_data(tmp_path):
    """A file whose data rows are broken is refused by read but scanned: validate stays seconds-fast."""
    path = write_dd(tmp_path, dd_frame())
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(",", ",not-a-number", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError):
        fluxnet.read(path)
    assert fluxnet.scan_sites(path).site.values.tolist() == ["US-Aaa"]


def test_scan_refuses_sites_missing_from_the_site_list(tmp_path):
    from tests.sources.fluxnet.builders import write_site_list

    write_dd(tmp_path, dd_frame(), site="US-Aaa")
    site_list = write_site_list(
        tmp_path, [{"SITE_ID": "US-Zzz", "LOCATION_LAT": 1.0, "LOCATION_LONG": 2.0, "LOCATION_ELEV": 3, "IGBP": "GRA"}]
    )
    message = error_of(fluxnet.scan_sites, str(tmp_path / "FLX_*.csv"), site_list=site_list)
    assert "sites missing from the site list" in message and "US-Aaa" in message
