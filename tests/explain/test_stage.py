"""The explain stage end to end: `upscale explain` on finished runs, resume, refusals, the report section."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from tests.conftest import tiny_recipe_dict
from upscale.cli import app

runner = CliRunner()


def _finished(tiny_world, root, model: dict, explain: dict | None = None):
    data = tiny_recipe_dict(tiny_world, root / "run")
    data["model"] = model
    data["training"].update(epochs=3, patience=2)
    if explain is not None:
        data["explain"] = explain
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture(scope="module")
def mlp_run(tiny_world, tmp_path_factory):
    return _finished(tiny_world, tmp_path_factory.mktemp("mlp"), {"type": "mlp", "hidden": [16]})


@pytest.fixture(scope="module")
def lstm_run(tiny_world, tmp_path_factory):
    explain = {"methods": ["importance", "memory", "attribution", "cell_states"], "repeats": 2,
               "lags": [0, 3, 30], "window": 40, "days_per_site": 2, "predictors": ["tas", "pr", "pft"]}
    return _finished(tiny_world, tmp_path_factory.mktemp("lstm"), {"type": "lstm", "hidden": [8]}, explain)


def test_bad_method_names_exit_2(mlp_run):
    result = runner.invoke(app, ["explain", str(mlp_run), "--methods", "importance,saliency"])
    assert result.exit_code == 2
    assert "saliency" in result.output and "cell_states" in result.output
    assert not (mlp_run / "explain").exists()


def test_explain_a_run_without_memory(mlp_run):
    result = runner.invoke(app, ["explain", str(mlp_run), "--methods", "importance,memory,cell_states"])
    assert result.exit_code == 0, result.output
    importance = pd.read_csv(mlp_run / "explain" / "importance.csv")
    assert set(importance.predictor) == {"tas", "vpd", "rsds", "rsds_pot", "pr", "fapar", "ndvi", "pft"}
    assert set(importance.target) == {"gpp", "et"} and (importance.repeats == 5).all()
    memory = pd.read_csv(mlp_run / "explain" / "memory_summary.csv")
    assert np.allclose(memory.filter(like="nse").fillna(0).to_numpy(), 0.0)  # no memory by construction
    assert not (mlp_run / "explain" / "cell_states.csv").exists()  # the MLP has no cells
    report = (mlp_run / "report" / "report.md").read_text()
    assert "## Explanations" in report and "../explain/figures/importance.png" in report
    manifest = json.loads((mlp_run / "manifest.json").read_text())
    assert set(manifest["explain"]["done"]) == {"importance", "memory", "cell_states"}
    assert manifest["complete"]


def test_a_finished_explanation_is_refused_without_overwrite(mlp_run):
    args = ["explain", str(mlp_run), "--methods", "importance"]
    if not (mlp_run / "explain" / "memory.csv").exists():
        assert runner.invoke(app, ["explain", str(mlp_run), "--methods", "importance,memory"]).exit_code == 0
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    before = (mlp_run / "explain" / "importance.csv").stat().st_mtime_ns
    memory = (mlp_run / "explain" / "memory.csv").stat().st_mtime_ns
    again = runner.invoke(app, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert (mlp_run / "explain" / "importance.csv").stat().st_mtime_ns != before
    assert (mlp_run / "explain" / "memory.csv").stat().st_mtime_ns == memory  # other methods stay


def test_explain_is_a_stage_of_run_for_sequence_models(lstm_run):
    folder = lstm_run / "explain"
    memory = pd.read_csv(folder / "memory.csv")
    assert set(memory.k) == {0, 3, 30} and set(memory.predictor) == {"all", "tas", "pr"}
    cells = pd.read_csv(folder / "cell_states.csv")
    assert {"tas", "pr", "gpp", "et", "cwd"} <= set(cells.variable)
    assert cells.cell.max() == 7 and cells.r_median.abs().max() <= 1.0
    ds = xr.open_zarr(folder / "attribution.zarr")
    assert ds.attribution.sizes["lag"] == 40 and set(ds.predictor.values) == {"tas", "pr"}
    assert ds.attribution.attrs["units"] == "gpp: g m-2 d-1; et: kg m-2 d-1"
    assert float(ds.completeness_error.max()) < 0.05
    for name in ("importance.png", "memory.png", "attribution.png", "cell_states.png"):
        assert (folder / "figures" / name).stat().st_size > 5000, name


def test_site_explanations_without_folds_are_refused_by_validate(tiny_world, tmp_path):
    data = tiny_recipe_dict(tiny_world, tmp_path / "run")
    data["validation"] = {"scheme": "none"}
    data["explain"] = {"methods": ["importance", "sensitivity"]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "explain.methods" in result.output and "importance" in result.output
