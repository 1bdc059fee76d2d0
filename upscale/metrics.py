"""NaN-aware skill metrics of predictions against observations.

Every function takes array-likes of one size (flattened; a scalar stands for a constant
array), uses only the positions where all its inputs are finite, and returns a Python float.
Where a metric is undefined (fewer than two valid pairs, zero variance where it divides by a
variance, a zero observed mean for the KGE bias ratio) it returns NaN rather than raising.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from upscale.distribution import pit_coverage

METRIC_COLUMNS = ("n", "r2", "nse", "kge", "rmse", "bias", "coverage_50", "coverage_90", "crps")
MIN_PAIRS = 2
NAN = float("nan")


def _valid(*arrays) -> tuple[np.ndarray, ...]:
    """The flattened arrays at the positions where every one of them is finite.

    Arrays are flattened and must have one size; scalars (0-d) are repeated to that size.
    """
    as_float = [np.asarray(a, dtype="float64") for a in arrays]
    sizes = {a.size for a in as_float if a.ndim > 0}
    if len(sizes) > 1:
        raise ValueError(f"arrays of different sizes: {[a.size for a in as_float]}")
    size = sizes.pop() if sizes else 1
    flat = [np.full(size, a) if a.ndim == 0 else a.ravel() for a in as_float]
    keep = np.logical_and.reduce([np.isfinite(a) for a in flat])
    return tuple(a[keep] for a in flat)


def _pairs(obs, pred) -> tuple[np.ndarray, np.ndarray] | None:
    """Finite (obs, pred) pairs, or None when there are fewer than two."""
    o, p = _valid(obs, pred)
    return (o, p) if o.size >= MIN_PAIRS else None


def _pearson(o: np.ndarray, p: np.ndarray) -> float:
    do, dp = o - o.mean(), p - p.mean()
    sso, ssp = float(do @ do), float(dp @ dp)
    if sso <= 0.0 or ssp <= 0.0:
        return NAN
    return float(np.clip((do @ dp) / math.sqrt(sso * ssp), -1.0, 1.0))


def n_pairs(obs, pred) -> int:
    """Number of positions where both ``obs`` and ``pred`` are finite."""
    return int(_valid(obs, pred)[0].size)


def r2(obs, pred) -> float:
    """Squared Pearson correlation between observations and predictions.

    Parameters
    ----------
    obs, pred : array_like
        Observations and predictions of one shape; non-finite pairs are ignored.

    Returns
    -------
    float
        r**2 in [0, 1]; NaN with fewer than two pairs or zero variance in either.
    """
    pairs = _pairs(obs, pred)
    return NAN if pairs is None else _pearson(*pairs) ** 2


def nse(obs, pred) -> float:
    """Nash-Sutcliffe efficiency, ``1 - SSE / SST``.

    Parameters
    ----------
    obs, pred : array_like
        Observations and predictions of one shape; non-finite pairs are ignored.

    Returns
    -------
    float
        1 for a perfect prediction, 0 for predicting the observed mean; NaN with fewer than
        two pairs or constant observations.
    """
    pairs = _pairs(obs, pred)
    if pairs is None:
        return NAN
    o, p = pairs
    sst = float(np.sum((o - o.mean()) ** 2))
    return NAN if sst <= 0.0 else 1.0 - float(np.sum((p - o) ** 2)) / sst


def kge(obs, pred) -> float:
    """Kling-Gupta efficiency (Gupta et al. 2009).

    ``1 - sqrt((r - 1)**2 + (alpha - 1)**2 + (beta - 1)**2)`` with ``r`` the Pearson
    correlation, ``alpha = sd(pred) / sd(obs)`` and ``beta = mean(pred) / mean(obs)``.

    Parameters
    ----------
    obs, pred : array_like
        Observations and predictions of one shape; non-finite pairs are ignored.

    Returns
    -------
    float
        1 for a perfect prediction; NaN with fewer than two pairs, zero variance in either,
        or a zero observed mean.
    """
    pairs = _pairs(obs, pred)
    if pairs is None:
        return NAN
    o, p = pairs
    r = _pearson(o, p)
    mean_obs = float(o.mean())
    if math.isnan(r) or mean_obs == 0.0:
        return NAN
    alpha = float(p.std()) / float(o.std())
    beta = float(p.mean()) / mean_obs
    return 1.0 - math.sqrt((r - 1.0) ** 2 + (alpha - 1.0) ** 2 + (beta - 1.0) ** 2)


def rmse(obs, pred) -> float:
    """Root mean squared error.

    Parameters
    ----------
    obs, pred : array_like
        Observations and predictions of one shape; non-finite pairs are ignored.

    Returns
    -------
    float
        ``sqrt(mean((pred - obs)**2))``; NaN with fewer than two pairs.
    """
    pairs = _pairs(obs, pred)
    return NAN if pairs is None else math.sqrt(float(np.mean((pairs[1] - pairs[0]) ** 2)))


def bias(obs, pred) -> float:
    """Mean error, ``mean(pred - obs)`` (positive when predictions are too high).

    Parameters
    ----------
    obs, pred : array_like
        Observations and predictions of one shape; non-finite pairs are ignored.

    Returns
    -------
    float
        The mean error; NaN with fewer than two pairs.
    """
    pairs = _pairs(obs, pred)
    return NAN if pairs is None else float(np.mean(pairs[1] - pairs[0]))


def _gaussian_triples(obs, mean, sd) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Finite (obs, mean, sd) triples with sd >= 0, or None when fewer than two."""
    o, m, s = _valid(obs, mean, sd)
    keep = s >= 0.0
    o, m, s = o[keep], m[keep], s[keep]
    return (o, m, s) if o.size >= MIN_PAIRS else None


