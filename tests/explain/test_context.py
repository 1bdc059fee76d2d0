"""The out-of-sample context: site sets, each site predicted by its own fold, site groups, aridity, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from upscale.baselines import priestley_taylor_et
from upscale.encoding import FeatureSpec, Normaliser
from upscale.ensemble import Ensemble
from upscale.errors import RunDirError
from upscale.explain.context import (
    DRYLAND_ARIDITY,
    ExplainContext,
    FoldModel,
    SiteSet,
    aridity_groups,
    load_context,
    site_groups,
    static_columns,
)


def make_sites(n_sites: int = 4, n_days: int = 5, groups=None) -> SiteSet:
    rng = np.random.default_rng(0)
    return SiteSet(
        np.array([f"S{i}" for i in range(n_sites)]),
        np.datetime64("2018-01-01", "ns") + np.arange(n_days).astype("timedelta64[D]"),
        rng.normal(size=(n_sites, n_days, 2)).astype("float32"),
        rng.normal(size=(n_sites, 1)).astype("float32"),
        rng.normal(size=(n_sites, n_days, 1)).astype("float32"),
        ["tas", "pr"],
        {"elevation": [0]},
        ["gpp"],
        groups or {},
    )


class Constant(torch.nn.Module):
    """Predicts ``value`` (normalised) every day."""

    def __init__(self, value: float, sequential: bool = False):
        super().__init__()
        self.value, self.sequential, self.targets = value, sequential, ["gpp"]

    def forward(self, dynamic, static, state=None):
        mean = dynamic.new_full(dynamic.shape[:2], self.value)
        return {"gpp": (mean, torch.zeros_like(mean))}, None


def context(sites: SiteSet, sequential: bool = False) -> ExplainContext:
    """Fold 0 tests sites 0 and 2 and predicts 10 + 2 * 1; fold 1 tests sites 1 and 3 and predicts 10 - 2 * 1."""
    norm = Normaliser([0.0, 0.0], [1.0, 1.0], [0.0], [1.0], [10.0], [2.0])
    folds = [
        FoldModel(
            Ensemble([Constant(sign, sequential), Constant(sign, sequential)], norm, ["gpp"]),
            np.array([fold, fold + 2]),
        )
        for fold, sign in ((0, 1.0), (1, -1.0))
    ]
    return ExplainContext(sites, folds)


def test_with_dynamic_and_with_static_change_only_those():
    sites = make_sites(groups={"igbp": np.array(["ENF", "GRA", "ENF", "GRA"])})
    dynamic, static = np.zeros_like(sites.dynamic), np.ones_like(sites.static)
    other = sites.with_dynamic(dynamic)
    assert other.dynamic is dynamic and other.static is sites.static and other.groups is sites.groups
    other = sites.with_static(static)
    assert other.static is static and other.dynamic is sites.dynamic and other.targets is sites.targets
    assert other.static_columns == sites.static_columns and other.time is sites.time


def test_each_site_is_predicted_by_the_fold_that_held_it_out():
    ctx = context(make_sites())
    prediction = ctx.predict()["gpp"]
    assert prediction.shape == (4, 5) and prediction.dtype == np.float32
    np.testing.assert_array_equal(prediction[:, 0], [12.0, 8.0, 12.0, 8.0])
    permuted = ctx.sites.with_dynamic(ctx.sites.dynamic[::-1].copy())
    np.testing.assert_array_equal(ctx.predict(permuted)["gpp"], prediction)
    assert not ctx.sequential and context(make_sites(), sequential=True).sequential


def test_a_site_in_no_fold_is_not_predicted():
    ctx = context(make_sites(n_sites=5))
    assert np.isnan(ctx.predict()["gpp"][4]).all()


def test_site_groups_are_all_then_each_label_sorted():
    groups = {"igbp": np.array(["GRA", "ENF", "GRA", "CRO"]), "aridity": np.array(["humid", "dry", "dry", "dry"])}
    out = site_groups(make_sites(groups=groups))
    assert [name for name, _ in out] == ["all", "igbp:CRO", "igbp:ENF", "igbp:GRA", "aridity:dry", "aridity:humid"]
    masks = dict(out)
    assert masks["all"].tolist() == [True] * 4
    assert masks["igbp:GRA"].tolist() == [True, False, True, False]
    assert masks["aridity:dry"].tolist() == [False, True, True, True]
    assert [name for name, _ in site_groups(make_sites())] == ["all"]


def met(pr: np.ndarray, pot: float | None = None) -> tuple[np.ndarray, list[str]]:
    """Sites of 3 days of 20 degC, 10 hPa, 200 W m-2 and precipitation ``pr`` per site (one day missing)."""
    names = ["pr", "tas", "vpd", "rsds"] + (["rsds_pot"] if pot is not None else [])
    days = np.ones((len(pr), 3, 1))
    columns = [pr[:, None, None] * days, 20.0 * days, 10.0 * days, 200.0 * days]
    dynamic = np.concatenate(columns + ([pot * days] if pot is not None else []), axis=-1)
    dynamic[0, 1, 0] = np.nan  # the means skip missing days
    return dynamic, names


def test_aridity_is_precipitation_over_priestley_taylor_pet():
    pet = float(priestley_taylor_et(20.0, 10.0, 200.0))
    pet_pot = float(priestley_taylor_et(20.0, 10.0, 200.0, 300.0))
    assert pet_pot < 0.9 * pet  # so that site 1 is dry without rsds_pot, humid with it
    pr = np.array([0.0, 0.6, 0.7]) * pet
    assert DRYLAND_ARIDITY == 0.65
    assert aridity_groups(*met(pr)).tolist() == ["dry", "dry", "humid"]
    assert aridity_groups(*met(pr, pot=300.0)).tolist() == ["dry", "humid", "humid"]


def test_aridity_is_unknown_without_a_precipitation_record():
    pet = float(priestley_taylor_et(20.0, 10.0, 200.0))
    dynamic, names = met(np.array([0.2, 0.9]) * pet)
    dynamic[1, :, 0] = np.nan  # site 1 has no precipitation day
    assert aridity_groups(dynamic, names).tolist() == ["dry", "unknown"]


def test_aridity_needs_all_four_drivers():
    dynamic, names = met(np.array([1.0, 2.0]))
    assert aridity_groups(dynamic[..., 1:], names[1:]) is None


def test_static_columns_give_pft_one_column_per_class():
    spec = FeatureSpec(
        dynamic=[("era5", "tas")], static=[("static", "elevation"), ("static", "pft")], pft_classes=[1, 4, 10]
    )
    assert static_columns(spec) == {"elevation": [0], "pft": [1, 2, 3]}


def test_load_context_refuses_a_run_without_fold_ensembles(tmp_path):
    with pytest.raises(RunDirError, match="cv/folds"):
        load_context(tmp_path, ["gpp"])


def test_load_context_of_a_finished_cross_validation(lstm_run):
    import xarray as xr

    ctx = load_context(lstm_run, ["et"])
    stored = xr.open_zarr(lstm_run / "sites.zarr")
    sites = ctx.sites
    assert sites.sites.tolist() == [str(s) for s in stored.site.values] and sites.target_names == ["et"]
    assert sites.dynamic.shape == (len(sites.sites), stored.sizes["time"], len(sites.dynamic_names))
    assert sites.targets.shape == (*sites.dynamic.shape[:2], 1) and sites.dynamic.dtype == np.float32
    assert set(sites.dynamic_names) == {"tas", "vpd", "rsds", "rsds_pot", "pr", "fapar", "ndvi"}
    np.testing.assert_array_equal(sites.dynamic[..., sites.dynamic_names.index("pr")], stored["pr"].values)
    np.testing.assert_array_equal(sites.targets[..., 0], stored["et"].values)
    assert sites.static_columns == {"pft": list(range(sites.static.shape[1]))}
    assert set(sites.groups) == {"igbp", "aridity"} and set(sites.groups["aridity"]) <= {"dry", "humid"}
    assert len(ctx.folds) == 3 and ctx.sequential
    tested = np.sort(np.concatenate([fold.test for fold in ctx.folds]))
    np.testing.assert_array_equal(tested, np.arange(len(sites.sites)))  # every site held out exactly once
