"""Held-out skill: the out-of-fold dataset, per-site metric tables, their summaries, the comparison with baselines.

What the evaluate stage writes to ``cv/`` and what the report and the CLI read back from it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import RecipeError
from upscale.metrics import DECOMPOSED_COLUMNS, METRIC_COLUMNS, decomposed_scores, pinball, pit_share, score
from upscale.outputs import quantile_part, target_outputs


def prediction_name(target: str) -> str:
    """The out-of-fold ensemble mean of ``target`` (``<target>`` itself holds the observations)."""
    return f"{target}_pred"


def site_folds(recipe, sites: xr.Dataset) -> list[np.ndarray]:
    """Test folds of the recipe's validation scheme over the extracted sites."""
    from upscale.folds import koppen_main_class, make_folds

    groups = None
    if recipe.validation.scheme == "group":
        if recipe.validation.group_by == "igbp":
            groups = sites.igbp.values
        else:
            for name in ("tas", "pr"):
                if name not in sites:
                    raise RecipeError(
                        f"grouping by climate needs the predictor {name!r}",
                        where="validation.group_by",
                        fix="Add it to predictors or group by igbp",
                    )
            groups = koppen_main_class(sites.time.values, sites.tas.values, sites.pr.values)
    return make_folds(
        recipe.validation.scheme, sites.sizes["site"], recipe.validation.folds, recipe.training.seed, groups
    )


def fold_of(folds: list[np.ndarray], n_sites: int) -> np.ndarray:
    """The fold of each site (-1: in no test fold)."""
    fold = np.full(n_sites, -1, dtype="int16")
    for k, idx in enumerate(folds):
        fold[idx] = k
    return fold


def pit_name(target: str) -> str:
    """The out-of-fold PIT of each observation of ``target`` (its ``lower_bound`` attribute: where it is censored)."""
    return f"{target}_pit"


def oof_dataset(
    sites: xr.Dataset,
    observed: np.ndarray,
    oof: dict,
    targets: list[str],
    folds: list[np.ndarray],
    quantiles=(),
    bounds: dict | None = None,
) -> xr.Dataset:
    """``cv/oof.zarr``: observations and out-of-fold predictions of every site, named as the product names them.

    Parameters
    ----------
    sites : xarray.Dataset
        The extracted sites (coords ``site``, ``time``, ``lat``, ``lon``, ``igbp``; target units).
    observed : numpy.ndarray
        [S, T, K] observations of ``targets``.
    oof : dict
        target -> part -> [S, T] (parts of :func:`upscale.outputs.target_outputs`, and ``pit`` when
        present: see :func:`upscale.train.out_of_fold`).
    targets : list of str
        The targets, in the order of ``observed``.
    folds : list of numpy.ndarray
        Test-site indices of each fold.
    quantiles : sequence of float
        The quantile levels in ``oof`` (``output.quantiles``).
    bounds : dict, optional
        Target -> the lower bound its predictions were censored at (None: unbounded).
    """
    from upscale.features import text_array

    out = xr.Dataset(
        coords={
            "site": text_array(sites.site.values),
            "time": sites.time.values,
            "lat": ("site", sites.lat.values),
            "lon": ("site", sites.lon.values),
            "igbp": ("site", text_array(sites.igbp.values)),
            "fold": ("site", fold_of(folds, sites.sizes["site"])),
        }
    )
    for j, target in enumerate(targets):
        units = {"units": sites[target].attrs.get("units", "")}
        out[target] = (("site", "time"), observed[..., j], units)
        for variable in target_outputs(quantiles):
            name = prediction_name(target) if variable.part == "mean" else variable.name(target)
            extra = {} if variable.quantile is None else {"quantile": variable.quantile}
            out[name] = (("site", "time"), oof[target][variable.part], {**units, **extra})
        if "pit" in oof[target]:
            bound = (bounds or {}).get(target)
            attrs = {"units": "1", "long_name": "PIT of the observation under its out-of-fold predictive distribution"}
            out[pit_name(target)] = (("site", "time"), oof[target]["pit"], attrs)
            if bound is not None:
                out[pit_name(target)].attrs["lower_bound"] = float(bound)
    return out


def quantile_levels(oof: xr.Dataset, target: str) -> list[float]:
    """The quantile levels of ``target`` that ``oof`` holds (from the variables' ``quantile`` attribute)."""
    return sorted(
        float(v.attrs["quantile"])
        for n, v in oof.data_vars.items()
        if n.startswith(f"{target}_q") and "quantile" in v.attrs
    )


def _quantile_scores(oof: xr.Dataset, target: str, i: int, obs: np.ndarray, pit, censored) -> dict:
    """Pinball loss and coverage (share at or below, PIT-based) of each out-of-fold quantile of one site."""
    bound = oof[pit_name(target)].attrs.get("lower_bound") if pit is not None else None
    clipped = obs if bound is None else np.maximum(obs, bound)
    out = {}
    for level in quantile_levels(oof, target):
        part = quantile_part(level)
        out[f"pinball_{part}"] = pinball(clipped, oof[f"{target}_{part}"].values[i], level)
        out[f"coverage_{part}"] = np.nan if pit is None else pit_share(pit, censored, 0.0, level)
    return out


def metrics_table(oof: xr.Dataset, targets: list[str]) -> pd.DataFrame:
    """One row per (site, target): the metrics of the daily out-of-fold predictions, and R2 and NSE
    of their mean seasonal cycle and monthly anomalies."""
    rows, extra = [], []
    for target in targets:
        for i, site in enumerate(oof.site.values):
            obs, pred = oof[target].values[i], oof[prediction_name(target)].values[i]
            pit, censored = _pit_of(oof, target, i, obs)
            stats = score(obs, pred, oof[f"{target}_sd"].values[i], pit, censored)
            quantiles = _quantile_scores(oof, target, i, obs, pit, censored)
            extra += [k for k in quantiles if k not in extra]
            rows.append(
                {
                    "site": str(site),
                    "target": target,
                    **stats,
                    **decomposed_scores(oof.time.values, obs, pred),
                    **quantiles,
                }
            )
    return pd.DataFrame(rows, columns=["site", "target", *METRIC_COLUMNS, *DECOMPOSED_COLUMNS, *extra])


def _pit_of(oof: xr.Dataset, target: str, i: int, obs: np.ndarray):
    """The PIT of site ``i``'s observations and where they are censored (None, None without a PIT)."""
    if pit_name(target) not in oof:
        return None, None
    pit = oof[pit_name(target)]
    bound = pit.attrs.get("lower_bound")
    with np.errstate(invalid="ignore"):
        censored = np.zeros(obs.shape, bool) if bound is None else obs <= bound
    return pit.values[i], censored


def summarise_metrics(table: pd.DataFrame) -> dict:
    """Median of each metric per target (NaN-skipping), rounded for display."""
    numeric = table.drop(columns="site").groupby("target").median(numeric_only=True)
    return {t: {k: round(float(v), 3) for k, v in row.items()} for t, row in numeric.iterrows()}


def comparison_table(model: str, table: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Median per-site skill of the learned model and of each baseline, per target (``cv/summary.csv``)."""
    learned = table.assign(model=model)
    both = pd.concat([learned, baselines], ignore_index=True)
    summary = both.groupby(["model", "target"], sort=False)[list(METRIC_COLUMNS)].median().reset_index()
    summary.insert(2, "sites", both.groupby(["model", "target"], sort=False).size().to_numpy())
    return summary
