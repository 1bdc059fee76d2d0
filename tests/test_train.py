"""Training and validation: loss masking, sequence windows, folds that never leak."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from upscale import batching, train
from upscale.batching import SiteData
from upscale.errors import RecipeError
from upscale.folds import kfold, koppen_main_class, leave_group_out, leave_one_site_out
from upscale.metrics import decomposed_scores, monthly_components
from upscale.recipe import Training
from upscale.train import cross_validate, gaussian_nll

NAMES = ["tas", "vpd", "rsds", "fapar"]


def site_data(n_sites=6, n_days=120, seed=0) -> SiteData:
    """Synthetic sites whose GPP follows radiation x fAPAR with a lagged (memory) term."""
    rng = np.random.default_rng(seed)
    tas = 15 + 8 * rng.standard_normal((n_sites, n_days))
    vpd = np.abs(8 + 4 * rng.standard_normal((n_sites, n_days)))
    rsds = 150 + 60 * rng.random((n_sites, n_days))
    fapar = 0.2 + 0.6 * rng.random((n_sites, 1)) * np.ones((1, n_days))
    dyn = np.stack([tas, vpd, rsds, fapar], -1).astype("float32")
    gpp = 0.02 * rsds * fapar + 0.1 * np.roll(tas, 3, axis=1)
    et = 0.01 * rsds + 0.05 * vpd
    y = np.stack([gpp, et], -1).astype("float32")
    y[rng.random(y.shape) < 0.1] = np.nan
    static = rng.standard_normal((n_sites, 2)).astype("float32")
    return SiteData(np.array([f"S{i}" for i in range(n_sites)]), dyn, static, y, ["gpp", "et"], NAMES)


def cfg(**kw) -> Training:
    base = dict(
        ensemble=2,
        epochs=3,
        patience=2,
        batch_size=64,
        sequence_length=40,
        warmup=10,
        windows_per_batch=4,
        seed=3,
        workers=1,
    )
    return Training(**{**base, **kw})


# --------------------------------------------------------------------------- loss


def test_loss_ignores_missing_observations():
    mean, log_var = torch.zeros(2, 5), torch.zeros(2, 5)
    y = torch.tensor([[1.0, np.nan, 2.0, np.nan, 0.0], [np.nan] * 5])[..., None]
    loss = gaussian_nll({"gpp": (mean, log_var)}, y, ["gpp"])
    assert float(loss) == pytest.approx(0.5 * (1 + 4 + 0) / 3)  # the mean over the 3 finite obs only


def test_loss_ignores_warmup_steps():
    y = torch.ones(1, 10, 1)
    good, bad = torch.ones(1, 10), torch.ones(1, 10)
    bad[:, :4] = 100.0  # wildly wrong predictions, but only in the warm-up
    zero = torch.zeros(1, 10)
    assert float(gaussian_nll({"gpp": (bad, zero)}, y, ["gpp"], warmup=4)) == pytest.approx(0.0)
    assert float(gaussian_nll({"gpp": (bad, zero)}, y, ["gpp"], warmup=0)) > 1000
    assert float(gaussian_nll({"gpp": (good, zero)}, y, ["gpp"], warmup=4)) == pytest.approx(0.0)


def test_nse_loss_weighs_each_site_by_its_variability():
    mean, log_var = torch.zeros(2, 3), torch.zeros(2, 3)
    y = torch.ones(2, 3, 1)
    scale = torch.tensor([[0.9], [1.9]])
    loss = gaussian_nll({"gpp": (mean, log_var)}, y, ["gpp"], site_scale=scale)
    nse_part = (3 * 1.0**-2 + 3 * 2.0**-2) / 6
    assert float(loss) == pytest.approx(nse_part + 0.5)


def test_censored_likelihood_against_a_hand_computation():
    # latent N(mu, e^log_var); bound -0.5: the first two observations are censored (at and below it)
    mu = torch.tensor([[0.2, -1.0, 0.3, 1.5]])
    log_var = torch.tensor([[0.0, 0.5, -1.0, 0.2]])
    y = torch.tensor([[-0.5, -2.0, 0.1, 1.0]])[..., None]
    loss = gaussian_nll({"gpp": (mu, log_var)}, y, ["gpp"], bounds=[-0.5])
    sd = np.exp(0.5 * log_var.numpy()[0])
    m, o = mu.numpy()[0], y.numpy()[0, :, 0]
    from scipy.stats import norm

    censored = [-norm.logcdf((-0.5 - m[i]) / sd[i]) for i in (0, 1)]
    density = [0.5 * (log_var.numpy()[0, i] + (o[i] - m[i]) ** 2 / sd[i] ** 2) for i in (2, 3)]
    assert float(loss) == pytest.approx(np.mean(censored + density), rel=1e-6)
    unbounded = gaussian_nll({"gpp": (mu, log_var)}, y, ["gpp"], bounds=[None])
    assert float(unbounded) == pytest.approx(float(gaussian_nll({"gpp": (mu, log_var)}, y, ["gpp"])))


def test_censored_likelihood_is_finite_far_from_the_bound():
    mu = torch.tensor([[60.0, -60.0]], requires_grad=True)  # the tail Phi(-60) underflows without log_ndtr
    loss = gaussian_nll({"gpp": (mu, torch.zeros(1, 2))}, torch.full((1, 2, 1), -1.0), ["gpp"], bounds=[0.0])
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) > 100 and torch.isfinite(mu.grad).all()


def test_nse_loss_costs_a_censored_observation_only_above_the_bound():
    y = torch.full((1, 2, 1), -1.0)  # both at or below the bound 0
    scale = torch.tensor([[0.9]])
    below = gaussian_nll({"gpp": (torch.tensor([[-3.0, -0.5]]), torch.zeros(1, 2))}, y, ["gpp"], 0, scale, [0.0])
    above = gaussian_nll({"gpp": (torch.tensor([[2.0, 2.0]]), torch.zeros(1, 2))}, y, ["gpp"], 0, scale, [0.0])
    tail = -np.mean([norm_logcdf(3.0), norm_logcdf(0.5)])
    assert float(below) == pytest.approx(tail, rel=1e-5)  # no squared error: a latent mean below 0 is right
    assert float(above) == pytest.approx(4.0 - norm_logcdf(-2.0), rel=1e-5)


def norm_logcdf(x: float) -> float:
    from scipy.stats import norm

    return float(norm.logcdf(x))


def test_a_trained_ensemble_never_predicts_below_the_bound_on_extreme_inputs():
    data = site_data(n_sites=4)
    ens = train.train_ensemble({"type": "mlp", "hidden": [8]}, data, cfg(epochs=2), seed=1)
    assert ens.bounds == {"gpp": 0.0, "et": 0.0}
    rng = np.random.default_rng(0)
    extreme = (data.dynamic[:, :20] * rng.choice([-1e4, 1e4, 0.0], data.dynamic[:, :20].shape)).astype("float32")
    for target, pred in ens.predict(extreme, data.static).items():
        parts = pred.parts([0.01, 0.5, 0.99])
        for name in ("mean", "q01", "q50", "q99"):
            assert np.isfinite(parts[name]).all() and (parts[name] >= 0).all(), (target, name)
        assert (parts["q01"] <= parts["q50"]).all() and (parts["q50"] <= parts["q99"]).all()


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("kind", ["mlp", "lstm", "hybrid"])
def test_training_is_seeded_and_learns(kind):
    data = site_data()
    model = {"type": kind, "hidden": [8]}
    norm = train.Normaliser.fit(data.dynamic, data.static, data.targets)
    a = train.train_member(model, data, None, norm, cfg(epochs=6), seed=5)
    b = train.train_member(model, data, None, norm, cfg(epochs=6), seed=5)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    untrained = train.train_member(model, data, None, norm, cfg(epochs=1, learning_rate=1e-9), seed=5)
    tensors = batching.Tensors.of(data, norm, "cpu")
    warm = batching.warmup_steps(a.sequential, cfg(), 120)
    assert train._loss_of(a, tensors, data.target_names, warm) < train._loss_of(
        untrained, tensors, data.target_names, warm
    )


def test_no_test_site_reaches_training_or_early_stopping(monkeypatch):
    """What the members train and early-stop on, whether they train one by one or stacked (mlp: stacked)."""
    data = site_data(n_sites=10)
    seen = []
    real = train.run_tasks

    def spy(tasks, workers, on_member=None):
        seen.extend((set(t.fit.sites), set(t.val.sites) if t.val is not None else set()) for t in tasks)
        return real(tasks, workers, on_member)

    monkeypatch.setattr(train, "run_tasks", spy)
    folds = kfold(10, 3, seed=0)
    oof = cross_validate({"type": "mlp", "hidden": [8]}, data, cfg(epochs=1), folds)
    assert len(seen) == 3 * 2
    for k, test_idx in enumerate(folds):
        test_sites = set(data.sites[test_idx])
        for fit_sites, val_sites in seen[2 * k : 2 * k + 2]:
            assert not test_sites & fit_sites and not test_sites & val_sites
            assert val_sites and not fit_sites & val_sites  # each member early-stops on other sites
    assert np.isfinite(oof["gpp"]["mean"]).all()  # every site predicted, out of fold
    sd = oof["gpp"]
    np.testing.assert_allclose(sd["sd"] ** 2, sd["sd_aleatoric"] ** 2 + sd["sd_epistemic"] ** 2, rtol=1e-4)


@pytest.mark.parametrize("kind", ["ealstm", "hybrid"])
def test_members_trained_in_parallel_processes_equal_serial_ones(kind):
    data = site_data()
    _, tasks = train.ensemble_tasks({"type": kind, "hidden": [8]}, data, cfg(epochs=2), seed=4)
    ticks = []
    serial = train.run_tasks(tasks, workers=1)
    parallel = train.run_tasks(tasks, workers=2, on_member=lambda: ticks.append(1))
    assert len(ticks) == len(tasks) == 2
    for a, b in zip(serial, parallel):
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


def test_an_interrupt_stops_the_training_pool_at_once():
    """Ctrl-C while members train in processes: the pool's workers are stopped, none is left behind."""
    import multiprocessing

    data = site_data()
    _, tasks = train.ensemble_tasks({"type": "mlp", "hidden": [8]}, data, cfg(epochs=2, ensemble=3), seed=4)

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.run_tasks(tasks, workers=2, on_member=interrupt)
    assert multiprocessing.active_children() == []


