"""Ensemble members trained one by one against trained together, side by side on the demo sites.

    python benchmarks/training.py [--sites runs/demo-lstm/sites.zarr] [--recipe recipes/demo-lstm.yaml]
                                  [--workers 2] [--set training.epochs=10 ...]
    python benchmarks/training.py ... --before training.learning_rate=0.003 --before training.patience=6 ...

Runs the recipe's cross-validation (all members of all folds) twice in one process: with
``training.batched_members`` off (today's path: one member per task in a pool of ``--workers``
processes) and on (the members as ``--workers`` stacked models). Prints, for each, the wall
seconds, the CPU seconds of this process and its pool processes, and the median per-site R2
of each target against the site observations. ``--sites`` is a run's extracted ``sites.zarr``
(``upscale run RECIPE`` writes it in its first stage).

With ``--before`` overrides it compares schedules instead: the cross-validation with the recipe's
training settings against the same recipe with the ``--before`` settings (e.g. an earlier
learning rate and patience), both with the recipe's ``batched_members``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import xarray as xr

from upscale.batching import SiteData
from upscale.encoding import FeatureSpec
from upscale.evaluation import site_folds
from upscale.metrics import r2
from upscale.recipe import load_recipe
from upscale.train import out_of_fold, train_folds


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the pool's processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_case(recipe, data: SiteData, folds, label: str, workers: int, **changes) -> dict:
    """One cross-validation with ``changes`` to the recipe's training: seconds and median per-site R2 per target."""
    cfg = recipe.training.model_copy(update={"workers": workers, **changes})
    wall, cpu = time.perf_counter(), _cpu()
    ensembles = train_folds(recipe.model.model_dump(), data, cfg, folds)
    seconds = {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu() - cpu}
    oof = out_of_fold(ensembles, data, folds)
    skill = {}
    for j, target in enumerate(data.target_names):
        scores = [r2(data.targets[s, :, j], oof[target]["mean"][s]) for s in np.concatenate(folds)]
        skill[f"r2_{target}"] = float(np.nanmedian(scores))
    return {"case": label, **seconds, **skill}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="runs/demo-lstm/sites.zarr")
    parser.add_argument("--recipe", default="recipes/demo-lstm.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--folds", type=int, help="only the first K folds (a quicker screen; R2 over their sites)")
    parser.add_argument("--before", action="append", default=[], help="training.<field>=value of the earlier schedule")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, args.overrides)
    ds = xr.open_zarr(args.sites).load()
    spec = FeatureSpec.from_dict(json.loads(ds.attrs["feature_spec"]))
    data = SiteData.from_dataset(ds, spec.dynamic_names, recipe.targets)
    folds = site_folds(recipe, ds)[: args.folds]
    if args.before:
        earlier = load_recipe(args.recipe, args.overrides + args.before).training
        fields = [item.split("=", 1)[0].removeprefix("training.") for item in args.before]
        cases = [("before", {f: getattr(earlier, f) for f in fields}), ("recipe", {})]
    else:
        cases = [("one by one", {"batched_members": False}), ("stacked", {"batched_members": True})]
    rows = []
    for label, changes in cases:
        rows.append(run_case(recipe, data, folds, label, args.workers, **changes))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
    ratios = {"wall_ratio": rows[0]["wall_s"] / rows[1]["wall_s"], "cpu_ratio": rows[0]["cpu_s"] / rows[1]["cpu_s"]}
    skill_change = {k: rows[1][k] - rows[0][k] for k in rows[0] if k.startswith("r2_")}  # second case minus first
    print(json.dumps({k: round(v, 4) for k, v in {**ratios, **skill_change}.items()}))


if __name__ == "__main__":
    main()
