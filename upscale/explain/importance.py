"""Permutation importance of the predictors, out of sample at the held-out sites.

A predictor is important when the held-out skill drops once its link to the targets is
broken by permuting it. Dynamic predictors are permuted in blocks of days, so that their own
autocorrelation (and the model's memory of it) survives and only their alignment with the
targets is lost; static predictors are permuted across sites, encoded columns together
(``pft`` -> its one-hot columns).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from upscale.errors import RecipeError
from upscale.explain.context import ExplainContext, SiteSet
from upscale.explain.figures import panels
from upscale.metrics import nse, r2

DYNAMIC, STATIC = "dynamic", "static"
COLUMNS = (
    "target",
    "predictor",
    "kind",
    "nse_base",
    "r2_base",
    "nse_drop",
    "nse_drop_sd",
    "r2_drop",
    "r2_drop_sd",
    "nse_drop_sd_sites",
    "r2_drop_sd_sites",
    "repeats",
)
IMPORTANCE_AXIS_LABEL = "loss of NSE when permuted (held-out sites)"


def permutation_importance(
    ctx: ExplainContext, predictors: list[str] | None = None, repeats: int = 5, block_days: int = 30, seed: int = 0
) -> pd.DataFrame:
    """Loss of held-out skill per target when each predictor is permuted.

    Skill is the per-site daily NSE and R2 of the out-of-sample ensemble prediction
    (:meth:`ExplainContext.predict`); the loss of skill is the median over sites of each site's
    own loss. A permuted prediction is scored on
    the days where both it and the unpermuted one are defined, and so is the unpermuted one it
    is compared with: missing values moved by the permutation do not count as importance.

    Parameters
    ----------
    ctx : ExplainContext
        Sites and the fold ensembles that held them out.
    predictors : list of str, optional
        Dynamic predictor names and static predictor names (keys of ``SiteSet.static_columns``);
        None: every one of them.
    repeats : int
        Independent permutations per predictor (at least 1; the sd needs 2).
    block_days : int
        Length of the blocks of days in which dynamic predictors are permuted.
    seed : int
        Seed of the permutations. Each predictor draws from its own stream, so its result does
        not depend on which other predictors are evaluated.

    Returns
    -------
    pandas.DataFrame
        One row per (target, predictor) with the columns :data:`COLUMNS`: ``kind`` is
        ``dynamic`` or ``static``; ``nse_base``, ``r2_base`` the unpermuted median skill; ``*_drop``
        the mean over repeats of the median per-site loss of skill, ``*_drop_sd`` its sd over the
        repeats (ddof=1), ``*_drop_sd_sites`` its sd over bootstrap resamples of the sites.
    """
    if repeats < 1 or block_days < 1:
        raise RecipeError(
            f"repeats and block_days must be >= 1, got {repeats} and {block_days}",
            where="explain.repeats / explain.block_days",
        )
    sites = ctx.sites
    kinds = _predictor_kinds(sites)
    chosen = list(kinds) if predictors is None else _checked(predictors, kinds)
    streams = dict(zip(kinds, np.random.SeedSequence(seed).spawn(len(kinds))))
    base = ctx.predict()
    rows = []
    for name in chosen:
        rng = np.random.default_rng(streams[name])
        drops = {t: [] for t in sites.target_names}
        for _ in range(repeats):
            permuted = ctx.predict(permute_predictor(sites, name, block_days, rng))
            for j, target in enumerate(sites.target_names):
                drops[target].append(_skill_drop(sites.targets[..., j], base[target], permuted[target]))
        for j, target in enumerate(sites.target_names):
            rows.append(
                _importance_row(target, name, kinds[name], sites.targets[..., j], base[target], np.array(drops[target]))
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _predictor_kinds(sites: SiteSet) -> dict[str, str]:
    kinds = dict.fromkeys(sites.dynamic_names, DYNAMIC)
    kinds.update(dict.fromkeys(sites.static_columns, STATIC))
    return kinds


def _checked(predictors: list[str], kinds: dict[str, str]) -> list[str]:
    unknown = [p for p in predictors if p not in kinds]
    if unknown:
        raise RecipeError(
            f"unknown predictors {', '.join(map(repr, unknown))}",
            where="explain.predictors",
            fix=f"The sites have {', '.join(kinds)}",
        )
    return list(dict.fromkeys(predictors))


def permute_predictor(sites: SiteSet, name: str, block_days: int, rng: np.random.Generator) -> SiteSet:
    """The sites with one predictor permuted: a dynamic one in blocks of days, a static one across sites.

    Parameters
    ----------
    sites : SiteSet
        The sites.
    name : str
        A dynamic predictor name or a key of ``sites.static_columns``.
    block_days : int
        Block length for dynamic predictors (see :func:`block_permutation`).
    rng : numpy.random.Generator
        Source of the permutation.

    Returns
    -------
    SiteSet
        A copy with only that predictor's columns changed.
    """
    if name in sites.dynamic_names:
        column = sites.dynamic_names.index(name)
        dynamic = sites.dynamic.copy()
        dynamic[..., column] = block_permutation(sites.dynamic[..., column], block_days, rng)
        return sites.with_dynamic(dynamic)
    columns = sites.static_columns[name]
    static = sites.static.copy()
    static[:, columns] = sites.static[rng.permutation(len(sites.sites))][:, columns]
    return sites.with_static(static)


def block_permutation(values: np.ndarray, block_days: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffle blocks of consecutive days among all sites and block positions.

    Every site's series is cut into consecutive blocks of ``block_days`` days from its first day;
    the (site, block) pieces are shuffled among all sites and blocks. When the series length is
    not a multiple of ``block_days``, each site ends in a shorter tail; the tails are shuffled
    among the sites' tail positions. Every output block is thus an intact block of some site's
    input, and every input value is used exactly once.

    Parameters
    ----------
    values : numpy.ndarray
        [S, T, ...] series of S sites over T days.
    block_days : int
        Block length in days (>= 1); ``block_days >= T`` shuffles whole series across sites.
    rng : numpy.random.Generator
        Source of the permutation.

    Returns
    -------
    numpy.ndarray
        The permuted series, same shape and dtype.
    """
    n_sites, n_days = values.shape[:2]
    n_blocks = n_days // block_days
    cut = n_blocks * block_days
    out = np.empty_like(values)
    if n_blocks:
        pieces = values[:, :cut].reshape(n_sites * n_blocks, block_days, *values.shape[2:])
        shuffled = pieces[rng.permutation(n_sites * n_blocks)]
        out[:, :cut] = shuffled.reshape(n_sites, cut, *values.shape[2:])
    if cut < n_days:
        out[:, cut:] = values[rng.permutation(n_sites), cut:]
    return out


