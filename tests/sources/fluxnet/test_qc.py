"""QC masking of daily values, the quality of sub-daily records and the daily aggregation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sources.fluxnet.builders import dd_frame, error_of, et_by_hand, hh_frame, write_dd, write_sub
from upscale.sources import fluxnet


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


def test_subdaily_qc_is_the_share_of_good_records(tmp_path):
    frame = hh_frame()
    day2 = np.arange(48, 96)
    frame.loc[day2[:12], "NEE_VUT_REF_QC"] = 2  # 36 of 48 good: QC 0.75
    frame.loc[day2[:6], "LE_F_MDS_QC"] = 3  # 42 of 48 good: QC 0.875
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
