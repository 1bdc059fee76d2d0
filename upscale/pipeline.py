"""The stages of a run over one run directory: extract, evaluate (CV), train, apply, report.

Each stage is a function of a :class:`Run`; :func:`run_all` chains them and skips the
ones the manifest records as finished, which is what makes ``upscale run`` resumable.
Library code reports progress through a :class:`Reporter` and never prints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import upscale
from upscale.catalog import Catalog, load_catalog
from upscale.errors import RecipeError, RunDirError
from upscale.baselines import baseline_metrics
from upscale.metrics import DECOMPOSED_COLUMNS, METRIC_COLUMNS, decomposed_scores, score
from upscale.recipe import Recipe, dump_recipe
from upscale.store import Manifest

log = logging.getLogger("upscale")

STAGES = ("extract", "evaluate", "train", "apply", "explain", "report")
RUN_ENTRIES = {"recipe.yaml", "manifest.json", "manifest.json.tmp", "log.txt", "sites.zarr", "cv", "bundle",
               "bundle.tmp", "product.zarr", "report", "aggregates", "product.nc", "export.zarr", "explain"}


class Reporter:
    """Progress sink; the CLI subclasses it with rich progress bars. This one stays silent."""

    def progress(self, description: str, total: int):
        """Return a callable that advances a progress display by one step."""
        return lambda: None

    def done(self, description: str) -> None:
        """A progress display is finished."""


@dataclass
class Run:
    """A recipe bound to its run directory."""

    recipe: Recipe
    dir: Path
    manifest: Manifest
    reporter: Reporter = field(default_factory=Reporter)
    _catalog: Catalog | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = load_catalog(self.recipe.catalog)
        return self._catalog

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)


def open_run(recipe: Recipe, overwrite: bool = False, reporter: Reporter | None = None,
             new_run: bool = True) -> Run:
    """Prepare the run directory: create it, resume it, or refuse.

    A directory holding a finished run is refused unless ``overwrite``; one holding an
    unfinished run of the same recipe is resumed; anything else that is not empty is
    refused (and never deleted, even with ``overwrite``, unless it is a run directory).
    """
    run_dir = Path(recipe.output.run_dir)
    manifest_path = run_dir / "manifest.json"
    if run_dir.exists() and any(run_dir.iterdir()):
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_ENTRIES)
        if not _is_run_dir(manifest_path) or foreign:
            extra = f" (it holds {', '.join(foreign[:3])})" if foreign and _is_run_dir(manifest_path) else ""
            raise RunDirError(f"the directory exists and is not an upscale run directory{extra}", where=str(run_dir),
                              fix="Choose another --run-dir (upscale never deletes what it did not make)")
        if overwrite:
            for entry in run_dir.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        else:
            _check_resumable(Manifest(manifest_path), recipe, run_dir, finished_ok=not new_run)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(manifest_path)
    if manifest.get("upscale_run") is None:
        manifest.set("upscale_run", upscale.__version__)
    if manifest.get("recipe") is None or overwrite:
        manifest.set("recipe", dump_recipe(recipe))
        (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    return Run(recipe=recipe, dir=run_dir, manifest=manifest, reporter=reporter or Reporter())


def _is_run_dir(manifest_path: Path) -> bool:
    """Only a manifest that upscale wrote marks a run directory (``manifest.json`` is a common name)."""
    try:
        return "upscale_run" in json.loads(manifest_path.read_text())
    except (OSError, ValueError, TypeError):
        return False


def _check_resumable(manifest: Manifest, recipe: Recipe, run_dir: Path, finished_ok: bool) -> None:
    if manifest.get("complete") and not finished_ok:
        raise RunDirError("the run directory already holds a finished run", where=str(run_dir),
                          fix="Pass --overwrite to start over, or --run-dir for a new directory")
    if _results_part(manifest.get("recipe")) != _results_part(dump_recipe(recipe)):
        raise RunDirError("the run directory holds a run of a different recipe (compare its recipe.yaml)",
                          where=str(run_dir), fix="Pass --overwrite to start over, or --run-dir for a new directory")


def _results_part(recipe_yaml: str | None) -> dict | None:
    """The recipe without its ``cluster`` and ``explain`` sections and run directory: where a run computes
    or lies does not change its results, so a run started on a laptop may resume on a cluster;
    explanations do not change the product, so they may be added to a run later (``upscale explain``)."""
    import yaml

    if recipe_yaml is None:
        return None
    data = yaml.safe_load(recipe_yaml)
    data.pop("cluster", None)
    data.pop("explain", None)
    data.get("output", {}).pop("run_dir", None)  # a moved or copied run directory is the same run
    return data


@contextlib.contextmanager
def run_log(run: Run):
    """Send the upscale logger to ``log.txt`` in the run directory while the block runs."""
    handler = logging.FileHandler(run.path("log.txt"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def _timed(run: Run, name: str, func) -> None:
    log.info("stage %s: start", name)
    t0 = time.perf_counter()
    try:
        info = func(run) or {}
    except Exception:
        log.exception("stage %s failed", name)
        raise
    seconds = time.perf_counter() - t0
    run.manifest.finish_stage(name, seconds, **info)
    log.info("stage %s: done in %.1f s %s", name, seconds, info)


def stage_extract(run: Run) -> dict:
    """Extract the predictors at the site pixels and join the site observations: ``sites.zarr``."""
    from upscale.features import extract_sites

    ds = extract_sites(run.recipe, run.catalog)
    ds.to_zarr(run.path("sites.zarr"), mode="w")
    return {"sites": int(ds.sizes["site"]), "days": int(ds.sizes["time"])}


def _site_data(run: Run):
    import json

    from upscale.features import FeatureSpec
    from upscale.train import SiteData

    ds = xr.open_zarr(run.path("sites.zarr")).load()
    spec = FeatureSpec.from_dict(json.loads(ds.attrs["feature_spec"]))
    return ds, spec, SiteData.from_dataset(ds, spec.dynamic_names, run.recipe.targets)


def stage_evaluate(run: Run) -> dict:
    """Leave-site-out cross-validation: ``cv/oof.zarr`` and ``cv/metrics.csv``."""
    from upscale.features import text_array
    from upscale.train import out_of_fold, pick_device, train_folds

    recipe = run.recipe
    if recipe.validation.scheme == "none":
        return {"skipped": True}
    ds, spec, data = _site_data(run)
    folds = site_folds(recipe, ds)
    advance = run.reporter.progress("cross-validation (members)", len(folds) * recipe.training.ensemble)
    ensembles = train_folds(recipe.model.model_dump(), data, recipe.training, folds,
                            pick_device(recipe.training.device), on_member=advance)
    run.reporter.done("cross-validation (members)")
    _save_fold_bundles(run, ensembles, folds, spec, data.sites)
    oof = out_of_fold(ensembles, data, folds)
    out = xr.Dataset(coords={"site": text_array(ds.site.values), "time": ds.time.values,
                             "lat": ("site", ds.lat.values), "lon": ("site", ds.lon.values),
                             "igbp": ("site", text_array(ds.igbp.values)),
                             "fold": ("site", _fold_of(folds, ds.sizes["site"]))})
    for j, target in enumerate(recipe.targets):
        units = {"units": ds[target].attrs.get("units", "")}
        out[target] = (("site", "time"), data.targets[..., j], units)
        out[f"{target}_pred"] = (("site", "time"), oof[target]["mean"], units)
        for part in ("sd", "aleatoric_sd", "epistemic_sd"):
            out[f"{target}_{part}"] = (("site", "time"), oof[target][part], units)
    run.path("cv").mkdir(exist_ok=True)
    out.to_zarr(run.path("cv", "oof.zarr"), mode="w")
    table = metrics_table(out, recipe.targets)
    table.to_csv(run.path("cv", "metrics.csv"), index=False, float_format="%.4f")
    baselines = baseline_metrics(ds, recipe.targets)
    baselines.to_csv(run.path("cv", "baselines.csv"), index=False, float_format="%.4f")
    comparison_table(recipe.model.type, table, baselines).to_csv(run.path("cv", "summary.csv"), index=False,
                                                                 float_format="%.4f")
    return {"median": summarise_metrics(table), "folds": len(folds)}


def _save_fold_bundles(run: Run, ensembles: list, folds: list[np.ndarray], spec, sites: np.ndarray) -> None:
    """Keep each fold's ensemble as a bundle (``cv/folds/fold-<k>``): explanations run out of sample."""
    from upscale.bundle import save_bundle

    root = run.path("cv", "folds")
    shutil.rmtree(root, ignore_errors=True)
    for k, (ensemble, test_idx) in enumerate(zip(ensembles, folds)):
        save_bundle(ensemble, spec, run.recipe.model.model_dump(), root / f"fold-{k}",
                    extra={"fold": k, "test_sites": [str(s) for s in sites[test_idx]]})


