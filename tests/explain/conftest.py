"""Fixtures of the explain tests: one torch thread, and finished runs of the tiny world (MLP, LSTM)."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import tiny_recipe_dict
from upscale.cli import app


@pytest.fixture(autouse=True, scope="module")
def _explain_on_one_thread(one_thread):
    """Every explain test module runs on one torch thread (``one_thread`` of tests/conftest.py)."""


def _finished(tiny_world, root, model: dict, explain: dict | None = None):
    """The run directory of ``upscale run`` of the tiny recipe with ``model`` (3 epochs) and ``explain``."""
    data = tiny_recipe_dict(tiny_world, root / "run")
    data["model"] = model
    data["training"].update(epochs=3, patience=2)
    if explain is not None:
        data["explain"] = explain
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture(scope="module")
def mlp_run(tiny_world, tmp_path_factory):
    """A finished MLP run without explanations (its tests add them, so one per module)."""
    return _finished(tiny_world, tmp_path_factory.mktemp("mlp"), {"type": "mlp", "hidden": [16]})


@pytest.fixture(scope="session")
def lstm_run(tiny_world, tmp_path_factory):
    """A finished LSTM run whose explain stage ran the site methods (read only: shared by the modules)."""
    explain = {
        "methods": ["importance", "memory", "attribution", "cell_states"],
        "repeats": 2,
        "lags": [0, 3, 30],
        "window": 40,
        "days_per_site": 2,
        "predictors": ["tas", "pr", "pft"],
    }
    return _finished(tiny_world, tmp_path_factory.mktemp("lstm"), {"type": "lstm", "hidden": [8]}, explain)
