"""Permutation importance with hand-made models whose dependence on the predictors is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from upscale.encoding import Normaliser
from upscale.ensemble import Ensemble
from upscale.errors import RecipeError
from upscale.explain.context import ExplainContext, FoldModel, SiteSet
from upscale.explain.importance import (
    COLUMNS,
    block_permutation,
    permutation_importance,
    permute_predictor,
    plot_importance,
)

DYNAMIC = ["a", "b"]
STATIC_COLUMNS = {"pft": [0, 1], "elevation": [2]}
TARGETS = ["gpp", "et"]
N_SITES, N_DAYS = 8, 240


class Weighted(torch.nn.Module):
    """Per-day model: mean = dynamic . w_dynamic + static . w_static (both targets)."""

    sequential = False

    def __init__(self, dynamic_weights, static_weights):
        super().__init__()
        self.w_dynamic = torch.tensor(dynamic_weights, dtype=torch.float32)
        self.w_static = torch.tensor(static_weights, dtype=torch.float32)
        self.targets = list(TARGETS)

    def forward(self, dynamic, static, state=None):
        mean = (dynamic * self.w_dynamic).sum(-1) + (static * self.w_static).sum(-1, keepdim=True)
        return {t: (mean, torch.zeros_like(mean)) for t in self.targets}, None


def make_context(dynamic_weights, static_weights, seed: int = 0) -> ExplainContext:
    """Sites whose targets are the model's own output plus noise, in two folds of one member each."""
    rng = np.random.default_rng(seed)
    season = np.sin(2 * np.pi * np.arange(N_DAYS) / 120.0)
    dynamic = (season[None, :, None] + rng.normal(0, 1, (N_SITES, N_DAYS, len(DYNAMIC)))).astype("float32")
    pft = np.eye(2, dtype="float32")[np.arange(N_SITES) % 2]
    static = np.concatenate([pft, np.linspace(-2, 2, N_SITES, dtype="float32")[:, None]], axis=1)
    truth = dynamic @ np.float32(dynamic_weights) + (static @ np.float32(static_weights))[:, None]
    targets = np.stack([truth, truth], axis=-1) + rng.normal(0, 0.1, (N_SITES, N_DAYS, 2)).astype("float32")
    time = np.datetime64("2019-01-01", "ns") + np.arange(N_DAYS).astype("timedelta64[D]")
    sites = SiteSet(
        np.array([f"S{i}" for i in range(N_SITES)]),
        time,
        dynamic,
        static,
        targets.astype("float32"),
        list(DYNAMIC),
        dict(STATIC_COLUMNS),
        list(TARGETS),
    )
    normaliser = Normaliser([0.0, 0.0], [1.0, 1.0], [0.0] * 3, [1.0] * 3, [0.0, 0.0], [1.0, 1.0])
    model = Weighted(dynamic_weights, static_weights)
    index = np.arange(N_SITES)
    return ExplainContext(
        sites, [FoldModel(Ensemble([model], normaliser, TARGETS), index[index % 2 == f]) for f in range(2)]
    )


def by_predictor(table: pd.DataFrame, target: str = "gpp") -> pd.DataFrame:
    return table[table.target == target].set_index("predictor")


def test_only_the_predictor_the_model_reads_matters():
    table = permutation_importance(make_context([1.0, 0.0], [0.0, 0.0, 0.0]), repeats=3)
    assert list(table.columns) == list(COLUMNS)
    assert set(table.predictor) == {"a", "b", "pft", "elevation"}
    for target in TARGETS:
        rows = by_predictor(table, target)
        for unused in ("b", "pft", "elevation"):
            assert rows.loc[unused, ["nse_drop", "r2_drop", "nse_drop_sd", "r2_drop_sd"]].tolist() == [0, 0, 0, 0]
        assert rows.loc["a", "nse_drop"] > 0.8 and rows.loc["a", "r2_drop"] > 0.8
        assert rows.loc["a", "nse_base"] > 0.95 and rows.loc["a", "repeats"] == 3
    assert dict(zip(table.predictor, table.kind)) == {
        "a": "dynamic",
        "b": "dynamic",
        "pft": "static",
        "elevation": "static",
    }


def test_static_dependence_is_found_by_permuting_the_static_predictor():
    table = by_predictor(permutation_importance(make_context([0.5, 0.0], [1.5, -1.5, 1.0]), repeats=4))
    assert table.loc["elevation", "nse_drop"] > 0.5
    assert table.loc["pft", "nse_drop"] > 0.5
    assert table.loc["b", "nse_drop"] == 0.0


def test_static_one_hot_columns_move_together():
    ctx = make_context([1.0, 0.0], [0.0, 0.0, 0.0])
    permuted = permute_predictor(ctx.sites, "pft", 30, np.random.default_rng(3))
    np.testing.assert_array_equal(permuted.static[:, :2].sum(axis=1), 1.0)
    np.testing.assert_array_equal(permuted.static[:, 2], ctx.sites.static[:, 2])
    rows = [tuple(r) for r in ctx.sites.static[:, :2]]
    assert sorted(rows) == sorted(tuple(r) for r in permuted.static[:, :2])
    np.testing.assert_array_equal(permuted.dynamic, ctx.sites.dynamic)


