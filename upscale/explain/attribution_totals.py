"""Aggregation of integrated gradients per site group, and the Dataset that reports them."""

from __future__ import annotations

import numpy as np
import xarray as xr

from upscale.explain.context import SiteSet
from upscale.explain.integration import IGSettings
from upscale.variables import VARIABLES


def static_sums(static_attr: np.ndarray, static_columns: dict[str, list[int]]) -> np.ndarray:
    """[N, Fs] attributions of encoded columns -> [N, P] per static predictor (one-hot columns summed)."""
    out = np.zeros((static_attr.shape[0], len(static_columns)))
    for i, columns in enumerate(static_columns.values()):
        out[:, i] = static_attr[:, list(columns)].sum(axis=1)
    return out


class Totals:
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
            return {
                "attribution": self.signed / n[:, None, None],
                "attribution_abs": self.absolute / n[:, None, None],
                "static_attribution": self.static_signed / n[:, None],
                "static_attribution_abs": self.static_absolute / n[:, None],
                "completeness_error": self.abs_delta / self.abs_change if self.abs_change else np.nan,
            }


def _units(target: str) -> str:
    return VARIABLES[target].units if target in VARIABLES else "unknown"


LONG_NAMES = {
    "attribution": "mean integrated-gradients attribution of the prediction to a lagged predictor",
    "attribution_abs": "mean absolute integrated-gradients attribution to a lagged predictor",
    "static_attribution": "mean integrated-gradients attribution to a static predictor (encoded columns summed)",
    "static_attribution_abs": "mean absolute integrated-gradients attribution to a static predictor",
}


def _definition(settings: IGSettings, days_per_site: int, seed: int) -> str:
    return (
        f"integrated gradients (captum, method={settings.method}, n_steps={settings.n_steps}, raised "
        f"for a block of days while its completeness error exceeds {settings.tolerance:g}, at most "
        f"{settings.max_n_steps}) of the out-of-sample ensemble-mean prediction of day t in physical "
        f"units; inputs: the {settings.window} days ending at t "
        f"(lag 0 = day t, lag L = day t-L), model started from a fresh state at the window's first day; "
        f"baseline: the training mean of every predictor (zeros in normalised space); averaged over "
        f"up to {days_per_site} sampled days per site (seed {seed}) with an observation of the target"
    )


def attribution_dataset(
    totals: dict[str, Totals],
    sites: SiteSet,
    group_names: list[str],
    settings: IGSettings,
    days_per_site: int,
    seed: int,
) -> xr.Dataset:
    """The aggregated attributions as a CF-1.8 Dataset (see :func:`~upscale.explain.attribution.integrated_gradients`).

    Each target has its own variables, ``<target>_attribution`` and the others of :data:`LONG_NAMES`, in
    that target's units; the dimensionless diagnostics share a ``target`` dimension.
    """
    import upscale
    from upscale.cf import CONVENTIONS, append_history

    targets = list(totals)
    comment = _definition(settings, days_per_site, seed)
    means = {t: totals[t].means() for t in targets}
    variables = {}
    for target in targets:
        variables.update(_attribution_variables(target, means[target], comment))
    completeness = np.array([means[t]["completeness_error"] for t in targets], "float64")
    variables.update(_diagnostic_variables(totals, completeness))
    coords = {
        "target": targets,
        "predictor": list(sites.dynamic_names),
        "lag": np.arange(settings.window, dtype="int32"),
        "group": group_names,
        "static_predictor": list(sites.static_columns),
    }
    attrs = {
        "Conventions": CONVENTIONS,
        **append_history({}, f"created by upscale {upscale.__version__} (upscale explain)"),
        "title": "integrated gradients over lags",
        "comment": comment,
        "method": settings.method,
        "window": settings.window,
        "tolerance": settings.tolerance,
        "days_per_site": days_per_site,
        "seed": seed,
    }
    ds = xr.Dataset(variables, coords=coords, attrs=attrs)
    ds["lag"].attrs.update(units="d", long_name="days before the predicted day")
    return ds


def _attribution_variables(target: str, means: dict[str, np.ndarray], comment: str) -> dict:
    """One target's four attribution variables of :data:`LONG_NAMES`, from :meth:`Totals.means` (group first)."""
    layout = {
        "attribution": (("predictor", "lag", "group"), (2, 1, 0)),
        "static_attribution": (("static_predictor", "group"), (1, 0)),
    }
    variables = {}
    for name, long_name in LONG_NAMES.items():
        dims, order = layout[name.removesuffix("_abs")]
        variables[f"{target}_{name}"] = (
            dims,
            means[name].transpose(order),
            {"long_name": f"{target}: {long_name}", "units": _units(target), "comment": comment},
        )
    return variables


def _diagnostic_variables(totals: dict[str, Totals], completeness_error: np.ndarray) -> dict:
    """``completeness_error``, ``n_steps`` and ``samples``: how well and on how much the totals were computed."""
    targets = list(totals)
    return {
        "completeness_error": (
            ("target",),
            completeness_error.astype("float64"),
            {
                "long_name": "completeness error of integrated gradients: sum |delta| / sum |f(x) - f(baseline)|",
                "units": "1",
            },
        ),
        "n_steps": (
            ("target",),
            np.array([totals[t].most_steps for t in targets], "int32"),
            {"long_name": "integration steps of the block of days that needed the most", "units": "1"},
        ),
        "samples": (
            ("target", "group"),
            np.stack([totals[t].count for t in targets]).astype("int32"),
            {"long_name": "number of sampled prediction days", "units": "1"},
        ),
    }
