"""The apply stage against its I/O floor and a naive peer, side by side in one run.

    python benchmarks/apply_throughput.py [--workdir /tmp/upscale-bench] [--naive-pixels 150] [--cases ...]
    python benchmarks/apply_throughput.py --resolutions 2,1 --cases raw_io,compute@mlp,...

On the default demo world (2 degree, 2 years, global) it trains two small bundles (the demo
recipe's MLP and an LSTM, 5 members each; weights are untrained-quality, speed is what counts)
and then runs, each in a fresh child process so that its peak memory is its own:

- ``floor``: the same tile tasks reading exactly the inputs and writing outputs of the product's
  shape and chunks, with the model replaced by a no-op (what no model can beat);
- ``mlp`` / ``lstm``: ``upscale``'s apply of each bundle;
- ``naive``: what a user would write first: for each land pixel, read its series from the cubes
  with xarray, run the ensemble on it, and write it into the product (timed on a sample of pixels
  and scaled to the whole grid);
- ``lstm@quarter``: the LSTM apply on a quarter of the globe, for memory at 1x against 4x;
  ``prepare@quarter`` and ``lstm@prepared@quarter`` the same through a cube of that quarter;
- ``raw_io``: the raw I/O limit, every input chunk read and decompressed once with netCDF4 and zarr
  directly, converted in numpy, the product's arrays written with its chunks and codecs
  (:func:`limits.raw_io`);
- ``compute@mlp`` / ``compute@lstm``: the compute limit, the block kernel over the same land
  pixel-days from memory, batched (:func:`limits.compute`);
- ``prepare``: ``upscale prepare`` (the inputs read once into a cube chunked like the tiles), and
  ``mlp@prepared`` / ``lstm@prepared``: the apply reading that cube;
- ``lstm@sequential``: the LSTM apply reading, predicting and writing one after another (no overlap).

With ``--resolutions 2,1`` every case runs on the demo world at each grid spacing (written once
with ``upscale demo-data``; the two bundles learn from the sites, so the same two serve each
grid), interleaved case by case, and the summary gives the cost per land pixel-day at each
against the first: in wall seconds and in the CPU seconds of the timed part (``cpu_s``, all of
the child's threads), the figure to trust on a shared machine.

``--device cuda`` runs every model case on the GPU (the apply's ``apply.device``, and the compute
limit's forward); the reading and writing stay on the one core, so a GPU case against ``raw_io``
says how much of the one-core I/O limit the GPU apply reaches. Modifiers, appended to a case:

- ``@bf16``: bfloat16 inference (``apply.precision``; ignored on CPU);
- ``@stacked``: all members in one pass (``Ensemble.stacked``) instead of one pass per member;
- ``@cpu``: this case on the CPU whatever ``--device`` says;
- ``@workersN``: the apply on a local Dask cluster of N one-thread worker processes (started
  before the clock; all of them share the one GPU), instead of in-process.

A modified apply case is set against the compute limit with the same ``@stacked``/``@bf16``/``@cpu``.

Each apply case also counts the input chunks its reads touch (:class:`limits.ChunkReads`):
``decompressed_per_input`` is how many times each input byte was decompressed.

All cases run in-process (no Dask cluster) on one core with one torch thread, so the ratios
compare like with like. ``--repeat N`` runs the case list N times in ABBA order and reports each
case's median run. Figures go to docs/benchmarks.md.
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
sys.path.insert(0, str(ROOT / "benchmarks"))
CASES = (
    "raw_io",
    "compute@mlp",
    "compute@lstm",
    "floor",
    "mlp",
    "lstm",
    "prepare",
    "mlp@prepared",
    "lstm@prepared",
    "lstm@sequential",
    "lstm@prepared@sequential",
    "lstm@quarter",
    "prepare@quarter",
    "lstm@prepared@quarter",
    "naive",
)
QUARTER_BBOX = "[-180, 0, 0, 90]"  # lon_min, lat_min, lon_max, lat_max: a quarter of the globe
TILE = (32, 64)  # the demo recipe's tile


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


MODIFIERS = ("stacked", "bf16", "cpu")  # those the compute limit of a case shares with it


def case_options(case: str, device: str) -> dict:
    """What a case's modifiers ask: its device, precision, stacked members and worker processes (0: in-process)."""
    parts = case.split("@")
    workers = next((int(p.removeprefix("workers")) for p in parts if p.startswith("workers")), 0)
    in_process_only = [p for p in parts if p in ("stacked", "floor", "sequential")]
    if workers and in_process_only:  # they patch this process, which the Dask workers do not share
        raise ValueError(f"case {case}: @{in_process_only[0]} cannot be combined with @workers{workers}")
    return {
        "device": "cpu" if "cpu" in parts else device,
        "precision": "bfloat16" if "bf16" in parts else "float32",
        "stacked": "stacked" in parts,
        "workers": workers,
    }


