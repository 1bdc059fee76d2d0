"""Integrated gradients over lags: how much each past day of each predictor moved a prediction.

For each cross-validation fold, on its test sites only, prediction days are sampled per site
and the ensemble-mean prediction of each day (physical units) is attributed by integrated
gradients (Sundararajan et al. 2017, through captum) to every (lag, dynamic predictor) input
of the window of days ending at it, and to the static inputs. The baseline is the training
mean of every predictor (zeros in normalised space); the model starts from a fresh state at
the window's first day. Attributions are averaged over the sampled days of each site group.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from upscale.errors import DataError, RecipeError
from upscale.explain.context import ExplainContext, SiteSet, site_groups
from upscale.variables import VARIABLES

#: Gauss-Legendre quadrature: for smooth models (LSTM, MLP) it reaches a completeness error far
#: under 1 % with a few steps, where captum's Riemann rules need hundreds (their error ~ 1 / n_steps).
IG_METHOD = "gausslegendre"
#: Steps to start with; a block of days whose completeness error exceeds the tolerance is redone
#: with more (a plain LSTM needs no more than 8; a fresh EA-LSTM, with its long memory, 32 to 64).
DEFAULT_N_STEPS = 8
DEFAULT_TOLERANCE = 0.03
DEFAULT_MAX_N_STEPS = 128
DEFAULT_WINDOW = 180
DEFAULT_DAYS_PER_SITE = 8
#: Rows (sampled days x integration steps) per forward/backward pass: bounds memory.
DEFAULT_INTERNAL_BATCH = 512


@dataclass(frozen=True)
class _Settings:
    window: int
    n_steps: int
    method: str
    internal_batch_size: int
    tolerance: float
    max_n_steps: int


def integrated_gradients(ctx: ExplainContext, window: int = DEFAULT_WINDOW,
                         days_per_site: int = DEFAULT_DAYS_PER_SITE, n_steps: int = DEFAULT_N_STEPS,
                         seed: int = 0, targets: list[str] | None = None, method: str = IG_METHOD,
                         internal_batch_size: int = DEFAULT_INTERNAL_BATCH,
                         predictors: list[str] | None = None, tolerance: float = DEFAULT_TOLERANCE,
                         max_n_steps: int = DEFAULT_MAX_N_STEPS) -> xr.Dataset:
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
    n_steps : int
        Integration steps of captum's ``IntegratedGradients`` to start with.
    seed : int
        Seed of the day sampling.
    targets : list of str, optional
        Targets to explain (default: all of the sites).
    method : str
        captum's integration rule (``gausslegendre``, ``riemann_trapezoid``, ...).
    internal_batch_size : int
        Rows per forward/backward pass (bounds memory).
    predictors : list of str, optional
        Dynamic predictors to report (default: all). Every input is attributed regardless, so
        the completeness error covers them all.
    tolerance, max_n_steps : float, int
        A block of days whose completeness error exceeds ``tolerance`` is integrated again with
        two or four times the steps, up to ``max_n_steps``.

    Returns
    -------
    xarray.Dataset
        ``attribution``, ``attribution_abs`` (target, predictor, lag, group): mean signed and
        mean absolute attribution in target units; ``static_attribution``,
        ``static_attribution_abs`` (target, static_predictor, group), one-hot columns summed;
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
    sites = ctx.sites
    targets = _check_names(targets, sites.target_names, "targets")
    predictors = _check_names(predictors, sites.dynamic_names, "predictors")
    groups = site_groups(sites)
    settings = _Settings(window, n_steps, method, internal_batch_size, tolerance, max_n_steps)
    rng = np.random.default_rng(seed)
    totals = {t: _Totals(len(groups), window, len(sites.dynamic_names), len(sites.static_columns))
              for t in targets}
    with _attribution_mode([m for fold in ctx.folds for m in fold.ensemble.members]):
        for target in targets:
            eligible = eligible_days(sites, sites.target_names.index(target), window)
            for fold in ctx.folds:
                site_idx, days = _sample(eligible, np.sort(fold.test), days_per_site, rng)
                if site_idx.size == 0:
                    continue
                result, steps = _attribute(fold.ensemble, sites, target, site_idx, days, settings)
                totals[target].add(result, _static_sums(result[1], sites.static_columns),
                                   np.stack([g[site_idx] for _, g in groups]), steps)
    if not any(tot.count.sum() for tot in totals.values()):
        raise DataError(f"no site has a day with an observed target and {window} days of finite predictors",
                        where="integrated gradients", fix="Use a shorter window")
    ds = _dataset(totals, sites, [name for name, _ in groups], settings, days_per_site, seed)
    return ds.sel(predictor=predictors)


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
        ok[:, window - 1:] = (bad_so_far[:, end + 1] - bad_so_far[:, end + 1 - window]) == 0
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


@contextlib.contextmanager
def _attribution_mode(members: list[torch.nn.Module]):
    """Gradients on, cuDNN off (its RNN backward refuses eval mode), weights frozen.

    Freezing the weights spares their gradients, which captum does not need (inputs only).
    """
    frozen = [(p, p.requires_grad) for m in members for p in m.parameters()]
    try:
        for p, _ in frozen:
            p.requires_grad_(False)
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)


def _last_day_prediction(members, ensemble, target: str):
    """f(dynamic[, static]) -> [N]: the physical prediction of the window's last day, averaged over
    ``members`` and counted as their share of the whole ensemble's mean."""
    j = ensemble.targets.index(target)
    scale = float(ensemble.normaliser.target_std[j]) / len(ensemble.members)
    offset = float(ensemble.normaliser.target_mean[j]) * len(members) / len(ensemble.members)

    def forward(dynamic: torch.Tensor, static: torch.Tensor | None = None) -> torch.Tensor:
        if static is None:
            static = dynamic.new_zeros(dynamic.shape[0], 0)
        total = 0.0
        for member in members:
            outputs, _ = member(dynamic, static)
            total = total + outputs[target][0][:, -1]
        return total * scale + offset

    return forward


