"""The apply stage against its I/O floor and a naive peer, side by side in one run.

    python benchmarks/apply_throughput.py [--workdir /tmp/upscale-bench] [--naive-pixels 150]

On the default demo world (2 degree, 2 years, global) it trains two small bundles (the demo
recipe's MLP and an LSTM, 5 members each; weights are untrained-quality, speed is what counts)
and then runs, each in a fresh child process so that its peak memory is its own:

- ``floor``: the same tile tasks reading exactly the inputs and writing outputs of the product's
  shape and chunks, with the model replaced by a no-op (what no model can beat);
- ``mlp`` / ``lstm``: ``upscale``'s apply of each bundle;
- ``naive``: what a user would write first: for each land pixel, read its series from the cubes
  with xarray, run the ensemble on it, and write it into the product (timed on a sample of pixels
  and scaled to the whole grid);
- ``lstm@quarter``: the LSTM apply on a quarter of the globe, for memory at 1x against 4x.

All cases run in-process (no Dask cluster) on one core with one torch thread, so the ratios
compare like with like. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUARTER_BBOX = "[-180, 0, 0, 90]"  # lon_min, lat_min, lon_max, lat_max: a quarter of the globe


def upscale_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "upscale.cli", *args], check=True, stdout=subprocess.DEVNULL)


def train_bundles(workdir: Path) -> dict[str, Path]:
    """Train the two bundles (once; reused when the work directory already holds them)."""
    recipe = str(ROOT / "recipes" / "demo.yaml")
    models = {"mlp": "model={type: mlp, hidden: [64, 64]}", "lstm": "model={type: lstm, hidden: [64]}"}
    runs = {}
    for name, model in models.items():
        run_dir = workdir / name
        runs[name] = run_dir
        if (run_dir / "bundle" / "bundle.json").exists():
            continue
        upscale_cli(
            "train",
            recipe,
            "--run-dir",
            str(run_dir),
            "--set",
            model,
            "--set",
            "training.epochs=2",
            "--set",
            "validation.scheme=none",
            "--set",
            "cluster={type: synchronous}",
        )
    return runs


def child(case: str, run_dir: Path, out: Path, naive_pixels: int) -> dict:
    """Run one case in this process; returns its figures."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from upscale import apply, pipeline
    from upscale.recipe import load_recipe

    recipe = load_recipe(run_dir / "recipe.yaml")
    overrides = {"output": {**recipe.output.model_dump(), "run_dir": str(out)}, "cluster": {"type": "synchronous"}}
    if case.endswith("@quarter"):
        overrides["apply"] = {**recipe.apply.model_dump(), "bbox": json.loads(QUARTER_BBOX)}
    recipe = recipe.model_copy(update={k: type(getattr(recipe, k))(**v) for k, v in overrides.items()})
    run = pipeline.open_run(recipe)
    for entry in ("sites.zarr", "bundle"):
        if not run.path(entry).exists():
            os.symlink(run_dir / entry, run.path(entry))
    if case == "floor":
        from upscale.cf import product_variables

        def no_model(ensemble, dynamic, static, batch_size, state=None, **options):
            names = product_variables(ensemble.targets)
            return {
                n: np.zeros(dynamic.shape[:2], dtype=np.asarray(attrs.get("flag_values", 0.0)).dtype)
                for n, attrs in names.items()
            }, None

        apply.predict_block = no_model
    if case == "naive":
        return naive(run, naive_pixels)
    t0 = time.perf_counter()
    pipeline.stage_apply(run)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, **land_pixel_days(run)}


def land_pixel_days(run) -> dict:
    import numpy as np
    import xarray as xr

    gpp = xr.open_zarr(run.path("product.zarr"))["gpp"]
    land = int(np.isfinite(gpp.isel(time=0).values).sum())
    return {"land_pixels": land, "days": int(gpp.sizes["time"])}


def naive(run, n_pixels: int) -> dict:
    """Per-pixel loop: xarray point reads, one forward pass per pixel, numpy write-back."""
    import numpy as np

    from upscale.bundle import load_bundle
    from upscale.encoding import encode_static
    from upscale.features import land_mask, open_predictors

    ensemble, spec, _ = load_bundle(run.path("bundle"))
    dyn, stat = open_predictors(str(run.catalog.path), spec.dynamic, spec.static)
    mask = land_mask(dyn.isel(time=slice(0, 1)), stat)
    rows, cols = np.nonzero(mask)
    pick = np.random.default_rng(0).choice(rows.size, size=min(n_pixels, rows.size), replace=False)
    out = np.full((dyn.sizes["time"], len(pick)), np.nan, dtype="float32")
    t0 = time.perf_counter()
    for k, p in enumerate(pick):
        point = dyn[spec.dynamic_names].isel(lat=rows[p], lon=cols[p])
        series = np.stack([point[v].values for v in spec.dynamic_names], axis=-1)[None].astype("float32")
        static = encode_static({v: stat[v].values[rows[p], cols[p]][None] for _, v in spec.static}, spec, 1)
        out[:, k] = ensemble.predict(series, static)["gpp"].mean[0]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds * rows.size / len(pick),
        "sampled_pixels": len(pick),
        "land_pixels": int(rows.size),
        "days": int(dyn.sizes["time"]),
    }


def run_case(case: str, run_dir: Path, workdir: Path, naive_pixels: int) -> dict:
    """Start the case in a child process and read its figures and its peak RSS."""
    out = workdir / f"out-{case.replace('@', '-')}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    cmd = [
        sys.executable,
        __file__,
        "--child",
        case,
        "--run-dir",
        str(run_dir),
        "--out",
        str(out),
        "--naive-pixels",
        str(naive_pixels),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    figures = json.loads(proc.stdout.read().strip().splitlines()[-1])
    if status != 0:
        raise RuntimeError(f"case {case} failed")
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/upscale-bench")
    parser.add_argument("--naive-pixels", type=int, default=150)
    parser.add_argument("--child")
    parser.add_argument("--run-dir")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.run_dir), Path(args.out), args.naive_pixels)))
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runs = train_bundles(workdir)
    cases = [
        ("floor", runs["lstm"]),
        ("mlp", runs["mlp"]),
        ("lstm", runs["lstm"]),
        ("lstm@quarter", runs["lstm"]),
        ("naive", runs["lstm"]),
    ]
    results = {}
    for case, run_dir in cases:
        results[case] = figures = run_case(case, run_dir, workdir, args.naive_pixels)
        rate = figures["land_pixels"] * figures["days"] / figures["seconds"]
        figures["pixel_days_per_s"] = rate
        print(
            f"{case:13s} {figures['seconds']:8.1f} s  {rate / 1e3:8.1f} k pixel-days/s/core  "
            f"peak RSS {figures['peak_rss_mb']:6.0f} MB  ({figures['land_pixels']} land px x {figures['days']} d)",
            flush=True,
        )
    floor = results["floor"]["seconds"]
    print(f"\nmlp / floor  = {results['mlp']['seconds'] / floor:.2f}")
    print(f"lstm / floor = {results['lstm']['seconds'] / floor:.2f}")
    print(f"naive / lstm = {results['naive']['seconds'] / results['lstm']['seconds']:.1f}")
    print(
        f"peak RSS lstm 4x / 1x domain = {results['lstm']['peak_rss_mb'] / results['lstm@quarter']['peak_rss_mb']:.2f}"
    )
    (workdir / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
