"""Conversion to canonical units: ET from LE (lambda at the air temperature) and GPP to g C."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sources.fluxnet.builders import dd_frame, write_dd
from upscale.sources import fluxnet
from upscale.variables import le_to_et, umol_co2_to_gc_per_day


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