def _integrate(ensemble, target: str, inputs: tuple, n_steps: int, method: str, internal_batch_size: int):
    """IG of the ensemble-mean prediction: the sum of the IG of each member's share (IG is linear
    in the model, and so is its convergence delta), which keeps one member's graph in memory."""
    from captum.attr import IntegratedGradients

    baselines = tuple(torch.zeros_like(x) for x in inputs)
    total, delta = None, 0.0
    for member in ensemble.members:
        ig = IntegratedGradients(_last_day_prediction([member], ensemble, target))
        attributions, member_delta = ig.attribute(inputs, baselines=baselines, n_steps=n_steps, method=method,
                                                  internal_batch_size=internal_batch_size,
                                                  return_convergence_delta=True)
        total = attributions if total is None else tuple(a + b for a, b in zip(total, attributions))
        delta = delta + member_delta
    forward = _last_day_prediction(ensemble.members, ensemble, target)
    with torch.no_grad():
        change = forward(*inputs) - forward(*baselines)
    return total, delta, change


def _integrate_to_tolerance(ensemble, target: str, inputs: tuple, settings: _Settings):
    """:func:`_integrate` with more steps until the block's completeness error is within tolerance.

    The steps are doubled, or quadrupled while the error is over four times the tolerance
    (Gauss-Legendre errors of these models fall about four-fold per doubling).
    """
    n_steps = settings.n_steps
    while True:
        attributions, delta, change = _integrate(ensemble, target, inputs, n_steps, settings.method,
                                                 settings.internal_batch_size)
        scale = float(change.abs().sum())
        error = float(delta.abs().sum()) / scale if scale else 0.0
        if error <= settings.tolerance or n_steps >= settings.max_n_steps:
            return attributions, delta, change, n_steps
        n_steps = min(settings.max_n_steps, n_steps * (4 if error > 4 * settings.tolerance else 2))