def comparison_table(model: str, table: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Median per-site skill of the learned model and of each baseline, per target (``cv/summary.csv``)."""
    learned = table.assign(model=model)
    both = pd.concat([learned, baselines], ignore_index=True)
    summary = both.groupby(["model", "target"], sort=False)[list(METRIC_COLUMNS)].median().reset_index()
    summary.insert(2, "sites", both.groupby(["model", "target"], sort=False).size().to_numpy())
    return summary


def site_folds(recipe: Recipe, sites: xr.Dataset) -> list[np.ndarray]:
    """Test folds of the recipe's validation scheme over the extracted sites."""
    from upscale.folds import koppen_main_class, make_folds

    groups = None
    if recipe.validation.scheme == "group":
        if recipe.validation.group_by == "igbp":
            groups = sites.igbp.values
        else:
            for name in ("tas", "pr"):
                if name not in sites:
                    raise RecipeError(f"grouping by climate needs the predictor {name!r}",
                                      where="validation.group_by", fix="Add it to predictors or group by igbp")
            groups = koppen_main_class(sites.time.values, sites.tas.values, sites.pr.values)
    return make_folds(recipe.validation.scheme, sites.sizes["site"], recipe.validation.folds,
                      recipe.training.seed, groups)


def _fold_of(folds: list[np.ndarray], n_sites: int) -> np.ndarray:
    fold = np.full(n_sites, -1, dtype="int16")
    for k, idx in enumerate(folds):
        fold[idx] = k
    return fold


def metrics_table(oof: xr.Dataset, targets: list[str]) -> pd.DataFrame:
    """One row per (site, target): the metrics of the daily out-of-fold predictions, and R2 and NSE
    of their mean seasonal cycle and monthly anomalies."""
    rows = []
    for target in targets:
        for i, site in enumerate(oof.site.values):
            obs, pred = oof[target].values[i], oof[f"{target}_pred"].values[i]
            stats = score(obs, pred, oof[f"{target}_sd"].values[i])
            rows.append({"site": str(site), "target": target, **stats,
                         **decomposed_scores(oof.time.values, obs, pred)})
    return pd.DataFrame(rows, columns=["site", "target", *METRIC_COLUMNS, *DECOMPOSED_COLUMNS])


def summarise_metrics(table: pd.DataFrame) -> dict:
    """Median of each metric per target (NaN-skipping), rounded for display."""
    numeric = table.drop(columns="site").groupby("target").median(numeric_only=True)
    return {t: {k: round(float(v), 3) for k, v in row.items()} for t, row in numeric.iterrows()}


def stage_train(run: Run) -> dict:
    """Train the final ensemble on all sites and save it as ``bundle/``."""
    from upscale.bundle import save_bundle
    from upscale.cf import predictor_ranges
    from upscale.train import pick_device, train_ensemble

    recipe = run.recipe
    ds, spec, data = _site_data(run)
    advance = run.reporter.progress("training (members)", recipe.training.ensemble)
    ensemble = train_ensemble(recipe.model.model_dump(), data, recipe.training, recipe.training.seed,
                              pick_device(recipe.training.device), on_member=advance)
    run.reporter.done("training (members)")
    tmp = run.path("bundle.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ranges = predictor_ranges(data.dynamic, data.static, data.targets, spec.dynamic_names, spec.static_names)
    digest = save_bundle(ensemble, spec, recipe.model.model_dump(), tmp,
                         extra={"training_sites": [str(s) for s in ds.site.values], "predictor_ranges": ranges})
    shutil.rmtree(run.path("bundle"), ignore_errors=True)
    tmp.rename(run.path("bundle"))
    return {"hash": digest, "members": recipe.training.ensemble}


@dataclass
class ApplyDomain:
    """The final bundle and the part of the predictor cubes it is applied to (apply and sensitivity maps)."""

    run: Run
    meta: dict
    spec: object  # upscale.features.FeatureSpec
    dyn: xr.Dataset
    index: tuple  # (time, lat, lon) index ranges [start, stop)

    def job(self, store: str):
        """The apply job writing into ``store``: paths, hashes and sizes a worker needs."""
        from upscale.apply import ApplyJob

        recipe, (t_index, lat_index, lon_index) = self.run.recipe, self.index
        return ApplyJob(str(self.run.catalog.path), tuple(map(tuple, self.spec.dynamic)),
                        tuple(map(tuple, self.spec.static)), str(self.run.path("bundle")), self.meta["hash"],
                        store, t_index, lat_index[0], lon_index[0], recipe.apply.time_chunk,
                        recipe.apply.batch_size, recipe.cluster.torch_threads(), recipe.apply.device,
                        recipe.apply.precision)

    def tiles(self) -> list:
        from upscale.apply import plan_tiles

        (_, (la0, la1), (lo0, lo1)), cfg = self.index, self.run.recipe.apply
        return plan_tiles(la1 - la0, lo1 - lo0, cfg.tile_lat, cfg.tile_lon)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The apply domain's days, latitudes and longitudes."""
        t, la, lo = self.index
        return (self.dyn.time.values[slice(*t)], self.dyn.lat.values[slice(*la)], self.dyn.lon.values[slice(*lo)])


def apply_domain(run: Run) -> ApplyDomain:
    """The trained bundle's metadata and its apply domain in the predictor cubes."""
    from upscale.bundle import read_meta
    from upscale.features import FeatureSpec, open_predictors

    meta = read_meta(run.path("bundle"))
    spec = FeatureSpec.from_dict(meta["features"])
    dyn, _ = open_predictors(str(run.catalog.path), spec.dynamic, spec.static)
    return ApplyDomain(run, meta, spec, dyn, _apply_domain(run.recipe, dyn))


def stage_apply(run: Run, client=None) -> dict:
    """Apply the bundle over the grid, tile by tile, into ``product.zarr`` (resuming finished tiles)."""
    from upscale.apply import apply_tiles
    from upscale.cf import global_attrs, product_coords, product_variables
    from upscale.store import create_template

    recipe = run.recipe
    domain = apply_domain(run)
    meta = domain.meta
    store = run.path("product.zarr")
    if run.manifest.get("product_bundle") != meta["hash"] or not store.exists():
        shutil.rmtree(store, ignore_errors=True)
        run.manifest.reset_stages("apply")
        coords = product_coords(*domain.axes())
        chunks = (recipe.apply.time_chunk, recipe.apply.tile_lat, recipe.apply.tile_lon)
        variables = product_variables(meta["targets"], recipe.output.units, "predictor_ranges" in meta)
        if recipe.output.parameters:
            variables.update(_parameter_variables(meta["model"]["type"]))
        create_template(store, coords, variables, chunks, global_attrs(recipe, meta))
        run.manifest.set("product_bundle", meta["hash"])
    job = domain.job(str(store))
    tiles = domain.tiles()
    todo = [t for t in tiles if t.id not in run.manifest.tiles]
    advance = run.reporter.progress("apply (tiles)", len(tiles))
    for _ in range(len(tiles) - len(todo)):
        advance()

    def finished(tile_id: str) -> None:
        run.manifest.add_tile(tile_id)
        advance()

    apply_tiles(client, job, todo, finished)
    run.reporter.done("apply (tiles)")
    return {"tiles": len(tiles), "resumed_tiles": len(tiles) - len(todo)}


def _check_explain(recipe: Recipe) -> None:
    """Site-level explanations need the cross-validation folds: refuse them before anything runs."""
    from upscale.explain.runner import SITE_METHODS

    site_methods = [m for m in (recipe.explain.methods if recipe.explain else []) if m in SITE_METHODS]
    if site_methods and recipe.validation.scheme == "none":
        raise RecipeError(f"the explanation methods {', '.join(site_methods)} run on the cross-validation folds, "
                          "and validation.scheme is 'none'", where="explain.methods",
                          fix="Choose a validation scheme (e.g. kfold), or keep only 'sensitivity'")


def _parameter_variables(model_type: str) -> dict:
    from upscale.cf import parameter_variables

    variables = parameter_variables(model_type)
    if not variables:
        raise RecipeError(f"the {model_type} model has no process parameters to write as maps",
                          where="output.parameters", fix="Use model.type: hybrid, or set output.parameters: false")
    return variables


def _apply_domain(recipe: Recipe, dyn: xr.Dataset):
    """Index ranges [start, stop) of the apply period and bbox in the predictors' axes."""

    times, lat, lon = dyn.time.values, dyn.lat.values, dyn.lon.values
    t_index = (0, times.size)
    if recipe.apply.period:
        start, end = (np.datetime64(recipe.apply.period.start), np.datetime64(recipe.apply.period.end))
        t_index = (int(np.searchsorted(times, start)), int(np.searchsorted(times, end, side="right")))
    lat_index, lon_index = (0, lat.size), (0, lon.size)
    if recipe.apply.bbox:
        lon_min, lat_min, lon_max, lat_max = recipe.apply.bbox
        lat_index = (int(np.searchsorted(lat, lat_min)), int(np.searchsorted(lat, lat_max, side="right")))
        lon_index = (int(np.searchsorted(lon, lon_min)), int(np.searchsorted(lon, lon_max, side="right")))
    for name, (a, b) in (("apply.period", t_index), ("apply.bbox", lat_index), ("apply.bbox", lon_index)):
        if b <= a:
            raise RecipeError("the apply domain is empty: it lies outside the predictor cubes", where=name,
                              fix=f"The cubes span {str(times[0])[:10]}..{str(times[-1])[:10]}, "
                                  f"lat {lat[0]:.2f}..{lat[-1]:.2f}, lon {lon[0]:.2f}..{lon[-1]:.2f}")
    return t_index, lat_index, lon_index


def stage_report(run: Run) -> dict:
    """Figures and ``report/report.md`` of the run."""
    from upscale.report import write_report

    return {"figures": write_report(run.dir, run.recipe.targets)}


def stage_explain(run: Run, client_factory=None) -> dict:
    """Explanations of the recipe's ``explain`` section into ``explain/`` (resuming finished methods and tiles)."""
    from upscale.explain.runner import ExplainRun
    from upscale.train import pick_device

    cfg = run.recipe.explain
    if cfg is None:
        return {"skipped": True}
    explain = ExplainRun(run.dir, cfg, run.recipe.targets, run.manifest, run.reporter)
    info = explain.run_site_methods(cfg.methods, device=pick_device(run.recipe.training.device),
                                    threads=run.recipe.cluster.torch_threads())
    if "sensitivity" in cfg.methods:
        info["sensitivity"] = explain.run_sensitivity(apply_domain(run), client_factory)
    return {"methods": list(cfg.methods), **{k: v for k, v in info.items() if v}}


def explain_run(run_dir: Path, methods: list[str] | None = None, overwrite: bool = False,
                reporter: Reporter | None = None, start_cluster=None) -> Run:
    """``upscale explain``: explain a finished run (its recipe's ``explain`` section, or every method).

    Finished explanations are refused unless ``overwrite``; unfinished ones resume.
    ``start_cluster(cluster_cfg)`` returns a Dask client for the sensitivity maps (None: in-process).
    """
    from upscale.explain.runner import ExplainRun, check_methods
    from upscale.recipe import Explain, load_recipe

    methods = check_methods(methods)
    run_dir = Path(run_dir).resolve()
    if not _is_run_dir(run_dir / "manifest.json"):
        raise RunDirError("not an upscale run directory", where=str(run_dir), fix="Give the folder of a run")
    recipe = load_recipe(run_dir / "recipe.yaml", [f"output.run_dir={run_dir}"])
    run = open_run(recipe, reporter=reporter, new_run=False)
    missing = [s for s in ("extract", "evaluate", "train") if not run.manifest.stage_done(s)]
    if missing:
        raise RunDirError(f"the run has not finished {', '.join(missing)}", where=str(run_dir),
                          fix="Finish it with `upscale run` first")
    cfg = (recipe.explain or Explain()).model_copy(update={"methods": methods} if methods else {})
    run.recipe.explain = Explain.model_validate(cfg.model_dump())
    explain = ExplainRun(run.dir, run.recipe.explain, recipe.targets, run.manifest, run.reporter)
    if all(explain.done(m) for m in run.recipe.explain.methods) and run.manifest.stage_done("explain"):
        if not overwrite:
            raise RunDirError("the run is already explained by these methods", where=str(run.path("explain")),
                              fix="Pass --overwrite to compute them again")
    if overwrite:
        explain.reset(run.recipe.explain.methods)
    factory = (lambda: start_cluster(run.recipe.cluster)) if start_cluster else None
    run_stages(run, ("explain", "report"), client_factory=factory, force=("explain", "report"))
    return run


def run_stages(run: Run, stages: tuple[str, ...], client_factory=None, force: tuple[str, ...] = ()) -> None:
    """Run the named stages in order, skipping those already finished unless named in ``force``.

    The Dask client is started when the first stage that needs one asks for it (apply, explain's
    sensitivity maps) and closed at the end.
    """
    clients: list = []

    def client():
        if not clients:
            clients.append(client_factory() if client_factory else None)
        return clients[0]

    try:
        with run_log(run):
            for name in STAGES:
                if name not in stages or (run.manifest.stage_done(name) and name not in force):
                    continue
                if name in force:  # a re-run stage invalidates everything after it
                    run.manifest.reset_stages(*STAGES[STAGES.index(name) + 1:])
                    run.manifest.set("complete", False)
                if name == "apply":
                    _timed(run, name, lambda r: stage_apply(r, client()))
                elif name == "explain":
                    _timed(run, name, lambda r: stage_explain(r, client))
                else:
                    _timed(run, name, globals()[f"stage_{name}"])
            if all(run.manifest.stage_done(s) for s in STAGES):
                run.manifest.set("complete", True)
    finally:
        if clients and client_factory:
            from upscale.cluster import close_client
            close_client(clients[0])


def summary(run: Run) -> dict:
    """What a person wants at the end: where the product is, its size, the CV skill, stage timings."""
    stages = run.manifest.data["stages"]
    product = run.path("product.zarr")
    size = sum(f.stat().st_size for f in product.rglob("*") if f.is_file()) if product.exists() else 0
    return {
        "run_dir": str(run.dir),
        "product": str(product),
        "product_bytes": size,
        "timings": {k: v["seconds"] for k, v in stages.items()},
        "cv": stages.get("evaluate", {}).get("median", {}),
        "sites": stages.get("extract", {}).get("sites"),
        "days": stages.get("extract", {}).get("days"),
    }


def validate(recipe: Recipe) -> dict:
    """Check a recipe against its data without running anything heavy.

    Opens the catalog, every predictor variable (lazily) and the site entry, and checks
    that the apply domain lies inside the cubes. Raises an UpscaleError on the first problem.
    """
    from upscale.folds import kfold
    from upscale.features import check_site_pixels, exclude_sites, open_predictors
    from upscale.models.registry import available

    if recipe.model.type not in available():
        raise RecipeError(f"unknown model type {recipe.model.type!r}", where="model.type",
                          fix=f"Choose one of {', '.join(available())}")
    if recipe.output.parameters:
        _parameter_variables(recipe.model.type)
    _check_explain(recipe)
    catalog = load_catalog(recipe.catalog)
    for entry in recipe.predictors:
        catalog.entry(entry)
    catalog.entry(recipe.sites.source)
    dyn, _ = open_predictors(str(catalog.path), recipe.dynamic_predictors(), recipe.static_predictors())
    t_index, lat_index, lon_index = _apply_domain(recipe, dyn)
    sites = catalog.open_sites(recipe.sites.source, sites=recipe.sites.include, qc_min=recipe.sites.qc_min,
                               gpp=recipe.sites.gpp_partitioning, le=recipe.sites.le_variant)
    sites = exclude_sites(sites, recipe.sites.exclude)
    check_site_pixels(sites, dyn.lat.values, dyn.lon.values, None)
    n_sites = sites.sizes["site"]
    if recipe.validation.scheme == "kfold":
        kfold(n_sites, recipe.validation.folds, recipe.training.seed)  # refuses too few sites
    return {"catalog": str(catalog.path), "sites": int(n_sites),
            "grid": f"{lat_index[1] - lat_index[0]} x {lon_index[1] - lon_index[0]} cells",
            "days": t_index[1] - t_index[0],
            "period": f"{str(dyn.time.values[t_index[0]])[:10]}..{str(dyn.time.values[t_index[1] - 1])[:10]}"}
