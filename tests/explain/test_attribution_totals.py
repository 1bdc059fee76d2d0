"""Integrated gradients summed per site group, and the Dataset that reports them, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from upscale.explain.attribution_totals import LONG_NAMES, Totals, attribution_dataset, static_sums
from upscale.explain.context import SiteSet
from upscale.explain.integration import IGSettings

SETTINGS = IGSettings(
    window=2, n_steps=4, method="gausslegendre", internal_batch_size=8, tolerance=0.03, max_n_steps=16
)


def test_static_sums_add_the_one_hot_columns_of_each_predictor():
    attributions = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, 0.0, -1.0, 2.0]])
    out = static_sums(attributions, {"pft": [0, 1, 2], "elevation": [3]})
    np.testing.assert_array_equal(out, [[6.0, 4.0], [-0.5, 2.0]])


def two_folds(n_groups: int = 2) -> Totals:
    """Group 0: every sample; group 1: the second sample of the first fold and the sample of the second."""
    totals = Totals(n_groups, window=2, n_dynamic=1, n_static=1)
    first = (
        np.array([[[1.0], [-2.0]], [[3.0], [0.0]], [[-1.0], [4.0]]]),
        None,
        np.array([0.1, -0.2, 0.0]),
        np.array([1.0, 2.0, -3.0]),
    )
    members = np.zeros((n_groups, 3), bool)
    members[0], members[1, 1] = True, True
    totals.add(first, np.array([[1.0], [2.0], [-3.0]]), members, steps=4)
    second = (np.array([[[2.0], [2.0]]]), None, np.array([0.3]), np.array([3.0]))
    members = np.zeros((n_groups, 1), bool)
    members[:2] = True
    totals.add(second, np.array([[1.0]]), members, steps=2)
    return totals


def test_totals_are_the_group_means_and_the_pooled_completeness_error():
    totals = two_folds()
    means = totals.means()
    np.testing.assert_allclose(means["attribution"][..., 0], [[5 / 4, 1.0], [2.5, 1.0]])
    np.testing.assert_allclose(means["attribution_abs"][..., 0], [[7 / 4, 2.0], [2.5, 1.0]])
    np.testing.assert_allclose(means["static_attribution"][:, 0], [1 / 4, 1.5])
    np.testing.assert_allclose(means["static_attribution_abs"][:, 0], [7 / 4, 1.5])
    assert means["completeness_error"] == pytest.approx((0.3 + 0.3) / (6.0 + 3.0))
    assert totals.count.tolist() == [4.0, 2.0] and totals.most_steps == 4


def test_empty_groups_and_no_change_are_nan():
    means = two_folds(n_groups=3).means()
    assert np.isnan(means["attribution"][2]).all() and np.isnan(means["static_attribution_abs"][2]).all()
    assert np.isnan(Totals(1, 2, 1, 1).means()["completeness_error"])


def sites() -> SiteSet:
    return SiteSet(
        np.array(["S0"]),
        np.array(["2018-01-01"], "datetime64[ns]"),
        np.zeros((1, 1, 1), "float32"),
        np.zeros((1, 1), "float32"),
        np.zeros((1, 1, 1), "float32"),
        ["tas"],
        {"elevation": [0]},
        ["gpp"],
    )


def test_dataset_layout_values_and_units():
    ds = attribution_dataset(
        {"gpp": two_folds(), "et": two_folds()}, sites(), ["all", "igbp:ENF"], SETTINGS, days_per_site=3, seed=7
    )
    assert ds.gpp_attribution.dims == ("predictor", "lag", "group")
    assert ds.et_static_attribution_abs.dims == ("static_predictor", "group")
    assert float(ds.et_attribution.sel(predictor="tas", lag=0, group="all")) == pytest.approx(5 / 4)
    assert float(ds.gpp_attribution_abs.sel(predictor="tas", lag=1, group="all")) == pytest.approx(2.0)
    assert float(ds.gpp_static_attribution.sel(static_predictor="elevation", group="igbp:ENF")) == 1.5
    assert ds.samples.sel(target="gpp").values.tolist() == [4, 2] and ds.samples.dtype == np.int32
    assert ds.n_steps.values.tolist() == [4, 4] and ds.n_steps.dtype == np.int32
    np.testing.assert_allclose(ds.completeness_error.values, 1 / 15)
    for target, units in (("gpp", "g m-2 d-1"), ("et", "kg m-2 d-1")):
        for name, long_name in LONG_NAMES.items():
            assert ds[f"{target}_{name}"].attrs == {
                "long_name": f"{target}: {long_name}",
                "units": units,
                "comment": ds.attrs["comment"],
            }
    assert ds.lag.values.tolist() == [0, 1] and ds.lag.attrs["units"] == "d" and ds.lag.dtype == np.int32
    assert (ds.attrs["window"], ds.attrs["seed"], ds.attrs["days_per_site"], ds.attrs["method"]) == (
        2,
        7,
        3,
        "gausslegendre",
    )
    assert "n_steps=4" in ds.attrs["comment"] and "up to 3 sampled days per site (seed 7)" in ds.attrs["comment"]
    assert ds.attrs["Conventions"] == "CF-1.8" and "(upscale explain)" in ds.attrs["history"]


@pytest.mark.parametrize("target, units", [("gpp", "g m-2 d-1"), ("nee", "unknown")])
def test_one_target_gives_its_own_units(target, units):
    ds = attribution_dataset({target: two_folds()}, sites(), ["all", "igbp:ENF"], SETTINGS, 3, 0)
    assert ds[f"{target}_attribution"].attrs["units"] == ds[f"{target}_static_attribution"].attrs["units"] == units
    assert ds.completeness_error.attrs["units"] == "1"


def test_dataset_passes_the_cf_checker(tmp_path):
    """Every variable has one UDUNITS units string, no int64, and the file has Conventions and history."""
    from tests.test_cf import cf_check

    ds = attribution_dataset({"gpp": two_folds(), "et": two_folds()}, sites(), ["all", "igbp:ENF"], SETTINGS, 3, 7)
    ds.to_netcdf(tmp_path / "attribution.nc")
    report = cf_check(tmp_path / "attribution.nc")
    failures = [(r["name"], r["msgs"]) for key in ("high_priorities", "medium_priorities") for r in report[key]]
    assert report["high_count"] == 0 and report["medium_count"] == 0, [f for f in failures if f[1]]
    assert report["scored_points"] == report["possible_points"]
