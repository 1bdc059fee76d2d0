"""CSV reading: missing codes, unreadable files, timestamps, numbers, the lines errors name."""

from __future__ import annotations

import numpy as np
import pytest

from tests.sources.fluxnet.builders import base_frame, dd_frame, error_of, hh_frame, write_base, write_dd, write_sub
from upscale.sources import fluxnet


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


def test_non_numeric_value(tmp_path):
    frame = dd_frame().astype({"P_F": object})
    frame.loc[6, "P_F"] = "1.2.3"
    path = write_dd(tmp_path, frame)
    message = error_of(fluxnet.read, path)
    assert "'1.2.3'" in message and "P_F" in message and "line 8" in message and path.name in message


def test_subdaily_records_of_the_wrong_length(tmp_path):
    path = write_sub(tmp_path, hh_frame(per_day=24), "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    message = error_of(fluxnet.read, path)
    assert "is not 30 minutes long" in message and path.name in message


def test_base_error_lines_count_the_comment_lines(tmp_path):
    frame = base_frame().astype({"LE": object})
    frame.loc[5, "LE"] = "12,5"
    path = write_base(tmp_path, frame)
    message = error_of(fluxnet.read, path)
    # two comment lines and the header come first: data row 5 (0-based) is line 9
    assert "non-numeric value '12,5' on line 9" in message and "column LE" in message
