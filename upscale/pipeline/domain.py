"""The apply stage: the trained bundle, the part of the predictor cubes it covers, and the tiles over it.

:class:`ApplyDomain` is shared by the apply stage and the sensitivity maps of the explain stage,
so both cover the same days and cells in the same tiles.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import xarray as xr

from upscale.errors import RecipeError
from upscale.pipeline.run import Run


@dataclass
class ApplyDomain:
    """The final bundle and the part of the predictor cubes it is applied to (apply and sensitivity maps)."""

    run: Run
    meta: dict
    spec: object  # upscale.encoding.FeatureSpec
    dyn: xr.Dataset
    index: tuple  # (time, lat, lon) index ranges [start, stop)

    def job(self, store: str):
        """The apply job writing into ``store``: what every worker needs, computed here once."""
        from upscale.apply import ApplyJob
        from upscale.bundle import parameter_info
        from upscale.cf import product_units
        from upscale.prepared import resolve_cube

        recipe, (t_index, lat_index, lon_index) = self.run.recipe, self.index
        factors = tuple((t, product_units(t, recipe.output.units)[1]) for t in self.meta["targets"])
        return ApplyJob(
            catalog_path=str(self.run.catalog.path),
            dynamic=tuple(map(tuple, self.spec.dynamic)),
            static=tuple(map(tuple, self.spec.static)),
            bundle_dir=str(self.run.files.bundle),
            bundle_hash=self.meta["hash"],
            store_path=store,
            time_index=t_index,
            lat_offset=lat_index[0],
            lon_offset=lon_index[0],
            time_chunk=recipe.apply.time_chunk,
            batch_size=recipe.apply.batch_size,
            torch_threads=recipe.cluster.torch_threads(),
            device=recipe.apply.device,
            precision=recipe.apply.precision,
            factors=factors,
            ranges=self.meta.get("predictor_ranges"),
            parameters=tuple(parameter_info(self.meta)) if recipe.output.parameters else (),
            quantiles=tuple(recipe.output.quantiles),
            prepared=resolve_cube(
                recipe.apply.prepared, str(self.run.catalog.path), self.spec, self.index, recipe.apply
            ),
        )

    def tiles(self) -> list:
        from upscale.apply import plan_tiles

        (_, (la0, la1), (lo0, lo1)), cfg = self.index, self.run.recipe.apply
        return plan_tiles(la1 - la0, lo1 - lo0, cfg.tile_lat, cfg.tile_lon)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The apply domain's days, latitudes and longitudes."""
        t, la, lo = self.index
        return (self.dyn.time.values[slice(*t)], self.dyn.lat.values[slice(*la)], self.dyn.lon.values[slice(*lo)])

    def variables(self) -> dict[str, dict]:
        """The product's variables and their CF attributes."""
        from upscale.bundle import parameter_info
        from upscale.cf import parameter_variables, product_variables

        recipe, meta = self.run.recipe, self.meta
        variables = product_variables(
            meta["targets"],
            recipe.output.units,
            "predictor_ranges" in meta,
            recipe.output.quantiles,
            meta.get("bounds"),
        )
        if recipe.output.parameters:
            variables.update(parameter_variables(meta["model"]["type"], parameter_info(meta)))
        return variables


def apply_domain(run: Run) -> ApplyDomain:
    """The trained bundle, verified, and its apply domain in the predictor cubes.

    The whole bundle is loaded once here, in the client (metadata hash, every weight file's checksum,
    the weights fitted to the model), so a truncated, edited, replaced or missing file stops the stage
    with one :class:`~upscale.errors.BundleError` before a product template or a Dask worker exists.
    """
    from upscale.bundle import load_bundle
    from upscale.features import open_predictors

    _, spec, meta = load_bundle(run.files.bundle)
    dyn, _ = open_predictors(str(run.catalog.path), spec.dynamic, spec.static)
    return ApplyDomain(run, meta, spec, dyn, apply_index(run.recipe, dyn))


def stage_apply(run: Run, client_factory=None) -> dict:
    """Apply the bundle over the grid, tile by tile, into ``product.zarr`` (resuming finished tiles).

    Parameters
    ----------
    run : Run
        The run.
    client_factory : callable, optional
        Returns the Dask client the tiles run on (None, or returning None: in this process). Called
        only once the bundle is verified and there are tiles to run, so a bad bundle or a finished
        product starts no workers.

    The store's ``upscale_complete`` attribute is ``"false"`` while tiles are written and set to
    ``"true"`` as the stage's last act, after every tile. A slurm/pbs cluster's job script (with its
    scheduler's address) is kept as ``worker-job.sh``.
    """
    from upscale.apply import apply_tiles
    from upscale.cluster import keep_job_script
    from upscale.store import mark_complete

    domain = apply_domain(run)
    store = run.files.product
    if run.manifest.get("product_bundle") != domain.meta["hash"] or not store.exists():
        _new_product(run, domain)
    tiles = domain.tiles()
    done = run.manifest.tiles  # read once: the property reads the tile log from disk
    todo = [t for t in tiles if t.id not in done]
    advance = run.reporter.progress("apply (tiles)", len(tiles))
    for _ in range(len(tiles) - len(todo)):
        advance()

    def finished(tile_id: str) -> None:
        run.manifest.add_tile(tile_id)
        advance()

    if todo:
        mark_complete(store, False)
        client = client_factory() if client_factory else None
        keep_job_script(client, run.files.job_script)
        apply_tiles(client, domain.job(str(store)), todo, finished)
    mark_complete(store, True)
    run.reporter.done("apply (tiles)")
    return {"tiles": len(tiles), "resumed_tiles": len(tiles) - len(todo)}


def _new_product(run: Run, domain: ApplyDomain) -> None:
    """An empty product template for the domain's bundle (a new bundle restarts the apply)."""
    from upscale.cf import global_attrs, product_coords
    from upscale.store import create_template

    recipe, store = run.recipe, run.files.product
    shutil.rmtree(store, ignore_errors=True)
    run.manifest.reset_stages("apply")
    chunks = (recipe.apply.time_chunk, recipe.apply.tile_lat, recipe.apply.tile_lon)
    create_template(
        store, product_coords(*domain.axes()), domain.variables(), chunks, global_attrs(recipe, domain.meta)
    )
    run.manifest.set("product_bundle", domain.meta["hash"])


def check_parameters(model_type: str) -> None:
    """``output.parameters`` needs a model with process parameters (a hybrid)."""
    from upscale.models.registry import model_class

    if not model_class(model_type).parameter_info:
        raise RecipeError(
            f"the {model_type} model has no process parameters to write as maps",
            where="output.parameters",
            fix="Use model.type: hybrid, or set output.parameters: false",
        )


def apply_index(recipe, dyn: xr.Dataset):
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
            raise RecipeError(
                "the apply domain is empty: it lies outside the predictor cubes",
                where=name,
                fix=f"The cubes span {str(times[0])[:10]}..{str(times[-1])[:10]}, "
                f"lat {lat[0]:.2f}..{lat[-1]:.2f}, lon {lon[0]:.2f}..{lon[-1]:.2f}",
            )
    return t_index, lat_index, lon_index
