"""Memory effects: hand-made models whose memory is known, and the batched restarts against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from upscale.ensemble import Ensemble
from upscale.errors import RecipeError
from upscale.explain.context import ExplainContext, FoldModel, SiteSet
from upscale.explain.memory import (
    MEMORY_COLUMNS,
    evaluation_days,
    lagged_predictions,
    memory_effects,
    memory_summary,
    plot_memory,
    plot_memory_groups,
    shuffled_history,
    site_scores,
)
from upscale.explain.stepping import states_after
from upscale.encoding import Normaliser
from upscale.metrics import monthly_components, nse, r2
from upscale.models.lstm import LSTM
from upscale.models.mlp import MLP

NAMES = ["tas", "pr", "rsds"]
TARGETS = ["gpp", "et"]
N_SITES, N_DAYS, N_STATIC = 6, 300, 2
READ_COLUMN, READ_LAG = 1, 5


class ShiftRegister(torch.nn.Module):
    """gpp_t = x_{t-lag} of one column, et_t = 2 x_{t-lag}; the state is the last ``lag`` inputs [B, lag]."""

    sequential = True

    def __init__(self, column: int, lag: int):
        super().__init__()
        self.column, self.lag, self.targets = column, lag, list(TARGETS)

    def forward(self, dynamic, static, state=None):
        register = dynamic.new_zeros(dynamic.shape[0], self.lag) if state is None else state[0]
        sequence = torch.cat([register, dynamic[..., self.column]], dim=1)
        mean = sequence[:, :dynamic.shape[1]]
        outputs = {t: (mean * (i + 1), torch.zeros_like(mean)) for i, t in enumerate(self.targets)}
        return outputs, (sequence[:, -self.lag:],)


class PerDay(torch.nn.Module):
    """A per-day model without state: a fixed weighted sum of the day's inputs."""

    sequential = False

    def __init__(self, weights):
        super().__init__()
        self.weights, self.targets = torch.tensor(weights, dtype=torch.float32), list(TARGETS)

    def forward(self, dynamic, static, state=None):
        mean = (dynamic * self.weights).sum(-1) + static.sum(-1, keepdim=True)
        return {t: (mean * (i + 1), torch.zeros_like(mean)) for i, t in enumerate(self.targets)}, None


def identity_normaliser() -> Normaliser:
    k = len(TARGETS)
    return Normaliser([0.0] * len(NAMES), [1.0] * len(NAMES), [0.0] * N_STATIC, [1.0] * N_STATIC,
                      [0.0] * k, [1.0] * k)


