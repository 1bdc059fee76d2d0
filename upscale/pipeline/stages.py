"""The stages that work at the sites, and the report: extract, evaluate (CV), train, explain, report.

Each stage is a function of a :class:`~upscale.pipeline.run.Run` returning what the manifest
records of it; the apply stage lives in :mod:`upscale.pipeline.domain`.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import xarray as xr

from upscale.devices import resolve_device
from upscale.errors import RecipeError
from upscale.pipeline.domain import apply_domain
from upscale.pipeline.run import Run


def stage_extract(run: Run) -> dict:
    """Extract the predictors at the site pixels and join the site observations: ``sites.zarr``."""
    from upscale.features import extract_sites

    ds = extract_sites(run.recipe, run.catalog if run.recipe.catalog else None)
    check_time_sampling(run.recipe, ds)
    ds.to_zarr(run.files.sites, mode="w")
    info = {"sites": int(ds.sizes["site"]), "days": int(ds.sizes["time"])}
    return {**info, "time_sampling": ds.attrs["time_sampling"]} if "time_sampling" in ds.attrs else info


def check_time_sampling(recipe, sites: xr.Dataset) -> None:
    """Models with memory run over consecutive days: refuse them on a site table's irregular time stamps."""
    from upscale.models.registry import model_class
    from upscale.sources.sitetable import IRREGULAR

    if sites.attrs.get("time_sampling") != IRREGULAR or not model_class(recipe.model.type).sequential:
        return
    stamps = ", ".join(str(t)[:16] for t in sites.time.values[:3])
    raise RecipeError(
        f"the {recipe.model.type} model has memory (it runs over consecutive days), and the site table's "
        f"time stamps are irregular ({stamps}, ...)",
        where="model.type",
        fix="Use a model without memory (e.g. model.type: mlp), or give the table one row per site and day "
        "stamped at midnight",
    )


def site_data(run: Run):
    """The extracted sites: their Dataset, feature layout and training arrays."""
    from upscale.batching import SiteData
    from upscale.encoding import FeatureSpec

    ds = xr.open_zarr(run.files.sites).load()
    spec = FeatureSpec.from_dict(json.loads(ds.attrs["feature_spec"]))
    return ds, spec, SiteData.from_dataset(ds, spec.dynamic_names, run.recipe.targets)


def stage_evaluate(run: Run) -> dict:
    """Leave-site-out cross-validation: ``cv/oof.zarr``, ``cv/metrics.csv``, the baselines and the fold bundles."""
    from upscale.baselines import baseline_metrics
    from upscale.evaluation import comparison_table, metrics_table, oof_dataset, site_folds, summarise_metrics
    from upscale.train import out_of_fold, train_folds
    from upscale.variables import lower_bounds

    recipe, files = run.recipe, run.files
    bounds = lower_bounds(recipe.targets, recipe.output.negative_et)
    if recipe.validation.scheme == "none":
        return {"skipped": True}
    ds, spec, data = site_data(run)
    folds = site_folds(recipe, ds)
    advance = run.reporter.progress("cross-validation (members)", len(folds) * recipe.training.ensemble)
    ensembles = train_folds(
        recipe.model.model_dump(),
        data,
        recipe.training,
        folds,
        resolve_device(recipe.training.device),
        on_member=advance,
        bounds=bounds,
    )
    run.reporter.done("cross-validation (members)")
    _save_fold_bundles(run, ensembles, folds, spec, data.sites)
    quantiles = recipe.output.quantiles
    oof = out_of_fold(ensembles, data, folds, quantiles)
    out = oof_dataset(ds, data.targets, oof, recipe.targets, folds, quantiles, bounds)
    files.cv.mkdir(exist_ok=True)
    out.to_zarr(files.oof, mode="w")
    table = metrics_table(out, recipe.targets)
    table.to_csv(files.metrics, index=False, float_format="%.4f")
    baselines = baseline_metrics(ds, recipe.targets)
    baselines.to_csv(files.baselines, index=False, float_format="%.4f")
    comparison_table(recipe.model.type, table, baselines).to_csv(files.cv_summary, index=False, float_format="%.4f")
    return {"median": summarise_metrics(table), "folds": len(folds)}


