"""Memory effects (Kraft et al. 2019): held-out skill as a function of the intact history.

For a lag k the model predicts day t from the real inputs of days t-k..t, while every earlier
day is "destroyed": replaced by random days of the same site (the predictors shuffled in time
within the site), for all dynamic predictors together (``"all"``) or for one alone. The loss
of skill between the full history and k = 0 is the model's memory.

The predictions come from batched restarts of the model (:mod:`upscale.explain.restarts`):
runs restart every ``stride``-th day, so lag k is evaluated on the days t with (t-k-1)
divisible by ``stride``, and every lag is compared with the full history on its own days (the
``*_full`` columns). Models without state (MLP) see day t alone, so their memory is zero by
construction. This module scores the predictions per site (:mod:`upscale.explain.skill`),
aggregates them per site group and draws them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from upscale.errors import RecipeError
from upscale.explain.context import ExplainContext, SiteSet
from upscale.explain.figures import lag_ticks, panels
from upscale.explain.restarts import (  # noqa: F401 (CHUNK_DAYS re-exported: it was defined here)
    CHUNK_DAYS,
    DEFAULT_BATCH_STEPS,
    evaluation_days,
    lagged_predictions,
    shuffled_history,
)
from upscale.explain.skill import MONTH_MIN_DAYS, SCORES, site_scores

ALL = "all"
DEFAULT_LAGS = (0, 1, 3, 7, 15, 30, 60, 90, 180)
#: Restart every 7th day: ~4 evaluated days per month and lag (cost ~ 1 / stride).
DEFAULT_STRIDE = 7
MEMORY_COLUMNS = ("target", "predictor", "group_by", "group", "k", *SCORES, *(f"{s}_full" for s in SCORES), "sites")
MEMORY_SCORES = ("nse", "msc_nse", "anomaly_nse")


def memory_effects(
    ctx: ExplainContext,
    lags=DEFAULT_LAGS,
    predictors: list[str] | None = None,
    stride: int = DEFAULT_STRIDE,
    seed: int = 0,
    batch_steps: int = DEFAULT_BATCH_STEPS,
) -> pd.DataFrame:
    """Held-out skill when only the last k days of history are intact, for each k in ``lags``.

    Parameters
    ----------
    ctx : ExplainContext
        Sites and the fold ensembles that held them out.
    lags : sequence of int
        Days k of intact history before the predicted day (0: that day alone).
    predictors : list of str, optional
        The dynamic predictors whose history is also destroyed alone (that column only, the
        others intact); None: each of them. The curve ``"all"`` (every dynamic predictor
        destroyed together) is always computed.
    stride : int
        Runs restart every ``stride``-th day (cost ~ 1 / stride); see the module docstring.
    seed : int
        Seed of the shuffled histories.
    batch_steps : int
        Site-days per model call: bounds memory.

    Returns
    -------
    pandas.DataFrame
        One table, columns :data:`MEMORY_COLUMNS`, rows (target, predictor, group_by, group, k):
        ``nse, r2, msc_nse, anomaly_nse`` at lag k and the same with suffix ``_full`` for the
        undestroyed prediction on the same days; ``sites``: held-out sites in the group. Groups:
        ``group_by="all"`` (group ``"all"``), one ``group_by`` per entry of ``ctx.sites.groups``
        (group = its label), and ``group_by="site"`` (group = site id). A group's skill is the
        median of its sites' skill.
    """
    lags = _checked_lags(lags)
    if stride < 1:
        raise RecipeError(f"the memory stride must be a number of days >= 1, got {stride}", where="explain")
    sites = ctx.sites
    variants = _variants(sites.dynamic_names, predictors)
    destroyed = shuffled_history(sites.dynamic, list(variants.values()), np.random.default_rng(seed))
    lagged, full = _held_out_predictions(ctx, destroyed, lags, stride, batch_steps)
    held_out = np.unique(np.concatenate([np.asarray(f.test, dtype=int) for f in ctx.folds]))
    per_site = _per_site_skill(sites, lagged, full, list(variants), lags, stride, held_out)
    table = _grouped(per_site, sites)
    table.attrs.update(stride=stride, seed=seed)
    return table


def _held_out_predictions(ctx: ExplainContext, destroyed: np.ndarray, lags: list[int], stride: int, batch_steps: int):
    """Per target, lagged [V, len(lags), S, T] and full [S, T] predictions of each site by the fold that held it out.

    Sites held out by no fold stay NaN.
    """
    sites = ctx.sites
    lagged = {
        t: np.full((len(destroyed), len(lags), *sites.targets.shape[:2]), np.nan, "float32") for t in sites.target_names
    }
    full = {t: np.full(sites.targets.shape[:2], np.nan, "float32") for t in sites.target_names}
    for fold in ctx.folds:
        fold_lagged, fold_full = lagged_predictions(
            fold.ensemble,
            sites.dynamic[fold.test],
            sites.static[fold.test],
            destroyed[:, fold.test],
            lags,
            stride,
            batch_steps,
        )
        for target in sites.target_names:
            lagged[target][:, :, fold.test] = fold_lagged[target]
            full[target][fold.test] = fold_full[target]
    return lagged, full


def _checked_lags(lags) -> list[int]:
    lags = sorted({int(k) for k in lags})
    if not lags or lags[0] < 0:
        raise RecipeError(f"memory lags must be days >= 0, got {lags}", where="explain.lags")
    return lags


def _variants(names: list[str], predictors: list[str] | None) -> dict[str, list[int]]:
    """Destroyed columns per variant: ``"all"`` -> every column, a predictor -> its column."""
    alone = names if predictors is None else [p for p in predictors if p != ALL]
    unknown = [p for p in alone if p not in names]
    if unknown:
        raise RecipeError(
            f"unknown dynamic predictors {', '.join(map(repr, unknown))}",
            where="explain.predictors",
            fix=f"The sites have {', '.join(names)}",
        )
    return {ALL: list(range(len(names))), **{p: [names.index(p)] for p in dict.fromkeys(alone)}}


def _per_site_skill(
    sites: SiteSet, lagged: dict, full: dict, variants: list[str], lags: list[int], stride: int, held_out: np.ndarray
) -> pd.DataFrame:
    """Long table of per-site skill at each (target, predictor, k), with the full-history skill alike."""
    min_days = math.ceil(MONTH_MIN_DAYS / stride)  # with a stride, a month's share of the evaluated days
    n_days = sites.time.size
    frames = []
    for j, target in enumerate(sites.target_names):
        obs = sites.targets[held_out, :, j]
        for i, lag in enumerate(lags):
            days = evaluation_days(n_days, lag, stride)
            reference = site_scores(sites.time, obs, np.where(days, full[target][held_out], np.nan), min_days)
            for v, name in enumerate(variants):
                scores = site_scores(sites.time, obs, lagged[target][v, i, held_out], min_days)
                frame = pd.DataFrame({"target": target, "predictor": name, "k": lag, "site": held_out, **scores})
                frames.append(frame.assign(**{f"{s}_full": reference[s] for s in SCORES}))
    return pd.concat(frames, ignore_index=True)


def _grouped(per_site: pd.DataFrame, sites: SiteSet) -> pd.DataFrame:
    """Median skill over the sites of each group, plus one row per site (``group_by="site"``)."""
    keys = ["target", "predictor", "k"]
    values = [*SCORES, *(f"{s}_full" for s in SCORES)]
    labels = {"all": np.full(len(sites.sites), ALL, dtype=object), **sites.groups}
    frames = []
    for group_by, label in labels.items():
        frame = per_site.assign(group=np.asarray(label, dtype=object)[per_site["site"]])
        frame = frame[pd.notna(frame["group"])]
        grouped = frame.groupby([*keys, "group"], sort=False)
        table = grouped[values].median().join(grouped.size().rename("sites")).reset_index()
        frames.append(table.assign(group_by=group_by))
    frames.append(per_site.assign(group_by="site", group=np.asarray(sites.sites)[per_site["site"]], sites=1))
    table = pd.concat(frames, ignore_index=True)[list(MEMORY_COLUMNS)]
    table["group"] = table["group"].astype(str)
    return table


def memory_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The memory of each curve: skill with the full history minus skill at the smallest lag (k = 0).

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`memory_effects`.

    Returns
    -------
    pandas.DataFrame
        One row per (target, predictor, group_by, group): ``k`` (the smallest lag), ``sites``, and
        ``nse_memory``, ``msc_nse_memory`` (seasonal cycle), ``anomaly_nse_memory`` (anomalies),
        each ``<score>_full - <score>`` on the days of that lag.
    """
    keys = ["target", "predictor", "group_by", "group"]
    table = table.reset_index(drop=True)
    first = table.loc[table.groupby(keys, sort=False)["k"].idxmin()]
    summary = first[[*keys, "k", "sites"]].copy()
    for score in MEMORY_SCORES:
        summary[f"{score}_memory"] = first[f"{score}_full"] - first[score]
    return summary.reset_index(drop=True)