def coverage(obs, mean, sd, level: float) -> float:
    """Fraction of observations inside the central ``level`` interval of N(mean, sd).

    Parameters
    ----------
    obs, mean, sd : array_like
        Observations and the predictive mean and standard deviation, of one shape; positions
        where any is non-finite, or sd is negative, are ignored.
    level : float
        Nominal probability of the central interval, in (0, 1), e.g. 0.9.

    Returns
    -------
    float
        Share of observations with ``|obs - mean| <= norm.ppf((1 + level) / 2) * sd``; close
        to ``level`` for a calibrated prediction. NaN with fewer than two valid positions.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    triples = _gaussian_triples(obs, mean, sd)
    if triples is None:
        return NAN
    o, m, s = triples
    half_width = norm.ppf(0.5 + level / 2.0) * s
    return float(np.mean(np.abs(o - m) <= half_width))


def crps_gaussian(obs, mean, sd) -> float:
    """Mean continuous ranked probability score of Gaussian predictions.

    Closed form of Gneiting & Raftery (2005):
    ``sd * (z * (2 * Phi(z) - 1) + 2 * phi(z) - 1 / sqrt(pi))`` with ``z = (obs - mean) / sd``;
    for ``sd == 0`` it is the absolute error.

    Parameters
    ----------
    obs, mean, sd : array_like
        Observations and the predictive mean and standard deviation, of one shape; positions
        where any is non-finite, or sd is negative, are ignored.

    Returns
    -------
    float
        The mean CRPS in the units of ``obs`` (lower is better); NaN with fewer than two
        valid positions.
    """
    triples = _gaussian_triples(obs, mean, sd)
    if triples is None:
        return NAN
    o, m, s = triples
    error = o - m
    positive = s > 0.0
    z = np.divide(error, s, out=np.zeros_like(error), where=positive)
    spread = s * (z * (2.0 * norm.cdf(z) - 1.0) + 2.0 * norm.pdf(z) - 1.0 / math.sqrt(math.pi))
    return float(np.mean(np.where(positive, spread, np.abs(error))))


def pinball(obs, quantile, level: float) -> float:
    """Mean pinball (quantile) loss of predicted ``quantile`` at probability ``level``.

    ``mean(max(level * (obs - q), (level - 1) * (obs - q)))``: a proper score of a quantile, in
    the units of ``obs`` (lower is better); NaN with fewer than two finite pairs.
    """
    pairs = _pairs(obs, quantile)
    if pairs is None:
        return NAN
    error = pairs[0] - pairs[1]
    return float(np.mean(np.maximum(level * error, (level - 1.0) * error)))


def pit_share(pit, censored, low: float, high: float) -> float:
    """Expected share of observations whose PIT lies in [low, high] (see :func:`upscale.distribution.pit_coverage`).

    Parameters
    ----------
    pit : array_like
        PIT of each observation under its predictive distribution (NaN: ignored).
    censored : array_like
        bool, the observation lies at or below the variable's bound (its PIT is uniform on [0, pit]).
    low, high : float
        Probabilities: (0.05, 0.95) scores the central 90 % interval, (0, 0.05) the 5 % quantile.

    Returns
    -------
    float
        Close to ``high - low`` for a calibrated prediction; NaN with fewer than two valid positions.
    """
    p, c = _valid(pit, censored)
    if p.size < MIN_PAIRS:
        return NAN
    return float(np.mean(pit_coverage(p, c.astype(bool), low, high)))


def score(obs, mean, sd=None, pit=None, censored=None) -> dict:
    """All metrics of one series, keyed as :data:`METRIC_COLUMNS`.

    Parameters
    ----------
    obs, mean : array_like
        Observations and (mean) predictions of one shape.
    sd : array_like, optional
        Predictive standard deviation; without it ``coverage_50``, ``coverage_90`` and ``crps``
        are NaN.
    pit, censored : array_like, optional
        The PIT of the observations under the predictive distribution, and where they are
        censored (at or below the bound): the coverages are then of its central intervals,
        not of Gaussian ones around ``mean``. ``crps`` stays the Gaussian one of ``mean``, ``sd``.

    Returns
    -------
    dict
        ``n`` (int, finite obs/mean pairs) and the float metrics r2, nse, kge, rmse, bias,
        coverage_50, coverage_90, crps.
    """
    out = {
        "n": n_pairs(obs, mean),
        "r2": r2(obs, mean),
        "nse": nse(obs, mean),
        "kge": kge(obs, mean),
        "rmse": rmse(obs, mean),
        "bias": bias(obs, mean),
        "coverage_50": NAN,
        "coverage_90": NAN,
        "crps": NAN,
    }
    if sd is not None:
        out["coverage_50"] = coverage(obs, mean, sd, 0.5)
        out["coverage_90"] = coverage(obs, mean, sd, 0.9)
        out["crps"] = crps_gaussian(obs, mean, sd)
    if pit is not None:
        censored = np.zeros(np.shape(pit), bool) if censored is None else censored
        out["coverage_50"] = pit_share(pit, censored, 0.25, 0.75)
        out["coverage_90"] = pit_share(pit, censored, 0.05, 0.95)
    return out


DECOMPOSED_COLUMNS = ("msc_r2", "msc_nse", "anomaly_r2", "anomaly_nse")


def monthly_components(times, obs, pred, min_days: int = 10):
    """Monthly means of paired obs and predictions, split into mean seasonal cycle and anomalies.

    Parameters
    ----------
    times : array of datetime64
        The days of ``obs`` and ``pred``.
    obs, pred : array_like
        Daily series; a month counts where at least ``min_days`` days have both.

    Returns
    -------
    (msc_obs, msc_pred, anomaly_obs, anomaly_pred)
        The mean seasonal cycle (12 calendar months, NaN where no year has the month) and the
        monthly anomalies from it (one value per month of the record), as in FLUXCOM evaluations.
    """
    import pandas as pd

    obs, pred = np.asarray(obs, dtype="float64"), np.asarray(pred, dtype="float64")
    both = np.isfinite(obs) & np.isfinite(pred)
    frame = pd.DataFrame(
        {"obs": np.where(both, obs, np.nan), "pred": np.where(both, pred, np.nan)}, index=pd.DatetimeIndex(times)
    )
    months = frame.resample("MS")
    monthly = months.mean().where(months.count() >= min_days)
    msc = monthly.groupby(monthly.index.month).mean().reindex(range(1, 13))
    anomaly = monthly - msc.loc[monthly.index.month].to_numpy()
    return msc["obs"].to_numpy(), msc["pred"].to_numpy(), anomaly["obs"].to_numpy(), anomaly["pred"].to_numpy()


def decomposed_scores(times, obs, pred) -> dict:
    """R2 and NSE of the mean seasonal cycle and of the monthly anomalies (keys :data:`DECOMPOSED_COLUMNS`)."""
    msc_obs, msc_pred, anom_obs, anom_pred = monthly_components(times, obs, pred)
    return {
        "msc_r2": r2(msc_obs, msc_pred),
        "msc_nse": nse(msc_obs, msc_pred),
        "anomaly_r2": r2(anom_obs, anom_pred),
        "anomaly_nse": nse(anom_obs, anom_pred),
    }
