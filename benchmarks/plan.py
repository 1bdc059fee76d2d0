"""The client's cost per tile of a planet-sized apply: planning, the product template, the tile log and task
submission, measured with no-op tiles on a LocalCluster, side by side from 100 to 20,000 tiles in one run.

    python benchmarks/plan.py [--tiles 100 1000 5000 20000] [--days 7305] [--workers 2]

The grid is the X-BASE one, 0.05 degree (3600 x 7200 cells), and 20 years of days; the tile count
is set by the tile size. For each count, in a fresh child process (its memory is its own):

- ``plan``: :func:`upscale.apply.plan_tiles`;
- ``template``: :func:`upscale.store.create_template` of the full product (coordinates, bounds,
  attributes and the empty arrays of a two-target product: metadata only);
- ``tiles``: :func:`upscale.apply.apply_tiles` with a task that returns the tile id at once, each
  tile recorded in the run's tile log (:meth:`upscale.rundir.Manifest.add_tile`) as it finishes,
  then the finished tiles read back as a resume would;
- ``cpu``: the CPU seconds of the client process over ``tiles`` (the scheduler of a LocalCluster
  or of a slurm/pbs cluster runs in it too; the workers do not). Unlike wall time, this hardly
  depends on what else the machine runs;
- ``rss``: the client's resident memory after all that, less what it held before ``tiles``.

Per-tile figures (seconds and bytes divided by the count) should stay flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_LAT, N_LON = 3600, 7200
#: tiles -> (tile_lat, tile_lon) over the 3600 x 7200 grid
TILE_SIZES = {100: (360, 720), 1000: (144, 180), 5000: (72, 72), 20000: (36, 36)}


def noop_tile(job, tile) -> str:
    """A tile task that does nothing: what is left is the client's and the scheduler's cost."""
    return tile.id


def grid_coords(days: int) -> dict:
    import numpy as np

    from upscale.cf import product_coords

    time_axis = np.datetime64("2001-01-01") + np.arange(days).astype("timedelta64[D]")
    lat = -90 + 0.05 * (np.arange(N_LAT) + 0.5)
    lon = -180 + 0.05 * (np.arange(N_LON) + 0.5)
    return product_coords(time_axis, lat, lon)


def measure(n_tiles: int, days: int, workers: int, time_chunk: int) -> dict:
    """One tile count, in this process: seconds of each step and the client's memory growth."""
    import psutil
    from distributed import Client, LocalCluster

    from upscale.apply import ApplyJob, apply_tiles, plan_tiles
    from upscale.cf import product_variables
    from upscale.rundir import Manifest
    from upscale.store import create_template

    tile_lat, tile_lon = TILE_SIZES[n_tiles]
    out, work = {"tiles": n_tiles}, Path(tempfile.mkdtemp(prefix="upscale-plan-"))
    t0 = time.perf_counter()
    tiles = plan_tiles(N_LAT, N_LON, tile_lat, tile_lon)
    out["plan_s"] = time.perf_counter() - t0
    assert len(tiles) >= n_tiles, (len(tiles), n_tiles)
    t0 = time.perf_counter()
    create_template(
        work / "product.zarr",
        grid_coords(days),
        product_variables(["gpp", "et"]),
        (time_chunk, tile_lat, tile_lon),
        {"title": "plan benchmark"},
    )
    out["template_s"] = time.perf_counter() - t0
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as c:
        manifest = Manifest(work / "manifest.json")
        job = ApplyJob(  # a job of a real product's size: what every task carries
            catalog_path=str(work / "catalog.yaml"),
            dynamic=tuple(("era5", v) for v in ("tas", "vpd", "rsds", "rsds_pot", "pr")) + (("eo", "fapar"),),
            static=(("static", "pft"),),
            bundle_dir=str(work / "bundle"),
            bundle_hash="0" * 64,
            store_path=str(work / "product.zarr"),
            time_index=(0, days),
            lat_offset=0,
            lon_offset=0,
            time_chunk=time_chunk,
        )
        c.submit(noop_tile, job, tiles[0], pure=False).result()  # the workers warm: their start is no tile's cost
        rss0 = psutil.Process().memory_info().rss
        t0, cpu0 = time.perf_counter(), time.process_time()
        apply_tiles(c, job, tiles, manifest.add_tile, task=noop_tile)
        done = Manifest(work / "manifest.json").tiles
        out["tiles_s"], out["cpu_s"] = time.perf_counter() - t0, time.process_time() - cpu0
        out["rss_bytes"] = psutil.Process().memory_info().rss - rss0
    assert len(done) == len(tiles)
    out["tiles"] = len(tiles)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[100, 1000, 5000, 20000], choices=sorted(TILE_SIZES))
    parser.add_argument("--days", type=int, default=7305, help="days in the product (default 20 years)")
    parser.add_argument("--time-chunk", type=int, default=365)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: measure one count, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.days, args.workers, args.time_chunk)))
        return
    print(
        "| tiles | plan (s) | template (s) | tiles: wall (s) | wall per tile (ms) "
        "| client CPU per tile (ms) | client KiB per tile |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for n in args.tiles:
        cmd = [sys.executable, __file__, "--one", str(n), "--days", str(args.days), "--workers", str(args.workers)]
        done = subprocess.run([*cmd, "--time-chunk", str(args.time_chunk)], capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            print(f"| {n} | failed: {done.stderr.strip().splitlines()[-1][:200]} |", flush=True)
            continue
        r = json.loads(done.stdout.splitlines()[-1])
        per_ms, per_kib = 1e3 * r["tiles_s"] / r["tiles"], r["rss_bytes"] / r["tiles"] / 1024
        cells = [f"{r['plan_s']:.3f}", f"{r['template_s']:.2f}", f"{r['tiles_s']:.2f}"]
        cells += [f"{per_ms:.2f}", f"{1e3 * r['cpu_s'] / r['tiles']:.2f}", f"{per_kib:.1f}"]
        print(f"| {r['tiles']} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
