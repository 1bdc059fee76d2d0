"""Cell states: a hand-built integrating cell is found; the water deficit; the table's layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from upscale.encoding import Normaliser
from upscale.ensemble import Ensemble
from upscale.errors import DataError, RecipeError
from upscale.explain.cells import (
    COLUMNS,
    cell_states,
    cumulative_water_deficit,
    has_cells,
    member_cells,
    plot_cell_states,
    reference_series,
    strongest_cells,
)
from upscale.explain.context import ExplainContext, FoldModel, SiteSet
from upscale.models.base import FluxModel
from upscale.models.lstm import LSTM
from upscale.models.mlp import MLP

DYNAMIC = ["tas", "pr"]
TARGETS = ["gpp", "et"]
HIDDEN = 4
INTEGRATOR = 2  # the cell that integrates tas


def integrating_lstm(seed: int) -> LSTM:
    """An LSTM with random cells, but cell ``INTEGRATOR`` has input and forget gates wide open and a
    candidate 0.1 * tas, so that c_t ~ 0.1 * cumulative sum of tas."""
    torch.manual_seed(seed)
    model = LSTM(len(DYNAMIC), 1, TARGETS, hidden=[HIDDEN])
    lstm, j = model.lstm, INTEGRATOR
    rows = [gate * HIDDEN + j for gate in range(4)]  # gates i, f, g, o of cell j
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(lstm, name)[rows] = 0.0
        lstm.bias_ih_l0[rows[0]] = lstm.bias_ih_l0[rows[1]] = 12.0
        lstm.weight_ih_l0[rows[2], DYNAMIC.index("tas")] = 0.1
    return model


def make_sites(n_sites=6, n_days=300, seed=0) -> SiteSet:
    rng = np.random.default_rng(seed)
    dynamic = np.stack([rng.normal(size=(n_sites, n_days)), rng.gamma(0.5, 4.0, size=(n_sites, n_days))], -1)
    targets = rng.normal(2.0, 1.0, size=(n_sites, n_days, 2))
    targets[rng.random(targets.shape) < 0.3] = np.nan
    return SiteSet(
        sites=np.array([f"S{i}" for i in range(n_sites)]),
        time=np.arange(n_days).astype("datetime64[D]").astype("datetime64[ns]"),
        dynamic=dynamic.astype("float32"),
        static=rng.normal(size=(n_sites, 1)).astype("float32"),
        targets=targets.astype("float32"),
        dynamic_names=list(DYNAMIC),
        static_columns={"elevation": [0]},
        target_names=list(TARGETS),
        groups={
            "aridity": np.array(["dry", "humid"] * (n_sites // 2)),
            "site": np.array([f"S{i}" for i in range(n_sites)]),
        },
    )


def identity(target_mean=0.0) -> Normaliser:
    return Normaliser([0.0] * len(DYNAMIC), [1.0] * len(DYNAMIC), [0.0], [1.0], [target_mean] * 2, [1.0] * 2)


def make_context(sites: SiteSet, make_member, n_folds=2, n_members=2, norm=None) -> ExplainContext:
    n = len(sites.sites)
    folds = [
        FoldModel(
            Ensemble([make_member(10 * f + k) for k in range(n_members)], norm or identity(), TARGETS),
            np.arange(f, n, n_folds),
        )
        for f in range(n_folds)
    ]
    return ExplainContext(sites, folds)


def cumulative_tas(sites: SiteSet) -> dict[str, np.ndarray]:
    return {"cum_tas": np.cumsum(sites.dynamic[..., 0], axis=1)}


@pytest.fixture(scope="module")
def integrating():
    sites = make_sites()
    ctx = make_context(sites, integrating_lstm)
    return ctx, cell_states(ctx, cumulative_tas(sites))


def test_the_integrating_cell_is_the_one_most_related_to_the_cumulative_input(integrating):
    _, table = integrating
    for _, rows in table.groupby(["fold", "member"]):
        best = strongest_cells(rows, "cum_tas", "all", n=1).iloc[0]
        assert best["cell"] == INTEGRATOR
        assert abs(best["r_median"]) > 0.95 and abs(best["r_pooled"]) > 0.95
        assert best["sites"] == 3


def test_table_columns_groups_and_variables(integrating):
    _, table = integrating
    assert list(table.columns) == COLUMNS
    assert set(table["variable"]) == {"tas", "pr", "gpp", "et", "cwd", "cum_tas"}
    for fold in (0, 1):
        rows = table[table["fold"] == fold]
        test_sites = [f"site:S{i}" for i in range(fold, 6, 2)]
        assert set(rows["group"]) == {"all", "aridity:dry" if fold == 0 else "aridity:humid", *test_sites}
        assert len(rows) == 2 * HIDDEN * 6 * (2 + 3)  # members x cells x variables x groups
        assert set(rows["cell"]) == set(range(HIDDEN)) and set(rows["member"]) == {0, 1}


def test_per_site_and_pooled_r_are_pearson_correlations(integrating):
    ctx, table = integrating
    sites, fold = ctx.sites, ctx.folds[1]
    cells = member_cells(fold.ensemble.members[1], fold.ensemble, sites, fold.test)
    gpp = sites.targets[fold.test, :, 0]
    rows = table[(table["fold"] == 1) & (table["member"] == 1) & (table["variable"] == "gpp") & (table["cell"] == 3)]
    for i, site in enumerate(fold.test):
        ok = np.isfinite(gpp[i])
        row = rows[rows["group"] == f"site:S{site}"].iloc[0]
        np.testing.assert_allclose(row["r_median"], np.corrcoef(cells[i, ok, 3], gpp[i, ok])[0, 1], atol=1e-6)
        assert row["r_pooled"] == pytest.approx(row["r_median"], abs=1e-6)
    ok = np.isfinite(gpp)
    pooled = np.corrcoef(cells[..., 3][ok], gpp[ok])[0, 1]
    assert rows[rows["group"] == "all"].iloc[0]["r_pooled"] == pytest.approx(pooled, abs=1e-6)


def test_cumulative_water_deficit_by_hand():
    et = np.array([1.0, 1.0, 1.0, 2.0, 1.0, 1.0])
    pr = np.array([0.0, 3.0, 0.0, np.nan, 0.5, 4.0])
    np.testing.assert_allclose(cumulative_water_deficit(et, pr), [1.0, 0.0, 1.0, 1.0, 1.5, 0.0])
    both = cumulative_water_deficit(np.stack([et, et]), np.stack([pr, np.zeros(6)]))
    np.testing.assert_allclose(both[1], [1, 2, 3, 5, 6, 7])


class ConstantModel(FluxModel):
    """Predicts the training mean of every target (normalised 0), with an LSTM-like state."""

    sequential = True

    def forward(self, dynamic, static, state=None):
        zeros = dynamic.new_zeros(dynamic.shape[:2])
        h = dynamic.new_zeros(dynamic.shape[0], 1, 1)
        return dict.fromkeys(self.targets, (zeros, zeros)), (h, h)


def test_cwd_fills_gaps_of_observed_et_with_the_folds_prediction():
    sites = make_sites(n_sites=2, n_days=5)
    sites.targets[..., 1] = [[1.0, np.nan, 1.0, np.nan, 1.0], [np.nan] * 5]
    sites.dynamic[..., 1] = [[0.0, 0.0, 5.0, 0.0, 0.0], [1.0] * 5]
    sites.dynamic[1, 3, 0] = np.nan  # no predictors, so no prediction: the deficit is carried over
    ctx = make_context(sites, lambda seed: ConstantModel(2, 1, TARGETS), norm=identity(target_mean=2.0))
    cwd = reference_series(ctx)["cwd"]
    np.testing.assert_allclose(cwd[0], [1.0, 3.0, 0.0, 2.0, 3.0])
    np.testing.assert_allclose(cwd[1], [1.0, 2.0, 3.0, 3.0, 4.0])


def test_models_without_cells_are_refused():
    sites = make_sites(n_days=40)
    ctx = make_context(sites, lambda seed: MLP(2, 1, TARGETS, hidden=[8]))
    assert not has_cells(ctx)
    with pytest.raises(RecipeError, match="LSTM-type"):
        cell_states(ctx)
    assert has_cells(make_context(sites, integrating_lstm))


def test_references_must_be_sites_by_days():
    sites = make_sites(n_days=40)
    with pytest.raises(DataError, match="reference 'soil'"):
        cell_states(make_context(sites, integrating_lstm), {"soil": np.zeros((6, 39))})


def test_strongest_cells_rank_by_absolute_r():
    table = pd.DataFrame(
        {
            "fold": 0,
            "member": 0,
            "cell": [0, 1, 2, 3],
            "variable": "cwd",
            "group": "all",
            "r_median": [0.2, -0.9, np.nan, 0.5],
            "r_pooled": 0.0,
            "sites": 3,
        }
    )
    assert strongest_cells(table, "cwd", n=3)["cell"].tolist() == [1, 3, 0]
    assert strongest_cells(table, "cwd", group="aridity:dry").empty


def test_plot_cell_states_draws_the_dry_sites(integrating, tmp_path):
    ctx, table = integrating
    name = plot_cell_states(
        ctx, table, tmp_path / "cells.png", variable="cum_tas", references=cumulative_tas(ctx.sites), n_sites=2
    )
    assert name == "cells.png" and (tmp_path / name).stat().st_size > 1000
    with pytest.raises(RecipeError, match="soil"):
        plot_cell_states(ctx, table, tmp_path / "x.png", variable="soil")
