"""Helpers of the fault tests (tests/pipeline/test_faults.py, tests/slurm/): a trained run re-tiled for a long
apply, a slowed tile task the workers import from here, the product's arrays, and waiting for tiles.

The tiny product run's bundle is applied again to two months over Eurasia in tiles of 1 x 4 cells
(12 tiles, most of them land), each slowed, so that a worker, a job or the client can be killed
while tiles are still to run, and the result compared with the same apply without a fault.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

import upscale.apply

#: The apply section of the fault runs: 4 x 12 cells in tiles of 1 x 4, 59 days.
APPLY = {
    "tile_lat": 1,
    "tile_lon": 4,
    "bbox": [-10.0, 30.0, 110.0, 70.0],
    "period": {"start": "2018-01-01", "end": "2018-02-28"},
}
N_TILES = 12
_run_tile = upscale.apply.run_tile  # the real task, taken before a test patches the module


def slow_tile(job, tile, delay: float = 0.4):
    """:func:`upscale.apply.run_tile` after a pause: the apply lasts long enough to be interrupted.

    Workers import it from this module (``tests`` is on their path), so a test patches
    ``upscale.apply.run_tile`` with it in the client and the workers run it unpatched.
    """
    time.sleep(delay)
    return _run_tile(job, tile)


def trained_copy(product_run, root: Path, cluster: dict) -> Path:
    """A copy of the product run as it stood after training, re-tiled, on ``cluster``; returns its recipe file."""
    from upscale.recipe import dump_recipe, load_recipe

    shutil.copytree(
        product_run.dir,
        root,
        ignore=shutil.ignore_patterns("product.zarr", "manifest.tiles", "report", "explain", "aggregates"),
    )
    data = yaml.safe_load(product_run.files.recipe.read_text())
    data["apply"].update(APPLY)
    data["output"]["run_dir"] = str(root)
    data["cluster"] = cluster
    data.pop("explain", None)
    recipe = root.parent / f"{root.name}.yaml"
    recipe.write_text(yaml.safe_dump(data))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in ("extract", "evaluate", "train")}
    manifest.update(complete=False, recipe=dump_recipe(load_recipe(recipe)))
    manifest.pop("product_bundle", None)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return recipe


def open_copy(recipe: Path):
    """The run of a :func:`trained_copy` recipe, opened to resume."""
    from upscale.pipeline import open_run
    from upscale.recipe import load_recipe

    return open_run(load_recipe(recipe), new_run=False)


def product_arrays(store: Path) -> dict[str, bytes]:
    """Every variable of a product as its raw bytes (attributes such as ``history`` left out)."""
    with xr.open_zarr(store) as ds:
        return {name: np.ascontiguousarray(ds[name].values).tobytes() for name in sorted(ds.data_vars)}


def tiles_done(root: Path) -> int:
    """Tiles the run directory's tile log records."""
    log = root / "manifest.tiles"
    return log.read_text().count("\n") if log.exists() else 0


def wait_for_tiles(root: Path, n: int, timeout: float, alive=lambda: True) -> int:
    """Wait until ``n`` tiles are recorded (or ``alive()`` turns false, or ``timeout`` s pass); returns the count."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        done = tiles_done(root)
        if done >= n:
            return done
        time.sleep(0.01)
    return tiles_done(root)


def apply_with_a_kill(run, client, kill) -> tuple[dict, int]:
    """Apply ``run`` on ``client`` while another thread calls ``kill()`` once 3 tiles are recorded.

    Returns the stage's summary and the tiles recorded when the kill came.
    """
    at_kill = []

    def killer():
        at_kill.append(wait_for_tiles(run.dir, 3, timeout=120))
        kill()

    from upscale.pipeline import stage_apply

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    info = stage_apply(run, client_factory=lambda: client)
    thread.join(timeout=130)
    return info, at_kill[0]


def assert_whole(run, reference: dict) -> None:
    """Every tile recorded exactly once, and the product identical to the uninterrupted one."""
    lines = (run.dir / "manifest.tiles").read_text().splitlines()
    assert len(lines) == len(set(lines)) == N_TILES
    assert product_arrays(run.files.product) == reference
