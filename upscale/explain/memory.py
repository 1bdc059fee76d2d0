"""Memory effects (Kraft et al. 2019): held-out skill as a function of the intact history.

For a lag k the model predicts day t from the real inputs of days t-k..t, while every earlier
day is "destroyed": replaced by random days of the same site (the predictors shuffled in time
within the site), for all dynamic predictors together (``"all"``) or for one alone. The loss
of skill between the full history and k = 0 is the model's memory.

The exact computation restarts the model: run each member once over the destroyed series
``x~``, keep its state after the days where runs start, then, batched over all (variant, site,
start day s) rows, continue from the state after day s of ``x~`` over the real days s+1, s+2,
... The output after k+1 real days is the prediction of day t = s+k+1 at lag k, so one run of
max(lags)+1 days serves every lag at once. Runs start every ``stride``-th day, so lag k is
evaluated on the days t with (t-k-1) divisible by ``stride``; days t <= k have no destroyed
history and take the ordinary (fresh-start) prediction. Every lag is compared with the full
history on its own days (the ``*_full`` columns). Models without state (MLP) take the same
path with a None state: they see day t alone, so their memory is zero by construction.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from upscale.ensemble import Ensemble
from upscale.errors import RecipeError
from upscale.explain.context import ExplainContext, SiteSet

ALL = "all"
DEFAULT_LAGS = (0, 1, 3, 7, 15, 30, 60, 90, 180)
#: Restart every 7th day: ~4 evaluated days per month and lag (cost ~ 1 / stride).
DEFAULT_STRIDE = 7
#: Site-days per model call of the batched restarts: bounds memory (~70 MB for an LSTM of 64).
DEFAULT_BATCH_STEPS = 2 ** 16
CHUNK_DAYS = 32
#: Days with data a month needs in a daily series (as ``upscale.metrics.monthly_components``);
#: with a stride the same share of the evaluated days, ceil(10 / stride).
MONTH_MIN_DAYS = 10
SCORES = ("nse", "r2", "msc_nse", "anomaly_nse")
MEMORY_COLUMNS = ("target", "predictor", "group_by", "group", "k", *SCORES, *(f"{s}_full" for s in SCORES),
                  "sites")
MEMORY_SCORES = ("nse", "msc_nse", "anomaly_nse")


def memory_effects(ctx: ExplainContext, lags=DEFAULT_LAGS, predictors: list[str] | None = None,
                   stride: int = DEFAULT_STRIDE, seed: int = 0,
                   batch_steps: int = DEFAULT_BATCH_STEPS) -> pd.DataFrame:
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
    lagged = {t: np.full((len(variants), len(lags), *sites.targets.shape[:2]), np.nan, "float32")
              for t in sites.target_names}
    full = {t: np.full(sites.targets.shape[:2], np.nan, "float32") for t in sites.target_names}
    for fold in ctx.folds:
        fold_lagged, fold_full = lagged_predictions(
            fold.ensemble, sites.dynamic[fold.test], sites.static[fold.test], destroyed[:, fold.test], lags,
            stride, batch_steps)
        for target in sites.target_names:
            lagged[target][:, :, fold.test] = fold_lagged[target]
            full[target][fold.test] = fold_full[target]
    held_out = np.unique(np.concatenate([np.asarray(f.test, dtype=int) for f in ctx.folds]))
    per_site = _per_site_skill(sites, lagged, full, list(variants), lags, stride, held_out)
    table = _grouped(per_site, sites)
    table.attrs.update(stride=stride, seed=seed)
    return table


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
        raise RecipeError(f"unknown dynamic predictors {', '.join(map(repr, unknown))}", where="explain.predictors",
                          fix=f"The sites have {', '.join(names)}")
    return {ALL: list(range(len(names))), **{p: [names.index(p)] for p in dict.fromkeys(alone)}}


def shuffled_history(dynamic: np.ndarray, variants: list[list[int]], rng: np.random.Generator) -> np.ndarray:
    """Destroyed copies of the series: the chosen columns shuffled in time within each site.

    One permutation of the days per site serves every variant, so the variants differ only in
    which columns are replaced.

    Parameters
    ----------
    dynamic : numpy.ndarray
        [S, T, Fd] series.
    variants : list of list of int
        Per variant, the columns to replace by their shuffled values.
    rng : numpy.random.Generator
        Source of the permutations.

    Returns
    -------
    numpy.ndarray
        [V, S, T, Fd]; the other columns are the real values.
    """
    n_sites, n_days = dynamic.shape[:2]
    order = np.stack([rng.permutation(n_days) for _ in range(n_sites)])
    shuffled = np.take_along_axis(dynamic, order[..., None], axis=1)
    out = np.repeat(dynamic[None], len(variants), axis=0)
    for v, columns in enumerate(variants):
        out[v][..., columns] = shuffled[..., columns]
    return out


def evaluation_days(n_days: int, lag: int, stride: int) -> np.ndarray:
    """[T] bool: the days on which lag ``lag`` is evaluated (runs restart every ``stride``-th day)."""
    return (np.arange(n_days) - lag - 1) % stride == 0


def lagged_predictions(ensemble: Ensemble, dynamic: np.ndarray, static: np.ndarray, destroyed: np.ndarray,
                       lags, stride: int = 1, batch_steps: int = DEFAULT_BATCH_STEPS):
    """Ensemble means when the history older than k days comes from a destroyed series.

    Parameters
    ----------
    ensemble : upscale.ensemble.Ensemble
        The members and their normaliser.
    dynamic : numpy.ndarray
        [P, T, Fd] real predictors, canonical units (NaN where missing).
    static : numpy.ndarray
        [P, Fs] encoded static predictors.
    destroyed : numpy.ndarray
        [V, P, T, Fd] destroyed series (e.g. :func:`shuffled_history`), one per variant.
    lags : sequence of int
        The lags k, sorted ascending.
    stride : int
        Runs restart every ``stride``-th day; lag k is evaluated on :func:`evaluation_days`.
    batch_steps : int
        Site-days per model call.

    Returns
    -------
    lagged : dict of numpy.ndarray
        Per target [V, len(lags), P, T], physical units: the prediction of day t from the state
        after day t-k-1 of ``destroyed[v]`` and the real days t-k..t (for t <= k the ordinary
        prediction); NaN on days not evaluated and where a predictor of day t is missing.
    full : dict of numpy.ndarray
        Per target [P, T]: the ordinary prediction (fresh start, real history), masked alike.
    """
    n_variants, n_pixels, n_days = destroyed.shape[:3]
    norm, targets = ensemble.normaliser, ensemble.targets
    real = _normalised(ensemble, norm.dynamic(dynamic))
    history = _normalised(ensemble, norm.dynamic(destroyed).reshape(n_variants * n_pixels, n_days, -1))
    static_in = _normalised(ensemble, norm.static(static))
    starts = np.arange(0, n_days - 1, stride)
    lag_sum = np.zeros((len(targets), n_variants * n_pixels, len(lags), n_days))
    full_sum = np.zeros((len(targets), n_pixels, n_days))
    with torch.inference_mode():
        for member in ensemble.members:
            outputs, _ = member(real, static_in)
            full_sum += np.stack([outputs[t][0].float().cpu().numpy() for t in targets])
            lag_sum += _restart_means(member, real, static_in, history, starts, lags, targets, batch_steps)
    scale = np.asarray(norm.target_std, "float64")[:, None, None]
    offset = np.asarray(norm.target_mean, "float64")[:, None, None]
    full = full_sum / len(ensemble.members) * scale + offset
    lagged = (lag_sum / len(ensemble.members) * scale[..., None] + offset[..., None]).reshape(
        len(targets), n_variants, n_pixels, len(lags), n_days).transpose(0, 1, 3, 2, 4)
    for i, lag in enumerate(lags):
        fresh = evaluation_days(n_days, lag, stride) & (np.arange(n_days) <= lag)
        lagged[:, :, i][..., fresh] = full[:, None][..., fresh]
    valid = np.isfinite(dynamic).all(axis=-1) & np.isfinite(static).all(axis=-1)[:, None]
    lagged[..., ~valid], full[..., ~valid] = np.nan, np.nan
    return ({t: lagged[j].astype("float32") for j, t in enumerate(targets)},
            {t: full[j].astype("float32") for j, t in enumerate(targets)})


def _normalised(ensemble: Ensemble, values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.nan_to_num(values), dtype="float32")).to(ensemble.device)


def _restart_means(member, real, static, history, starts, lags, targets, batch_steps) -> np.ndarray:
    """One member's normalised means [K, V*P, len(lags), T] from restarts at ``starts`` (NaN elsewhere).

    Rows (history series, start day) are ordered by start day, so the rows still inside the
    record at a given step of the runs are always a leading slice of the batch.
    """
    n_series, n_days = history.shape[:2]
    n_pixels = real.shape[0]
    span = lags[-1] + 1
    out = np.full((len(targets), n_series, len(lags), n_days), np.nan, "float32")
    states = _states_at(member, history, static.repeat(n_series // n_pixels, 1), starts)
    start_index = np.repeat(np.arange(len(starts)), n_series)
    series = np.tile(np.arange(n_series), len(starts))
    padded = torch.cat([real, real.new_zeros(n_pixels, span, real.shape[-1])], dim=1)
    rows_per_batch = max(1, batch_steps // min(CHUNK_DAYS, span))
    for first in range(0, len(series), rows_per_batch):
        rows = slice(first, first + rows_per_batch)
        state = None if states is None else tuple(
            s[torch.as_tensor(series[rows]), torch.as_tensor(start_index[rows])] for s in states)
        _run_restarts(member, padded, static, state, starts[start_index[rows]], series[rows], lags, targets,
                      out, n_days)
    return out


def _run_restarts(member, padded, static, state, start_day, series, lags, targets, out, n_days) -> None:
    """Run rows (sorted by start day) from their states over the real days after the start; fill ``out``."""
    n_pixels = padded.shape[0]
    pixel = torch.as_tensor(series % n_pixels)
    span = lags[-1] + 1
    for offset in range(0, span, CHUNK_DAYS):
        width = min(CHUNK_DAYS, span - offset)
        active = int(np.searchsorted(start_day, n_days - 2 - offset, side="right"))
        if active == 0:
            break
        state = None if state is None else tuple(s[:active] for s in state)
        days = torch.as_tensor(start_day[:active, None] + 1 + offset + np.arange(width))
        outputs, state = member(padded[pixel[:active, None], days], static[pixel[:active]], state)
        for i, lag in enumerate(lags):
            if not offset <= lag < offset + width:
                continue
            day = start_day[:active] + 1 + lag
            inside = day < n_days
            for j, target in enumerate(targets):
                mean = outputs[target][0][:, lag - offset].float().cpu().numpy()
                out[j, series[:active][inside], i, day[inside]] = mean[inside]


def _states_at(member, series: torch.Tensor, static: torch.Tensor, days: np.ndarray):
    """The member's state after each of ``days`` (ascending) of ``series``, [B, len(days), ...] per
    component; None for a model without state.

    Runs the series in chunks ending at those days, handing the state on (equal to one pass, per
    the model protocol); for every day it equals :func:`upscale.explain.stepping.states_after`.
    """
    state, kept, previous = None, [], 0
    for day in days:
        _, state = member(series[:, previous:day + 1], static, state)
        if state is None:
            return None
        kept.append(state)
        previous = day + 1
    if not kept:
        return None
    return tuple(torch.stack([s[i] for s in kept], dim=1) for i in range(len(kept[0])))


def _per_site_skill(sites: SiteSet, lagged: dict, full: dict, variants: list[str], lags: list[int], stride: int,
                    held_out: np.ndarray) -> pd.DataFrame:
    """Long table of per-site skill at each (target, predictor, k), with the full-history skill alike."""
    min_days = math.ceil(MONTH_MIN_DAYS / stride)
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


def site_scores(time: np.ndarray, obs: np.ndarray, pred: np.ndarray, min_days: int = MONTH_MIN_DAYS
                ) -> dict[str, np.ndarray]:
    """Per-row skill of daily series: NSE and R2 of the days, NSE of the mean seasonal cycle and of
    the monthly anomalies, vectorised over rows.

    Equal to :func:`upscale.metrics.nse`, :func:`~upscale.metrics.r2` and
    :func:`~upscale.metrics.monthly_components` row by row (those loop in Python and pandas,
    which is too slow for the thousands of series here).

    Parameters
    ----------
    time : numpy.ndarray
        [T] days.
    obs, pred : numpy.ndarray
        [N, T] observed and predicted values, NaN where missing or not evaluated.
    min_days : int
        Days with both values a month needs to count.

    Returns
    -------
    dict of numpy.ndarray
        ``nse``, ``r2``, ``msc_nse``, ``anomaly_nse``: [N] (NaN where undefined).
    """
    obs, pred = np.asarray(obs, "float64"), np.asarray(pred, "float64")
    both = np.isfinite(obs) & np.isfinite(pred)
    obs, pred = np.where(both, obs, np.nan), np.where(both, pred, np.nan)
    msc_obs, msc_pred, anomaly_obs, anomaly_pred = _monthly_components(time, obs, pred, both, min_days)
    return {"nse": _rows_nse(obs, pred), "r2": _rows_r2(obs, pred), "msc_nse": _rows_nse(msc_obs, msc_pred),
            "anomaly_nse": _rows_nse(anomaly_obs, anomaly_pred)}


def _monthly_components(time, obs, pred, both, min_days):
    """Rows' mean seasonal cycle [N, 12] and monthly anomalies [N, M], as ``monthly_components``."""
    months, month_of_day = np.unique(np.asarray(time).astype("datetime64[M]"), return_inverse=True)
    to_month = np.zeros((month_of_day.size, months.size))
    to_month[np.arange(month_of_day.size), month_of_day] = 1.0
    calendar = months.astype("int64") % 12
    to_calendar = np.zeros((months.size, 12))
    to_calendar[np.arange(months.size), calendar] = 1.0
    count = both @ to_month
    parts = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for values in (obs, pred):
            monthly = np.where(count >= min_days, np.nan_to_num(values) @ to_month / count, np.nan)
            counted = np.isfinite(monthly)
            cycle = (np.nan_to_num(monthly) @ to_calendar) / (counted @ to_calendar)
            parts.append((cycle, monthly - cycle[:, calendar]))
    return parts[0][0], parts[1][0], parts[0][1], parts[1][1]


