"""Integrated gradients over lags, on hand-made models whose attributions are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from upscale.encoding import Normaliser
from upscale.ensemble import Ensemble
from upscale.errors import DataError, RecipeError
from upscale.explain.attribution import eligible_days, integrated_gradients, plot_attribution
from upscale.explain.context import ExplainContext, FoldModel, SiteSet
from upscale.models.base import FluxModel
from upscale.models.lstm import EALSTM, LSTM
from upscale.models.mlp import MLP

DYNAMIC = ["tas", "pr", "rsds"]
STATIC_COLUMNS = {"pft": [0, 1, 2], "elevation": [3]}


class LaggedLinear(FluxModel):
    """y_t = squash(sum_l sum_f w[l, f] x[t-l, f] + v . static): a sequential model whose state is
    the last ``L`` days of input (zeros: a fresh start)."""

    sequential = True

    def __init__(self, weights: np.ndarray, static_weights: np.ndarray, targets: list[str], squash=None):
        super().__init__(weights.shape[1], len(static_weights), targets)
        self.register_buffer("w", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("v", torch.tensor(static_weights, dtype=torch.float32))
        self.squash = squash or (lambda z: z)

    def forward(self, dynamic, static, state=None):
        lags = self.w.shape[0] - 1
        b, _, f = dynamic.shape
        past = dynamic.new_zeros(b, lags, f) if state is None else state[0]
        x = torch.cat([past, dynamic], dim=1)
        windows = x.unfold(1, lags + 1, 1)  # [B, T, F, L+1]: last index i is lag L - i
        z = torch.einsum("btfi,if->bt", windows, self.w.flip(0)) + (static @ self.v)[:, None]
        y = self.squash(z)
        return {k: (y, torch.zeros_like(y)) for k in self.targets}, (x[:, x.shape[1] - lags :],)


def make_sites(n_sites=6, n_days=20, seed=0, groups=None) -> SiteSet:
    rng = np.random.default_rng(seed)
    pft = np.arange(n_sites) % 3
    static = np.concatenate([np.eye(3)[pft], rng.normal(size=(n_sites, 1))], axis=1).astype("float32")
    return SiteSet(
        sites=np.array([f"S{i}" for i in range(n_sites)]),
        time=np.arange(n_days).astype("datetime64[D]").astype("datetime64[ns]"),
        dynamic=rng.normal(size=(n_sites, n_days, len(DYNAMIC))).astype("float32"),
        static=static,
        targets=rng.normal(size=(n_sites, n_days, 1)).astype("float32"),
        dynamic_names=list(DYNAMIC),
        static_columns=dict(STATIC_COLUMNS),
        target_names=["gpp"],
        groups=groups if groups is not None else {"igbp": np.array(["ENF", "GRA", "CRO"])[pft]},
    )


def normaliser(target_mean=0.0, target_std=1.0, dynamic_mean=0.0, dynamic_std=1.0) -> Normaliser:
    fd, fs = len(DYNAMIC), sum(len(c) for c in STATIC_COLUMNS.values())
    return Normaliser([dynamic_mean] * fd, [dynamic_std] * fd, [0.0] * fs, [1.0] * fs, [target_mean], [target_std])


def make_context(sites: SiteSet, members_of_fold, norm: Normaliser, n_folds=2) -> ExplainContext:
    """``members_of_fold(f)`` -> the models of fold f; fold f tests sites f, f + n_folds, ..."""
    n = len(sites.sites)
    folds = [
        FoldModel(Ensemble(members_of_fold(f), norm, sites.target_names), np.arange(f, n, n_folds))
        for f in range(n_folds)
    ]
    return ExplainContext(sites, folds)


def expected_linear(sites: SiteSet, weights: np.ndarray, window: int, norm: Normaliser) -> np.ndarray:
    """Mean over every eligible (site, day) of w[l, f] * z[t-l, f] * target_std, [F, lag]."""
    z = (sites.dynamic - np.float32(norm.dynamic_mean)) / np.float32(norm.dynamic_std)
    total = np.zeros((len(DYNAMIC), window))
    days = range(window - 1, sites.dynamic.shape[1])
    for lag in range(weights.shape[0]):
        total[:, lag] = sum(weights[lag] * z[s, t - lag] for s in range(len(sites.sites)) for t in days)
    return total * norm.target_std[0] / (len(sites.sites) * len(days))


@pytest.mark.parametrize("shift", [False, True])
def test_linear_model_attribution_is_weight_times_input_minus_baseline(shift):
    rng = np.random.default_rng(1)
    sites = make_sites(n_days=14)
    window = 10  # 5 eligible days per site, all of them sampled
    w1, w2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    v = np.zeros(4)
    norm = normaliser(5.0, 2.0, *((1.5, 3.0) if shift else (0.0, 1.0)))
    ctx = make_context(sites, lambda f: [LaggedLinear(w1, v, ["gpp"]), LaggedLinear(w2, v, ["gpp"])], norm)
    ds = integrated_gradients(ctx, window=window, days_per_site=5, n_steps=4)
    expected = expected_linear(sites, (w1 + w2) / 2, window, norm)
    got = ds.gpp_attribution.sel(group="all").transpose("predictor", "lag").values
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert np.all(got[:, 4:] == 0)
    assert float(ds.completeness_error.sel(target="gpp")) < 1e-5
    assert int(ds.samples.sel(target="gpp", group="all")) == 6 * 5


def test_model_reading_only_lag_5_has_attributions_only_at_lag_5():
    weights = np.zeros((6, 3))
    weights[5] = [0.7, -0.4, 0.2]
    ctx = make_context(
        make_sites(n_days=30), lambda f: [LaggedLinear(weights, np.zeros(4), ["gpp"], torch.tanh)], normaliser()
    )
    ds = integrated_gradients(ctx, window=12, days_per_site=4, n_steps=8)
    absolute = ds.gpp_attribution_abs.sel(group="all")
    assert np.all(absolute.sel(lag=5).values > 0)
    assert np.all(absolute.drop_sel(lag=5).values == 0)
    assert float(ds.completeness_error.sel(target="gpp")) < 0.01


def test_per_day_mlp_has_zero_attribution_at_every_lag_after_0():
    torch.manual_seed(0)
    ctx = make_context(
        make_sites(n_days=30), lambda f: [MLP(3, 4, ["gpp"], hidden=[16, 16]) for _ in range(2)], normaliser()
    )
    ds = integrated_gradients(ctx, window=10, days_per_site=3)
    absolute = ds.gpp_attribution_abs.sel(group="all")
    assert np.all(absolute.sel(lag=0).values > 0)
    assert np.all(absolute.sel(lag=slice(1, None)).values == 0)
    assert np.all(ds.gpp_static_attribution_abs.sel(group="all").values > 0)
    assert float(ds.completeness_error.sel(target="gpp")) < 0.05


@pytest.mark.parametrize("model", [LSTM, EALSTM])
def test_lstm_completeness_under_5_percent_with_the_defaults(model):
    torch.manual_seed(0)
    sites = make_sites(n_sites=4, n_days=200)
    ctx = make_context(sites, lambda f: [model(3, 4, ["gpp"], hidden=[64]) for _ in range(2)], normaliser(1.0, 3.0))
    ds = integrated_gradients(ctx, days_per_site=3)
    assert ds.sizes["lag"] == 180
    assert 0 <= float(ds.completeness_error.sel(target="gpp")) < 0.05
    absolute = ds.gpp_attribution_abs.sel(group="all")
    assert float(absolute.sel(lag=slice(1, 10)).sum()) > 0  # memory: past days matter


def test_steps_are_raised_until_the_completeness_error_is_within_tolerance():
    weights = np.zeros((3, 3))
    weights[0], weights[2] = [2.0, -1.5, 1.0], [1.0, 2.0, -2.0]
    ctx = make_context(
        make_sites(n_days=30), lambda f: [LaggedLinear(weights, np.zeros(4), ["gpp"], torch.tanh)], normaliser()
    )
    fixed = integrated_gradients(ctx, window=5, days_per_site=4, n_steps=2, max_n_steps=2)
    refined = integrated_gradients(ctx, window=5, days_per_site=4, n_steps=2, tolerance=0.005)
    assert int(fixed.n_steps.sel(target="gpp")) == 2
    assert float(fixed.completeness_error.sel(target="gpp")) > 0.005
    assert int(refined.n_steps.sel(target="gpp")) > 2
    assert float(refined.completeness_error.sel(target="gpp")) <= 0.005


def test_static_attribution_sums_the_one_hot_columns():
    sites = make_sites(n_days=12)
    v = np.array([1.0, -2.0, 3.0, 0.5])
    ctx = make_context(sites, lambda f: [LaggedLinear(np.zeros((1, 3)), v, ["gpp"])], normaliser(0.0, 2.0))
    ds = integrated_gradients(ctx, window=4, days_per_site=2, n_steps=2)
    static = ds.gpp_static_attribution.sel(group="all")
    expected_pft = 2.0 * np.mean(sites.static[:, :3] @ v[:3])
    expected_elevation = 2.0 * np.mean(sites.static[:, 3] * v[3])
    np.testing.assert_allclose(float(static.sel(static_predictor="pft")), expected_pft, rtol=1e-5)
    np.testing.assert_allclose(float(static.sel(static_predictor="elevation")), expected_elevation, rtol=1e-5)
    per_igbp = ds.gpp_static_attribution.sel(static_predictor="pft")
    np.testing.assert_allclose(float(per_igbp.sel(group="igbp:GRA")), 2.0 * v[1], rtol=1e-5)
    assert np.all(ds.gpp_attribution.values == 0)


def test_eligible_days_need_an_observation_and_a_finite_window():
    sites = make_sites(n_sites=2, n_days=10)
    sites.dynamic[0, 6, 1] = np.nan
    sites.targets[1, 8, 0] = np.nan
    ok = eligible_days(sites, 0, window=3)
    assert ok[0].tolist() == [False, False, True, True, True, True, False, False, False, True]
    assert ok[1].tolist() == [False, False, True, True, True, True, True, True, False, True]


def test_layout_groups_and_samples():
    groups = {
        "igbp": np.array(["ENF", "GRA", "ENF", "GRA", "ENF", "GRA"]),
        "aridity": np.array(["dry", "dry", "humid", "humid", "humid", "humid"]),
    }
    sites = make_sites(n_days=16, groups=groups)
    sites.targets[0, :, 0] = np.nan
    sites.targets[0, 15, 0] = 1.0  # one eligible day at site 0
    ctx = make_context(sites, lambda f: [LaggedLinear(np.ones((2, 3)), np.zeros(4), ["gpp"])], normaliser())
    ds = integrated_gradients(ctx, window=5, days_per_site=4, n_steps=2)
    assert ds.gpp_attribution.dims == ("predictor", "lag", "group")
    assert ds.gpp_static_attribution.dims == ("static_predictor", "group")
    assert list(ds.group.values) == ["all", "igbp:ENF", "igbp:GRA", "aridity:dry", "aridity:humid"]
    assert list(ds.predictor.values) == DYNAMIC and list(ds.static_predictor.values) == ["pft", "elevation"]
    samples = ds.samples.sel(target="gpp")
    assert samples.sel(group="all") == 1 + 5 * 4
    assert samples.sel(group="aridity:dry") == 1 + 4 and samples.sel(group="igbp:ENF") == 1 + 2 * 4
    assert ds.gpp_attribution.attrs["units"] == "g m-2 d-1" and ds.lag.attrs["units"] == "d"
    assert "baseline" in ds.attrs["comment"] and "n_steps=2" in ds.attrs["comment"]


def test_sampling_is_seeded():
    ctx = make_context(
        make_sites(n_days=40), lambda f: [LaggedLinear(np.ones((3, 3)), np.zeros(4), ["gpp"])], normaliser()
    )
    a, b, c = (integrated_gradients(ctx, window=5, days_per_site=3, n_steps=2, seed=s) for s in (0, 0, 1))
    assert a.equals(b)
    assert not np.allclose(a.gpp_attribution.values, c.gpp_attribution.values)


def test_predictors_selects_the_reported_dynamic_predictors():
    ctx = make_context(
        make_sites(n_days=20), lambda f: [LaggedLinear(np.ones((3, 3)), np.zeros(4), ["gpp"])], normaliser()
    )
    full = integrated_gradients(ctx, window=5, days_per_site=2, n_steps=2)
    some = integrated_gradients(ctx, window=5, days_per_site=2, n_steps=2, predictors=["rsds", "tas"])
    assert list(some.predictor.values) == ["rsds", "tas"]
    assert some.gpp_attribution.equals(full.gpp_attribution.sel(predictor=["rsds", "tas"]))


def test_refusals():
    ctx = make_context(
        make_sites(n_days=10), lambda f: [LaggedLinear(np.ones((1, 3)), np.zeros(4), ["gpp"])], normaliser()
    )
    with pytest.raises(RecipeError, match="et"):
        integrated_gradients(ctx, window=3, targets=["et"])
    with pytest.raises(RecipeError, match="wind"):
        integrated_gradients(ctx, window=3, predictors=["wind"])
    with pytest.raises(DataError, match="shorter window"):
        integrated_gradients(ctx, window=11)


def test_plot_attribution_writes_a_heat_map(tmp_path):
    ctx = make_context(
        make_sites(n_days=30), lambda f: [LaggedLinear(np.ones((3, 3)), np.zeros(4), ["gpp"])], normaliser()
    )
    ds = integrated_gradients(ctx, window=20, days_per_site=2, n_steps=2)
    name = plot_attribution(ds, tmp_path / "attribution.png")
    assert name == "attribution.png"
    assert (tmp_path / name).stat().st_size > 1000


def test_the_integration_core_and_the_totals_stay_importable_from_attribution():
    from upscale.explain import attribution, attribution_totals, integration

    for name in ("IG_METHOD", "DEFAULT_N_STEPS", "DEFAULT_TOLERANCE", "DEFAULT_MAX_N_STEPS", "DEFAULT_INTERNAL_BATCH"):
        assert getattr(attribution, name) is getattr(integration, name)
    assert attribution.LONG_NAMES is attribution_totals.LONG_NAMES
