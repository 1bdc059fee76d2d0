"""Integrated gradients over lags: how much each past day of each predictor moved a prediction.

For each cross-validation fold, on its test sites only, prediction days are sampled per site
and the ensemble-mean prediction of each day (physical units) is attributed by integrated
gradients (Sundararajan et al. 2017, through captum) to every (lag, dynamic predictor) input
of the window of days ending at it, and to the static inputs. The baseline is the training
mean of every predictor (zeros in normalised space); the model starts from a fresh state at
the window's first day. Attributions are averaged over the sampled days of each site group.

The integration itself lives in :mod:`upscale.explain.integration`, the per-group sums and the
Dataset in :mod:`upscale.explain.attribution_totals`; this module samples the days, runs the
folds and draws the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from upscale.errors import DataError, RecipeError
from upscale.explain.attribution_totals import (  # noqa: F401 (LONG_NAMES re-exported: it was defined here)
    LONG_NAMES,
    Totals,
    attribution_dataset,
    static_sums,
)
from upscale.explain.context import ExplainContext, SiteSet, site_groups
from upscale.explain.figures import lag_ticks, panels
from upscale.explain.integration import (
    DEFAULT_INTERNAL_BATCH,
    DEFAULT_MAX_N_STEPS,
    DEFAULT_N_STEPS,
    DEFAULT_TOLERANCE,
    IG_METHOD,
    IGSettings,
    attribute_days,
    attribution_mode,
)

DEFAULT_WINDOW = 180
DEFAULT_DAYS_PER_SITE = 8


def integrated_gradients(
    ctx: ExplainContext,
    window: int = DEFAULT_WINDOW,
    days_per_site: int = DEFAULT_DAYS_PER_SITE,
    n_steps: int = DEFAULT_N_STEPS,
    seed: int = 0,
    targets: list[str] | None = None,
    method: str = IG_METHOD,
    internal_batch_size: int = DEFAULT_INTERNAL_BATCH,
    predictors: list[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_n_steps: int = DEFAULT_MAX_N_STEPS,
) -> xr.Dataset:
    """Integrated gradients of out-of-sample predictions over lags, per site group.

    Parameters
    ----------
    ctx : ExplainContext
        Sites and the fold ensembles; each site is explained by the fold that held it out.
    window : int
        Days of input ending at the predicted day (lag 0 = that day, lag ``window - 1`` the first).
    days_per_site : int
        Prediction days sampled per site and target (fewer where fewer are eligible: days with
        an observation of the target, ``window`` days of history and every predictor finite).
    n_steps, tolerance, max_n_steps : int, float, int
        Integration steps of captum's ``IntegratedGradients`` to start with; a block of days whose completeness
        error exceeds ``tolerance`` is integrated again with two or four times the steps, up to ``max_n_steps``.
    seed : int
        Seed of the day sampling.
    method, internal_batch_size : str, int
        captum's integration rule (``gausslegendre``, ``riemann_trapezoid``, ...); rows per forward/backward pass.
    targets, predictors : list of str, optional
        Targets to explain and dynamic predictors to report (default: all of the sites'). Every input is
        attributed regardless, so the completeness error covers them all.

    Returns
    -------
    xarray.Dataset
        Per target ``<target>_attribution``, ``<target>_attribution_abs`` (predictor, lag, group): mean signed and
        mean absolute attribution in the target's units; ``<target>_static_attribution``,
        ``<target>_static_attribution_abs`` (static_predictor, group), one-hot columns summed;
        ``completeness_error`` (target): sum |delta| / sum |f(x) - f(baseline)|;
        ``n_steps`` (target): the most integration steps a block needed; ``samples`` (target, group).
        Groups: ``all`` and ``<grouping>:<label>``.

    Raises
    ------
    RecipeError
        If a target or predictor is not one of the sites'.
    DataError
        If no day of any site is eligible (e.g. the window is longer than the series).
    """
    targets = _check_names(targets, ctx.sites.target_names, "targets")
    predictors = _check_names(predictors, ctx.sites.dynamic_names, "predictors")
    settings = IGSettings(window, n_steps, method, internal_batch_size, tolerance, max_n_steps)
    return _group_attributions(ctx, targets, settings, days_per_site, seed).sel(predictor=predictors)


def _group_attributions(
    ctx: ExplainContext, targets: list[str], settings: IGSettings, days_per_site: int, seed: int
) -> xr.Dataset:
    """The attributions of every dynamic predictor, averaged per site group, as the reported Dataset."""
    groups = site_groups(ctx.sites)
    totals = _fold_totals(ctx, targets, groups, settings, days_per_site, np.random.default_rng(seed))
    return attribution_dataset(totals, ctx.sites, [name for name, _ in groups], settings, days_per_site, seed)


def _fold_totals(
    ctx: ExplainContext,
    targets: list[str],
    groups: list[tuple[str, np.ndarray]],
    settings: IGSettings,
    days_per_site: int,
    rng: np.random.Generator,
) -> dict[str, Totals]:
    """Per target, the sums of the attributions of days sampled at every fold's test sites.

    Raises
    ------
    DataError
        If no day of any site is eligible.
    """
    sites = ctx.sites
    totals = {
        t: Totals(len(groups), settings.window, len(sites.dynamic_names), len(sites.static_columns)) for t in targets
    }
    with attribution_mode([m for fold in ctx.folds for m in fold.ensemble.members]):
        for target in targets:
            eligible = eligible_days(sites, sites.target_names.index(target), settings.window)
            for fold in ctx.folds:
                site_idx, days = _sample(eligible, np.sort(fold.test), days_per_site, rng)
                if site_idx.size == 0:
                    continue
                result, steps = attribute_days(fold.ensemble, sites, target, site_idx, days, settings)
                totals[target].add(
                    result,
                    static_sums(result[1], sites.static_columns),
                    np.stack([g[site_idx] for _, g in groups]),
                    steps,
                )
    if not any(tot.count.sum() for tot in totals.values()):
        raise DataError(
            f"no site has a day with an observed target and {settings.window} days of finite predictors",
            where="integrated gradients",
            fix="Use a shorter window",
        )
    return totals


def eligible_days(sites: SiteSet, target_index: int, window: int) -> np.ndarray:
    """[S, T] bool: days with an observation of the target, ``window`` days of history
    (the day included) and every dynamic predictor finite over them, at sites with finite
    static predictors."""
    s, t = sites.targets.shape[:2]
    bad = (~np.isfinite(sites.dynamic).all(axis=-1)).astype(np.int64)
    bad_so_far = np.concatenate([np.zeros((s, 1), np.int64), np.cumsum(bad, axis=1)], axis=1)
    ok = np.zeros((s, t), bool)
    if window <= t:
        end = np.arange(window - 1, t)
        ok[:, window - 1 :] = (bad_so_far[:, end + 1] - bad_so_far[:, end + 1 - window]) == 0
    ok &= np.isfinite(sites.targets[..., target_index])
    ok &= np.isfinite(sites.static).all(axis=-1)[:, None]
    return ok


def _sample(eligible: np.ndarray, test: np.ndarray, per_site: int, rng: np.random.Generator):
    """Up to ``per_site`` eligible days of each test site, without replacement: (site, day) indices."""
    site_idx, days = [], []
    for site in test:
        candidates = np.flatnonzero(eligible[site])
        chosen = rng.choice(candidates, size=min(per_site, candidates.size), replace=False)
        site_idx.append(np.full(chosen.size, site))
        days.append(np.sort(chosen))
    if not site_idx:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(site_idx).astype(int), np.concatenate(days).astype(int)


def _check_names(names: list[str] | None, known: list[str], kind: str) -> list[str]:
    names = list(known) if names is None else list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RecipeError(
            f"cannot explain unknown {kind} {', '.join(unknown)}",
            where="integrated gradients",
            fix=f"Use {kind} among {', '.join(known)}",
        )
    return names


def plot_attribution(ds: xr.Dataset, path: str | Path) -> str:
    """Heat maps of the mean absolute attribution over lag x predictor, one panel per target (group ``all``).

    The lag axis is linear over the first week and logarithmic beyond, where attributions fade.

    Parameters
    ----------
    ds : xarray.Dataset
        As returned by :func:`integrated_gradients`.
    path : str or pathlib.Path
        PNG file to write.

    Returns
    -------
    str
        The file name written.
    """
    path = Path(path)
    targets = list(ds.target.values)
    lags = ds.lag.values
    edges = np.concatenate([lags - 0.5, [lags[-1] + 0.5]])
    fig, axes = panels(len(targets), 1, (8.0, 0.5 + (0.35 * ds.sizes["predictor"] + 1.2) * len(targets)))
    axes = axes[:, 0]
    for ax, target in zip(axes, targets):
        values = ds[f"{target}_attribution_abs"].sel(group="all").transpose("predictor", "lag")
        mesh = ax.pcolormesh(edges, np.arange(ds.sizes["predictor"] + 1) - 0.5, values.values, cmap="magma_r")
        ticks = sorted({t for t in (0, 1, 3, 7, 14, 30, 60, 90, 180, 365, 730) if t < lags[-1]} | {int(lags[-1])})
        lag_ticks(ax, ticks, linthresh=7, linscale=1.0)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_yticks(np.arange(ds.sizes["predictor"]), list(ds.predictor.values))
        ax.set_xlabel("lag [days before the predicted day]")
        ax.set_title(
            f"{target}: mean |integrated gradients| (completeness error "
            f"{float(ds.completeness_error.sel(target=target)):.1%})",
            fontsize=10,
        )
        unit = ds[f"{target}_attribution_abs"].attrs["units"]
        fig.colorbar(mesh, ax=ax, label=f"mean |attribution| [{unit}]")
    fig.savefig(path, dpi=90)
    return path.name
