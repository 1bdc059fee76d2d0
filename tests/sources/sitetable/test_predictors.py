"""Predictors of a site table: dynamic columns as they are, pft from the site list's IGBP class, statics per site."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tests.sources.fluxnet.builders import error_of
from upscale.sources.sitetable import site_predictors
from upscale.sources.sitetable.predictors import table_variables


def sites(igbp=("ENF", "GRA", "ENF"), frac=None) -> xr.Dataset:
    frac = np.array([[0.2, 0.2], [0.5, np.nan], [0.9, 0.9]]) if frac is None else frac
    return xr.Dataset(
        {"tas": (("site", "time"), np.arange(6.0).reshape(3, 2)), "pft_GRA": (("site", "time"), frac)},
        coords={"site": ["A", "B", "C"], "igbp": ("site", list(igbp)), "elevation": ("site", [10.0, 20.0, 30.0])},
    )


def test_pft_from_the_site_list_and_statics_per_site():
    dynamic, static, classes = site_predictors(sites(), ["tas"], ["pft", "elevation", "pft_GRA"])
    np.testing.assert_array_equal(dynamic["tas"], np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(static["pft"], [1, 10, 1])  # ENF = 1, GRA = 10
    assert classes == [1, 10]
    np.testing.assert_array_equal(static["elevation"], [10, 20, 30])
    np.testing.assert_allclose(static["pft_GRA"], [0.2, 0.5, 0.9])


@pytest.mark.parametrize(
    "ds, expected",
    [
        (
            sites(igbp=("ENF", "", "XYZ")),
            "sites without a known IGBP class, which the predictor pft needs: B (empty), C",
        ),
        (sites(frac=np.array([[0.2, 0.3], [0.5, 0.5], [0.9, 0.9]])), "pft_GRA changes in time at sites A"),
    ],
)
def test_bad_static_values_are_refused(ds, expected):
    assert expected in error_of(site_predictors, ds, ["tas"], ["pft", "pft_GRA"])


def test_table_variables_leave_site_list_statics_out():
    assert table_variables(["gpp", "le"], ["tas", "pft", "elevation", "pft_GRA"]) == ["gpp", "le", "tas", "pft_GRA"]
