"""The format readers: ONEFlux sub-daily and AmeriFlux BASE files to hand-computed days."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.sources.fluxnet.builders import base_frame, error_of, et_by_hand, hh_frame, write_base, write_sub
from upscale.sources import fluxnet


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


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda f: f.drop(columns=["LE", "LE_PI_F"]), "no LE column"),
        (lambda f: f.drop(columns=["GPP_PI_F"]), "no GPP column"),
        (lambda f: pd.concat([f.iloc[:3], f.iloc[2:]]), "duplicate timestamps: 201503010100"),
        (lambda f: pd.concat([f.iloc[5:], f.iloc[:5]]), "not in increasing order"),
        (lambda f: f.assign(TIMESTAMP_START=f["TIMESTAMP_START"].str[:8]), "is not a time as YYYYMMDDHHMM"),
        (lambda f: f.assign(GPP_PI_F=-9999.0), "no gpp value left"),
    ],
)
def test_bad_ameriflux_base_files(tmp_path, change, fragment):
    path = write_base(tmp_path, change(base_frame()))
    message = error_of(fluxnet.read, path, qc_min=0)
    assert fragment in message and path.name in message


def test_subdaily_bad_qc_flag_and_le_corr_in_base(tmp_path):
    frame = hh_frame().astype({"LE_F_MDS_QC": float})
    frame.loc[3, "LE_F_MDS_QC"] = 0.5
    path = write_sub(tmp_path, frame, "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    assert "QC value 0.5 on line 5 is not one of the flags" in error_of(fluxnet.read, path)
    assert "no energy-balance corrected LE" in error_of(fluxnet.read, write_base(tmp_path, base_frame()), le="CORR")