def per_site_skill(obs: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """The per-site daily NSE and R2, [S] each (NaN where a score is undefined).

    Parameters
    ----------
    obs, pred : numpy.ndarray
        [S, T] observed and predicted values, NaN where missing.
    """
    return {
        "nse": np.array([nse(o, p) for o, p in zip(obs, pred)], dtype="float64"),
        "r2": np.array([r2(o, p) for o, p in zip(obs, pred)], dtype="float64"),
    }


def median_site_skill(obs: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Median over sites of the per-site daily NSE and R2.

    Parameters
    ----------
    obs, pred : numpy.ndarray
        [S, T] observed and predicted values, NaN where missing.

    Returns
    -------
    dict of float
        ``nse`` and ``r2``; sites where a score is undefined are left out (NaN when all are).
    """
    return {key: _nan_median(values) for key, values in per_site_skill(obs, pred).items()}


def _nan_median(values) -> float:
    values = np.asarray(values, dtype="float64")
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def _skill_drop(obs: np.ndarray, base: np.ndarray, permuted: np.ndarray) -> np.ndarray:
    """Each site's (NSE drop, R2 drop) of a permuted prediction [S, 2], both predictions scored on the
    days both are defined (NaN where a score is undefined).

    The table takes the median over sites of these paired drops, not the difference of the two
    median skills: that one moves whenever a permutation reorders the sites around the median,
    even when no site's skill changes much, and gave a decoy a spurious importance 3 sd from zero.
    """
    both = np.isfinite(base) & np.isfinite(permuted)
    before = per_site_skill(obs, np.where(both, base, np.nan))
    after = per_site_skill(obs, np.where(both, permuted, np.nan))
    return np.stack([before["nse"] - after["nse"], before["r2"] - after["r2"]], axis=-1)


def median_drop(per_site: np.ndarray) -> np.ndarray:
    """The median over sites (axis -2) of per-site drops [..., S, 2], sites with NaN left out."""
    flat = per_site.reshape(-1, *per_site.shape[-2:])
    medians = [[_nan_median(drops[:, k]) for k in range(drops.shape[-1])] for drops in flat]
    return np.array(medians).reshape(*per_site.shape[:-2], per_site.shape[-1])


def site_sampling_sd(per_site: np.ndarray, n_boot: int = 200, seed: int = 0) -> np.ndarray:
    """The sd of the median drop over bootstrap resamples of the sites: (NSE, R2).

    ``per_site`` is [R, S, 2], the drops of R repeats; each resample draws S sites with
    replacement and takes the median over them of the sites' mean drop over the repeats. It says
    how much the importance would change with another set of held-out sites of the same kind,
    which the sd over repeats (the permutations' own noise) does not.
    """
    mean = np.nanmean(per_site, axis=0) if np.isfinite(per_site).any() else per_site[0]
    draws = np.random.default_rng(seed).integers(0, mean.shape[0], (n_boot, mean.shape[0]))
    return median_drop(mean[draws]).std(axis=0, ddof=1)


def _importance_row(target: str, name: str, kind: str, obs: np.ndarray, base: np.ndarray, per_site: np.ndarray) -> dict:
    skill = median_site_skill(obs, base)
    drops = median_drop(per_site)  # [R, 2]
    sd = drops.std(axis=0, ddof=1) if len(drops) > 1 else np.full(2, np.nan)
    sd_sites = site_sampling_sd(per_site)
    return {
        "target": target,
        "predictor": name,
        "kind": kind,
        "nse_base": skill["nse"],
        "r2_base": skill["r2"],
        "nse_drop": drops[:, 0].mean(),
        "nse_drop_sd": sd[0],
        "r2_drop": drops[:, 1].mean(),
        "r2_drop_sd": sd[1],
        "nse_drop_sd_sites": sd_sites[0],
        "r2_drop_sd_sites": sd_sites[1],
        "repeats": len(drops),
    }


def plot_importance(table: pd.DataFrame, path: str | Path) -> str:
    """Horizontal bars of the NSE drop per predictor, one panel per target, largest on top.

    Parameters
    ----------
    table : pandas.DataFrame
        The result of :func:`permutation_importance`.
    path : str or pathlib.Path
        The image file to write (PNG, or any format matplotlib knows from the suffix).

    Returns
    -------
    str
        The path of the written file.
    """
    targets = list(dict.fromkeys(table["target"]))
    height = 1.0 + 0.32 * max(1, table.groupby("target").size().max() if len(table) else 1)
    n_cols = max(1, len(targets))
    fig, axes = panels(1, n_cols, (5.2 * n_cols, height))
    axes = axes[0]
    for ax, target in zip(axes, targets):
        rows = table[table["target"] == target].sort_values("nse_drop")
        error = np.nan_to_num(rows["nse_drop_sd"].to_numpy(dtype="float64"))
        colours = ["tab:blue" if kind == DYNAMIC else "tab:orange" for kind in rows["kind"]]
        ax.barh(rows["predictor"], rows["nse_drop"], xerr=error, color=colours, capsize=3)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_xlabel(IMPORTANCE_AXIS_LABEL)
        ax.set_title(f"{target} (blue: dynamic, orange: static)")
    fig.savefig(path, dpi=120)
    return str(path)