@settings(max_examples=25, deadline=None)
@given(n_sites=st.integers(2, 60), k=st.integers(2, 10), seed=st.integers(0, 10))
def test_kfold_puts_every_site_in_one_test_fold(n_sites, k, seed):
    if n_sites < k:
        with pytest.raises(RecipeError, match="needs at least"):
            kfold(n_sites, k, seed)
        return
    folds = kfold(n_sites, k, seed)
    joined = np.concatenate(folds)
    assert sorted(joined) == list(range(n_sites)) and len(folds) == k
    assert max(map(len, folds)) - min(map(len, folds)) <= 1


def test_leave_one_site_out_and_leave_group_out():
    assert [f.tolist() for f in leave_one_site_out(3)] == [[0], [1], [2]]
    folds = leave_group_out(["ENF", "GRA", "ENF", "CRO", "GRA"])
    assert [f.tolist() for f in folds] == [[3], [0, 2], [1, 4]]  # CRO, ENF, GRA
    with pytest.raises(RecipeError, match="at least 2 groups"):
        leave_group_out(["ENF", "ENF"])


def test_koppen_main_classes_of_hand_made_climates():
    times = pd.date_range("2018-01-01", "2018-12-31").values
    season = -np.cos(2 * np.pi * (np.arange(times.size) - 15) / 365.0)  # coldest mid-January
    tas = np.stack([26 + 2 * season, 25 + 5 * season, 12 + 10 * season, 2 + 18 * season, -10 + 12 * season])
    pr = np.stack(
        [
            np.full(times.size, 6.0),
            np.full(times.size, 0.3),
            np.full(times.size, 2.5),
            np.full(times.size, 2.0),
            np.full(times.size, 1.0),
        ]
    )
    assert koppen_main_class(times, tas, pr).tolist() == ["A", "B", "C", "D", "E"]


# --------------------------------------------------------------------------- metrics


def test_seasonal_cycle_and_anomaly_metrics_by_hand():
    times = pd.date_range("2018-01-01", "2019-12-31").values
    month = pd.DatetimeIndex(times).month.to_numpy()
    year = pd.DatetimeIndex(times).year.to_numpy()
    obs = month.astype(float) + np.where(year == 2019, 1.0, 0.0)  # MSC = month + 0.5, anomalies -+0.5
    pred = month.astype(float) + 0.5  # the right cycle, no anomalies
    msc_obs, _, anom_obs, _ = monthly_components(times, obs, pred)
    np.testing.assert_allclose(msc_obs, np.arange(1, 13) + 0.5)
    np.testing.assert_allclose(anom_obs, np.r_[np.full(12, -0.5), np.full(12, 0.5)])
    scores = decomposed_scores(times, obs, pred)
    assert scores["msc_nse"] == pytest.approx(1.0) and scores["msc_r2"] == pytest.approx(1.0)
    assert scores["anomaly_nse"] == pytest.approx(0.0)  # predicting zero anomaly = the anomalies' mean
