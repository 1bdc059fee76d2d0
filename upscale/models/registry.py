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


#: The most weights one ensemble member may have (4 GiB of float32): more is a typo in ``model.hidden``.
MAX_PARAMETERS = 2**30


def check_config(config: dict, dynamic_names: list[str], n_static: int, targets: list[str]) -> None:
    """Refuse a model configuration that could not be trained, before anything runs (RecipeError).

    The model is built once on PyTorch's meta device (no memory, no arithmetic), so what a model
    checks in its constructor (e.g. the predictors the hybrid needs) fails here, and so does a
    model too large to train. Models that bring their own trainer (``fit_sites``: boosted trees)
    have no weights to count: they are built plainly, which checks e.g. ``model.rolling``.
    """
    import torch

    cls = model_class(config["type"])
    if config.get("rolling") and not hasattr(cls, "fit_sites"):
        raise RecipeError(
            f"model.rolling (trailing means of predictors) is for tree models, not {config['type']}",
            where="model.rolling",
            fix="Remove model.rolling, or use model.type: xgboost",
        )
    if hasattr(cls, "fit_sites"):  # brings its own trainer (boosted trees): no weights to count, build plainly
        build(config, len(dynamic_names), n_static, targets, dynamic_names=dynamic_names)
        return
    hidden = list(config.get("hidden", ()))
    if len(hidden) < cls.min_hidden:
        raise RecipeError(
            f"the {config['type']} model needs model.hidden to give its state size",
            where="model.hidden",
            fix="Give it at least one width, e.g. model.hidden=[64]",
        )
    with torch.device("meta"):
        model = build(config, len(dynamic_names), n_static, targets, dynamic_names=dynamic_names)
    size = sum(p.numel() for p in model.parameters())
    if size > MAX_PARAMETERS:
        raise RecipeError(
            f"model.hidden {hidden} makes a model of {size:.3g} weights per ensemble member "
            f"(at most {MAX_PARAMETERS:.3g})",
            where="model.hidden",
            fix="Use smaller widths, e.g. model.hidden=[64, 64]",
        )


def _load_builtin() -> None:
    from upscale.models import hybrid, lstm, mlp, trees  # noqa: F401  (each registers itself)