def _attribute(ensemble, sites: SiteSet, target: str, site_idx: np.ndarray, days: np.ndarray,
               settings: _Settings):
    """IG of one fold's sampled days, in blocks of ``internal_batch_size`` days.

    Returns
    -------
    tuple of numpy.ndarray
        Dynamic attributions [N, lag, Fd] (lag 0 = the predicted day), static attributions
        [N, Fs], convergence deltas [N] and f(x) - f(baseline) [N].
    int
        The most integration steps a block needed.
    """
    span = days[:, None] + np.arange(1 - settings.window, 1)
    dynamic = ensemble.normaliser.dynamic(sites.dynamic[site_idx[:, None], span])
    static = ensemble.normaliser.static(sites.static[site_idx])
    with_static = static.shape[-1] > 0
    parts, most_steps = ([], [], [], []), 0
    for start in range(0, len(days), settings.internal_batch_size):
        block = slice(start, start + settings.internal_batch_size)
        inputs = tuple(torch.from_numpy(np.ascontiguousarray(a[block])).to(ensemble.device)
                       for a in ((dynamic, static) if with_static else (dynamic,)))
        attributions, delta, change, steps = _integrate_to_tolerance(ensemble, target, inputs, settings)
        parts[0].append(attributions[0].detach().cpu().numpy()[:, ::-1])
        parts[1].append(attributions[1].detach().cpu().numpy() if with_static
                        else np.zeros((len(inputs[0]), 0), "float32"))
        parts[2].append(delta.detach().cpu().numpy())
        parts[3].append(change.cpu().numpy())
        most_steps = max(most_steps, steps)
    return tuple(np.concatenate(p).astype("float64") for p in parts), most_steps


def _static_sums(static_attr: np.ndarray, static_columns: dict[str, list[int]]) -> np.ndarray:
    """[N, Fs] attributions of encoded columns -> [N, P] per static predictor (one-hot columns summed)."""
    out = np.zeros((static_attr.shape[0], len(static_columns)))
    for i, columns in enumerate(static_columns.values()):
        out[:, i] = static_attr[:, list(columns)].sum(axis=1)
    return out


class _Totals:
    """Running sums of one target's attributions per group, and of its completeness terms."""

    def __init__(self, n_groups: int, window: int, n_dynamic: int, n_static: int):
        self.signed = np.zeros((n_groups, window, n_dynamic))
        self.absolute = np.zeros_like(self.signed)
        self.static_signed = np.zeros((n_groups, n_static))
        self.static_absolute = np.zeros_like(self.static_signed)
        self.count = np.zeros(n_groups)
        self.abs_delta = 0.0
        self.abs_change = 0.0
        self.most_steps = 0

    def add(self, result, static_by_predictor: np.ndarray, member_of: np.ndarray, steps: int) -> None:
        """Add one fold's samples; ``member_of`` [G, N] says which samples belong to which group."""
        dynamic, _, delta, change = result
        weights = member_of.astype("float64")
        self.signed += np.einsum("gn,nlf->glf", weights, dynamic)
        self.absolute += np.einsum("gn,nlf->glf", weights, np.abs(dynamic))
        self.static_signed += weights @ static_by_predictor
        self.static_absolute += weights @ np.abs(static_by_predictor)
        self.count += weights.sum(axis=1)
        self.abs_delta += float(np.abs(delta).sum())
        self.abs_change += float(np.abs(change).sum())
        self.most_steps = max(self.most_steps, steps)

    def means(self) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            n = self.count
            return {"attribution": self.signed / n[:, None, None],
                    "attribution_abs": self.absolute / n[:, None, None],
                    "static_attribution": self.static_signed / n[:, None],
                    "static_attribution_abs": self.static_absolute / n[:, None],
                    "completeness_error": self.abs_delta / self.abs_change if self.abs_change else np.nan}


def _check_names(names: list[str] | None, known: list[str], kind: str) -> list[str]:
    names = list(known) if names is None else list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RecipeError(f"cannot explain unknown {kind} {', '.join(unknown)}", where="integrated gradients",
                          fix=f"Use {kind} among {', '.join(known)}")
    return names


def _units(target: str) -> str:
    return VARIABLES[target].units if target in VARIABLES else "unknown"


LONG_NAMES = {
    "attribution": "mean integrated-gradients attribution of the prediction to a lagged predictor",
    "attribution_abs": "mean absolute integrated-gradients attribution to a lagged predictor",
    "static_attribution": "mean integrated-gradients attribution to a static predictor (encoded columns summed)",
    "static_attribution_abs": "mean absolute integrated-gradients attribution to a static predictor",
}


def _definition(settings: _Settings, days_per_site: int, seed: int) -> str:
    return (f"integrated gradients (captum, method={settings.method}, n_steps={settings.n_steps}, raised "
            f"for a block of days while its completeness error exceeds {settings.tolerance:g}, at most "
            f"{settings.max_n_steps}) of the out-of-sample ensemble-mean prediction of day t in physical "
            f"units; inputs: the {settings.window} days ending at t "
            f"(lag 0 = day t, lag L = day t-L), model started from a fresh state at the window's first day; "
            f"baseline: the training mean of every predictor (zeros in normalised space); averaged over "
            f"up to {days_per_site} sampled days per site (seed {seed}) with an observation of the target")


