"""Boosted trees (model.type xgboost): what they learn, their variance, trailing means, chunked inference, a run."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from upscale.batching import SiteData
from upscale.encoding import Normaliser
from upscale.ensemble import Ensemble
from upscale.errors import RecipeError
from upscale.models.registry import build, check_config
from upscale.models.trees import XGBoost, trailing_means
from upscale.train import MemberTask, _rebuild, train_member

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["tas", "pr", "rsds"]
TARGETS = ["gpp", "et"]
SMALL = {"rounds": 60, "learning_rate": 0.2, "max_depth": 4, "early_stopping_rounds": 10}
ROLLING = {"pr": [5, 30], "tas": [10]}


def world(n_sites=10, n_days=300, seed=0) -> SiteData:
    """Sites whose GPP follows rsds and the 30-day rain; noise sd 0.8 on warm days (tas > 0), else 0.2."""
    rng = np.random.default_rng(seed)
    dyn = rng.standard_normal((n_sites, n_days, 3)).astype("float32")
    stat = rng.standard_normal((n_sites, 2)).astype("float32")
    rain30 = np.stack([np.convolve(d, np.ones(30))[:n_days] / 30 for d in dyn[..., 1]])
    noise = np.where(dyn[..., 0] > 0, 0.8, 0.2) * rng.standard_normal((n_sites, n_days))
    gpp = 2 * dyn[..., 2] + 3 * rain30 + stat[:, None, 0] + noise
    et = dyn[..., 0] + dyn[..., 2] + noise
    targets = np.stack([gpp, et], axis=-1).astype("float32")
    targets[0, :40, 1] = np.nan  # gaps in the observations
    sites = np.array([f"S{i}" for i in range(n_sites)])
    return SiteData(sites, dyn, stat, targets, TARGETS, NAMES)


@pytest.fixture(scope="module")
def data() -> SiteData:
    return world()


@pytest.fixture(scope="module")
def norm(data) -> Normaliser:
    return Normaliser.fit(data.dynamic, data.static, data.targets)


def fit(data, norm, rolling=None, val=True, seed=1):
    config = {"type": "xgboost", "rolling": rolling or {}, "trees": SMALL}
    stop = data.subset(np.arange(7, 8)) if val else None
    return train_member(config, data.subset(np.arange(7)), stop, norm, None, seed)


@pytest.fixture(scope="module")
def rolling_member(data, norm) -> XGBoost:
    return fit(data, norm, ROLLING)


def test_trees_learn_the_mean_and_where_the_noise_is(data, norm, rolling_member):
    """Held-out sites: the mean explains most of GPP, and the variance booster sees the noisy (warm) days."""
    pred = Ensemble([rolling_member], norm, TARGETS).predict(data.dynamic[8:], data.static[8:])
    obs = data.targets[8:, :, 0]
    assert 1 - np.var(obs - pred["gpp"].mean) / np.var(obs) > 0.75
    warm = data.dynamic[8:, :, 0] > 0
    for target in TARGETS:
        sd = np.sqrt(pred[target].aleatoric_var)
        # the noise sd is 0.8 and 0.2; the error of the mean at unseen sites adds to both
        assert np.median(sd[warm]) > 1.6 * np.median(sd[~warm]), target
        assert 0.6 < np.median(sd[warm]) < 1.2 and np.median(sd[~warm]) < 0.6, target
    assert np.all(pred["gpp"].epistemic_var == 0)  # one member


def test_trailing_means_help_where_the_rain_of_the_last_month_matters(data, norm, rolling_member):
    plain = fit(data, norm)
    x = (data.dynamic[8:], data.static[8:])
    obs = data.targets[8:, :, 0]
    errors = [
        np.mean((obs - Ensemble([m], norm, TARGETS).predict(*x)["gpp"].mean) ** 2) for m in (plain, rolling_member)
    ]
    assert errors[1] < 0.7 * errors[0]
    assert not plain.sequential and rolling_member.sequential


def test_boosters_stop_early_on_the_validation_sites_and_run_all_rounds_without(data, norm, rolling_member):
    rounds = {key: b.num_boosted_rounds() for key, b in rolling_member.boosters.items()}
    assert set(rounds) == {"gpp-mean", "gpp-log_var", "et-mean", "et-log_var"}
    assert all(1 <= r <= SMALL["rounds"] for r in rounds.values()) and min(rounds.values()) < SMALL["rounds"]
    unstopped = fit(data, norm, val=False)
    assert {b.num_boosted_rounds() for b in unstopped.boosters.values()} == {SMALL["rounds"]}


@given(
    series=st.lists(st.floats(-50, 50, width=32) | st.just(float("nan")), min_size=1, max_size=40),
    window=st.integers(2, 12),
)
@settings(max_examples=60, deadline=None)
def test_trailing_means_are_the_means_of_the_known_days_of_each_window(series, window):
    n = len(series)
    unknown = [float("nan")] * (window - 1)  # the days before the first
    values = torch.tensor(unknown + series, dtype=torch.float32)[None, :, None]
    out = trailing_means(values, [(0, window)], n)[0, :, 0].numpy()
    for day in range(n):
        part = np.array(series[max(0, day - window + 1) : day + 1], dtype="float32")
        known = part[np.isfinite(part)]
        expected = known.astype("float64").mean() if known.size else 0.0
        assert out[day] == pytest.approx(expected, abs=1e-5), day


@given(cuts=st.lists(st.integers(0, 300), max_size=5, unique=True))
@settings(max_examples=15, deadline=None)
def test_chunks_that_hand_the_state_on_give_exactly_one_pass(data, norm, rolling_member, cuts):
    ensemble = Ensemble([rolling_member, rolling_member], norm, TARGETS)
    dyn, stat = data.dynamic[7:], data.static[7:]
    whole = ensemble.predict(dyn, stat)
    bounds = [0, *sorted(cuts), dyn.shape[1]]
    state, pieces = None, []
    for start, stop in itertools.pairwise(bounds):
        out, state = ensemble.predict_chunk(dyn[:, start:stop], stat, state, batch_size=97)
        pieces.append(out)
    for target in TARGETS:
        for part in ("mean", "sd"):
            chunked = np.concatenate([getattr(p[target], part) for p in pieces], axis=1)
            np.testing.assert_array_equal(chunked, getattr(whole[target], part))


def test_a_member_comes_back_from_a_pool_process_as_it_was(data, norm, rolling_member):
    """What a pool worker returns (the state dict, pickled across) rebuilds into the same member."""
    config = {"type": "xgboost", "rolling": ROLLING, "trees": SMALL}
    task = MemberTask(config, data.subset(np.arange(7)), None, norm, None, 1, "cpu")
    rebuilt = _rebuild(task, pickle.loads(pickle.dumps(rolling_member.state_dict())))
    a = Ensemble([rolling_member], norm, TARGETS).predict(data.dynamic[8:], data.static[8:])
    b = Ensemble([rebuilt], norm, TARGETS).predict(data.dynamic[8:], data.static[8:])
    np.testing.assert_array_equal(a["et"].mean, b["et"].mean)
    np.testing.assert_array_equal(a["et"].sd, b["et"].sd)


def test_rolling_names_a_predictor_the_recipe_has():
    with pytest.raises(RecipeError, match=r"model\.rolling names 'sm', which is not a dynamic predictor") as err:
        build({"type": "xgboost", "rolling": {"sm": [30]}}, 3, 2, TARGETS, dynamic_names=NAMES)
    assert err.value.where == "model.rolling" and "tas, pr, rsds" in err.value.fix


def test_check_config_builds_trees_without_counting_weights_and_refuses_rolling_elsewhere():
    check_config({"type": "xgboost", "hidden": [], "rolling": {"pr": [30]}}, NAMES, 2, TARGETS)
    with pytest.raises(RecipeError, match=r"model\.rolling .* is for tree models, not mlp") as err:
        check_config({"type": "mlp", "hidden": [8], "rolling": {"pr": [30]}}, NAMES, 2, TARGETS)
    assert "xgboost" in err.value.fix


# ---- end to end on the tiny world: every stage, then a pickled booster refused by the CLI ----------
# (slow: a whole run, ~1 min on an idle machine; tests/test_bundle.py refuses pickled boosters in CI)


@pytest.fixture(scope="module")
def tree_run(tiny_world, tmp_path_factory):
    """A complete tiny run of boosted trees with trailing means (all stages, in process)."""
    from tests.conftest import tiny_recipe_dict
    from upscale.pipeline import STAGES, open_run, run_stages
    from upscale.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("trees")
    recipe = tiny_recipe_dict(tiny_world, tmp / "run")
    recipe["model"] = {"type": "xgboost", "rolling": {"pr": [30]}, "trees": {"rounds": 40, "learning_rate": 0.2}}
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe))
    run = open_run(load_recipe(tmp / "r.yaml"))
    run_stages(run, STAGES)
    return tmp / "r.yaml", run


@pytest.mark.slow
def test_a_tree_run_goes_end_to_end(tree_run):
    import pandas as pd
    import xarray as xr

    _, run = tree_run
    bundle = sorted(p.name for p in run.files.bundle.iterdir())
    assert bundle[0] == "bundle.json" and bundle[1:] == sorted(
        f"member-{i}-{t}-{part}.ubj" for i in range(2) for t in TARGETS for part in ("mean", "log_var")
    )
    metrics = pd.read_csv(run.files.metrics)
    assert metrics.groupby("target")["r2"].median()["gpp"] > 0.5
    product = xr.open_zarr(run.files.product)
    gpp = product["gpp"].values
    assert np.isfinite(gpp).any() and np.isfinite(product["gpp_sd_aleatoric"].values).any()
    assert product["gpp"].attrs["units"] and product["gpp_sd"].attrs["units"]


@pytest.mark.slow
def test_a_pickled_booster_in_a_run_is_exit_2(tree_run, tmp_path):
    """A pickle in place of a booster, its checksum and the bundle hash recorded to match: refused by name."""
    import json
    import shutil

    from typer.testing import CliRunner

    from upscale.bundle import _meta_hash, _sha256
    from upscale.cli import app

    recipe_path, run = tree_run
    root = tmp_path / "copy"
    shutil.copytree(run.dir, root, ignore=shutil.ignore_patterns("product.zarr", "report"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in ("extract", "evaluate", "train")}
    manifest.update(tiles=[], complete=False)
    manifest.pop("product_bundle", None)
    (root / "manifest.json").write_text(json.dumps(manifest))
    booster = root / "bundle" / "member-1-et-log_var.ubj"
    booster.write_bytes(pickle.dumps({"trees": [1, 2, 3]}))
    meta = json.loads((root / "bundle" / "bundle.json").read_text())
    meta["members"][1]["boosters"]["et-log_var"]["sha256"] = _sha256(booster)
    meta["hash"] = _meta_hash(meta)
    (root / "bundle" / "bundle.json").write_text(json.dumps(meta))
    recipe = yaml.safe_load(recipe_path.read_text())
    recipe["output"]["run_dir"] = str(root)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["apply", str(tmp_path / "r.yaml")])
    text = " ".join(result.output.replace("│", " ").split())  # the panel's borders out of the way
    assert result.exit_code == 2, result.output
    assert "booster file member-1-et-log_var.ubj is a pickle, not an XGBoost model saved as UBJSON or JSON" in text
    assert "upscale train" in text and "Traceback" not in result.output
    assert not (root / "product.zarr").exists()


def test_without_xgboost_installed_a_tree_recipe_is_refused_with_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "xgboost", None)  # import xgboost now raises ImportError
    with pytest.raises(RecipeError, match=r"model\.type xgboost needs the xgboost package") as err:
        check_config({"type": "xgboost"}, NAMES, 2, TARGETS)
    assert "upscale[trees]" in err.value.fix and err.value.where == "model.type"