def _rows_nse(obs: np.ndarray, pred: np.ndarray) -> np.ndarray:
    ok = np.isfinite(obs) & np.isfinite(pred)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, obs, 0.0).sum(axis=-1) / n
        sst = np.where(ok, obs - mean[:, None], 0.0) ** 2
        sse = np.where(ok, pred - obs, 0.0) ** 2
        sst, sse = sst.sum(axis=-1), sse.sum(axis=-1)
        return np.where((n >= 2) & (sst > 0), 1.0 - sse / sst, np.nan)


def _rows_r2(obs: np.ndarray, pred: np.ndarray) -> np.ndarray:
    ok = np.isfinite(obs) & np.isfinite(pred)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        do = np.where(ok, obs - (np.where(ok, obs, 0.0).sum(axis=-1) / n)[:, None], 0.0)
        dp = np.where(ok, pred - (np.where(ok, pred, 0.0).sum(axis=-1) / n)[:, None], 0.0)
        sso, ssp = (do * do).sum(axis=-1), (dp * dp).sum(axis=-1)
        r = np.clip((do * dp).sum(axis=-1) / np.sqrt(sso * ssp), -1.0, 1.0)
        return np.where((n >= 2) & (sso > 0) & (ssp > 0), r ** 2, np.nan)


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
            ax.plot(curve["k"], curve["nse"], marker="o", ms=3, lw=2.2 if predictor == ALL else 1.2,
                    label=f"{predictor} destroyed")
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
                line, = ax.plot(curve["k"], curve["nse"], marker="o", ms=3,
                                label=f"{group} (n={int(curve['sites'].iloc[0])})")
                ax.plot(curve["k"], curve["nse_full"], ls="--", lw=0.8, color=line.get_color())
            _lag_axis(ax, f"{target} by {group_by}, {predictor} destroyed (dashed: full history)",
                      sorted(set(table["k"])))
    fig.savefig(path, dpi=120)
    return str(path)


def _figure(n_rows: int, n_cols: int):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.4 * max(1, n_cols), 3.8 * max(1, n_rows)), layout="constrained")
    return fig, fig.subplots(max(1, n_rows), max(1, n_cols), squeeze=False)


def _lag_axis(ax, title: str, lags: list[int]) -> None:
    """Days of intact history on a symmetric-log axis, so that k = 0 is shown next to months."""
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xticks(lags, [str(k) for k in lags])
    ax.set_xlabel("days of intact history k")
    ax.set_ylabel("NSE")
    ax.set_title(title, fontsize=9)
    if ax.has_data():
        ax.legend(fontsize=7)