def _save_fold_bundles(run: Run, ensembles: list, folds: list[np.ndarray], spec, sites: np.ndarray) -> None:
    """Keep each fold's ensemble as a bundle (``cv/folds/fold-<k>``): explanations run out of sample."""
    from upscale.bundle import save_bundle

    shutil.rmtree(run.files.folds, ignore_errors=True)
    for k, (ensemble, test_idx) in enumerate(zip(ensembles, folds)):
        save_bundle(
            ensemble,
            spec,
            run.recipe.model.model_dump(),
            run.files.fold(k),
            extra={"fold": k, "test_sites": [str(s) for s in sites[test_idx]]},
        )


def stage_train(run: Run) -> dict:
    """Train the final ensemble on all sites and save it as ``bundle/``."""
    from upscale.bundle import save_bundle
    from upscale.cf import predictor_ranges
    from upscale.train import train_ensemble
    from upscale.variables import lower_bounds

    recipe, files = run.recipe, run.files
    ds, spec, data = site_data(run)
    advance = run.reporter.progress("training (members)", recipe.training.ensemble)
    ensemble = train_ensemble(
        recipe.model.model_dump(),
        data,
        recipe.training,
        recipe.training.seed,
        resolve_device(recipe.training.device),
        on_member=advance,
        bounds=lower_bounds(recipe.targets, recipe.output.negative_et),
    )
    run.reporter.done("training (members)")
    shutil.rmtree(files.bundle_tmp, ignore_errors=True)
    ranges = predictor_ranges(data.dynamic, data.static, data.targets, spec.dynamic_names, spec.static_names)
    digest = save_bundle(
        ensemble,
        spec,
        recipe.model.model_dump(),
        files.bundle_tmp,
        extra={"training_sites": [str(s) for s in ds.site.values], "predictor_ranges": ranges},
    )
    shutil.rmtree(files.bundle, ignore_errors=True)
    files.bundle_tmp.rename(files.bundle)
    return {"hash": digest, "members": recipe.training.ensemble}


def check_explain(recipe) -> None:
    """Site-level explanations need the cross-validation folds, sensitivity maps an apply section: refuse
    them before anything runs."""
    from upscale.explain.runner import SITE_METHODS
    from upscale.models.registry import model_class

    methods = recipe.explain.methods if recipe.explain else []
    site_methods = [m for m in methods if m in SITE_METHODS]
    if site_methods and recipe.validation.scheme == "none":
        raise RecipeError(
            f"the explanation methods {', '.join(site_methods)} run on the cross-validation folds, "
            "and validation.scheme is 'none'",
            where="explain.methods",
            fix="Choose a validation scheme (e.g. kfold), or keep only 'sensitivity'",
        )
    gradient_methods = [m for m in methods if m in ("attribution", "sensitivity")]
    if gradient_methods and not model_class(recipe.model.type).differentiable:
        raise RecipeError(
            f"the explanation methods {', '.join(gradient_methods)} differentiate the model, and "
            f"{recipe.model.type} models have no gradients",
            where="explain.methods",
            fix="Keep importance, memory and cell_states for this model, or choose a neural model",
        )
    if "sensitivity" in methods and recipe.apply is None:
        raise RecipeError(
            "sensitivity maps run over the apply domain, and the recipe has no apply section (a site-only study)",
            where="explain.methods",
            fix="Add an apply section, or leave 'sensitivity' out of explain.methods",
        )


def stage_explain(run: Run, client_factory=None) -> dict:
    """Explanations of the recipe's ``explain`` section into ``explain/`` (resuming finished methods and tiles)."""
    from upscale.explain.runner import ExplainRun

    cfg = run.recipe.explain
    if cfg is None:
        return {"skipped": True}
    explain = ExplainRun(run.dir, cfg, run.recipe.targets, run.manifest, run.reporter)
    info = explain.run_site_methods(
        cfg.methods, device=resolve_device(run.recipe.training.device), threads=run.recipe.cluster.torch_threads()
    )
    if "sensitivity" in cfg.methods:
        info["sensitivity"] = explain.run_sensitivity(apply_domain(run), client_factory)
    return {"methods": list(cfg.methods), **{k: v for k, v in info.items() if v}}


def stage_report(run: Run) -> dict:
    """Figures and ``report/report.md`` of the run."""
    from upscale.report import write_report

    return {"figures": write_report(run.dir, run.recipe.targets)}
