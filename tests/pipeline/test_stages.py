"""The site stages and the report: what each writes into the run directory and records in the manifest."""

from __future__ import annotations

import pandas as pd
import pytest
import xarray as xr

from upscale.bundle import read_meta
from upscale.errors import RecipeError
from upscale.pipeline import Run, site_data, stage_evaluate, stage_explain
from upscale.pipeline.stages import check_explain
from upscale.recipe import Recipe


def test_extract_writes_the_sites(product_run):
    sites = xr.open_zarr(product_run.files.sites)
    info = product_run.manifest.data["stages"]["extract"]
    assert (info["sites"], info["days"]) == (12, 181)
    assert (sites.sizes["site"], sites.sizes["time"]) == (12, 181)
    assert {"gpp", "et", "tas", "fapar", "static"} <= set(sites.data_vars)


def test_site_data_follows_the_feature_layout(product_run):
    ds, spec, data = site_data(product_run)
    assert spec.dynamic_names == [v for _, v in product_run.recipe.dynamic_predictors()]
    assert data.dynamic.shape == (12, 181, len(spec.dynamic_names)) and data.targets.shape == (12, 181, 2)
    assert data.target_names == ["gpp", "et"] and list(data.sites) == [str(s) for s in ds.site.values]
    assert data.static.shape[0] == 12


def test_cv_outputs_follow_the_contract(product_run):
    run_dir = product_run.dir
    table = pd.read_csv(run_dir / "cv" / "metrics.csv")
    assert list(table.columns[:10]) == [
        "site",
        "target",
        "n",
        "r2",
        "nse",
        "kge",
        "rmse",
        "bias",
        "coverage_50",
        "coverage_90",
    ]
    assert set(table.target) == {"gpp", "et"}
    oof = xr.open_zarr(run_dir / "cv" / "oof.zarr")
    assert oof["gpp_pred"].dims == ("site", "time")
    assert {"lat", "lon"} <= set(oof.coords)
    assert table.groupby("target").r2.median()["gpp"] > 0.3


def test_evaluate_keeps_each_folds_ensemble_and_the_baselines(product_run):
    files = product_run.files
    info = product_run.manifest.data["stages"]["evaluate"]
    assert info["folds"] == 3 and set(info["median"]) == {"gpp", "et"}
    test_sites = [read_meta(files.fold(k))["test_sites"] for k in range(3)]
    assert sorted(s for sites in test_sites for s in sites) == sorted(site_data(product_run)[2].sites)
    assert not files.fold(3).exists()
    summary = pd.read_csv(files.cv_summary)
    assert "hybrid" in set(summary.model) and len(set(summary.model)) > 1  # the model and its baselines
    assert files.baselines.is_file()


def test_train_saves_the_final_bundle(product_run):
    files = product_run.files
    meta = read_meta(files.bundle)
    info = product_run.manifest.data["stages"]["train"]
    assert info["hash"] == meta["hash"] and info["members"] == 2
    assert sorted(meta["training_sites"]) == sorted(site_data(product_run)[2].sites)
    assert set(meta["predictor_ranges"]) and not files.bundle_tmp.exists()


def test_stages_without_work_are_skipped(fresh_run):
    recipe = fresh_run.recipe.model_copy(
        update={"validation": fresh_run.recipe.validation.model_copy(update={"scheme": "none"})}
    )
    assert stage_evaluate(Run(recipe, fresh_run.files, fresh_run.manifest)) == {"skipped": True}
    assert fresh_run.recipe.explain is None and stage_explain(fresh_run) == {"skipped": True}
    assert not fresh_run.files.cv.exists() and not fresh_run.files.explain.exists()


def _check_explain(refused_message: str | None, **recipe) -> None:
    """check_explain on a minimal recipe: passes when ``refused_message`` is None, else raises it."""
    recipe = Recipe.model_validate({"catalog": "c", "predictors": {"era5": ["tas"]}, "apply": {}, **recipe})
    if refused_message is None:
        check_explain(recipe)
        return
    with pytest.raises(RecipeError, match=refused_message):
        check_explain(recipe)


@pytest.mark.parametrize(
    "explain, scheme, refused",
    [
        ({"methods": ["importance", "sensitivity"]}, "none", "importance"),
        ({}, "none", "importance, memory, attribution, cell_states"),
        ({"methods": ["sensitivity"]}, "none", None),
        (None, "none", None),
        ({}, "kfold", None),
    ],
)
def test_site_explanations_need_the_folds(explain, scheme, refused):
    message = None if refused is None else f"methods {refused} run on the cross-validation folds"
    _check_explain(message, explain=explain, validation={"scheme": scheme})


def test_report_records_its_figures(product_run):
    """What stage_report returns (the figure names) is what the report folder holds (rerun: tests/test_cli.py)."""
    figures = product_run.manifest.data["stages"]["report"]["figures"]
    assert figures and sorted(figures) == sorted(p.name for p in product_run.files.report.glob("*.png"))
    assert "Cross-validated skill" in product_run.files.report_md.read_text()


@pytest.mark.parametrize(
    "methods, refused", [(["importance", "memory"], None), (["importance", "sensitivity"], "sensitivity")]
)
def test_gradient_explanations_of_trees_are_refused(methods, refused):
    message = None if refused is None else f"methods {refused} differentiate the model, and xgboost models have no"
    _check_explain(message, model={"type": "xgboost"}, explain={"methods": methods})
