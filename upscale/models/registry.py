"""Models registered by name, so a recipe can say ``model: {type: mlp}``."""

from __future__ import annotations

from collections.abc import Callable

from upscale.errors import RecipeError

_REGISTRY: dict[str, Callable] = {}


def register(name: str):
    """Class decorator registering a model under ``name``."""

    def wrap(cls):
        _REGISTRY[name] = cls
        return cls

    return wrap


def available() -> list[str]:
    """Names of the registered models."""
    _load_builtin()
    return sorted(_REGISTRY)


def model_class(name: str):
    """The class registered under ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise RecipeError(
            f"unknown model type {name!r}", where="model.type", fix=f"Choose one of {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def build(config: dict, n_dynamic: int, n_static: int, targets: list[str], **context):
    """Instantiate the model named ``config['type']`` with the remaining config as keyword arguments.

    ``context`` (e.g. ``dynamic_names``) tells models that need it which predictor is which;
    models that do not need it ignore it.
    """
    config = dict(config)
    name = config.pop("type")
    return model_class(name)(n_dynamic=n_dynamic, n_static=n_static, targets=targets, **config, **context)


def _load_builtin() -> None:
    from upscale.models import hybrid, lstm, mlp  # noqa: F401  (each registers itself)
