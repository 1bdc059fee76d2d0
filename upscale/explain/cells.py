"""Cell states of LSTM-type models: which memory cells track which quantities.

Each member of each fold runs over its fold's test sites (whole series, fresh start) one day
at a time (:func:`~upscale.explain.stepping.states_after`); the cell state c [sites, T, H] is
then correlated, per site, with every dynamic predictor, every observed target and reference
quantities: by default the cumulative water deficit (when ``pr`` is a predictor and ``et`` a
target), and whatever the caller passes (e.g. the demo world's true soil water). A cell that
tracks the water deficit is a model that has learnt soil-water memory.

Models without a cell state (MLP, any model whose state is not (h, c)) are refused with a
:class:`~upscale.errors.RecipeError`; :func:`has_cells` lets callers skip them beforehand.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from upscale.errors import DataError, RecipeError
from upscale.explain.context import ExplainContext, SiteSet, site_groups
from upscale.explain.figures import panels
from upscale.explain.stepping import states_after

COLUMNS = ["fold", "member", "cell", "variable", "group", "r_median", "r_pooled", "sites"]
#: A site's correlation needs at least this many days with the variable present.
MIN_DAYS = 30
#: Sites run through a member at once (bounds the memory of the per-day states).
SITE_BATCH = 16
#: Series whose variance is below this fraction of their mean square count as constant.
CONSTANT = 1e-10


def has_cells(ctx: ExplainContext) -> bool:
    """Whether the context's models are LSTM-type: a state (h, c) whose c is [B, 1, H]."""
    if not ctx.sequential:
        return False
    fold = ctx.folds[0]
    member, sites = fold.ensemble.members[0], ctx.sites
    dynamic = torch.zeros(1, 1, sites.dynamic.shape[-1], device=fold.ensemble.device)
    static = torch.zeros(1, sites.static.shape[-1], device=fold.ensemble.device)
    with torch.no_grad():
        _, state = member(dynamic, static)
    return isinstance(state, tuple) and len(state) == 2 and state[1].ndim == 3


