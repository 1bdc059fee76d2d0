"""Skill of many daily series at once: NSE, R2 and the NSE of the seasonal cycle and anomalies.

Vectorised over rows (sites, variants, lags); row by row equal to :mod:`upscale.metrics`,
which loops in Python and pandas and is too slow for the thousands of series of memory effects.
"""

from __future__ import annotations

import numpy as np

#: Days with data a month needs in a daily series (as ``upscale.metrics.monthly_components``).
MONTH_MIN_DAYS = 10
#: The scores :func:`site_scores` returns.
SCORES = ("nse", "r2", "msc_nse", "anomaly_nse")


def site_scores(
    time: np.ndarray, obs: np.ndarray, pred: np.ndarray, min_days: int = MONTH_MIN_DAYS
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
    return {
        "nse": _rows_nse(obs, pred),
        "r2": _rows_r2(obs, pred),
        "msc_nse": _rows_nse(msc_obs, msc_pred),
        "anomaly_nse": _rows_nse(anomaly_obs, anomaly_pred),
    }


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
        return np.where((n >= 2) & (sso > 0) & (ssp > 0), r**2, np.nan)
