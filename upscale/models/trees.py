"""Gradient-boosted trees as in FLUXCOM-X (X-BASE): XGBoost per target, behind the model protocol.

A member holds two boosters per target on the same per-day features (the dynamic and static
predictors, plus optional trailing means declared as ``model.rolling``): one for the mean
(squared error) and one for the variance (gamma deviance on squared residuals, which is the
Gaussian negative log-likelihood of the variance with a log link). The variance booster learns
from residuals of sites the mean booster did not see (two halves of the member's sites, each
predicted by a booster of the other half), since in-sample residuals of trees are far too small.

At inference a member is called like the torch members, ``forward(dynamic, static, state)`` ->
target -> (mean, log_var) in normalised units, so the ensemble, cross-validation and apply use it
unchanged. With rolling features the member is sequential: its state is the trailing days of the
predictors it averages, and the trailing sums are exact integer sums of a fixed-point copy, so
chunked inference that hands the state on gives exactly what one pass over the series gives.
Boosters are saved in XGBoost's own UBJSON format (see :mod:`upscale.bundle`), never pickled.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from upscale.encoding import complete_predictors
from upscale.errors import DataError, RecipeError
from upscale.models.base import FluxModel
from upscale.models.heads import LOG_VAR_MAX, LOG_VAR_MIN
from upscale.models.registry import register

#: Trailing sums are integer sums of round(x * FIXED_POINT): exact whatever the chunking.
FIXED_POINT = 2.0**20
LIMIT = 1e6
PARTS = ("mean", "log_var")


def _xgb():
    try:
        import xgboost  # imported on first use: workers of the other models never load it
    except ImportError:
        raise RecipeError(
            "model.type xgboost needs the xgboost package, which is not installed",
            where="model.type",
            fix="Install it: pip install 'upscale[trees]' (or xgboost-cpu on a machine without a GPU)",
        ) from None
    return xgboost


@register("xgboost")
class XGBoost(FluxModel):
    """Boosted trees per target: each day's predictors (and trailing means) -> Gaussian (mean, log-variance).

    Parameters
    ----------
    rolling : dict, optional
        Dynamic predictor -> windows in days, e.g. ``{"pr": [30, 90]}``: the trailing mean of
        that predictor over each window, ending on the day, joins the features (memory as tree
        users engineer it). Makes the member sequential.
    trees : dict, optional
        XGBoost settings, the fields of the recipe's ``model.trees`` (the recipe's defaults for
        those not given).
    dynamic_names : list of str
        Canonical names of the dynamic predictors, in column order.
    """

    differentiable = False  # piecewise constant: no gradients for attributions or sensitivity maps

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        targets: list[str],
        rolling: dict | None = None,
        trees: dict | None = None,
        dynamic_names: list[str] = (),
        **context,
    ):
        super().__init__(n_dynamic, n_static, targets)
        _xgb()  # refused when XGBoost is not installed, before anything runs
        self.windows = rolling_windows(rolling or {}, list(dynamic_names))
        self.columns = sorted({c for c, _ in self.windows})
        self.span = max((w for _, w in self.windows), default=1) - 1
        self.sequential = bool(self.windows)
        self.trees = {**default_trees(), **(trees or {})}
        self.n_features = n_dynamic + n_static + len(self.windows)
        self.boosters: dict[str, object] = {}
        self.device = "cpu"
        self._configured: tuple | None = None

    def to(self, *args, **kwargs):
        """Also where XGBoost predicts: ``device: cuda`` for its boosters when moved to a GPU."""
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        if device is not None:
            self.device = str(device)
        return super().to(*args, **kwargs)

    def forward(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        x, new_state = self.features(dynamic, static, state)
        b, t, f = x.shape
        flat = x.reshape(b * t, f).contiguous()
        self._configure()
        outputs = {}
        for target in self.targets:
            mean = _predict(self.boosters[f"{target}-mean"], flat, margin=False)
            log_var = _predict(self.boosters[f"{target}-log_var"], flat, margin=True)
            outputs[target] = (mean.reshape(b, t), log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX).reshape(b, t))
        return outputs, new_state

    def features(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        """Per-day features [B, T, F] (dynamic, static, trailing means) and the state after the last day."""
        b, t, _ = dynamic.shape
        parts = [dynamic, static[:, None, :].expand(b, t, static.shape[-1])]
        if not self.windows:
            return torch.cat(parts, dim=-1), None
        history = dynamic[..., self.columns]
        if state is None:  # no days before the first: the first windows average the days they have
            tail = history.new_full((b, self.span, len(self.columns)), float("nan"))
        else:
            tail = state[0].to(history.dtype)
        series = torch.cat([tail, history], dim=1)
        windows = [(self.columns.index(c), w) for c, w in self.windows]
        parts.append(trailing_means(series, windows, t).to(dynamic.dtype))
        return torch.cat(parts, dim=-1), (series[:, series.shape[1] - self.span :],)

    def _configure(self) -> None:
        """Boosters predict on this member's device with as many threads as torch uses here."""
        wanted = ("cuda" if self.device.startswith("cuda") else "cpu", torch.get_num_threads())
        if self._configured != wanted:
            for booster in self.boosters.values():
                booster.set_param({"device": self.device if wanted[0] == "cuda" else "cpu", "nthread": wanted[1]})
            self._configured = wanted

    def booster_files(self) -> dict[str, bytes]:
        """Each booster as XGBoost's UBJSON bytes, keyed ``<target>-mean`` and ``<target>-log_var``."""
        return {key: bytes(booster.save_raw("ubj")) for key, booster in self.boosters.items()}

    def load_boosters(self, raw: dict[str, bytes]) -> None:
        """Boosters from UBJSON or JSON bytes (see :meth:`booster_files`); ValueError if they do not fit."""
        self.set_boosters({key: parse_booster(data) for key, data in raw.items()})

    def set_boosters(self, boosters: dict) -> None:
        """Use these boosters, one per target and part; ValueError if they do not fit this model."""
        expected = {f"{target}-{part}" for target in self.targets for part in PARTS}
        if set(boosters) != expected:
            raise ValueError(f"boosters {sorted(boosters)} instead of {sorted(expected)}")
        for key, booster in boosters.items():
            if booster.num_features() != self.n_features:
                raise ValueError(f"booster {key} takes {booster.num_features()} features, not {self.n_features}")
        self.boosters, self._configured = dict(boosters), None

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The boosters' UBJSON bytes as uint8 tensors (how trained members come back from a pool process)."""
        return {key: torch.frombuffer(bytearray(data), dtype=torch.uint8) for key, data in self.booster_files().items()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self.load_boosters({key: value.numpy().tobytes() for key, value in state_dict.items()})

    def fit_sites(self, train, val, norm, seed: int) -> XGBoost:
        """Train this member (the hook of :func:`upscale.train.train_member`) on the device it was moved to.

        Both boosters of each target early-stop on the member's validation sites ``val`` (never a
        fold's test sites) with XGBoost's own early stopping; ``model.trees`` sets the boosting,
        ``seed`` the row and column sampling and the halves of the residual split.
        """
        fit = self.rows(train, norm)
        stop = self.rows(val, norm) if val is not None and len(val.sites) else None
        params = self.params(seed)
        for j, target in enumerate(self.targets):
            mean, var = _fit_target(params, self.trees, fit, stop, j, seed)
            if mean is None:
                raise DataError(
                    f"no {target} observation at the {len(train.sites)} training sites of an ensemble member",
                    where="sites",
                    fix="Use more sites, or a larger training.site_fraction",
                )
            self.boosters.update({f"{target}-mean": mean, f"{target}-log_var": var})
        self._configured = None
        return self.eval()

    def rows(self, data, norm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features [N, F], normalised targets [N, K] NaN where unusable, site index [N]) of every site-day."""
        dyn, stat = norm.dynamic(data.dynamic), norm.static(data.static)
        complete = complete_predictors(dyn, stat)
        xd = torch.from_numpy(np.nan_to_num(dyn).astype("float32"))
        xs = torch.from_numpy(np.nan_to_num(stat).astype("float32"))
        with torch.no_grad():
            x = self.features(xd, xs)[0].numpy()
        s, t, k = data.targets.shape
        y = np.where(complete[..., None], norm.targets(data.targets), np.nan).astype("float32")
        site = np.broadcast_to(np.arange(s)[:, None], (s, t))
        return x.reshape(s * t, -1), y.reshape(s * t, k), site.reshape(-1)

    def params(self, seed: int) -> dict:
        """XGBoost's parameters of the mean boosters: hist trees, threads as torch has here (1 in a pool)."""
        return {
            "tree_method": "hist",
            "objective": "reg:squarederror",
            "learning_rate": self.trees["learning_rate"],
            "max_depth": self.trees["max_depth"],
            "min_child_weight": self.trees["min_child_weight"],
            "subsample": self.trees["subsample"],
            "colsample_bytree": self.trees["colsample_bytree"],
            "seed": seed % 2**31,
            "nthread": torch.get_num_threads(),
            "device": self.device if self.device.startswith("cuda") else "cpu",
        }


def parse_booster(raw: bytes):
    """An XGBoost booster from its UBJSON or JSON bytes; ValueError (XGBoost's reason, one line) if they are not one.

    Nothing else is accepted: XGBoost's legacy binary format and pickles are refused.
    """
    xgb = _xgb()
    if raw[:1] != b"{":  # both UBJSON and JSON models are one object
        kind = "a pickle" if raw[:1] == b"\x80" else "not JSON or UBJSON"
        raise ValueError(f"{kind}, not an XGBoost model saved as UBJSON or JSON")
    try:
        return xgb.Booster(model_file=bytearray(raw))
    except xgb.core.XGBoostError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ValueError(re.sub(r"^\[[\d:]+\] \S+: ", "", first) or "not a valid XGBoost model") from None


def default_trees() -> dict:
    """The recipe's default ``model.trees``: one place for the boosting defaults."""
    from upscale.recipe.sections import Trees

    return Trees().model_dump()


def rolling_windows(rolling: dict, dynamic_names: list[str]) -> list[tuple[int, int]]:
    """``model.rolling`` as (column, window) pairs in the recipe's order; RecipeError for unknown predictors."""
    unknown = [name for name in rolling if name not in dynamic_names]
    if unknown:
        raise RecipeError(
            f"model.rolling names {unknown[0]!r}, which is not a dynamic predictor of the recipe",
            where="model.rolling",
            fix=f"Use one of {', '.join(dynamic_names) or '(none)'}",
        )
    return [(dynamic_names.index(name), int(w)) for name, windows in rolling.items() for w in windows]


def trailing_means(series: torch.Tensor, windows: list[tuple[int, int]], n_days: int) -> torch.Tensor:
    """Means over the trailing windows ending on each of the last ``n_days`` days of ``series``.

    Parameters
    ----------
    series : torch.Tensor
        [B, L, C] values, NaN where a day is unknown (before the first day); L >= n_days plus the
        longest window less one.
    windows : list of (int, int)
        (column of ``series``, window in days) of each feature.

    Returns
    -------
    torch.Tensor
        [B, n_days, len(windows)], float64: the mean of the known days of each window.
    """
    length = series.shape[1]
    known = torch.isfinite(series)
    bounded = series.double().clamp(-LIMIT, LIMIT)  # normalised values; the bound keeps the sums in int64
    fixed = torch.where(known, torch.round(bounded * FIXED_POINT), 0).long()
    zero = fixed.new_zeros(fixed.shape[0], 1, fixed.shape[2])
    sums = torch.cat([zero, fixed.cumsum(dim=1)], dim=1)
    counts = torch.cat([zero, known.long().cumsum(dim=1)], dim=1)
    end = torch.arange(length - n_days + 1, length + 1, device=series.device)
    means = []
    for column, window in windows:
        total = sums[:, end, column] - sums[:, end - window, column]
        n = counts[:, end, column] - counts[:, end - window, column]
        means.append(total.double() / n.clamp(min=1) / FIXED_POINT)
    return torch.stack(means, dim=-1) if means else series.new_zeros(series.shape[0], n_days, 0).double()


def _predict(booster, x: torch.Tensor, margin: bool) -> torch.Tensor:
    """One booster's predictions [N] of features [N, F], on the device of ``x``.

    On a GPU the features go to XGBoost without a copy through CuPy when it is installed, else
    through host memory (XGBoost then copies them to the booster's device itself).
    """
    kind = "margin" if margin else "value"
    if x.shape[0] == 0:
        return x.new_zeros(0)
    if x.is_cuda:
        try:
            import cupy
        except ImportError:
            cupy = None
        if cupy is not None:
            return torch.as_tensor(booster.inplace_predict(cupy.asarray(x), predict_type=kind), device=x.device)
    out = booster.inplace_predict(x.cpu().numpy(), predict_type=kind)
    return torch.from_numpy(np.ascontiguousarray(out, dtype="float32")).to(x.device)


def _fit_target(params: dict, trees: dict, fit, stop, j: int, seed: int):
    """(mean booster, variance booster) of target ``j``, or (None, None) without observations."""
    x, y, site = fit
    ok = np.isfinite(y[:, j])
    if not ok.any():
        return None, None
    x, y, site = x[ok], y[ok, j], site[ok]
    stop_xy = None
    if stop is not None and np.isfinite(stop[1][:, j]).any():
        keep = np.isfinite(stop[1][:, j])
        stop_xy = (stop[0][keep], stop[1][keep, j])
    mean = _boost(params, trees, x, y, stop_xy)
    residuals = _held_out_residuals(params, x, y, site, mean.num_boosted_rounds(), seed)
    if residuals is None:  # one site: nothing held out, in-sample residuals (too small)
        residuals = y - mean.inplace_predict(x)
    floor = np.float32(np.exp(LOG_VAR_MIN))  # gamma deviance needs positive labels
    stop_var = None if stop_xy is None else (stop_xy[0], (stop_xy[1] - mean.inplace_predict(stop_xy[0])) ** 2 + floor)
    var = _boost({**params, "objective": "reg:gamma"}, trees, x, residuals**2 + floor, stop_var)
    return mean, var


def _boost(params: dict, trees: dict, x: np.ndarray, y: np.ndarray, stop):
    """One booster, early-stopped on ``stop`` = (features, labels) when given and cut to its best round."""
    xgb = _xgb()
    train = xgb.QuantileDMatrix(x, y)
    if stop is None:
        return xgb.train(params, train, trees["rounds"])
    evals = [(xgb.QuantileDMatrix(stop[0], stop[1], ref=train), "stop")]
    booster = xgb.train(
        params,
        train,
        trees["rounds"],
        evals=evals,
        early_stopping_rounds=trees["early_stopping_rounds"],
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1]


def _held_out_residuals(params: dict, x: np.ndarray, y: np.ndarray, site: np.ndarray, rounds: int, seed: int):
    """Residuals of each row by a booster of ``rounds`` rounds trained on the other half of the sites.

    None with fewer than two sites.
    """
    xgb = _xgb()
    sites = np.unique(site)
    if sites.size < 2:
        return None
    half = np.isin(site, np.random.default_rng(seed).permutation(sites)[: sites.size // 2])
    residuals = np.empty_like(y)
    for held in (half, ~half):
        booster = xgb.train(params, xgb.QuantileDMatrix(x[~held], y[~held]), rounds)
        residuals[held] = y[held] - booster.inplace_predict(x[held])
    return residuals
