"""Training arrays: site data, normalised tensors with unusable targets masked, epoch windows and batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from upscale.batching import SiteData, Tensors, epoch_batches, sequence_windows, warmup_steps
from upscale.encoding import Normaliser


def sites(s: int = 3, t: int = 10) -> SiteData:
    rng = np.random.default_rng(0)
    dynamic = rng.normal(size=(s, t, 2)).astype("float32")
    targets = rng.normal(size=(s, t, 1)).astype("float32")
    dynamic[0, 2, 1] = np.nan  # a missing predictor: that day's target is not used
    targets[1, 5, 0] = np.nan
    return SiteData(
        np.array([f"S{i}" for i in range(s)]), dynamic, np.zeros((s, 0), "float32"), targets, ["gpp"], ["tas", "pr"]
    )


def identity() -> Normaliser:
    return Normaliser([0.0, 0.0], [1.0, 1.0], [], [], [0.0], [1.0])


def test_tensors_mask_targets_where_a_predictor_is_missing_and_zero_the_gaps():
    tensors = Tensors.of(sites(), identity(), "cpu")
    assert torch.isnan(tensors.targets[0, 2, 0]) and torch.isnan(tensors.targets[1, 5, 0])
    assert float(tensors.dynamic[0, 2, 1]) == 0.0  # NaN predictors become the mean (0 after normalising)
    assert int(torch.isfinite(tensors.targets).sum()) == 3 * 10 - 2


def test_days_are_every_observed_site_day_as_a_sequence_of_one():
    days = Tensors.of(sites(), identity(), "cpu").days()
    assert days.dynamic.shape == (28, 1, 2) and days.targets.shape == (28, 1, 1)
    assert bool(torch.isfinite(days.targets).all())


def test_subset_keeps_the_chosen_sites_in_order():
    data = sites()
    sub = data.subset(np.array([2, 0]))
    assert sub.sites.tolist() == ["S2", "S0"] and np.array_equal(sub.dynamic[1], data.dynamic[0], equal_nan=True)


@pytest.mark.parametrize(
    ("sequential", "warmup", "n_steps", "expected"), [(False, 90, 365, 0), (True, 90, 365, 90), (True, 90, 120, 40)]
)
def test_warmup_is_at_most_a_third_of_a_window(sequential, warmup, n_steps, expected):
    class Cfg:
        sequence_length = 365

    cfg = Cfg()
    cfg.warmup = warmup
    assert warmup_steps(sequential, cfg, n_steps) == expected


def test_an_epoch_of_day_batches_sees_every_day_once():
    class Cfg:
        batch_size = 8

    days = Tensors.of(sites(), identity(), "cpu").days()
    batches = list(epoch_batches(days, False, Cfg(), torch.Generator().manual_seed(0)))
    assert sum(len(b[0]) for b in batches) == 28 and max(len(b[0]) for b in batches) == 8


@settings(max_examples=30, deadline=None)
@given(n_steps=st.integers(20, 900), length=st.integers(10, 400), warmup=st.integers(0, 120))
def test_windows_lie_inside_the_series_and_cover_it(n_steps, length, warmup):
    length = min(length, n_steps)
    warmup = min(warmup, length // 3)
    sites, starts = sequence_windows(5, n_steps, length, warmup, torch.Generator().manual_seed(0))
    assert int(starts.min()) >= 0 and int(starts.max()) + length <= n_steps
    assert torch.equal(torch.bincount(sites, minlength=5), torch.full((5,), len(sites) // 5))
    per_site = len(sites) // 5
    assert per_site * (length - warmup) >= n_steps or n_steps <= length
