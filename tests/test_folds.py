"""Cross-validation folds that never split a site or a group, and the Koppen main classes that group sites.

The basic partition checks of kfold, leave-one-site-out and leave-group-out live in tests/test_training.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from upscale.errors import RecipeError
from upscale.folds import kfold, koppen_main_class, leave_group_out, leave_one_site_out, make_folds


def assert_partition(folds: list[np.ndarray], n_sites: int) -> None:
    """Every site is a test site exactly once, and never a training site of its own fold."""
    counts = np.zeros(n_sites, dtype=int)
    for test in folds:
        np.add.at(counts, test, 1)
        train = np.setdiff1d(np.arange(n_sites), test)
        assert np.intersect1d(train, test).size == 0
        assert train.size + test.size == n_sites
    assert counts.tolist() == [1] * n_sites


@settings(max_examples=40, deadline=None)
@given(n_sites=st.integers(2, 80), k=st.integers(2, 10), seed=st.integers(0, 2**32 - 1))
def test_kfold_is_a_partition_of_sorted_folds(n_sites, k, seed):
    assume(n_sites >= k)
    folds = kfold(n_sites, k, seed)
    assert_partition(folds, n_sites)
    assert all(np.array_equal(f, np.sort(f)) for f in folds)
    assert sorted(map(len, folds), reverse=True) == [len(a) for a in np.array_split(np.arange(n_sites), k)]


def test_kfold_is_deterministic_under_a_seed_and_varies_with_it():
    first, again = kfold(30, 5, seed=7), kfold(30, 5, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    other = kfold(30, 5, seed=8)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_kfold_deals_sizes_as_evenly_as_possible():
    assert [len(f) for f in kfold(10, 3, seed=0)] == [4, 3, 3]
    assert [len(f) for f in kfold(3, 3, seed=0)] == [1, 1, 1]  # exactly k sites is enough


def test_kfold_with_too_few_sites_says_what_to_do():
    with pytest.raises(RecipeError) as err:
        kfold(2, 3, seed=0)
    assert err.value.what == "3-fold cross-validation needs at least 3 sites, there are 2"
    assert err.value.where == "validation.folds" and "Lower validation.folds" in err.value.fix


def test_leave_one_site_out_needs_two_sites():
    assert [f.tolist() for f in leave_one_site_out(2)] == [[0], [1]]
    with pytest.raises(RecipeError, match="at least 2 sites") as err:
        leave_one_site_out(1)
    assert err.value.where == "validation.scheme"


@settings(max_examples=40, deadline=None)
@given(groups=st.lists(st.sampled_from(["A", "B", "C", "D", "E"]), min_size=2, max_size=40))
def test_leave_group_out_never_splits_a_group(groups):
    labels = sorted(set(groups))
    if len(labels) < 2:
        with pytest.raises(RecipeError, match="at least 2 groups"):
            leave_group_out(groups)
        return
    folds = leave_group_out(groups)
    assert_partition(folds, len(groups))
    assert [{groups[i] for i in f} for f in folds] == [{label} for label in labels]  # one label per fold, sorted
    for test in folds:
        train = np.setdiff1d(np.arange(len(groups)), test)
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_leave_group_out_compares_labels_as_text():
    folds = leave_group_out([1, "1", 2])
    assert [f.tolist() for f in folds] == [[0, 1], [2]]
    with pytest.raises(RecipeError) as err:
        leave_group_out(["B"] * 4)
    assert err.value.where == "validation.group_by" and "kfold" in err.value.fix


def test_make_folds_dispatches_on_the_scheme():
    assert all(np.array_equal(a, b) for a, b in zip(make_folds("kfold", 9, 3, 4), kfold(9, 3, 4)))
    assert [f.tolist() for f in make_folds("loso", 3, 5, 0)] == [[0], [1], [2]]
    assert [f.tolist() for f in make_folds("group", 3, 5, 0, groups=["x", "y", "x"])] == [[0, 2], [1]]
    with pytest.raises(RecipeError, match="unknown validation scheme 'random'") as err:
        make_folds("random", 9, 3, 0)
    assert err.value.fix == "Choose kfold, loso, group or none"


def constant_climate(tas: float, pr_mm_per_day: float, days=365):
    times = pd.date_range("2019-01-01", periods=days).values
    return times, np.full((1, days), tas), np.full((1, days), pr_mm_per_day)


def test_koppen_dry_threshold_is_20_t_plus_140_mm():
    # at a constant 10 degC the threshold is 20 x 10 + 140 = 340 mm a year, 340 / 365.25 mm a day
    per_day = 340.0 / 365.25
    assert koppen_main_class(*constant_climate(10.0, per_day * 0.99)).tolist() == ["B"]
    assert koppen_main_class(*constant_climate(10.0, per_day * 1.01)).tolist() == ["C"]


def test_koppen_polar_wins_over_dry_and_temperature_bounds():
    assert koppen_main_class(*constant_climate(5.0, 0.01)).tolist() == ["E"]  # warmest month below 10 degC
    assert koppen_main_class(*constant_climate(18.0, 5.0)).tolist() == ["A"]  # coldest month 18 degC: tropical
    assert koppen_main_class(*constant_climate(10.0 - 1e-9, 5.0)).tolist() == ["E"]
    times, tas, pr = constant_climate(12.0, 3.0)
    tas[0, :31] = 0.0  # a January at exactly 0 degC is not above 0: continental
    assert koppen_main_class(times, tas, pr).tolist() == ["D"]


def test_koppen_ignores_missing_days():
    times, tas, pr = constant_climate(25.0, 6.0)
    tas[0, ::3], pr[0, 1::3] = np.nan, np.nan
    assert koppen_main_class(times, tas, pr).tolist() == ["A"]