def _dataset(totals: dict[str, _Totals], sites: SiteSet, group_names: list[str], settings: _Settings,
             days_per_site: int, seed: int) -> xr.Dataset:
    """The aggregated attributions as a CF-ish Dataset.

    Targets of different units share the variables: ``units`` is then "gpp: ...; et: ...", and
    the coordinate ``target_units`` gives each target's units.
    """
    targets = list(totals)
    means = [totals[t].means() for t in targets]
    stack = {key: np.stack([m[key] for m in means]) for key in means[0]}
    units = [_units(t) for t in targets]
    target_units = units[0] if len(set(units)) == 1 else "; ".join(f"{t}: {u}" for t, u in zip(targets, units))
    comment = _definition(settings, days_per_site, seed)
    dims = {"attribution": ("target", "predictor", "lag", "group"),
            "static_attribution": ("target", "static_predictor", "group")}
    order = {"attribution": (0, 3, 2, 1), "static_attribution": (0, 2, 1)}  # from (target, group, ...)
    variables = {}
    for name, long_name in LONG_NAMES.items():
        kind = name.removesuffix("_abs")
        variables[name] = (dims[kind], stack[name].transpose(order[kind]),
                           {"long_name": long_name, "units": target_units, "comment": comment})
    variables["completeness_error"] = (("target",), stack["completeness_error"].astype("float64"), {
        "long_name": "completeness error of integrated gradients: sum |delta| / sum |f(x) - f(baseline)|",
        "units": "1"})
    variables["n_steps"] = (("target",), np.array([totals[t].most_steps for t in targets], "int64"), {
        "long_name": "integration steps of the block of days that needed the most", "units": "1"})
    variables["samples"] = (("target", "group"), np.stack([totals[t].count for t in targets]).astype("int64"),
                            {"long_name": "number of sampled prediction days", "units": "1"})
    coords = {"target": targets, "predictor": list(sites.dynamic_names), "lag": np.arange(settings.window),
              "group": group_names, "static_predictor": list(sites.static_columns),
              "target_units": ("target", units)}
    ds = xr.Dataset(variables, coords=coords, attrs={
        "title": "integrated gradients over lags", "comment": comment, "method": settings.method,
        "window": settings.window, "tolerance": settings.tolerance, "days_per_site": days_per_site, "seed": seed})
    ds["lag"].attrs.update(units="d", long_name="days before the predicted day")
    return ds


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
    from matplotlib.figure import Figure

    path = Path(path)
    targets = list(ds.target.values)
    lags = ds.lag.values
    edges = np.concatenate([lags - 0.5, [lags[-1] + 0.5]])
    fig = Figure(figsize=(8.0, 0.5 + (0.35 * ds.sizes["predictor"] + 1.2) * len(targets)), layout="constrained")
    axes = fig.subplots(len(targets), 1, squeeze=False)[:, 0]
    for ax, target in zip(axes, targets):
        values = ds["attribution_abs"].sel(target=target, group="all").transpose("predictor", "lag")
        mesh = ax.pcolormesh(edges, np.arange(ds.sizes["predictor"] + 1) - 0.5, values.values, cmap="magma_r")
        ax.set_xscale("symlog", linthresh=7, linscale=1.0)
        ticks = sorted({t for t in (0, 1, 3, 7, 14, 30, 60, 90, 180, 365, 730) if t < lags[-1]} | {int(lags[-1])})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlim(edges[0], edges[-1])
        ax.set_yticks(np.arange(ds.sizes["predictor"]), list(ds.predictor.values))
        ax.set_xlabel("lag [days before the predicted day]")
        ax.set_title(f"{target}: mean |integrated gradients| (completeness error "
                     f"{float(ds.completeness_error.sel(target=target)):.1%})", fontsize=10)
        unit = str(ds.target_units.sel(target=target).values)
        fig.colorbar(mesh, ax=ax, label=f"mean |attribution| [{unit}]")
    fig.savefig(path, dpi=90)
    return path.name
