"""Models registered by name: what is listed, what is built, and the error for an unknown type."""

from __future__ import annotations

import pytest

from upscale.errors import RecipeError
from upscale.models import registry
from upscale.models.base import FluxModel
from upscale.models.registry import available, build, model_class, register


def test_registry_lists_the_model_families():
    assert {"mlp", "lstm", "ealstm", "hybrid"} <= set(available())
    assert available() == sorted(available())


def test_model_class_is_the_registered_class():
    from upscale.models.hybrid import Hybrid
    from upscale.models.lstm import EALSTM, LSTM
    from upscale.models.mlp import MLP

    assert [model_class(n) for n in ("mlp", "lstm", "ealstm", "hybrid")] == [MLP, LSTM, EALSTM, Hybrid]


def test_unknown_type_names_the_key_and_the_choices():
    with pytest.raises(RecipeError, match="unknown model type 'transformer'") as err:
        model_class("transformer")
    assert err.value.where == "model.type"
    assert all(name in err.value.fix for name in ("ealstm", "hybrid", "lstm", "mlp"))


def test_build_passes_the_config_and_context_and_leaves_the_config_alone(monkeypatch):
    seen = {}

    class Probe(FluxModel):
        def __init__(self, n_dynamic, n_static, targets, **kwargs):
            super().__init__(n_dynamic, n_static, targets)
            seen.update(kwargs)

    monkeypatch.setitem(registry._REGISTRY, "probe", Probe)
    config = {"type": "probe", "hidden": [3], "dropout": 0.1}
    model = build(config, 5, 2, ["et"], dynamic_names=["tas"])
    assert isinstance(model, Probe) and (model.n_dynamic, model.n_static, model.targets) == (5, 2, ["et"])
    assert seen == {"hidden": [3], "dropout": 0.1, "dynamic_names": ["tas"]}
    assert config == {"type": "probe", "hidden": [3], "dropout": 0.1}  # "type" is not popped off the caller's


def test_register_returns_the_class_and_makes_it_buildable(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register("tiny")
    class Tiny(FluxModel):
        pass

    assert Tiny.__name__ == "Tiny" and model_class("tiny") is Tiny and "tiny" in available()
