"""Memory effects: hand-made models whose memory is known, the table of skill per group, its figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.explain.common import (
    N_SITES,
    N_STATIC,
    NAMES,
    READ_COLUMN,
    READ_LAG,
    TARGETS,
    PerDay,
    ShiftRegister,
    identity_normaliser,
    make_sites,
    random_lstm,
)
from upscale.ensemble import Ensemble
from upscale.errors import RecipeError
from upscale.explain.context import ExplainContext, FoldModel, SiteSet
from upscale.explain.memory import MEMORY_COLUMNS, memory_effects, memory_summary, plot_memory, plot_memory_groups
from upscale.models.mlp import MLP


def make_context(members_of_fold, sites: SiteSet | None = None) -> ExplainContext:
    """Two folds over alternating sites; ``members_of_fold()`` builds one fold's members."""
    sites = sites or make_sites()
    index = np.arange(len(sites.sites))
    folds = [
        FoldModel(Ensemble(members_of_fold(), identity_normaliser(), TARGETS), index[index % 2 == f]) for f in range(2)
    ]
    return ExplainContext(sites, folds)


def test_lag_five_model_has_memory_of_five_days_only_in_its_variable():
    ctx = make_context(lambda: [ShiftRegister(READ_COLUMN, READ_LAG)] * 2)
    table = memory_effects(ctx, lags=range(9), stride=1, seed=1)
    rows = table[(table.group_by == "all") & (table.target == "gpp")].set_index(["predictor", "k"])
    for predictor in ("all", NAMES[READ_COLUMN]):
        for k in range(9):
            row = rows.loc[(predictor, k)]
            assert row.nse_full == pytest.approx(1.0)
            if k < READ_LAG:
                assert row.nse < 0.2, (predictor, k)
            else:
                assert row.nse == pytest.approx(1.0, abs=1e-12), (predictor, k)
    for predictor in (NAMES[0], NAMES[2]):
        untouched = rows.loc[predictor]
        np.testing.assert_array_equal(untouched.nse, untouched.nse_full)
    summary = memory_summary(table).set_index(["target", "predictor", "group_by", "group"])
    assert summary.loc[("gpp", NAMES[READ_COLUMN], "all", "all"), "nse_memory"] > 0.8
    assert summary.loc[("et", NAMES[0], "all", "all"), "nse_memory"] == 0.0


def test_lag_five_model_is_intact_from_lag_five_with_a_stride():
    ctx = make_context(lambda: [ShiftRegister(READ_COLUMN, READ_LAG)])
    table = memory_effects(ctx, lags=(0, 4, 5, 8, 60), predictors=["all"], stride=4)
    rows = table[(table.group_by == "all") & (table.target == "et")].set_index("k")
    assert (rows.loc[[0, 4], "nse"] < 0.2).all()
    np.testing.assert_allclose(rows.loc[[5, 8, 60], "nse"], 1.0, atol=1e-12)


def test_per_day_model_has_exactly_no_memory():
    two_years = make_sites(n_days=730)  # monthly anomalies need calendar months seen twice
    ctx = make_context(lambda: [PerDay([0.5, -1.0, 2.0]), PerDay([1.0, 0.0, 0.3])], two_years)
    table = memory_effects(ctx, lags=range(9), stride=1)
    for _, curve in table.groupby(["target", "predictor", "group_by", "group"]):
        for score in ("nse", "r2", "msc_nse", "anomaly_nse"):
            np.testing.assert_array_equal(curve[score], curve[f"{score}_full"])
            np.testing.assert_array_equal(curve[score], curve[score].iloc[0])
    memory = memory_summary(table)[["nse_memory", "msc_nse_memory", "anomaly_nse_memory"]]
    assert (memory == 0).all().all()


def test_real_mlp_has_no_memory():
    torch.manual_seed(0)
    ctx = make_context(lambda: [MLP(len(NAMES), N_STATIC, TARGETS, hidden=[16]).eval()], make_sites(n_days=730))
    summary = memory_summary(memory_effects(ctx, lags=(0, 3, 40), stride=2))
    assert np.isfinite(summary[["nse_memory", "msc_nse_memory", "anomaly_nse_memory"]]).all().all()
    np.testing.assert_allclose(summary[["nse_memory", "msc_nse_memory", "anomaly_nse_memory"]], 0.0, atol=1e-6)


def test_table_groups_sites_and_plots(tmp_path):
    ctx = make_context(lambda: [random_lstm(0)])
    table = memory_effects(ctx, lags=(0, 3, 30), predictors=["pr"], stride=3)
    assert list(table.columns) == list(MEMORY_COLUMNS)
    assert set(table.group_by) == {"all", "igbp", "aridity", "site"}
    assert len(table) == 2 * 2 * 3 * (1 + 2 + 2 + N_SITES)
    by = table.set_index(["target", "predictor", "group_by", "group", "k"])
    assert by.loc[("gpp", "pr", "aridity", "dry", 3), "sites"] == 2
    assert by.loc[("gpp", "pr", "all", "all", 3), "sites"] == N_SITES
    sites = table[
        (table.group_by == "site")
        & (table.group.isin(["S0", "S1"]))
        & (table.target == "gpp")
        & (table.predictor == "pr")
        & (table.k == 3)
    ]
    dry = by.loc[("gpp", "pr", "aridity", "dry", 3)]
    assert dry.nse == pytest.approx(sites.nse.median())
    assert dry.msc_nse_full == pytest.approx(sites.msc_nse_full.median())
    summary = memory_summary(table)
    assert {"nse_memory", "msc_nse_memory", "anomaly_nse_memory"} <= set(summary.columns)
    assert len(summary) == len(table) // 3
    for plot, name in ((plot_memory, "memory.png"), (plot_memory_groups, "groups.png")):
        path = plot(table, tmp_path / name)
        assert path == str(tmp_path / name) and (tmp_path / name).stat().st_size > 1000


def test_all_is_always_computed_and_unknown_predictors_are_refused():
    ctx = make_context(lambda: [PerDay([1.0, 1.0, 1.0])])
    assert set(memory_effects(ctx, lags=(0, 2), predictors=["pr"]).predictor) == {"all", "pr"}
    with pytest.raises(RecipeError, match="unknown dynamic predictors 'nope'"):
        memory_effects(ctx, predictors=["nope"])
    with pytest.raises(RecipeError, match="lags"):
        memory_effects(ctx, lags=(-1, 3))


def test_the_restart_core_and_the_skill_scores_stay_importable_from_memory():
    from upscale.explain import memory, restarts, skill

    for name in ("shuffled_history", "evaluation_days", "lagged_predictions", "DEFAULT_BATCH_STEPS", "CHUNK_DAYS"):
        assert getattr(memory, name) is getattr(restarts, name)
    for name in ("site_scores", "MONTH_MIN_DAYS", "SCORES"):
        assert getattr(memory, name) is getattr(skill, name)
