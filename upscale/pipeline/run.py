"""A recipe bound to its run directory: opening it, logging into it, timing its stages, summarising it."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from upscale import rundir
from upscale.recipe import Recipe, dump_recipe, results_part
from upscale.rundir import Manifest, RunDir
from upscale.sources.catalog import Catalog, cached_catalog

log = logging.getLogger("upscale")

STAGES = ("extract", "evaluate", "train", "apply", "explain", "report")


class Reporter:
    """Progress sink; the CLI subclasses it with rich progress bars. This one stays silent."""

    def progress(self, description: str, total: int):
        """Return a callable that advances a progress display by one step."""
        return lambda: None

    def done(self, description: str) -> None:
        """A progress display is finished."""

    def message(self, text: str) -> None:
        """A line for the person running upscale (the run directory, the cluster and its dashboard)."""
        log.info(text)


@dataclass
class Run:
    """A recipe bound to its run directory."""

    recipe: Recipe
    files: RunDir
    manifest: Manifest
    reporter: Reporter = field(default_factory=Reporter)
    _catalog: Catalog | None = None

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = cached_catalog(str(self.recipe.catalog))
        return self._catalog

    @property
    def dir(self) -> Path:
        return self.files.root

    def path(self, *parts: str) -> Path:
        return self.files.path(*parts)


def same_results(old_yaml: str | None, new_yaml: str) -> bool:
    """Whether a run of the recipe ``old_yaml`` may be resumed by ``new_yaml``.

    See :func:`upscale.recipe.results_part`.
    """
    return results_part(old_yaml) == results_part(new_yaml)


def open_run(recipe: Recipe, overwrite: bool = False, reporter: Reporter | None = None, new_run: bool = True) -> Run:
    """Prepare the run directory: create it, resume it, or refuse.

    A directory holding a finished run is refused unless ``overwrite``; one holding an
    unfinished run of the same recipe is resumed; anything else that is not empty is
    refused (and never touched, even with ``overwrite``, unless it is a run directory).
    An overwritten run is only set aside: :func:`~upscale.pipeline.commands.run_stages` drops it
    once the new run has finished its first stage, or puts it back if the new run fails before.
    """
    files, manifest = rundir.prepare(recipe.output.run_dir, dump_recipe(recipe), same_results, overwrite, new_run)
    return Run(recipe=recipe, files=files, manifest=manifest, reporter=reporter or Reporter())


@contextlib.contextmanager
def run_log(run: Run):
    """Send the upscale logger to ``log.txt`` in the run directory while the block runs."""
    handler = logging.FileHandler(run.files.log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def timed(run: Run, name: str, func) -> None:
    """Run the stage ``func(run)`` and record it, with its duration and what it returns, as finished."""
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


def summary(run: Run) -> dict:
    """What a person wants at the end: where the product is, its size, the CV skill, stage timings."""
    stages = run.manifest.data["stages"]
    product = run.files.product
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
