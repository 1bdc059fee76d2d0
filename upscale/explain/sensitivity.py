"""Gridded sensitivity maps: the derivative of each day's prediction with respect to that day's predictors.

The sensitivity of a target y to a predictor x on day t is the instantaneous partial derivative
dy_t / dx_t in physical units (e.g. g m-2 d-1 K-1), with the model's state at the start of day t
held fixed: what today's flux does when today's weather changes, all memory of the past kept. For
models without memory that is simply the derivative of the per-day model. y is the product's mean:
for a target with a lower bound (GPP, ET), the members' censored means, so a winter day at the bound,
whose flux a small change of weather does not move, has a derivative near 0, as the truth does. It is
computed exactly (the LSTM family in closed form, other models by automatic differentiation), one day
at a time for sequential models (the state handed on from day to day, so the days of a series equal
one pass over it), and averaged per calendar month and over the whole period.

The kernel (:func:`sensitivity_block`) is numpy in, numpy out; :func:`run_sensitivity_tile` is
the tile task run by the apply stage's Dask wiring (:func:`upscale.apply.apply_tiles`), so tasks
carry paths and hashes, workers cache the bundle, and finished tiles are recorded for resume.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from upscale.apply import ApplyJob, Tile, open_tile, worker_bundle
from upscale.cf import GRID_MAPPING, PERIOD
from upscale.encoding import complete_predictors
from upscale.ensemble import stitch_state
from upscale.explain.stepping import states_after, zero_state
from upscale.members import normalised_bounds
from upscale.models.heads import expected_value
from upscale.store import write_block
from upscale.variables import VARIABLES

_DEGREE_UNITS = {"degC": "K", "degree_Celsius": "K"}  # a derivative per degree Celsius is per kelvin


def inverse_units(units: str) -> str:
    """The udunits string of 1 / ``units`` ("W m-2" -> "W-1 m2", "degC" -> "K-1", "1" -> "")."""
    parts = []
    for token in units.split():
        if token == "1":  # dimensionless
            continue
        match = re.fullmatch(r"([A-Za-z_]+)(-?\d+)?", token)
        if match is None:
            raise ValueError(f"cannot invert the units {units!r}")
        name, power = _DEGREE_UNITS.get(match[1], match[1]), -int(match[2] or 1)
        parts.append(name if power == 1 else f"{name}{power}")
    return " ".join(parts)


def sensitivity_name(target: str, predictor: str) -> str:
    """The variable name of the sensitivity of ``target`` to ``predictor`` (monthly means)."""
    return f"{target}_sens_{predictor}"


def sensitivity_attrs(target: str, predictor: str, period_mean: bool = False) -> dict:
    """CF attributes of a sensitivity variable (units: target units per predictor unit)."""
    t, p = VARIABLES[target], VARIABLES[predictor]
    units = " ".join(u for u in (t.units, inverse_units(p.units)) if u)
    what = "whole-period" if period_mean else "monthly"
    driver = p.long_name.removesuffix(", daily mean")
    return {
        "long_name": f"sensitivity of {t.long_name} to {driver}, {what} mean",
        "units": units,
        "cell_methods": f"{PERIOD if period_mean else 'time'}: mean",
        "grid_mapping": "spatial_ref",
        "coverage_content_type": "modelResult",
        "comment": f"instantaneous partial derivative d{target}(t)/d{predictor}(t) of the ensemble-mean "
        "prediction (the mean of the product, censored at the variable's lower bound), the model "
        "state at the start of day t held fixed; exact (automatic differentiation or the LSTM's "
        "closed form); mean over the valid days",
    }


def sensitivity_block(
    ensemble,
    dynamic: np.ndarray,
    static: np.ndarray,
    columns: list[int],
    state=None,
    days: np.ndarray | None = None,
    batch_pixels: int = 4096,
):
    """The block kernel: derivatives [P, T, len(columns)] per target, and the state for the next chunk.

    Parameters
    ----------
    ensemble : upscale.ensemble.Ensemble
        The trained members and their normaliser.
    dynamic : numpy.ndarray
        [P, T, Fd] predictors in canonical units (NaN where missing).
    static : numpy.ndarray
        [P, Fs] encoded static predictors.
    columns : list of int
        The dynamic predictors (columns of ``dynamic``) to differentiate with respect to.
    state : optional
        Per member, what the previous chunk of the same pixels returned (None: a fresh start).
    days : numpy.ndarray of int, optional
        The days of the chunk to differentiate (default all); the others are NaN. The model still
        runs over every day, so the state of each differentiated day is the exact one.
    batch_pixels : int
        Pixels per forward pass.

    Returns
    -------
    (dict, state)
        target -> float32 [P, T, len(columns)] in target units per predictor unit (ensemble mean of
        the members' derivatives; NaN where a predictor of the pixel-day is missing), and the state.
    """
    norm = ensemble.normaliser
    p, t, _ = dynamic.shape
    days = np.arange(t) if days is None else np.asarray(days, dtype=int)
    valid = complete_predictors(dynamic, static)
    valid[:, np.setdiff1d(np.arange(t), days)] = False
    xd = np.nan_to_num(norm.dynamic(dynamic))
    xs = np.nan_to_num(norm.static(static))
    scale = np.float32(norm.target_std)[:, None] / np.float32(norm.dynamic_std)[columns][None, :]  # [K, C]
    bounds = normalised_bounds(ensemble.bounds, ensemble.targets, norm)
    out = {target: np.zeros((p, t, len(columns)), "float32") for target in ensemble.targets}
    new_state: list = [None] * len(ensemble.members)
    for start in range(0, p, batch_pixels):
        sl = slice(start, start + batch_pixels)
        total = _summed_gradients(ensemble, xd[sl], xs[sl], state, sl, days, columns, bounds, new_state, p)
        for j, target in enumerate(ensemble.targets):
            out[target][sl, days] = total[j].cpu().numpy() * (scale[j] / len(ensemble.members))
    for target in out:
        out[target][~valid] = np.nan
    return out, new_state


def _summed_gradients(ensemble, xd, xs, state, sl: slice, days, columns, bounds, new_state: list, p: int):
    """Per target, the sum over members of d E_j / d x of the chosen ``columns`` for one pixel batch
    ``sl`` of normalised inputs; each member's state after the chunk is stitched into ``new_state``."""
    d, s = ensemble.to_device(xd), ensemble.to_device(xs)
    total = None
    for i, member in enumerate(ensemble.members):
        h0 = None if state is None or state[i] is None else tuple(ensemble.to_device(a[sl]) for a in state[i])
        grads, h = _member_gradients(member, ensemble.targets, d, s, h0, torch.as_tensor(days), bounds)
        grads = [g[..., columns] for g in grads]
        total = grads if total is None else [t.add_(g) for t, g in zip(total, grads)]
        new_state[i] = stitch_state(new_state[i], h, p, sl)
    return total


def _member_gradients(
    member,
    targets: list[str],
    dynamic: torch.Tensor,
    static: torch.Tensor,
    state,
    days: torch.Tensor,
    bounds: tuple = (),
    rows: int = 16384,
):
    """d E_j(t) / d dynamic(t) of one member in normalised units for the chosen ``days``:
    K tensors [B, len(days), Fd], and the state after the last day.

    E_j is the member's expected value of target j (:func:`upscale.models.heads.expected_value`):
    the mean of its censored Gaussian where ``bounds`` (normalised units) gives the target a lower
    bound, so the derivative is that of the product's mean, which a day at the bound does not move.

    A sequential member first runs over the days without gradients to get the state before each
    day; then every (pixel, day) is one independent single-day step from that state, so all days
    are differentiated at once in large batches of ``rows``, holding the start-of-day state fixed.
    """
    if hasattr(member, "day_gradients"):  # a model that knows a faster exact way (the LSTM family)
        return member.day_gradients(dynamic, static, state, days, bounds)
    return autograd_day_gradients(member, targets, dynamic, static, state, days, bounds, rows)


def autograd_day_gradients(member, targets, dynamic, static, state, days, bounds=(), rows: int = 16384):
    """:func:`_member_gradients` by autograd through single-day steps, for any model."""
    b, _, f = dynamic.shape
    n = len(days)
    if member.sequential and n:
        after = states_after(member, dynamic, static, state)
        first = zero_state(tuple(s[:, 0] for s in after)) if state is None else state
        before = tuple(torch.cat([s0[:, None], s[:, :-1]], dim=1)[:, days] for s0, s in zip(first, after))
        inputs = dynamic[:, days].reshape(b * n, 1, f)
        statics = static.repeat_interleave(n, dim=0)
        starts = tuple(s.reshape(b * n, *s.shape[2:]) for s in before)
        final = tuple(s[:, -1] for s in after)
    elif member.sequential:  # no day to differentiate in this chunk: only hand the state on
        inputs, statics, starts = dynamic[:, :0], static, None
        with torch.no_grad():
            _, final = member(dynamic, static, state)
    else:
        inputs, statics, starts, final = dynamic[:, days], static, None, None
    grads = [torch.empty_like(inputs) for _ in targets]
    step = max(1, rows // max(inputs.shape[1], 1))
    for r0 in range(0, inputs.shape[0] if inputs.shape[1] else 0, step):
        sl = slice(r0, r0 + step)
        h0 = None if starts is None else tuple(s[sl] for s in starts)
        for j, grad in enumerate(_step_gradients(member, targets, inputs[sl], statics[sl], h0, bounds)):
            grads[j][sl] = grad
    return [g.reshape(b, n, f) for g in grads], final


def _step_gradients(member, targets: list[str], dynamic: torch.Tensor, static: torch.Tensor, state, bounds=()):
    """Gradients of each target's expected value with respect to ``dynamic``: one forward, one backward each."""
    bounds = tuple(bounds) or (None,) * len(targets)
    # cuDNN's RNN backward runs in training mode only; the eval-mode members differentiate without it
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        x = dynamic.detach().requires_grad_(True)
        outputs, _ = member(x, static, state)
        return [
            torch.autograd.grad(expected_value(*outputs[t], b).sum(), x, retain_graph=j < len(targets) - 1)[0]
            for j, (t, b) in enumerate(zip(targets, bounds))
        ]


@dataclass(frozen=True)
class SensitivityJob:
    """An apply job plus what to differentiate: tasks carry paths, hashes and names, never arrays."""

    apply: ApplyJob
    store_path: str
    predictors: tuple[str, ...]
    month_starts: tuple[str, ...]  # ISO dates of the months of the apply period
    every: int = 1  # differentiate every n-th day of the period (1: every day)

    @property
    def bundle_hash(self) -> str:
        return self.apply.bundle_hash


def month_index(days: np.ndarray, month_starts: np.ndarray) -> np.ndarray:
    """The index into ``month_starts`` of each day."""
    return np.searchsorted(np.asarray(month_starts, dtype="datetime64[ns]"), days, side="right") - 1


def run_sensitivity_tile(job: SensitivityJob, tile: Tile) -> str:
    """Sensitivities of one tile over the whole period, accumulated per month and written; returns the tile id."""
    import dask

    torch.set_num_threads(job.apply.torch_threads)
    with dask.config.set(scheduler="synchronous"):
        return _sensitivity_tile(job, tile)


def _sensitivity_tile(job: SensitivityJob, tile: Tile) -> str:
    ensemble, spec = worker_bundle(job.apply.bundle_dir, job.apply.bundle_hash, job.apply.device)
    names = [v for _, v in spec.dynamic]
    columns = [names.index(p) for p in job.predictors]
    inputs = open_tile(job.apply, tile, spec)
    times = inputs.times
    months = np.asarray(job.month_starts, dtype="datetime64[ns]")
    n_land = int(inputs.land.sum())
    sums = {t: np.zeros((n_land, months.size + 1, len(columns))) for t in ensemble.targets}  # last: the period
    counts = np.zeros((n_land, months.size + 1))
    state = None
    for c0, c1, values in inputs.chunks():
        days = np.flatnonzero((c0 - job.apply.time_index[0] + np.arange(c1 - c0)) % job.every == 0)
        derivative, state = sensitivity_block(ensemble, values, inputs.static, columns, state, days)
        month = month_index(times[c0:c1], months)
        valid = np.isfinite(next(iter(derivative.values()))).all(axis=-1)
        for m in np.unique(month):
            days = month == m
            counts[:, m] += valid[:, days].sum(axis=1)
            for target, d in derivative.items():
                sums[target][:, m] += np.nansum(d[:, days], axis=1)
    counts[:, -1] = counts[:, :-1].sum(axis=1)
    arrays = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for target in ensemble.targets:
            sums[target][:, -1] = sums[target][:, :-1].sum(axis=1)
            means = (sums[target] / counts[..., None]).astype("float32")  # NaN where no valid day
            for c, predictor in enumerate(job.predictors):
                grid = inputs.to_grid(means[:, :, c])  # [months + 1, ny, nx]
                arrays[sensitivity_name(target, predictor)] = grid[:-1]
                arrays[f"{sensitivity_name(target, predictor)}_mean"] = grid[-1]
    write_block(job.store_path, arrays, slice(None), slice(tile.lat0, tile.lat1), slice(tile.lon0, tile.lon1))
    return tile.id


def month_starts(days: np.ndarray) -> np.ndarray:
    """The first day of each calendar month touched by ``days``."""
    index = pd.DatetimeIndex(days)
    return pd.date_range(index[0].to_period("M").to_timestamp(), index[-1], freq="MS").values


def create_sensitivity_template(
    path,
    lat: np.ndarray,
    lon: np.ndarray,
    months: np.ndarray,
    targets: list[str],
    predictors: list[str],
    tile: tuple[int, int],
    attrs: dict,
) -> None:
    """The empty sensitivity store: monthly (time, lat, lon) and whole-period (lat, lon) means, chunked by tile."""
    import dask.array as da
    import xarray as xr

    from upscale.cf import BOUNDS_DIM, encoding, period_coord, product_coords

    coords = product_coords(months, lat, lon)
    ends = np.append(months[1:], _next_month(months[-1]))
    coords["time_bnds"] = coords["time_bnds"].copy(data=np.stack([months, ends], axis=-1))
    coords[PERIOD] = period_coord(months[0], ends[-1])
    shape3, chunks3 = (months.size, lat.size, lon.size), (months.size, *tile)
    data = {}
    for target in targets:
        for predictor in predictors:
            name = sensitivity_name(target, predictor)
            data[name] = (
                ("time", "lat", "lon"),
                da.full(shape3, np.nan, dtype="float32", chunks=chunks3),
                sensitivity_attrs(target, predictor),
            )
            data[f"{name}_mean"] = (
                ("lat", "lon"),
                da.full(shape3[1:], np.nan, dtype="float32", chunks=tile),
                sensitivity_attrs(target, predictor, period_mean=True),
            )
    bounds = {k: v for k, v in coords.items() if BOUNDS_DIM in v.dims}
    ds = xr.Dataset({**data, **bounds}, coords={k: v for k, v in coords.items() if k not in bounds}, attrs=attrs)
    for name in ds.data_vars:  # period belongs to the whole-period means only (xarray would add it to all)
        ds[name].attrs["coordinates"] = f"{GRID_MAPPING} {PERIOD}" if name.endswith("_mean") else GRID_MAPPING
    enc = encoding(ds)
    for name, (dims, _, _) in data.items():
        enc[name] = {"chunks": chunks3 if len(dims) == 3 else tile, "_FillValue": np.float32(np.nan)}
    ds.to_zarr(path, mode="w-", compute=False, encoding=enc)


def _next_month(month: np.datetime64) -> np.datetime64:
    return (pd.Timestamp(month) + pd.offsets.MonthBegin(1)).to_datetime64()
