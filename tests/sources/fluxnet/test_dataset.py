"""The Dataset: sites of different periods on one daily axis."""

from __future__ import annotations

import numpy as np

from tests.sources.fluxnet.builders import dd_frame, write_dd
from upscale.sources import fluxnet


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
