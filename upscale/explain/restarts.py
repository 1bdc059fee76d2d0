"""Predictions from a destroyed history: the shuffled series and the batched restarts of memory effects.

For a lag k the model predicts day t from the real inputs of days t-k..t, while every earlier
day comes from a destroyed series ``x~`` (:func:`shuffled_history`). The exact computation
restarts the model: run each member once over ``x~``, keep its state after the days where runs
start, then, batched over all (variant, site, start day s) rows, continue from the state after
day s of ``x~`` over the real days s+1, s+2, ... The output after k+1 real days is the
prediction of day t = s+k+1 at lag k, so one run of max(lags)+1 days serves every lag at once.
Runs start every ``stride``-th day, so lag k is evaluated on the days t with (t-k-1) divisible
by ``stride`` (:func:`evaluation_days`); days t <= k have no destroyed history and take the
ordinary (fresh-start) prediction. Models without state (MLP) take the same path with a None
state: they see day t alone.
"""

from __future__ import annotations

import numpy as np
import torch

from upscale.encoding import complete_predictors
from upscale.ensemble import Ensemble

#: Site-days per model call of the batched restarts: bounds memory (~70 MB for an LSTM of 64).
DEFAULT_BATCH_STEPS = 2**16
CHUNK_DAYS = 32


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


def lagged_predictions(
    ensemble: Ensemble,
    dynamic: np.ndarray,
    static: np.ndarray,
    destroyed: np.ndarray,
    lags,
    stride: int = 1,
    batch_steps: int = DEFAULT_BATCH_STEPS,
):
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
    targets = ensemble.targets
    lag_sum, full_sum = _member_sums(ensemble, dynamic, static, destroyed, lags, stride, batch_steps)
    scale = np.asarray(ensemble.normaliser.target_std, "float64")[:, None, None]
    offset = np.asarray(ensemble.normaliser.target_mean, "float64")[:, None, None]
    full = full_sum / len(ensemble.members) * scale + offset
    lagged = (
        (lag_sum / len(ensemble.members) * scale[..., None] + offset[..., None])
        .reshape(len(targets), n_variants, n_pixels, len(lags), n_days)
        .transpose(0, 1, 3, 2, 4)
    )
    _fresh_starts(lagged, full, lags, stride)
    valid = complete_predictors(dynamic, static)
    lagged[..., ~valid], full[..., ~valid] = np.nan, np.nan
    return (
        {t: lagged[j].astype("float32") for j, t in enumerate(targets)},
        {t: full[j].astype("float32") for j, t in enumerate(targets)},
    )


def _member_sums(ensemble: Ensemble, dynamic, static, destroyed, lags, stride: int, batch_steps: int):
    """Sums over the members of the normalised predictions: restarts [K, V*P, len(lags), T] and ordinary [K, P, T]."""
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
    return lag_sum, full_sum


def _fresh_starts(lagged: np.ndarray, full: np.ndarray, lags, stride: int) -> None:
    """In place: on evaluated days t <= k, which have no destroyed history, lag k takes the ordinary prediction."""
    n_days = full.shape[-1]
    for i, lag in enumerate(lags):
        fresh = evaluation_days(n_days, lag, stride) & (np.arange(n_days) <= lag)
        lagged[:, :, i][..., fresh] = full[:, None][..., fresh]


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
        state = (
            None
            if states is None
            else tuple(s[torch.as_tensor(series[rows]), torch.as_tensor(start_index[rows])] for s in states)
        )
        _run_restarts(
            member, padded, static, state, starts[start_index[rows]], series[rows], lags, targets, out, n_days
        )
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
        _, state = member(series[:, previous : day + 1], static, state)
        if state is None:
            return None
        kept.append(state)
        previous = day + 1
    if not kept:
        return None
    return tuple(torch.stack([s[i] for s in kept], dim=1) for i in range(len(kept[0])))