def make_sites(seed: int = 0, n_sites: int = N_SITES, n_days: int = N_DAYS) -> SiteSet:
    rng = np.random.default_rng(seed)
    day = np.arange(n_days)
    season = np.sin(2 * np.pi * day / 365.25)
    dynamic = (season[None, :, None] * rng.uniform(0.5, 1.5, (n_sites, 1, len(NAMES)))
               + rng.normal(0, 1, (n_sites, n_days, len(NAMES)))).astype("float32")
    static = rng.normal(0, 1, (n_sites, N_STATIC)).astype("float32")
    shifted = np.full((n_sites, n_days), np.nan, "float32")
    shifted[:, READ_LAG:] = dynamic[:, :-READ_LAG, READ_COLUMN]
    targets = np.stack([shifted, 2 * shifted], axis=-1)
    time = np.datetime64("2018-01-01", "ns") + day.astype("timedelta64[D]")
    groups = {"igbp": np.array(["ENF", "GRA"] * (n_sites // 2)), "aridity": np.array(["dry"] * 2 + ["humid"] * (n_sites - 2))}
    return SiteSet(np.array([f"S{i}" for i in range(n_sites)]), time, dynamic, static, targets, list(NAMES),
                   {"pft": [0, 1]}, list(TARGETS), groups)


def make_context(members_of_fold, sites: SiteSet | None = None) -> ExplainContext:
    """Two folds over alternating sites; ``members_of_fold()`` builds one fold's members."""
    sites = sites or make_sites()
    index = np.arange(len(sites.sites))
    folds = [FoldModel(Ensemble(members_of_fold(), identity_normaliser(), TARGETS), index[index % 2 == f])
             for f in range(2)]
    return ExplainContext(sites, folds)


def random_lstm(seed: int) -> LSTM:
    torch.manual_seed(seed)
    return LSTM(len(NAMES), N_STATIC, TARGETS, hidden=[8]).eval()


def brute_force(ensemble, real, destroyed, static, day: int, lag: int) -> dict[str, float]:
    """Predict ``day`` in one pass over the series whose days before day-lag are destroyed."""
    corrupted = np.concatenate([destroyed[:max(day - lag, 0)], real[max(day - lag, 0):day + 1]])
    prediction = ensemble.predict(corrupted[None], static[None])
    return {t: float(prediction[t].mean[0, -1]) for t in TARGETS}


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


@pytest.mark.parametrize("members", [
    lambda: [ShiftRegister(READ_COLUMN, READ_LAG)],
    lambda: [random_lstm(1), random_lstm(2)],
    lambda: [PerDay([0.5, -1.0, 2.0])],
], ids=["shift-register", "lstm", "per-day"])
def test_batched_restarts_equal_brute_force(members):
    sites = make_sites(3, n_sites=3, n_days=120)
    sites.dynamic[1, 50, 2] = np.nan  # a missing day: NaN prediction there, zero input to later days
    ensemble = Ensemble(members(), identity_normaliser(), TARGETS)
    variants = [[0, 1, 2], [2]]
    destroyed = shuffled_history(sites.dynamic, variants, np.random.default_rng(5))
    lags, stride = [0, 2, 5, 40], 3
    lagged, full = lagged_predictions(ensemble, sites.dynamic, sites.static, destroyed, lags, stride, batch_steps=200)
    reference = ensemble.predict(sites.dynamic, sites.static)
    for t in TARGETS:
        np.testing.assert_allclose(full[t], reference[t].mean, rtol=1e-5, atol=1e-6)
    checked = 0
    for i, lag in enumerate(lags):
        days = np.flatnonzero(evaluation_days(sites.time.size, lag, stride))
        for day in (days[0], days[days > lag][0], days[np.abs(days - 52).argmin()], days[-1]):
            for v in range(len(variants)):
                for site in range(3):
                    expected = brute_force(ensemble, sites.dynamic[site], destroyed[v, site], sites.static[site],
                                           day, lag)
                    for t in TARGETS:
                        np.testing.assert_allclose(lagged[t][v, i, site, day], expected[t], rtol=1e-5, atol=1e-6,
                                                   err_msg=f"variant {v} site {site} day {day} lag {lag}")
                    checked += 1
    assert checked == len(lags) * 4 * len(variants) * 3
    not_evaluated = ~evaluation_days(sites.time.size, lags[1], stride)
    assert np.isnan(lagged["gpp"][:, 1][..., not_evaluated]).all()


def test_states_at_restart_days_equal_states_after():
    from upscale.explain.restarts import _states_at

    model = random_lstm(4)
    dynamic, static = torch.randn(3, 40, len(NAMES)), torch.randn(3, N_STATIC)
    days = np.array([0, 7, 8, 30, 39])
    with torch.no_grad():
        chunked = _states_at(model, dynamic, static, days)
    every_day = states_after(model, dynamic, static)
    for mine, reference in zip(chunked, every_day):
        torch.testing.assert_close(mine, reference[:, days], rtol=1e-5, atol=1e-6)
    assert _states_at(PerDay([1.0, 1.0, 1.0]), dynamic, static, days) is None


def test_shuffled_history_shuffles_only_the_chosen_columns_within_each_site():
    sites = make_sites()
    destroyed = shuffled_history(sites.dynamic, [[0, 1, 2], [1]], np.random.default_rng(0))
    assert destroyed.shape == (2, *sites.dynamic.shape)
    np.testing.assert_array_equal(destroyed[1][..., [0, 2]], sites.dynamic[..., [0, 2]])
    np.testing.assert_array_equal(destroyed[0][..., 1], destroyed[1][..., 1])
    for site in range(N_SITES):
        for column in range(len(NAMES)):
            np.testing.assert_array_equal(np.sort(destroyed[0, site, :, column]), np.sort(sites.dynamic[site, :, column]))
        assert not np.array_equal(destroyed[0, site], sites.dynamic[site])


def test_site_scores_equal_the_metrics_row_by_row():
    rng = np.random.default_rng(2)
    sites = make_sites(n_days=400)
    obs = rng.normal(3, 1, (5, 400)) + np.sin(np.arange(400) / 58.0)
    pred = obs + rng.normal(0, 0.5, obs.shape)
    pred[:, ~evaluation_days(400, 3, 3)] = np.nan
    obs[0, 40:90] = np.nan
    obs[1] = 1.0  # constant observations: NSE undefined
    pred[2, :] = np.nan
    scores = site_scores(sites.time, obs, pred, min_days=4)
    for row in range(5):
        parts = monthly_components(sites.time, obs[row], pred[row], min_days=4)
        expected = {"nse": nse(obs[row], pred[row]), "r2": r2(obs[row], pred[row]),
                    "msc_nse": nse(parts[0], parts[1]), "anomaly_nse": nse(parts[2], parts[3])}
        for key, value in expected.items():
            np.testing.assert_allclose(scores[key][row], value, rtol=1e-9, atol=1e-12, err_msg=f"{key} row {row}")
    assert np.isnan(scores["nse"][1]) and np.isnan(scores["nse"][2])


def test_table_groups_sites_and_plots(tmp_path):
    ctx = make_context(lambda: [random_lstm(0)])
    table = memory_effects(ctx, lags=(0, 3, 30), predictors=["pr"], stride=3)
    assert list(table.columns) == list(MEMORY_COLUMNS)
    assert set(table.group_by) == {"all", "igbp", "aridity", "site"}
    assert len(table) == 2 * 2 * 3 * (1 + 2 + 2 + N_SITES)
    by = table.set_index(["target", "predictor", "group_by", "group", "k"])
    assert by.loc[("gpp", "pr", "aridity", "dry", 3), "sites"] == 2
    assert by.loc[("gpp", "pr", "all", "all", 3), "sites"] == N_SITES
    sites = table[(table.group_by == "site") & (table.group.isin(["S0", "S1"]))
                  & (table.target == "gpp") & (table.predictor == "pr") & (table.k == 3)]
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
