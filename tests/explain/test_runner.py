"""The explain stage: its manifest entry and outputs by hand, and `upscale explain` on finished runs end to end."""

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
from upscale.errors import RecipeError
from upscale.explain.runner import OUTPUTS, SITE_METHODS, ExplainRun, check_methods
from upscale.recipe import EXPLAIN_METHODS, Explain
from upscale.rundir import Manifest

runner = CliRunner()


def explain_run(root, **cfg) -> ExplainRun:
    return ExplainRun(root, Explain(**cfg), ["gpp", "et"], Manifest(root / "manifest.json"), reporter=None)


def test_the_manifest_entry_records_finished_methods(tmp_path):
    run = explain_run(tmp_path)
    assert run.state == {"done": [], "tiles": [], "bundle": None} and not run.done("memory")
    assert run.dir == tmp_path / "explain" and run.targets == ["gpp", "et"]
    run._finish("memory", {"sequential": True})
    run._finish("importance", {"predictors": 3})
    run._finish("memory", {"sequential": False})
    again = explain_run(tmp_path)  # a fresh manifest reads what was saved
    assert again.state["done"] == ["importance", "memory"] and again.done("importance")
    assert again.state["info_memory"] == {"sequential": False}
    assert explain_run(tmp_path, targets=["et"]).targets == ["et"]


def test_reset_removes_exactly_the_outputs_of_the_methods(tmp_path):
    run = explain_run(tmp_path)
    for method in ("importance", "memory", "sensitivity"):
        for name in OUTPUTS[method]:
            path = run.dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if name.endswith(".zarr"):
                (path / "group").mkdir(parents=True)
            else:
                path.write_text("x")
        run._finish(method, {})
    run._save_state(tiles=["0-0", "0-1"], bundle="hash")
    run.reset(["importance", "sensitivity"])
    assert not any((run.dir / name).exists() for name in OUTPUTS["importance"] + OUTPUTS["sensitivity"])
    assert all((run.dir / name).is_file() for name in OUTPUTS["memory"])
    state = explain_run(tmp_path).state
    assert state["done"] == ["memory"] and "info_memory" in state and "info_importance" not in state
    assert state["tiles"] == [] and state["bundle"] is None
    run._save_state(tiles=["0-0"], bundle="hash")
    run.reset(["memory"])  # the sensitivity tiles stay
    assert run.state["tiles"] == ["0-0"] and run.state["bundle"] == "hash" and run.state["done"] == []


def test_figures_go_to_their_own_folder(tmp_path):
    path = explain_run(tmp_path).figure("memory.png")
    assert path == tmp_path / "explain" / "figures" / "memory.png" and path.parent.is_dir()


def test_every_method_names_its_outputs():
    assert set(OUTPUTS) == set(EXPLAIN_METHODS)
    assert set(SITE_METHODS) == set(EXPLAIN_METHODS) - {"sensitivity"}


def test_check_methods_splits_commas_and_refuses_unknown_names():
    assert check_methods(None) is None and check_methods([]) is None
    assert check_methods(["memory, importance", "memory", " ,cell_states"]) == ["memory", "importance", "cell_states"]
    with pytest.raises(RecipeError, match="'saliency'") as refused:
        check_methods(["importance,saliency"])
    assert refused.value.where == "--methods" and "cell_states" in refused.value.fix


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
    assert ds.gpp_attribution.sizes["lag"] == 40 and set(ds.predictor.values) == {"tas", "pr"}
    assert ds.gpp_attribution.attrs["units"] == "g m-2 d-1" and ds.et_attribution.attrs["units"] == "kg m-2 d-1"
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
