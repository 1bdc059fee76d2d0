"""Model families side by side on the default demo world: out-of-fold skill, calibration, cost.

    python benchmarks/models.py [--models mlp,lstm,ealstm,hybrid,xgboost,xgboost-rolling] [--set training.epochs=40 ...]

For each model it runs the recipe's cross-validation on the demo sites (the same folds for
every model) and prints, per target, the median per-site R2 against the noisy site
observations and against the true fluxes of the sites' pixels (the demo world knows them),
the median R2 at the most water-limited sites, the 50% / 90% interval coverage, and the
wall time. It also scores the process baselines. Figures go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from upscale.batching import SiteData
from upscale.encoding import FeatureSpec
from upscale.evaluation import site_folds
from upscale.features import extract_sites
from upscale.metrics import coverage, r2
from upscale.recipe import load_recipe
from upscale.sources.catalog import load_catalog
from upscale.train import cross_validate

ROOT = Path(__file__).resolve().parents[1]
#: Model configurations by benchmark name (other names: that model type with one 64-wide layer).
MODELS = {
    "mlp": {"type": "mlp", "hidden": [64, 64], "dropout": 0.0},
    "xgboost": {"type": "xgboost"},
    # as recipes/demo-xgboost.yaml: trailing means as the trees' memory
    "xgboost-rolling": {"type": "xgboost", "rolling": {"pr": [30, 90], "tas": [30], "vpd": [30]}},
}


def truth_at_sites(catalog_path: Path, sites: xr.Dataset) -> xr.Dataset:
    """True gpp, et and water limitation of each site's pixel, from the demo world's truth.zarr."""
    truth = xr.open_zarr(catalog_path.parent / "truth.zarr")
    at = dict(
        lat=xr.DataArray(sites.pixel_lat.values, dims="site"), lon=xr.DataArray(sites.pixel_lon.values, dims="site")
    )
    point = truth[["gpp", "et", "water_limitation"]].sel(**at, method="nearest").sel(time=sites.time)
    return point.load()


def per_site(fn, obs: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.array([fn(o, p) for o, p in zip(obs, pred)])


def evaluate(name: str, oof: dict, sites: xr.Dataset, truth: xr.Dataset, dry: np.ndarray, seconds: float) -> list[dict]:
    rows = []
    for target in oof:
        obs, pred, sd = sites[target].values, oof[target]["mean"], oof[target]["sd"]
        true = truth[target].transpose("site", "time").values
        r2_obs, r2_true = per_site(r2, obs, pred), per_site(r2, true, pred)
        rows.append(
            {
                "model": name,
                "target": target,
                "r2_obs": np.nanmedian(r2_obs),
                "r2_truth": np.nanmedian(r2_true),
                "r2_obs_dry": np.nanmedian(r2_obs[dry]),
                "r2_truth_dry": np.nanmedian(r2_true[dry]),
                "cov50": coverage(obs, pred, sd, 0.5) if sd is not None else np.nan,
                "cov90": coverage(obs, pred, sd, 0.9) if sd is not None else np.nan,
                "seconds": seconds,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "demo.yaml"))
    parser.add_argument("--models", default="mlp,lstm,ealstm,hybrid,xgboost,xgboost-rolling")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, args.overrides)
    catalog = load_catalog(recipe.catalog)
    sites = extract_sites(recipe, catalog)
    truth = truth_at_sites(catalog.path, sites)
    limitation = truth.water_limitation.values
    dry = limitation >= np.quantile(limitation, 0.75)
    print(f"{sites.sizes['site']} sites; water-limited quartile: limitation >= {limitation[dry].min():.2f}")
    folds = site_folds(recipe, sites)
    spec = FeatureSpec.from_dict(json.loads(sites.attrs["feature_spec"]))
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        model = MODELS.get(name, {"type": name, "hidden": [64], "dropout": 0.0})
        data = SiteData.from_dataset(sites, spec.dynamic_names, recipe.targets)
        t0 = time.perf_counter()
        oof = cross_validate(model, data, recipe.training, folds)
        rows += evaluate(name, oof, sites, truth, dry, time.perf_counter() - t0)
        print(pd.DataFrame(rows).round(3).to_string(index=False), flush=True)
    if args.baselines:
        from upscale.baselines import baseline_predictions

        for name, preds in baseline_predictions(sites, recipe.targets).items():
            oof = {t: {"mean": p, "sd": None} for t, p in preds.items()}
            rows += evaluate(name, oof, sites, truth, dry, float("nan"))
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
