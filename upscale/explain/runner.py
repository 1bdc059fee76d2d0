"""The explain stage: run the chosen methods over a run directory and write ``explain/``.

Each method's outputs are written atomically and recorded in the manifest when complete, so an
interrupted stage resumes with the methods (and sensitivity tiles) it had not finished.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from upscale.rundir import Manifest, RunDir
from upscale.store import write_atomically

log = logging.getLogger("upscale")

SITE_METHODS = ("importance", "memory", "attribution", "cell_states")
FIGURES = "figures"
#: What each method writes into explain/ (``--overwrite`` removes exactly these).
OUTPUTS = {
    "importance": ("importance.csv", "figures/importance.png"),
    "memory": ("memory.csv", "memory_summary.csv", "figures/memory.png", "figures/memory_groups.png"),
    "attribution": ("attribution.zarr", "figures/attribution.png"),
    "cell_states": ("cell_states.csv", "figures/cell_states.png"),
    "sensitivity": ("sensitivity.zarr", "figures/sensitivity_maps.png"),
}


class ExplainRun:
    """The ``explain/`` folder of a run directory and the manifest entry that tracks it.

    Parameters
    ----------
    run_dir : Path
        The run directory (holds ``sites.zarr``, ``cv/folds``, ``bundle``).
    cfg : upscale.recipe.Explain
        Methods and their options.
    targets : list of str
        The run's targets (``cfg.targets`` narrows them).
    manifest : upscale.rundir.Manifest
        The run's manifest (key ``explain``: finished methods and sensitivity tiles).
    """

    def __init__(self, run_dir: Path, cfg, targets: list[str], manifest: Manifest, reporter):
        self.run_dir = Path(run_dir)
        self.dir = RunDir(run_dir).explain
        self.cfg = cfg
        self.targets = list(cfg.targets or targets)
        self.manifest = manifest
        self.reporter = reporter

    @property
    def state(self) -> dict:
        return self.manifest.get("explain") or {"done": [], "tiles": [], "bundle": None}

    def _save_state(self, **changes) -> None:
        self.manifest.set("explain", {**self.state, **changes})

    def done(self, method: str) -> bool:
        return method in self.state["done"]

    def _finish(self, method: str, info: dict) -> None:
        self._save_state(done=sorted({*self.state["done"], method}), **{f"info_{method}": info})

    def reset(self, methods: list[str]) -> None:
        """Forget the explanations of ``methods`` (``--overwrite``); the others stay."""
        for method in methods:
            for name in OUTPUTS[method]:
                path = self.dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        state = self.state
        for method in methods:
            state.pop(f"info_{method}", None)
        if "sensitivity" in methods:
            state.update(tiles=[], bundle=None)
            self.manifest.sensitivity_log.clear()
        self.manifest.set("explain", {**state, "done": [m for m in state["done"] if m not in methods]})

    def figure(self, name: str) -> Path:
        path = self.dir / FIGURES / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def run_site_methods(self, methods: list[str], device: str = "cpu", threads: int = 1) -> dict:
        """Importance, memory, attribution and cell states at the held-out sites, with ``threads`` torch threads."""
        import torch

        todo = [m for m in methods if m in SITE_METHODS and not self.done(m)]
        if not todo:
            return {}
        before = torch.get_num_threads()
        torch.set_num_threads(threads)  # OpenMP's busy-waiting makes extra threads on a busy machine ~100x slower
        try:
            return self._site_methods(todo, device)
        finally:
            torch.set_num_threads(before)

    def _site_methods(self, todo: list[str], device: str) -> dict:
        from upscale.explain.context import load_context

        ctx = load_context(self.run_dir, self.targets, device=device)
        self.dir.mkdir(exist_ok=True)
        infos = {}
        advance = self.reporter.progress("explain (site methods)", len(todo))
        for method in todo:
            log.info("explain: %s", method)
            started = time.perf_counter()
            infos[method] = getattr(self, f"_{method}")(ctx)
            infos[method]["seconds"] = round(time.perf_counter() - started, 2)
            self._finish(method, infos[method])
            advance()
        self.reporter.done("explain (site methods)")
        return infos

    def _dynamic(self, ctx) -> list[str] | None:
        chosen = self.cfg.predictors
        return None if chosen is None else [p for p in chosen if p in ctx.sites.dynamic_names] or None

    def _importance(self, ctx) -> dict:
        from upscale.explain.importance import permutation_importance, plot_importance

        table = permutation_importance(ctx, self.cfg.predictors, self.cfg.repeats, self.cfg.block_days, self.cfg.seed)
        self._csv(table, "importance.csv")
        plot_importance(table, self.figure("importance.png"))
        return {"predictors": int(table["predictor"].nunique())}

    def _memory(self, ctx) -> dict:
        from upscale.explain.memory import memory_effects, memory_summary, plot_memory, plot_memory_groups

        table = memory_effects(ctx, lags=tuple(self.cfg.lags), predictors=self._dynamic(ctx), seed=self.cfg.seed)
        self._csv(table, "memory.csv")
        self._csv(memory_summary(table), "memory_summary.csv")
        plot_memory(table, self.figure("memory.png"))
        plot_memory_groups(table, self.figure("memory_groups.png"))
        return {"sequential": ctx.sequential}

    def _attribution(self, ctx) -> dict:
        from upscale.explain.attribution import integrated_gradients, plot_attribution

        ds = integrated_gradients(
            ctx,
            window=self.cfg.window,
            days_per_site=self.cfg.days_per_site,
            seed=self.cfg.seed,
            targets=self.targets,
            predictors=self._dynamic(ctx),
        )
        write_atomically(self.dir / "attribution.zarr", lambda tmp: ds.to_zarr(tmp, mode="w-"), overwrite=True)
        plot_attribution(ds, self.figure("attribution.png"))
        return {
            "completeness_error": {t: round(float(ds["completeness_error"].sel(target=t)), 5) for t in ds.target.values}
        }

    def _cell_states(self, ctx) -> dict:
        from upscale.explain.cells import cell_states, has_cells, plot_cell_states

        if not has_cells(ctx):
            log.info("explain: cell states skipped (the model has no cell states)")
            return {"skipped": "the model has no cell states"}
        table = cell_states(ctx)
        self._csv(table, "cell_states.csv")
        plot_cell_states(ctx, table, self.figure("cell_states.png"))
        return {"cells": int(table[["fold", "member", "cell"]].drop_duplicates().shape[0])}

    def _csv(self, table, name: str) -> None:
        write_atomically(
            self.dir / name, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"), overwrite=True
        )

    def run_sensitivity(self, domain, client_factory=None) -> dict:
        """Gridded sensitivity maps of the final bundle over the apply domain (resumes finished tiles).

        ``domain`` is the pipeline's :class:`~upscale.pipeline.ApplyDomain`.
        """
        from upscale.apply import apply_tiles
        from upscale.explain.maps import plot_sensitivity_maps
        from upscale.explain.sensitivity import SensitivityJob, month_starts

        if self.done("sensitivity"):
            return {}
        started = time.perf_counter()
        store = self.dir / "sensitivity.zarr"
        names = list(domain.spec.dynamic_names)
        predictors = tuple(p for p in (self.cfg.predictors or names) if p in names)
        days, lat, lon = domain.axes()
        months = month_starts(days)
        self._sensitivity_template(store, domain, predictors, lat, lon, months)
        job = SensitivityJob(
            domain.job(""), str(store), predictors, tuple(str(m)[:10] for m in months), self.cfg.sensitivity_every
        )
        tiles = domain.tiles()
        todo, finished = self._tile_progress(tiles)
        if todo:
            from upscale.explain.sensitivity import run_sensitivity_tile

            client = client_factory() if client_factory else None
            apply_tiles(client, job, todo, finished, task=run_sensitivity_tile)
        self.reporter.done("explain (sensitivity tiles)")
        plot_sensitivity_maps(store, self.figure("sensitivity_maps.png"))
        info = {
            "tiles": len(tiles),
            "resumed_tiles": len(tiles) - len(todo),
            "predictors": list(predictors),
            "seconds": round(time.perf_counter() - started, 2),
        }
        self._finish("sensitivity", info)
        return info

    def _sensitivity_template(self, store: Path, domain, predictors: tuple, lat, lon, months) -> None:
        """Create the empty store afresh unless it was made for this bundle, stride and predictors (then it resumes)."""
        from upscale.explain.sensitivity import create_sensitivity_template

        key = f"{domain.meta['hash']}:every {self.cfg.sensitivity_every}:{','.join(predictors)}"
        if self.state["bundle"] != key or not store.exists():
            shutil.rmtree(store, ignore_errors=True)
            self.dir.mkdir(exist_ok=True)
            tile = (domain.run.recipe.apply.tile_lat, domain.run.recipe.apply.tile_lon)
            create_sensitivity_template(
                store,
                lat,
                lon,
                months,
                domain.meta["targets"],
                list(predictors),
                tile,
                _attrs(domain.meta, self.cfg.sensitivity_every),
            )
            self.manifest.sensitivity_log.clear()
            self._save_state(bundle=key, tiles=[])

    def _tile_progress(self, tiles: list) -> tuple[list, Callable[[str], None]]:
        """The tiles still to do, and the callback that records one as finished; finished ones count as progress."""
        done = set(self.state["tiles"]) | self.manifest.sensitivity_log.ids  # the list: runs before the log
        todo = [t for t in tiles if t.id not in done]
        advance = self.reporter.progress("explain (sensitivity tiles)", len(tiles))
        for _ in range(len(tiles) - len(todo)):
            advance()

        def finished(tile_id: str) -> None:
            self.manifest.sensitivity_log.add(tile_id)
            advance()

        return todo, finished


def _attrs(meta: dict, every: int) -> dict:
    import upscale
    from upscale.cf import CONVENTIONS, append_history

    history = append_history({}, f"created by upscale {upscale.__version__} (upscale explain)")
    return {
        "Conventions": CONVENTIONS,
        **history,
        "title": "upscale sensitivity maps",
        "source": f"upscale {upscale.__version__}; model {meta['model']['type']} ensemble of "
        f"{len(meta['members'])}; bundle {meta['hash']}",
        "comment": "Instantaneous partial derivatives of the ensemble-mean prediction with respect to each "
        "predictor of the same day, the model state at the start of the day held fixed; monthly "
        "and whole-period means over the valid days (see docs/explain.md).",
        "sensitivity_every": f"derivatives taken on every {every}. day of the period"
        if every > 1
        else "derivatives taken on every day of the period",
    }


def check_methods(methods: list[str] | None) -> list[str] | None:
    """Split comma-separated method names and refuse unknown ones (RecipeError, naming the valid ones)."""
    from upscale.errors import RecipeError
    from upscale.recipe import EXPLAIN_METHODS

    if not methods:
        return None
    names = [m.strip() for item in methods for m in item.split(",") if m.strip()]
    unknown = [m for m in names if m not in EXPLAIN_METHODS]
    if unknown:
        raise RecipeError(
            f"unknown explanation method {', '.join(map(repr, unknown))}",
            where="--methods",
            fix=f"Choose among {', '.join(EXPLAIN_METHODS)}",
        )
    return list(dict.fromkeys(names))
