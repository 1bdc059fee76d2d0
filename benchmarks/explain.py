"""How right and how costly the explanations are, on the demo world that knows the truth.

    python benchmarks/explain.py [--run-dir runs/bench-explain] [--recipe recipes/demo-explain.yaml]
                                 [--set explain.sensitivity_every=2 ...]

Runs the recipe (the LSTM with the decoy wind ``ws`` and an ``explain:`` section) unless the run
directory already holds a finished run of it, then checks the explanations against the truth:

- permutation importance: the decoy ``ws`` has the lowest importance for both targets, and its loss
  of NSE lies within two sd of zero (the sd over repeats, and the sd over resamples of the sites);
- memory effects: the LSTM's memory of precipitation for GPP (NSE with the full history minus NSE
  with k = 0 days of intact precipitation) at water-limited sites (true water limitation of the
  site's pixel >= 0.2) against wet sites (< 0.05), and its rank correlation with the limitation;
- sensitivity maps: sign agreement with the true instantaneous sensitivity on vegetated pixels (true
  mean GPP >= 0.5 g m-2 d-1) and the correlation of the time-mean maps, for GPP to rsds and vpd;
- cell states: the strongest correlation of one LSTM cell with the true soil water at the dry sites;
- integrated gradients: completeness error;
- cost: seconds of each method, and the sensitivity maps against the apply stage of the same run.

Prints a markdown report (copied by hand into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from upscale import pipeline
from upscale.explain.cells import cell_states
from upscale.explain.context import load_context
from upscale.recipe import load_recipe
from upscale.sources.catalog import load_catalog

ROOT = Path(__file__).resolve().parents[1]
DRY, WET = 0.2, 0.05  # true water limitation of GPP at a site's pixel
VEGETATED_GPP = 0.5  # g m-2 d-1, true period-mean GPP


def finished_run(recipe_path: Path, run_dir: Path, sets: list[str]) -> pipeline.Run:
    """The run of the recipe in ``run_dir``, run (or resumed) to the end."""
    recipe = load_recipe(recipe_path, [*sets, f"output.run_dir={run_dir}"])
    run = pipeline.open_run(recipe, new_run=False)
    pipeline.run_stages(run, pipeline.STAGES, client_factory=lambda: _client(recipe))
    return run


def _client(recipe):
    from upscale.cluster import make_client

    return make_client(recipe.cluster)


def truth_at_sites(world: Path, run_dir: Path) -> xr.Dataset:
    """True soil water and water limitation at each extracted site's pixel."""
    sites = xr.open_zarr(run_dir / "sites.zarr")
    truth = xr.open_zarr(world / "truth.zarr")
    at = dict(
        lat=xr.DataArray(sites.pixel_lat.values, dims="site"), lon=xr.DataArray(sites.pixel_lon.values, dims="site")
    )
    point = truth[["soil_water", "water_limitation"]].sel(**at, method="nearest").sel(time=sites.time)
    return point.assign_coords(site=sites.site.values).load()


def importance_check(run_dir: Path) -> list[dict]:
    table = pd.read_csv(run_dir / "explain" / "importance.csv")
    rows = []
    for target, part in table.groupby("target"):
        ws = part[part.predictor == "ws"].iloc[0]
        rows.append(
            {
                "target": target,
                "lowest": part.sort_values("nse_drop").predictor.iloc[0],
                "ws_nse_drop": ws.nse_drop,
                "ws_sd_repeats": ws.nse_drop_sd,
                "within_2sd_repeats": abs(ws.nse_drop) <= 2 * ws.nse_drop_sd,
                "ws_sd_sites": ws.nse_drop_sd_sites,
                "within_2sd_sites": abs(ws.nse_drop) <= 2 * ws.nse_drop_sd_sites,
                "highest": part.sort_values("nse_drop").predictor.iloc[-1],
                "highest_drop": part.nse_drop.max(),
            }
        )
    return rows


