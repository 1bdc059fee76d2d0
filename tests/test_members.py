"""Members trained as one stacked model equal members trained one by one; one pass predicts them all."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from tests.test_train import cfg, site_data
from upscale import members, train
from upscale.ensemble import Ensemble
from upscale.models.stacked import Stacked, stack_parameters, stackable

MODELS = {
    "mlp": {"type": "mlp", "hidden": [16, 16]},
    "lstm": {"type": "lstm", "hidden": [8]},
    "ealstm": {"type": "ealstm", "hidden": [8, 6]},
}


def _tasks(kind: str, **changes):
    data = site_data(n_sites=10, n_days=100, seed=1)
    data.targets[:3, :60] = np.nan  # sites of fewer days: members see different numbers of site-days
    settings = cfg(**{"ensemble": 3, "epochs": 5, "patience": 1, "learning_rate": 0.05, **changes})
    norm, tasks = train.ensemble_tasks(MODELS[kind], data, settings, seed=7)
    return data, norm, tasks


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_stacked_members_equal_separate_members(kind, caplog):
    data, norm, tasks = _tasks(kind)
    separate, stops = [], []
    for t in tasks:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="upscale"):
            separate.append(train.train_member(t.model_config, t.fit, t.val, t.norm, t.cfg, t.seed))
        stops.append(next((r.message[:24] for r in caplog.records if "early stop" in r.message), "never"))
    assert len(set(stops)) >= 2, stops  # the members stop at different epochs (or some never do)
    together = members.train_stacked(tasks)
    for a, b in zip(separate, together):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(x, y, atol=2e-4, rtol=1e-3), (kind, name, float((x - y).abs().max()))
    targets = data.target_names
    one = Ensemble(separate, norm, targets).predict(data.dynamic[:3], data.static[:3])
    other = Ensemble(together, norm, targets).predict(data.dynamic[:3], data.static[:3])
    for name in targets:
        np.testing.assert_allclose(one[name].mean, other[name].mean, rtol=1e-3, atol=1e-3)


def test_members_with_fewer_batches_are_held_still():
    """MLP members see different numbers of site-days, so some run out of batches before the others."""
    _, _, tasks = _tasks("mlp", epochs=2, patience=5, batch_size=40)
    counts = {-(-len(train.Tensors.of(t.fit, t.norm, "cpu").days().dynamic) // 40) for t in tasks}
    assert len(counts) > 1
    together = members.train_stacked(tasks)
    for task, b in zip(tasks, together):
        a = train.train_member(task.model_config, task.fit, task.val, task.norm, task.cfg, task.seed)
        for x, y in zip(a.state_dict().values(), b.state_dict().values()):
            assert torch.allclose(x, y, atol=2e-4, rtol=1e-3)


def test_run_tasks_batches_members_when_asked_and_falls_back_otherwise():
    _, _, tasks = _tasks("lstm", epochs=2, batched_members=True)
    assert members.batchable(tasks)
    assert not members.batchable(tasks[:1])
    dropout = [dataclasses.replace(t, model_config={**t.model_config, "dropout": 0.2}) for t in tasks]
    assert not members.batchable(dropout)
    batched = train.run_tasks(tasks, workers=1)
    separate = [train._run_task(t) for t in tasks]
    for a, b in zip(separate, batched):
        assert torch.allclose(a.head.linear.weight, b.head.linear.weight, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_one_pass_equals_the_members_one_by_one(kind):
    torch.manual_seed(0)
    models = [train.build(MODELS[kind], 4, 2, ["gpp", "et"]) for _ in range(3)]
    assert stackable(models)
    stacked = Stacked(models[0])
    xd, xs = torch.randn(5, 30, 4), torch.randn(5, 2)
    state = tuple(torch.randn(3, 5, 1, models[0].lstm.hidden_size) for _ in "hc") if kind != "mlp" else None
    with torch.no_grad():
        outputs, new_state = stacked.forward(stack_parameters(models), xd, xs, state)
        for i, model in enumerate(models):
            own = model(xd, xs, None if state is None else tuple(s[i] for s in state))
            for target in ("gpp", "et"):
                for x, y in zip(own[0][target], outputs[target]):
                    assert torch.allclose(x, y[i], atol=1e-5)
            if state is not None:
                assert all(torch.allclose(x, y[i], atol=1e-5) for x, y in zip(own[1], new_state))


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_the_ensembles_one_pass_equals_its_member_loop(kind):
    """Chunked in time (state handed on) and in pixel batches, with ``Ensemble.stacked`` on and off."""
    data, norm, _ = _tasks(kind)
    torch.manual_seed(0)
    models = [train.build(MODELS[kind], 4, 2, data.target_names) for _ in range(3)]
    results = []
    for stacked in (False, True):
        ensemble = Ensemble(models, norm, data.target_names, bounds={"gpp": 0.0})
        ensemble.stacked = stacked
        first, state = ensemble.predict_chunk(data.dynamic[:, :40], data.static, None, batch_size=160)
        second, _ = ensemble.predict_chunk(data.dynamic[:, 40:], data.static, state, batch_size=160)
        results.append({t: np.concatenate([first[t].mean, second[t].mean], 1) for t in data.target_names})
        results[-1].update({f"{t}_sd": np.concatenate([first[t].sd, second[t].sd], 1) for t in data.target_names})
    assert np.isfinite(results[0]["gpp"]).any()
    for name, values in results[0].items():
        np.testing.assert_allclose(values, results[1][name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kind, choice, stacked",
    [
        ("mlp", "auto", True),
        ("lstm", "auto", False),
        ("ealstm", "auto", False),
        ("lstm", True, True),
        ("mlp", False, False),
    ],
)
def test_auto_stacks_per_day_models_only(kind, choice, stacked):
    _, _, tasks = _tasks(kind, batched_members=choice)
    assert train.stacks_members(tasks) is stacked
    assert not train.stacks_members(tasks[:1])  # one member: nothing to stack


def test_the_recipe_default_is_auto():
    from upscale.recipe import Training

    assert Training().batched_members == "auto"
    assert Training(batched_members=True).batched_members is True
