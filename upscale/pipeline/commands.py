"""What the commands do: check a recipe, run stages in order (resumably), explain a finished run.

The CLI parses arguments and prints; everything it runs is one call here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from upscale.errors import RecipeError, RunDirError
from upscale.pipeline.domain import apply_index, check_parameters, stage_apply
from upscale.pipeline.run import STAGES, Reporter, Run, open_run, run_log, summary, timed
from upscale.pipeline.stages import (
    check_explain,
    check_time_sampling,
    stage_evaluate,
    stage_explain,
    stage_extract,
    stage_report,
    stage_train,
)
from upscale.recipe import Recipe
from upscale.sources.sitetable import TABLE_ENTRY

_SITE_STAGES = {"extract": stage_extract, "evaluate": stage_evaluate, "train": stage_train, "report": stage_report}


def stages_through(stage: str) -> tuple[str, ...]:
    """The stages up to and including ``stage`` (what ``upscale <stage>`` runs, earlier ones only if missing)."""
    return STAGES[: STAGES.index(stage) + 1]


def execute(
    recipe: Recipe,
    stages: tuple[str, ...] = STAGES,
    overwrite: bool = False,
    new_run: bool = True,
    force: tuple[str, ...] = (),
    reporter: Reporter | None = None,
    start_cluster=None,
) -> dict:
    """Check the recipe against its data, open its run directory and run ``stages``; returns :func:`summary`.

    Parameters
    ----------
    recipe : Recipe
        The loaded recipe.
    stages : tuple of str
        Stages to run, in :data:`STAGES` order; finished ones are skipped unless named in ``force``.
    overwrite, new_run : bool
        See :func:`open_run`.
    reporter : Reporter, optional
        Progress and messages.
    start_cluster : callable, optional
        ``start_cluster(recipe.cluster)`` returns a Dask client, started when a stage first needs one.
    """
    reporter = reporter or Reporter()
    if "apply" in force and recipe.apply is None:
        raise RecipeError(
            "the recipe has no apply section, so there is nothing to apply",
            where="apply",
            fix="Add an apply: section (apply: {} takes the default tiles), or use `upscale run` for a site-only study",
        )
    checked = reporter.progress("checking recipe and data", 1)
    validate(recipe)  # fail on bad input before anything is written
    checked()
    run = open_run(recipe, overwrite=overwrite, reporter=reporter, new_run=new_run)
    reporter.message(f"run directory: {run.dir}")
    factory = (lambda: start_cluster(recipe.cluster)) if start_cluster else None
    run_stages(run, stages, client_factory=factory, force=force)
    return summary(run)


def run_stages(run: Run, stages: tuple[str, ...], client_factory=None, force: tuple[str, ...] = ()) -> None:
    """Run the named stages in order, skipping those already finished unless named in ``force``.

    A run that ``--overwrite`` started replaces the old run once its first stage has finished; if it
    fails or is interrupted before that, the old run is put back (:meth:`~upscale.rundir.RunDir.settle`).
    The Dask client is started when the first stage that needs one asks for it (apply, explain's
    sensitivity maps) and closed at the end.
    """
    from upscale.cluster import LazyClient

    client = LazyClient(client_factory)
    stage_functions = {
        **_SITE_STAGES,
        "apply": lambda r: stage_apply(r, client_factory=client) if r.recipe.apply else {"skipped": True},
        "explain": lambda r: stage_explain(r, client),
    }
    try:
        with run_log(run):
            for name in STAGES:
                if name not in stages or (run.manifest.stage_done(name) and name not in force):
                    continue
                if name in force:  # a re-run stage invalidates everything after it
                    run.manifest.reset_stages(*STAGES[STAGES.index(name) + 1 :])
                    run.manifest.set("complete", False)
                if name == "report":  # after the last stage that needs workers: batch jobs must not idle through it
                    client.close()
                timed(run, name, stage_functions[name])
                run.files.settle()  # the first finished stage of an overwrite: the old run goes
            if all(run.manifest.stage_done(s) for s in STAGES):
                run.manifest.set("complete", True)
    finally:
        client.close()
        if run.files.settle() == "restored":  # the overwrite failed before its first stage finished
            run.reporter.message(f"the run directory holds its previous run again: {run.dir}")


def explain_run(
    run_dir: Path,
    methods: list[str] | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    start_cluster=None,
) -> Run:
    """``upscale explain``: explain a finished run (its recipe's ``explain`` section, or every method).

    Finished explanations are refused unless ``overwrite``; unfinished ones resume.
    ``start_cluster(cluster_cfg)`` returns a Dask client for the sensitivity maps (None: in-process).
    """
    from upscale.explain.runner import ExplainRun, check_methods
    from upscale.recipe import Explain, load_recipe
    from upscale.rundir import RunDir

    methods = check_methods(methods)
    files = RunDir(Path(run_dir).resolve())
    if not files.is_run_dir():
        raise RunDirError("not an upscale run directory", where=str(files.root), fix="Give the folder of a run")
    recipe = load_recipe(files.recipe, [f"output.run_dir={files.root}"])
    run = open_run(recipe, reporter=reporter, new_run=False)
    missing = [s for s in ("extract", "evaluate", "train") if not run.manifest.stage_done(s)]
    if missing:
        raise RunDirError(
            f"the run has not finished {', '.join(missing)}",
            where=str(files.root),
            fix="Finish it with `upscale run` first",
        )
    cfg = (recipe.explain or Explain()).model_copy(update={"methods": methods} if methods else {})
    run.recipe.explain = Explain.model_validate(cfg.model_dump())
    explain = ExplainRun(run.dir, run.recipe.explain, recipe.targets, run.manifest, run.reporter)
    finished = all(explain.done(m) for m in run.recipe.explain.methods) and run.manifest.stage_done("explain")
    if finished and not overwrite:
        raise RunDirError(
            "the run is already explained by these methods",
            where=str(files.explain),
            fix="Pass --overwrite to compute them again",
        )
    if overwrite:
        explain.reset(run.recipe.explain.methods)
    factory = (lambda: start_cluster(run.recipe.cluster)) if start_cluster else None
    run_stages(run, ("explain", "report"), client_factory=factory, force=("explain", "report"))
    return run


def check_model(recipe: Recipe) -> None:
    """Build the recipe's model once on the meta device: its size and predictors, before anything runs."""
    from upscale.encoding import CATEGORICAL
    from upscale.models.registry import check_config
    from upscale.variables import IGBP_CLASSES

    # a class map is one-hot encoded: count every class it may have (the estimate errs large)
    n_static = sum(len(IGBP_CLASSES) if v in CATEGORICAL else 1 for _, v in recipe.static_predictors())
    dynamic_names = [v for _, v in recipe.dynamic_predictors()]
    check_config(recipe.model.model_dump(), dynamic_names, n_static, recipe.targets)


def validate(recipe: Recipe) -> dict:
    """Check a recipe against its data without running anything heavy.

    Opens the catalog and every predictor variable (lazily), recognises the site files by their
    names and headers and finds the sites in the site list (without reading their data; a site
    table is read and checked whole), and checks the model, the explanations, the site
    coordinates, the folds, that the dynamic predictors cover one period and that the apply
    domain lies inside the cubes and holds land. Raises an UpscaleError on the first problem.
    """
    from upscale.features import check_site_pixels, open_predictors
    from upscale.pipeline.checks import check_common_period, check_era5_fields, check_land_in_domain
    from upscale.sources.catalog import cached_catalog

    check_model(recipe)  # an unknown model.type is refused by the registry, naming the known ones
    if recipe.output.parameters:
        check_parameters(recipe.model.type)
    check_explain(recipe)
    if TABLE_ENTRY in recipe.predictors:
        return _validate_table_study(recipe)
    catalog = cached_catalog(str(recipe.catalog))
    for entry in recipe.predictors:
        catalog.entry(entry)
    check_era5_fields(str(catalog.path), recipe.dynamic_predictors())
    dyn, stat = open_predictors(str(catalog.path), recipe.dynamic_predictors(), recipe.static_predictors())
    check_common_period(str(catalog.path), recipe.dynamic_predictors(), recipe.apply.period if recipe.apply else None)
    sites = _checked_sites(recipe, catalog)
    check_site_pixels(sites, dyn.lat.values, dyn.lon.values, None)
    info = {"catalog": str(catalog.path), "sites": int(sites.sizes["site"])}
    if recipe.apply is None:  # a site-only study: no product, no apply domain
        return {**info, "apply": "none (a site-only study: no product)"}
    t_index, lat_index, lon_index = apply_index(recipe, dyn)
    check_land_in_domain(recipe, dyn, stat, (t_index, lat_index, lon_index))
    return {
        **info,
        "grid": f"{lat_index[1] - lat_index[0]} x {lon_index[1] - lon_index[0]} cells",
        "days": t_index[1] - t_index[0],
        "period": f"{str(dyn.time.values[t_index[0]])[:10]}..{str(dyn.time.values[t_index[1] - 1])[:10]}",
    }


def _checked_sites(recipe: Recipe, catalog) -> xr.Dataset:
    """The recipe's sites, their time stamps fit for the model and enough of them for the folds.

    Flux-tower files are only scanned (names, headers, the site list); a site table is read.
    """
    from upscale.features import exclude_sites, read_sites
    from upscale.folds import kfold

    if recipe.sites.source == TABLE_ENTRY:
        sites = read_sites(recipe, catalog)
        check_time_sampling(recipe, sites)
    else:
        catalog.entry(recipe.sites.source)
        sites = catalog.scan_sites(recipe.sites.source, sites=recipe.sites.include)
        sites = exclude_sites(sites, recipe.sites.exclude)
    if recipe.validation.scheme == "kfold":
        kfold(sites.sizes["site"], recipe.validation.folds, recipe.training.seed)  # refuses too few sites
    return sites


def _validate_table_study(recipe: Recipe) -> dict:
    """Every predictor from the site table: no cubes, so no apply; the table is read and checked."""
    if set(recipe.predictors) != {TABLE_ENTRY}:
        others = ", ".join(e for e in recipe.predictors if e != TABLE_ENTRY)
        raise RecipeError(
            f"predictors come from the site table and from catalog entries ({others}); take them from one",
            where="predictors",
            fix="Put every predictor under 'table' (a site-only study), or take them all from the catalog's cubes",
        )
    if recipe.apply is not None:
        raise RecipeError(
            "apply needs gridded predictors, and every predictor of the recipe comes from the site table",
            where="apply",
            fix="Leave out the apply section (a site-only study), or take the predictors from the catalog's "
            "cubes (the same canonical names) to make a product",
        )
    sites = _checked_sites(recipe, None)
    return {
        "sites": int(sites.sizes["site"]),
        "rows": int(np.isfinite(np.stack([sites[t].values for t in recipe.targets])).any(axis=0).sum()),
        "time stamps": sites.attrs["time_sampling"],
        "apply": "none (a site-only study: no product)",
    }