def plot_memory(table: pd.DataFrame, path: str | Path) -> str:
    """NSE against the days of intact history k, a panel per target, a line per predictor.

    The dashed line is the full-history NSE on the same days (``group_by="all"`` rows).

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`memory_effects`.
    path : str or pathlib.Path
        The image file to write.

    Returns
    -------
    str
        The path of the written file.
    """
    rows = table[table["group_by"] == "all"]
    targets = list(dict.fromkeys(rows["target"]))
    fig, axes = _figure(1, len(targets))
    for ax, target in zip(axes[0], targets):
        of_target = rows[rows["target"] == target]
        for predictor, curve in of_target.groupby("predictor", sort=False):
            curve = curve.sort_values("k")
            ax.plot(
                curve["k"],
                curve["nse"],
                marker="o",
                ms=3,
                lw=2.2 if predictor == ALL else 1.2,
                label=f"{predictor} destroyed",
            )
        reference = of_target[of_target["predictor"] == of_target["predictor"].iloc[0]].sort_values("k")
        ax.plot(reference["k"], reference["nse_full"], "k--", lw=1, label="full history")
        _lag_axis(ax, f"{target}: median over held-out sites", sorted(set(rows["k"])))
    fig.savefig(path, dpi=120)
    return str(path)


def plot_memory_groups(table: pd.DataFrame, path: str | Path, predictor: str = ALL) -> str:
    """NSE against k per site group (PFT, aridity, ...): a row of panels per grouping, a column per target.

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`memory_effects`.
    path : str or pathlib.Path
        The image file to write.
    predictor : str
        Which curve to show (default: all dynamic predictors destroyed together).

    Returns
    -------
    str
        The path of the written file.
    """
    rows = table[(table["predictor"] == predictor) & ~table["group_by"].isin(["all", "site"])]
    groupings = list(dict.fromkeys(rows["group_by"])) or ["(no site groups)"]
    targets = list(dict.fromkeys(table["target"]))
    fig, axes = _figure(len(groupings), len(targets))
    for r, group_by in enumerate(groupings):
        for ax, target in zip(axes[r], targets):
            panel = rows[(rows["group_by"] == group_by) & (rows["target"] == target)]
            for group, curve in panel.groupby("group", sort=True):
                curve = curve.sort_values("k")
                (line,) = ax.plot(
                    curve["k"], curve["nse"], marker="o", ms=3, label=f"{group} (n={int(curve['sites'].iloc[0])})"
                )
                ax.plot(curve["k"], curve["nse_full"], ls="--", lw=0.8, color=line.get_color())
            _lag_axis(
                ax, f"{target} by {group_by}, {predictor} destroyed (dashed: full history)", sorted(set(table["k"]))
            )
    fig.savefig(path, dpi=120)
    return str(path)


def _figure(n_rows: int, n_cols: int):
    n_rows, n_cols = max(1, n_rows), max(1, n_cols)
    return panels(n_rows, n_cols, (5.4 * n_cols, 3.8 * n_rows))


def _lag_axis(ax, title: str, lags: list[int]) -> None:
    """Days of intact history on a symmetric-log axis, so that k = 0 is shown next to months."""
    lag_ticks(ax, lags, linthresh=1.0)
    ax.set_xlabel("days of intact history k")
    ax.set_ylabel("NSE")
    ax.set_title(title, fontsize=9)
    if ax.has_data():
        ax.legend(fontsize=7)
