"""The columns read per variable: GPP/LE variants, missing target and optional columns."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.sources.fluxnet.builders import dd_frame, error_of, hh_frame, write_dd, write_sub
from upscale.sources import fluxnet


def test_real_le_corr_variant(real_file, raw_real):
    ds = fluxnet.read(real_file, qc_min=0.0, le="CORR").isel(site=0)
    np.testing.assert_array_equal(ds["le"].values, raw_real["LE_CORR"].to_numpy(np.float32))
    assert ds.attrs["le_variant"] == "CORR"


def test_subdaily_gpp_dt_and_le_corr(tmp_path):
    path = write_sub(tmp_path, hh_frame(), "FLX_US-Hhh_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    ds = fluxnet.read(path, gpp="DT", le="CORR").isel(site=0)
    np.testing.assert_allclose(ds["gpp"].values, [6.0 * 1.0377504] * 2, rtol=1e-6)
    np.testing.assert_allclose(ds["le"].values, [120.0, 120.0])


@pytest.mark.parametrize(
    "drop, kwargs",
    [
        ("GPP_NT_VUT_REF", {}),
        ("GPP_DT_VUT_REF", {"gpp": "DT"}),
        ("LE_F_MDS", {}),
        ("LE_CORR", {"le": "CORR"}),
    ],
)
def test_missing_target_column(tmp_path, drop, kwargs):
    path = write_dd(tmp_path, dd_frame().drop(columns=[drop]))
    message = error_of(fluxnet.read, path, **kwargs)
    assert drop in message and path.name in message and "missing" in message


def test_missing_optional_met_column_is_all_nan_with_warning(tmp_path, caplog):
    path = write_dd(tmp_path, dd_frame().drop(columns=["VPD_F", "VPD_F_QC"]))
    with caplog.at_level(logging.WARNING, logger="upscale.sources.fluxnet"):
        ds = fluxnet.read(path)
    assert ds["vpd"].isnull().all()
    assert any("VPD_F" in r.getMessage() and path.name in r.getMessage() for r in caplog.records)