def test_results_are_reproducible_for_a_seed_and_per_predictor():
    ctx = make_context([1.0, 0.5], [0.5, 0.0, 0.3])
    first = permutation_importance(ctx, repeats=2, seed=7)
    pd.testing.assert_frame_equal(first, permutation_importance(ctx, repeats=2, seed=7))
    other = permutation_importance(ctx, repeats=2, seed=8)
    assert not np.allclose(first.nse_drop, other.nse_drop)
    alone = permutation_importance(ctx, predictors=["b"], repeats=2, seed=7)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), first[first.predictor == "b"].reset_index(drop=True))


@pytest.mark.parametrize("n_days, block_days", [(100, 30), (90, 30), (7, 30), (50, 1)])
def test_block_permutation_keeps_blocks_intact(n_days, block_days):
    n_sites = 5
    ids = (np.arange(n_sites)[:, None] * 1000 + np.arange(n_days)[None]).astype("float64")
    values = np.stack([ids, -ids], axis=-1)  # [S, T, 2]: blocks must move with all trailing columns
    out = block_permutation(values, block_days, np.random.default_rng(0))
    assert out.shape == values.shape
    np.testing.assert_array_equal(np.sort(out[..., 0], axis=None), np.sort(ids, axis=None))
    np.testing.assert_array_equal(out[..., 1], -out[..., 0])
    for site in range(n_sites):
        for start in range(0, n_days, block_days):
            block = out[site, start : start + block_days, 0]
            source_site, source_day = divmod(int(block[0]), 1000)
            assert source_day % block_days == 0, "a block starts on a block boundary of its source"
            assert min(source_day + block_days, n_days) - source_day == block.size, "a whole block, not a part"
            np.testing.assert_array_equal(block, ids[source_site, source_day : source_day + block.size])
    if n_days // block_days >= 2:
        moved = out[:, :block_days, 0] != ids[:, :block_days]
        assert moved.any()


def test_blocks_are_shuffled_across_sites_and_positions():
    ids = (np.arange(6)[:, None] * 1000 + np.arange(300)[None]).astype("float64")
    out = block_permutation(ids, 30, np.random.default_rng(1))
    sources = {divmod(int(out[s, b * 30]), 1000) for s in range(6) for b in range(10)}
    assert len(sources) == 60
    assert any(src_site != s for s in range(6) for src_site, _ in [divmod(int(out[s, 0]), 1000)])


def test_plot_importance_writes_the_figure(tmp_path):
    table = permutation_importance(make_context([1.0, 0.2], [0.3, 0.0, 0.5]), repeats=2)
    path = plot_importance(table, tmp_path / "importance.png")
    assert path == str(tmp_path / "importance.png") and (tmp_path / "importance.png").stat().st_size > 1000


def test_unknown_predictor_is_refused():
    with pytest.raises(RecipeError, match="unknown predictors 'nope'"):
        permutation_importance(make_context([1.0, 0.0], [0.0, 0.0, 0.0]), predictors=["nope"])


def test_loss_of_skill_is_paired_per_site_not_a_difference_of_medians():
    """One site losing skill is not importance for the typical site, although it moves the median site."""
    from upscale.explain.importance import _skill_drop, median_drop, per_site_skill

    rng = np.random.default_rng(4)
    obs = rng.normal(size=(3, 200))
    base = obs + rng.normal(size=(3, 200)) * np.array([0.3, 0.45, 0.55])[:, None]
    permuted = base.copy()
    permuted[0] = obs[0] + rng.normal(size=200) * 0.9  # only the best site gets worse, below the others
    before, after = per_site_skill(obs, base)["nse"], per_site_skill(obs, permuted)["nse"]
    assert np.median(before) - np.median(after) > 0.05  # a difference of medians would call this important
    per_site = _skill_drop(obs, base, permuted)
    assert per_site.shape == (3, 2) and per_site[0, 0] > 0.3 and (per_site[1:] == 0).all()
    np.testing.assert_array_equal(median_drop(per_site), [0.0, 0.0])
    nse_all, _ = median_drop(_skill_drop(obs, base, obs + (base - obs) * 2))  # every site worse: a clear loss
    assert nse_all > 0.1


def test_site_sampling_sd_is_zero_when_all_sites_agree_and_grows_with_their_spread():
    from upscale.explain.importance import site_sampling_sd

    rng = np.random.default_rng(5)
    same = np.full((3, 40, 2), 0.02)
    np.testing.assert_allclose(site_sampling_sd(same), [0.0, 0.0], atol=1e-12)
    narrow = 0.02 + rng.normal(0, 0.01, (3, 40, 2))
    wide = 0.02 + rng.normal(0, 0.05, (3, 40, 2))
    sd_narrow, sd_wide = site_sampling_sd(narrow), site_sampling_sd(wide)
    assert (sd_wide > 2 * sd_narrow).all()
    # the median of 40 normal values has a standard error of about 1.25 sd / sqrt(40) of the repeats' mean
    expected = 1.2533 * (0.05 / np.sqrt(3)) / np.sqrt(40)
    assert 0.5 * expected < sd_wide[0] < 2 * expected