def memory_check(run_dir: Path, truth: xr.Dataset) -> dict:
    table = pd.read_csv(run_dir / "explain" / "memory.csv")
    sites = table[(table.group_by == "site") & (table.target == "gpp") & (table.predictor == "pr") & (table.k == 0)]
    memory = (sites.set_index("group").nse_full - sites.set_index("group").nse).rename("memory")
    limitation = truth.water_limitation.to_series().reindex(memory.index)
    dry, wet = memory[limitation >= DRY], memory[limitation < WET]
    rho = stats.spearmanr(limitation, memory, nan_policy="omit").statistic
    return {
        "dry_sites": len(dry),
        "wet_sites": len(wet),
        "memory_dry_median": float(dry.median()),
        "memory_wet_median": float(wet.median()),
        "spearman_with_limitation": float(rho),
    }


def sensitivity_check(run_dir: Path, world: Path) -> list[dict]:
    model = xr.open_zarr(run_dir / "explain" / "sensitivity.zarr")
    true = xr.open_zarr(world / "sensitivity.zarr")
    gpp = xr.open_zarr(world / "truth.zarr").gpp.mean("time").compute()
    vegetated = (gpp >= VEGETATED_GPP).values
    rows = []
    for target in ("gpp", "et"):
        for driver in ("rsds", "vpd", "tas", "pr", "ws"):
            name = f"{target}_sens_{driver}_mean"
            if name not in model or name not in true:
                continue
            m, t = model[name].values[vegetated], true[name].values[vegetated]
            ok = np.isfinite(m) & np.isfinite(t)
            sign = np.mean(np.sign(m[ok]) == np.sign(t[ok])) if driver != "ws" else np.nan
            rows.append(
                {
                    "map": name,
                    "units": model[name].attrs["units"],
                    "pixels": int(ok.sum()),
                    "sign_agreement": sign,
                    "r": stats.pearsonr(m[ok], t[ok]).statistic if t[ok].std() else np.nan,
                    "model_mean": m[ok].mean(),
                    "true_mean": t[ok].mean(),
                }
            )
    return rows


BANDS = ((-90, -20), (-20, 20), (20, 45), (45, 90))  # degrees north


def sensitivity_bands(run_dir: Path, world: Path, target: str = "gpp") -> list[dict]:
    """Sign agreement and medians of the time-mean maps per latitude band, for each driver of the truth."""
    model = xr.open_zarr(run_dir / "explain" / "sensitivity.zarr")
    true = xr.open_zarr(world / "sensitivity.zarr")
    vegetated = xr.open_zarr(world / "truth.zarr").gpp.mean("time").compute() >= VEGETATED_GPP
    rows = []
    for driver in ("rsds", "vpd", "tas"):
        name = f"{target}_sens_{driver}_mean"
        if name not in model or name not in true:
            continue
        for lo, hi in BANDS:
            band = vegetated & (model.lat >= lo) & (model.lat < hi)
            m, t = model[name].values[band.values], true[name].values[band.values]
            ok = np.isfinite(m) & np.isfinite(t)
            if ok.any():
                rows.append(
                    {
                        "map": name,
                        "band": f"{lo}..{hi} N",
                        "pixels": int(ok.sum()),
                        "sign_agreement": float(np.mean(np.sign(m[ok]) == np.sign(t[ok]))),
                        "model_median": float(np.median(m[ok])),
                        "true_median": float(np.median(t[ok])),
                    }
                )
    return rows


def cell_check(run_dir: Path, truth: xr.Dataset, targets: list[str]) -> dict:
    ctx = load_context(run_dir, targets)
    limitation = truth.water_limitation.to_series().reindex(ctx.sites.sites).to_numpy()
    ctx.sites.groups = {"water": np.where(limitation >= DRY, "limited", "unlimited")}
    soil = truth.soil_water.transpose("site", "time").values
    table = cell_states(ctx, references={"true_soil_water": soil})
    rows = table[(table.variable == "true_soil_water") & (table.group == "water:limited")]
    best = rows.assign(abs_r=rows.r_median.abs()).sort_values("abs_r").groupby("fold").tail(1)
    return {
        "best_abs_r_per_fold": [round(float(v), 3) for v in best.sort_values("fold").abs_r],
        "best_abs_r": float(best.abs_r.max()),
        "best_pooled_r": float(best.r_pooled.abs().max()),
    }