def stack_members() -> None:
    """Make every ensemble built in this process predict all members in one pass."""
    from upscale.ensemble import Ensemble

    init = Ensemble.__init__

    def stacked_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.stacked = True

    Ensemble.__init__ = stacked_init


def child(case: str, run_dir: Path, out: Path, naive_pixels: int, device: str = "cpu") -> dict:
    """Run one case in this process (its models on ``device`` unless it says ``@cpu``); returns its figures."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from upscale import apply, pipeline
    from upscale.recipe import load_recipe

    recipe = load_recipe(run_dir / "recipe.yaml")
    options = case_options(case, device)
    device, precision = options["device"], options["precision"]
    if options["stacked"]:
        stack_members()
    if case == "raw_io":
        import limits

        return limits.raw_io(str(recipe.catalog), out / "product.zarr", recipe.apply.time_chunk, TILE)
    if case.startswith("compute@"):
        import limits

        return limits.compute(run_dir, recipe.apply.time_chunk, TILE, device, precision)
    apply_cfg = {**recipe.apply.model_dump(), "device": device, "precision": precision}
    parts = case.split("@")
    if "quarter" in parts:
        apply_cfg["bbox"] = json.loads(QUARTER_BBOX)
    if parts[0] == "prepare" or "prepared" in parts:  # a quarter's cube of its own: a cube covers its domain
        apply_cfg["prepared"] = str(out.parent / ("cube-quarter.zarr" if "quarter" in parts else "cube.zarr"))
    # gpus 0: plain worker processes, each on apply.device (dask-cuda would start one worker per GPU)
    cluster = {"type": "synchronous"}
    if options["workers"]:
        cluster = {"type": "local", "n_workers": options["workers"], "gpus": 0}
    overrides = {"output": {**recipe.output.model_dump(), "run_dir": str(out)}, "cluster": cluster}
    overrides["apply"] = apply_cfg
    recipe = recipe.model_copy(update={k: type(getattr(recipe, k))(**v) for k, v in overrides.items()})
    if parts[0] == "prepare":
        return prepare(recipe)
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
    if "@sequential" in case:
        apply.pipelined = apply.sequential
    if case == "naive":
        return naive(run, naive_pixels)
    import limits

    from upscale.cluster import close_client, make_client

    client = make_client(run.recipe.cluster)  # None in-process; workers are started before the clock
    imports_s = import_run_libraries()
    try:
        with limits.ChunkReads() as reads:  # counts the reads of this process only
            t0, cpu0 = time.perf_counter(), time.process_time()
            pipeline.stage_apply(run, client_factory=lambda: client)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        close_client(client)
    figures = {"seconds": seconds, "imports_s": imports_s, **land_pixel_days(run)}
    return figures if client else {**figures, "cpu_s": cpu, **reads.figures()}


def import_run_libraries() -> float:
    """Import what the stages before the apply have imported in ``upscale run``; returns the seconds.

    The apply stage opens the catalog lazily to find its domain, and the first opening imports
    dask.array, distributed (through dask's rechunk) and rasterio/pyproj (the static map): 0.4-0.8 s
    in a fresh process, paid once per process, which a run has paid in its sites and training
    stages and the compute limit before its clock. Imported here, outside the clock, so an apply
    case and its compute limit time the same work; the seconds are reported as ``imports_s``.
    """
    t0 = time.perf_counter()
    import dask.array  # noqa: F401
    import distributed  # noqa: F401
    import rioxarray  # noqa: F401

    return time.perf_counter() - t0


def prepare(recipe) -> dict:
    """``upscale prepare`` from scratch, counting the input chunks it decompresses."""
    import shutil

    import limits

    from upscale.pipeline.prepare import prepare_inputs

    shutil.rmtree(recipe.apply.prepared, ignore_errors=True)
    with limits.ChunkReads() as reads:
        t0, cpu0 = time.perf_counter(), time.process_time()
        prepare_inputs(recipe)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"seconds": seconds, "cpu_s": cpu, **reads.figures()}


def land_pixel_days(run) -> dict:
    import numpy as np
    import xarray as xr

    gpp = xr.open_zarr(run.path("product.zarr"))["gpp"]
    land = int(np.isfinite(gpp.isel(time=0).values).sum())
    return {"land_pixels": land, "days": int(gpp.sizes["time"]), "grid": [gpp.sizes["lat"], gpp.sizes["lon"]]}


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


def run_case(case: str, run_dir: Path, workdir: Path, naive_pixels: int, device: str = "cpu") -> dict:
    """Start the case in a child process and read its figures, its peak RSS and its CPU seconds in all."""
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
        "--device",
        device,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    figures = json.loads(proc.stdout.read().strip().splitlines()[-1])
    if status != 0:
        raise RuntimeError(f"case {case} failed")
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    figures["process_cpu_s"] = usage.ru_utime + usage.ru_stime  # with the imports and set-up
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/upscale-bench")
    parser.add_argument("--naive-pixels", type=int, default=150)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    parser.add_argument("--resolutions", help="comma-separated grid spacings in degrees (e.g. 2,1): each case on each")
    parser.add_argument("--device", default="cpu", help="where the model cases run: cpu or cuda")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the case list, in ABBA order; medians reported")
    parser.add_argument("--child")
    parser.add_argument("--run-dir")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.repeat < 1 or (args.repeat > 1 and args.resolutions):
        parser.error("--repeat takes N >= 1, and runs without --resolutions (which interleaves its own ABBA order)")
    if args.child:
        print(json.dumps(child(args.child, Path(args.run_dir), Path(args.out), args.naive_pixels, args.device)))
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runs = train_bundles(workdir)
    cases = args.cases.split(",")
    if args.resolutions:
        results = scaling(cases, args.resolutions.split(","), workdir, runs, args.naive_pixels, args.device)
        lines = scaling_summary(results)
    else:
        results = repeated(cases, args.repeat, workdir, runs, args.naive_pixels, args.device)
        lines = summary(results)
    print()
    for line in [*lines, f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"]:
        print(line)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))


def resolution_runs(workdir: Path, runs: dict[str, Path], resolution: str) -> dict[str, Path]:
    """Run directories of the trained bundles over the demo world at ``resolution`` degrees (written once).

    The bundles learn from the sites, not from the grid, so the same two serve every resolution:
    each run directory holds the trained recipe with its catalog pointed at that world, and links
    to the trained bundle and sites.
    """
    import yaml

    base = workdir / f"res-{resolution}"
    world = base / "world"
    if not (world / "catalog.yaml").exists():
        subprocess.run(["rm", "-rf", str(world)], check=True)
        base.mkdir(parents=True, exist_ok=True)
        upscale_cli("demo-data", str(world), "--resolution", resolution)
    resolved = {}
    for name, trained in runs.items():
        resolved[name] = run_dir = base / name
        run_dir.mkdir(exist_ok=True)
        recipe = yaml.safe_load((trained / "recipe.yaml").read_text())
        recipe["catalog"] = str(world / "catalog.yaml")
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        for entry in ("bundle", "sites.zarr"):
            if not (run_dir / entry).exists():
                os.symlink(trained / entry, run_dir / entry)
    return resolved


def repeated(cases: list[str], repeat: int, workdir: Path, runs: dict, naive_pixels: int, device: str) -> dict:
    """Run the case list ``repeat`` times, every other time backwards (ABBA), so load drifts hit all cases alike.

    Each case's figures are those of its median run by seconds, with every run's seconds as
    ``runs_s`` (an apply and its limits vary by 10-20 % from run to run on a 2-core machine).
    """
    runs_of: dict[str, list[dict]] = {case: [] for case in cases}
    for k in range(repeat):
        for case in cases if k % 2 == 0 else cases[::-1]:
            runs_of[case].append(run_case(case, runs[model_of(case)], workdir, naive_pixels, device))
    results: dict = {}
    for case in cases:
        ordered = sorted(runs_of[case], key=lambda f: f["seconds"])
        results[case] = {**ordered[(len(ordered) - 1) // 2], "runs_s": [f["seconds"] for f in runs_of[case]]}
        print(describe(case, results[case], results), flush=True)
    return results


def model_of(case: str) -> str:
    """The bundle a case runs: ``mlp`` or ``lstm``."""
    return "mlp" if "mlp" in case else "lstm"


def scaling(
    cases: list[str], resolutions: list[str], workdir: Path, runs: dict, naive_pixels: int, device: str = "cpu"
) -> dict:
    """Each case at each resolution, interleaved case by case (in ABBA order) so that load changes hit all alike."""
    dirs = {r: resolution_runs(workdir, runs, r) for r in resolutions}
    results: dict = {r: {} for r in resolutions}
    for i, case in enumerate(cases):
        for r in resolutions if i % 2 == 0 else resolutions[::-1]:
            run_dir = dirs[r][model_of(case)]
            results[r][case] = figures = run_case(case, run_dir, run_dir.parent, naive_pixels, device)
            print(f"{r:>5s} deg  {describe(case, figures, results[r])}", flush=True)
    return {r: {case: results[r][case] for case in cases} for r in resolutions}


def scaling_summary(results: dict) -> list[str]:
    """A Markdown table: per case and resolution, the cost per land pixel-day and its ratio to the first resolution."""
    lines = [
        "| case | degrees | land pixels | tiles | s | CPU s | µs / land pixel-day | CPU µs / land pixel-day |"
        " x first (s) | x first (CPU) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    grids = {}
    for r, cases in results.items():
        known = [f for f in cases.values() if "land_pixels" in f]
        ny, nx = next((f["grid"] for f in cases.values() if "grid" in f), (0, 0))  # 0 tiles: no case knew the grid
        tiles = -(-ny // TILE[0]) * -(-nx // TILE[1])
        grids[r] = (known[0]["land_pixels"], tiles, known[0]["days"]) if known else (float("nan"), tiles, 1)
    first = next(iter(results))
    for case in results[first]:
        base = None
        for r, cases in results.items():
            land, tiles, days = grids[r]
            f = cases[case]
            cost = tuple(1e6 * f.get(k, float("nan")) / (land * days) for k in ("seconds", "cpu_s"))
            base = base or cost
            cells = [
                case,
                r,
                land,
                tiles,
                *(f"{f.get(k, float('nan')):.1f}" for k in ("seconds", "cpu_s")),
                *(f"{c:.2f}" for c in cost),
            ]
            lines.append("| " + " | ".join(map(str, cells)) + f" | {cost[0] / base[0]:.2f} | {cost[1] / base[1]:.2f} |")
    return lines


def describe(case: str, figures: dict, results: dict) -> str:
    """One line of a case: seconds, rate, peak RSS, and the apply against the limits measured so far."""
    text = f"{case:16s} {figures['seconds']:8.1f} s  {figures.get('cpu_s', float('nan')):8.1f} CPU s"
    if len(figures.get("runs_s", [])) > 1:
        text += f" (median of {', '.join(f'{s:.1f}' for s in figures['runs_s'])})"
    text += f"  peak RSS {figures['peak_rss_mb']:6.0f} MB"
    if "imports_s" in figures:
        text += f"  (+{figures['imports_s']:.1f} s imports before the clock)"
    if "land_pixels" in figures:
        figures["pixel_days_per_s"] = rate = figures["land_pixels"] * figures["days"] / figures["seconds"]
        text += f"  {rate / 1e3:8.1f} k pixel-days/s/core"
    if "decompressed_per_input" in figures:
        text += f"  decompressed/input {figures['decompressed_per_input']:.2f}"
        text += f" ({figures['input_bytes'] / 2**20:.0f} MiB)"
    limits = [results.get("raw_io", {}).get("seconds"), results.get(compute_case(case, results), {}).get("seconds")]
    if case.split("@")[0] not in ("raw_io", "prepare", "compute") and all(limits):
        io, cpu = limits
        text += f"  x{figures['seconds'] / io:.2f} raw I/O, x{figures['seconds'] / cpu:.2f} compute,"
        text += f" x{figures['seconds'] / max(io, cpu):.2f} max(raw I/O, compute)"
    return text


def compute_case(case: str, results: dict) -> str | None:
    """The compute limit measured for ``case``: same model and same ``MODIFIERS``, in any order."""
    wanted = {m for m in case.split("@") if m in MODIFIERS}
    for name in results:
        parts = name.split("@")
        if parts[0] == "compute" and parts[1] == model_of(case) and {m for m in parts if m in MODIFIERS} == wanted:
            return name
    return None


def summary(results: dict) -> list[str]:
    lines = []
    seconds = {case: figures["seconds"] for case, figures in results.items()}
    for a, b in (("mlp", "floor"), ("lstm", "floor"), ("mlp", "mlp@prepared"), ("lstm", "lstm@prepared")):
        if a in seconds and b in seconds:
            lines.append(f"{a} / {b} = {seconds[a] / seconds[b]:.2f}")
    if "lstm@sequential" in seconds and "lstm" in seconds:
        lines.append(f"lstm sequential / overlapped = {seconds['lstm@sequential'] / seconds['lstm']:.2f}")
    if "naive" in seconds and "lstm" in seconds:
        lines.append(f"naive / lstm = {seconds['naive'] / seconds['lstm']:.1f}")
    for whole in ("lstm", "lstm@prepared"):
        if f"{whole}@quarter" in results and whole in results:
            ratio = results[whole]["peak_rss_mb"] / results[f"{whole}@quarter"]["peak_rss_mb"]
            lines.append(f"peak RSS {whole} 4x / 1x domain = {ratio:.2f}")
    return lines


if __name__ == "__main__":
    main()