def cell_states(ctx: ExplainContext, references: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Correlations of every memory cell of every member with predictors, targets and references.

    Parameters
    ----------
    ctx : ExplainContext
        Sites and fold ensembles of an LSTM-type model; each member runs over its fold's test sites.
    references : dict of numpy.ndarray, optional
        Extra site-level series [S, T] by name (e.g. true soil water), NaN where unknown.

    Returns
    -------
    pandas.DataFrame
        Columns ``fold, member, cell, variable, group, r_median, r_pooled, sites``: per
        (fold, member, cell, variable, group) the median over the group's test sites of the
        per-site Pearson r (sites with at least ``MIN_DAYS`` days), the r pooled over the
        group's site-days, and the number of sites with a per-site r. Variables: the dynamic
        predictors, the observed targets, ``cwd`` where it can be computed, and ``references``.
        Groups without a test site in a fold are left out of that fold's rows.

    Raises
    ------
    RecipeError
        If the models have no cell state (not LSTM-type).
    DataError
        If a reference is not [S, T].
    """
    if not has_cells(ctx):
        raise RecipeError(
            "cell states need an LSTM-type model (a state (h, c)); this model has no cells",
            where="explain methods",
            fix="Leave cell states out for this model, or use an lstm, ealstm or hybrid model",
        )
    series = reference_series(ctx, references)
    names = list(series)
    values = np.stack([series[n] for n in names], axis=-1).astype("float64")
    groups = site_groups(ctx.sites)
    tables = []
    for f, fold in enumerate(ctx.folds):
        test = np.sort(fold.test)
        fold_groups = [(name, mask[test]) for name, mask in groups if mask[test].any()]
        for k, member in enumerate(fold.ensemble.members):
            stats = _site_stats(member, fold.ensemble, ctx.sites, test, values[test])
            tables.append(_summarise(stats, fold_groups, f, k, names))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)


def reference_series(ctx: ExplainContext, references: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The series [S, T] cells are correlated with, by name, in physical units.

    The dynamic predictors, the observed targets, ``cwd`` (the cumulative water deficit, mm)
    when ``pr`` is a predictor and ``et`` a target, then ``references`` (which win on a name clash).
    ``cwd`` uses the observed ET where there is one, else the out-of-sample ET predicted by
    the fold that held the site out (see :func:`cumulative_water_deficit` for the remaining gaps).
    """
    sites = ctx.sites
    shape = sites.targets.shape[:2]
    series = {name: sites.dynamic[..., i] for i, name in enumerate(sites.dynamic_names)}
    series.update({name: sites.targets[..., j] for j, name in enumerate(sites.target_names)})
    if "pr" in sites.dynamic_names and "et" in sites.target_names:
        observed = sites.targets[..., sites.target_names.index("et")]
        et = np.where(np.isfinite(observed), observed, ctx.predict()["et"])
        series["cwd"] = cumulative_water_deficit(et, sites.dynamic[..., sites.dynamic_names.index("pr")])
    for name, values in (references or {}).items():
        values = np.asarray(values, dtype="float64")
        if values.shape != shape:
            raise DataError(
                f"reference {name!r} has shape {values.shape}, not (sites, time) = {shape}",
                where="cell states references",
                fix="Pass one value per site and day",
            )
        series[name] = values
    return series


def cumulative_water_deficit(et: np.ndarray, pr: np.ndarray) -> np.ndarray:
    """The cumulative water deficit CWD_t = max(0, CWD_{t-1} + ET_t - P_t) (Stocker et al. 2023).

    Parameters
    ----------
    et, pr : numpy.ndarray
        [..., T] evapotranspiration and precipitation (mm d-1), time last.

    Returns
    -------
    numpy.ndarray
        [..., T] deficit (mm), starting from 0 before the first day. On a day where ET or P is
        missing the deficit is carried over unchanged (no update), so the series has no gaps.
        Snow is ignored: precipitation counts as liquid water on the day it falls.
    """
    et, pr = np.broadcast_arrays(np.asarray(et, dtype="float64"), np.asarray(pr, dtype="float64"))
    out = np.empty(et.shape)
    deficit = np.zeros(et.shape[:-1])
    for t in range(et.shape[-1]):
        step = et[..., t] - pr[..., t]
        deficit = np.where(np.isfinite(step), np.maximum(0.0, deficit + step), deficit)
        out[..., t] = deficit
    return out


def member_cells(member, ensemble, sites: SiteSet, site_idx: np.ndarray) -> np.ndarray:
    """[n, T, H] cell states of one member over whole series of the given sites, from a fresh start.

    Inputs are normalised as the ensemble does; missing predictors read as the training mean.
    """
    dynamic = np.nan_to_num(ensemble.normaliser.dynamic(sites.dynamic[site_idx]))
    static = np.nan_to_num(ensemble.normaliser.static(sites.static[site_idx]))
    state = states_after(member, _tensor(dynamic, ensemble.device), _tensor(static, ensemble.device))
    cells = state[1]
    return cells.reshape(cells.shape[0], cells.shape[1], -1).float().cpu().numpy().astype("float64")


def _tensor(array: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _site_stats(member, ensemble, sites: SiteSet, test: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-site sums for Pearson r of every cell with every variable: [n, H, V, 6] of
    (count, sum c, sum v, sum c^2, sum v^2, sum c v) over the days where the variable is present."""
    parts = []
    for start in range(0, len(test), SITE_BATCH):
        cells = member_cells(member, ensemble, sites, test[start : start + SITE_BATCH])
        v = values[start : start + SITE_BATCH]
        present = np.isfinite(v).astype("float64")
        v = np.where(present > 0, v, 0.0)
        each_cell = (len(v), cells.shape[-1], v.shape[-1])
        parts.append(
            np.stack(
                [
                    np.broadcast_to(present.sum(axis=1)[:, None], each_cell),
                    np.einsum("sth,stv->shv", cells, present),
                    np.broadcast_to(v.sum(axis=1)[:, None], each_cell),
                    np.einsum("sth,stv->shv", cells**2, present),
                    np.broadcast_to((v**2).sum(axis=1)[:, None], each_cell),
                    np.einsum("sth,stv->shv", cells, v),
                ],
                axis=-1,
            )
        )
    return np.concatenate(parts)


def _pearson(stats: np.ndarray) -> np.ndarray:
    """Pearson r from sums [..., 6] (NaN under ``MIN_DAYS`` days or for a constant series)."""
    n, sx, sy, sxx, syy, sxy = np.moveaxis(stats, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sx / n, sy / n
        vx, vy = sxx / n - mx**2, syy / n - my**2
        r = (sxy / n - mx * my) / np.sqrt(vx * vy)
        valid = (n >= MIN_DAYS) & (vx > CONSTANT * sxx / n) & (vy > CONSTANT * syy / n)
    return np.where(valid, np.clip(r, -1.0, 1.0), np.nan)


def _summarise(
    stats: np.ndarray, groups: list[tuple[str, np.ndarray]], fold: int, member: int, names: list[str]
) -> pd.DataFrame:
    """Rows of one member: per group, the median per-site r, the pooled r and the site count."""
    per_site = _pearson(stats)
    h, v = per_site.shape[1:]
    frames = []
    for group, mask in groups:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells: NaN median is the answer
            median = np.nanmedian(per_site[mask], axis=0)
        frames.append(
            pd.DataFrame(
                {
                    "fold": fold,
                    "member": member,
                    "cell": np.repeat(np.arange(h), v),
                    "variable": np.tile(names, h),
                    "group": group,
                    "r_median": median.ravel(),
                    "r_pooled": _pearson(stats[mask].sum(axis=0)).ravel(),
                    "sites": np.isfinite(per_site[mask]).sum(axis=0).ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def strongest_cells(
    table: pd.DataFrame, variable: str, group: str = "all", n: int = 5, by: str = "r_median"
) -> pd.DataFrame:
    """The ``n`` cells most related to ``variable`` in ``group``: largest |``by``| first.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`cell_states` (or a subset, e.g. one fold).
    variable, group : str
        The variable and the group, e.g. ``"cwd"``, ``"aridity:dry"``.
    n : int
        How many cells.
    by : str
        ``r_median`` or ``r_pooled``.

    Returns
    -------
    pandas.DataFrame
        Rows of ``table`` (empty when none matches), strongest first.
    """
    rows = table[(table["variable"] == variable) & (table["group"] == group)].dropna(subset=[by])
    order = rows[by].abs().sort_values(ascending=False).index
    return rows.loc[order].head(n).reset_index(drop=True)


def plot_cell_states(
    ctx: ExplainContext,
    table: pd.DataFrame,
    path: str | Path,
    variable: str = "cwd",
    group: str | None = None,
    references: dict[str, np.ndarray] | None = None,
    n_cells: int = 3,
    n_sites: int = 3,
) -> str:
    """The cells most related to ``variable`` drawn against time at a few sites of ``group``.

    One panel per site (sites spread over folds); in each, the standardised ``variable`` and the
    standardised cells of that site's fold most related to it (sign-aligned: a cell anti-correlated
    with the variable is drawn flipped, as the legend says).

    Parameters
    ----------
    ctx : ExplainContext
        The context :func:`cell_states` ran on.
    table : pandas.DataFrame
        Its result.
    path : str or pathlib.Path
        PNG file to write.
    variable : str
        The reference drawn (``cwd`` by default; any variable of the table).
    group : str, optional
        Sites to draw from; default ``aridity:dry`` when the table has it, else ``all``.
    references : dict of numpy.ndarray, optional
        The references passed to :func:`cell_states`, needed to draw one of them.
    n_cells, n_sites : int
        Cells per panel and panels.

    Returns
    -------
    str
        The file name written.
    """
    path = Path(path)
    if group is None:
        group = "aridity:dry" if (table["group"] == "aridity:dry").any() else "all"
    series = reference_series(ctx, references)
    if variable not in series:
        raise RecipeError(
            f"no series {variable!r} to draw", where="cell states plot", fix=f"Use one of {', '.join(series)}"
        )
    chosen = _plot_sites(ctx, dict(site_groups(ctx.sites)).get(group), series[variable], n_sites)
    if not chosen:
        raise DataError(f"no site of group {group!r} has {variable!r} to draw", where="cell states plot")
    fig, axes = panels(len(chosen), 1, (10.0, 2.6 * len(chosen)))
    axes = axes[:, 0]
    for ax, (site, f) in zip(axes, chosen):
        rows = strongest_cells(table[table["fold"] == f], variable, group, n_cells)
        _draw_site(ax, ctx, site, f, rows, series[variable][site], variable)
        ax.set_title(f"{ctx.sites.sites[site]} (fold {f}, group {group})", fontsize=10)
    axes[-1].set_xlabel("time")
    fig.savefig(path, dpi=90)
    return path.name


def _plot_sites(ctx: ExplainContext, in_group: np.ndarray | None, reference: np.ndarray, n_sites: int):
    """(site, fold) pairs to draw: the group's test sites with the most reference days, folds in turn."""
    if in_group is None:
        return []
    per_fold = []
    for fold in ctx.folds:
        candidates = [s for s in fold.test if in_group[s] and np.isfinite(reference[s]).sum() >= MIN_DAYS]
        per_fold.append(sorted(candidates, key=lambda s: -np.isfinite(reference[s]).sum()))
    chosen = []
    for rank in range(max((len(c) for c in per_fold), default=0)):
        chosen += [(int(c[rank]), f) for f, c in enumerate(per_fold) if rank < len(c)]
    return chosen[:n_sites]


def _draw_site(
    ax, ctx: ExplainContext, site: int, fold: int, rows: pd.DataFrame, reference: np.ndarray, variable: str
) -> None:
    """One panel: the standardised reference and the fold's strongest cells at one site."""
    ensemble = ctx.folds[fold].ensemble
    time = ctx.sites.time
    ax.plot(time, _standardised(reference), color="black", lw=2.0, zorder=3, label=f"{variable} (standardised)")
    for _, row in rows.iterrows():
        member = ensemble.members[int(row["member"])]
        cell = member_cells(member, ensemble, ctx.sites, np.array([site]))[0, :, int(row["cell"])]
        sign = 1.0 if row["r_median"] >= 0 else -1.0
        ax.plot(
            time,
            sign * _standardised(cell),
            lw=1.0,
            label=f"member {int(row['member'])} cell {int(row['cell'])} "
            f"({'flipped, ' if sign < 0 else ''}r = {row['r_median']:.2f})",
        )
    ax.set_ylabel("standardised")
    ax.legend(fontsize=7, loc="upper left", ncol=2)


def _standardised(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype="float64")
    sd = np.nanstd(values)
    return (values - np.nanmean(values)) / (sd if sd > 0 else 1.0)