def cost(run: pipeline.Run) -> dict:
    manifest = json.loads(run.path("manifest.json").read_text())
    explain = manifest.get("explain") or {}
    seconds = {m: explain.get(f"info_{m}", {}).get("seconds") for m in explain.get("done", [])}
    apply = manifest["stages"]["apply"]["seconds"]
    return {
        "apply_s": apply,
        **{f"{m}_s": s for m, s in seconds.items()},
        "sensitivity_over_apply": seconds.get("sensitivity", np.nan) / apply,
        "site_methods_s": sum(s for m, s in seconds.items() if m != "sensitivity"),
    }


def tile_cost(run: pipeline.Run) -> dict:
    """CPU seconds of the apply task and of the sensitivity task over every tile, the two alternated
    tile by tile in this process (so both see the same machine), into copies of the run's stores: a
    ratio that a busy machine does not skew the way the stages' wall times are skewed when the load
    changes between them."""
    import shutil
    import tempfile
    import time

    from upscale.apply import run_tile
    from upscale.explain.sensitivity import SensitivityJob, run_sensitivity_tile
    from upscale.pipeline.domain import apply_domain

    domain = apply_domain(run)
    scratch = Path(tempfile.mkdtemp(prefix="tile-cost-"))
    try:
        shutil.copytree(run.path("product.zarr"), scratch / "product.zarr")
        shutil.copytree(run.path("explain", "sensitivity.zarr"), scratch / "sensitivity.zarr")
        sens = xr.open_zarr(scratch / "sensitivity.zarr")
        names = domain.spec.dynamic_names
        chosen = {k.split("_sens_")[1] for k in sens.data_vars if "_sens_" in k and not k.endswith("_mean")}
        months = tuple(str(m)[:10] for m in sens.time.values)
        every = run.recipe.explain.sensitivity_every
        apply_job = domain.job(str(scratch / "product.zarr"))
        sens_job = SensitivityJob(
            domain.job(""), str(scratch / "sensitivity.zarr"), tuple(sorted(chosen, key=names.index)), months, every
        )
        seconds = {"apply": 0.0, "sensitivity": 0.0}
        tiles = domain.tiles()
        for tile in tiles:
            for name, task, job in (("apply", run_tile, apply_job), ("sensitivity", run_sensitivity_tile, sens_job)):
                started = time.process_time()
                task(job, tile)
                seconds[name] += time.process_time() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "tiles": len(tiles),
        "apply_cpu_s": seconds["apply"],
        "sensitivity_cpu_s": seconds["sensitivity"],
        "sensitivity_over_apply": seconds["sensitivity"] / seconds["apply"],
    }


def markdown(title: str, rows) -> str:
    frame = pd.DataFrame(rows if isinstance(rows, list) else [rows])
    lines = [f"### {title}", "", "| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    fmt = lambda v: f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "demo-explain.yaml"))
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "bench-explain"))
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    run = finished_run(Path(args.recipe), Path(args.run_dir).resolve(), args.sets)
    world = load_catalog(run.recipe.catalog).path.parent
    truth = truth_at_sites(world, run.dir)
    print(markdown("Permutation importance: the decoy ws", importance_check(run.dir)))
    print(markdown("Memory of precipitation for GPP (LSTM)", memory_check(run.dir, truth)))
    print(markdown("Sensitivity maps against the truth (vegetated pixels)", sensitivity_check(run.dir, world)))
    print(markdown("GPP's sensitivity maps by latitude band", sensitivity_bands(run.dir, world)))
    print(
        markdown(
            "Cell states against the true soil water (water-limited sites)",
            cell_check(run.dir, truth, run.recipe.targets),
        )
    )
    ig = xr.open_zarr(run.path("explain", "attribution.zarr"))
    print(
        markdown(
            "Integrated gradients",
            [
                {"target": str(t), "completeness_error": float(ig.completeness_error.sel(target=t))}
                for t in ig.target.values
            ],
        )
    )
    print(markdown("Cost (seconds, this machine)", cost(run)))
    print(markdown("Every tile, apply and sensitivity side by side (CPU seconds)", tile_cost(run)))


if __name__ == "__main__":
    main()
