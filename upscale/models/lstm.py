"""Sequence models with memory: LSTM and the entity-aware EA-LSTM (Kratzert et al. 2019).

Both carry their state as a tuple of tensors with the batch (pixel) dimension first, so
that the ensemble can slice and stitch states of pixel batches, and chunked inference that
hands the state on equals one pass over the whole series.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from upscale.models.base import FluxModel
from upscale.models.heads import GaussianHead, dense_stack, expected_value, expected_value_slopes, with_static
from upscale.models.registry import register


@register("lstm")
class LSTM(FluxModel):
    """A one-layer LSTM over the dynamic predictors, with the static ones appended at every step.

    ``hidden[0]`` is the size of the LSTM state; further entries are dense layers between
    the LSTM and the Gaussian head.
    """

    sequential = True
    min_hidden = 1

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        targets: list[str],
        hidden: list[int] = (64,),
        dropout: float = 0.0,
        **context,
    ):
        super().__init__(n_dynamic, n_static, targets)
        self.lstm = nn.LSTM(n_dynamic + n_static, hidden[0], batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.body, width = dense_stack(hidden[0], list(hidden[1:]), dropout)
        self.head = GaussianHead(width, targets)

    def forward(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        x = with_static(dynamic, static)
        hc = None if state is None else tuple(s.transpose(0, 1).contiguous() for s in state)
        h, (h_n, c_n) = self.lstm(x, hc)
        return self.head(self.body(self.dropout(h))), (h_n.transpose(0, 1), c_n.transpose(0, 1))

    def states(self, dynamic: torch.Tensor, static: torch.Tensor, state=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The state (h, c) after every day, [B, T, 1, H] each (see :func:`lstm_states`)."""
        return lstm_states(self.lstm, with_static(dynamic, static), state)

    def day_gradients(self, dynamic: torch.Tensor, static: torch.Tensor, state, days: torch.Tensor, bounds=()):
        """Same-day derivatives d E_j(t) / d dynamic(t), the state at the start of day t held fixed.

        Exact, through the LSTM cell's gates in closed form (see :func:`lstm_day_gradients`):
        the cost of about two forward passes, where autograd through single-day steps costs six.

        Returns
        -------
        (list of torch.Tensor, tuple)
            Per target, [B, len(days), Fd] in normalised units; and the state after the last day.
        """
        return lstm_day_gradients(self, with_static(dynamic, static), state, days, bounds)


def lstm_states(lstm: nn.LSTM, x: torch.Tensor, state=None, block: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden and cell states of a one-layer batch-first LSTM after every step, [B, T, 1, H] each.

    One step-by-step pass (:func:`_recurrence`, the one the same-day gradients use): about the cost of
    a forward pass, where stepping the fused kernel day by day costs several.
    """
    h, c = _initial_state(lstm, x, state)
    hidden, cells = [], []
    with torch.no_grad():
        for d0 in range(0, x.shape[1], block):
            days, c = _recurrence(lstm, x[:, d0 : d0 + block], h, c)
            h = days.h[-1]
            hidden.append(days.h.transpose(0, 1))
            cells.append(torch.cat([days.c_before[1:], c[None]]).transpose(0, 1))
    if not hidden:
        empty = x.new_empty(x.shape[0], 0, 1, lstm.hidden_size)
        return empty, empty
    return torch.cat(hidden, dim=1)[:, :, None, :], torch.cat(cells, dim=1)[:, :, None, :]


def _initial_state(lstm: nn.LSTM, x: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, c) [B, H] to start from: zeros for a fresh start, else the model's state tuple [B, 1, H]."""
    if state is None:
        zeros = x.new_zeros(x.shape[0], lstm.hidden_size)
        return zeros, zeros
    return state[0][:, 0], state[1][:, 0]


def lstm_day_gradients(model: LSTM, x: torch.Tensor, state, days: torch.Tensor, bounds=(), block: int = 64):
    """The same-day input gradients of a one-layer LSTM model over [dynamic, static] inputs ``x``.

    With h_{t-1} and c_{t-1} fixed, the day's gates are a = W_ih x_t + W_hh h_{t-1} + b, and
    c_t = s(f) c_{t-1} + s(i) tanh(g), h_t = s(o) tanh(c_t). For each target's expected value
    E_j(h_t) (:func:`upscale.models.heads.expected_value`: the censored mean under a lower bound,
    else the mean), d E_j / d x_t is the chain rule through those element-wise gates, ending in
    one small product with W_ih's dynamic columns. The recurrence runs step by step over a block of
    ``block`` days, keeping the gates (memory stays bounded); the derivatives of the block's chosen
    days then take a few batched operations. A block without a chosen day runs the fused kernel.

    ``bounds``: per target, the lower bound in normalised units (None: unbounded); empty: none.
    """
    b, t, _ = x.shape
    wanted = torch.zeros(t, dtype=torch.bool)
    wanted[days] = True
    h, c = _initial_state(model.lstm, x, state)
    bounds = tuple(bounds) or (None,) * len(model.targets)
    parts = []
    with torch.no_grad():
        for d0 in range(0, t, block):
            sl = slice(d0, min(t, d0 + block))
            pick = wanted[sl]
            if not pick.any():
                _, (h, c) = _fused(model.lstm, x[:, sl], h, c)
                continue
            block_days, c = _recurrence(model.lstm, x[:, sl], h, c)
            h = block_days.h[-1]
            parts.append(_block_gradients(model, block_days.pick(pick), bounds))
    grads = (
        [torch.cat(p, dim=1) for p in zip(*parts)]
        if parts
        else [x.new_zeros(b, 0, model.n_dynamic)] * len(model.targets)
    )
    return grads, (h[:, None], c[:, None])


def _fused(lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """The fused LSTM over days [B, L] from (h, c) [B, H]: hidden states [B, L, H] and the final (h, c)."""
    hs, (h_n, c_n) = lstm(x, (h[None].contiguous(), c[None].contiguous()))
    return hs, (h_n[0], c_n[0])


class _Days(NamedTuple):
    """What the LSTM's recurrence computed on each day of a block, day-major: [L, B, ...] each."""

    gates: torch.Tensor  # the activated gates s(i), s(f), tanh(g), s(o), [L, B, 4H] in PyTorch's order
    c_before: torch.Tensor  # the cell state at the start of the day
    tanh_c: torch.Tensor  # tanh of the cell state at the end of the day
    h: torch.Tensor  # the hidden state at the end of the day

    def pick(self, wanted: torch.Tensor) -> _Days:
        return self if wanted.all() else _Days(*(a[wanted] for a in self))


def _recurrence(lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[_Days, torch.Tensor]:
    """Days [B, L] of the LSTM from (h, c) [B, H], step by step: the days' :class:`_Days`, and the cell
    state after the last day (the hidden state is ``days.h[-1]``).

    Day-major, so that each step reads and writes whole contiguous rows in place, with one
    temporary per step: at this size the step's overhead, not its arithmetic, is the cost.
    """
    size, (b, n, _) = lstm.hidden_size, x.shape
    gates = x.transpose(0, 1) @ lstm.weight_ih_l0.T + (lstm.bias_ih_l0 + lstm.bias_hh_l0)  # [L, B, 4H]
    cells = x.new_empty(n + 1, b, size)
    cells[0] = c
    tanh_c, hidden = x.new_empty(n, b, size), x.new_empty(n, b, size)
    w_hh = lstm.weight_hh_l0.T
    for step in range(n):
        a = gates[step].addmm_(h, w_hh)
        a[:, : 2 * size].sigmoid_()
        a[:, 2 * size : 3 * size].tanh_()
        a[:, 3 * size :].sigmoid_()
        i, f, g, o = a.chunk(4, dim=-1)
        torch.addcmul(i * g, f, cells[step], out=cells[step + 1])
        torch.tanh(cells[step + 1], out=tanh_c[step])
        h = torch.mul(o, tanh_c[step], out=hidden[step])
    return _Days(gates, cells[:-1], tanh_c, hidden), cells[-1]


def _block_gradients(model: LSTM, days: _Days, bounds: tuple) -> list[torch.Tensor]:
    """d E_j / d dynamic [B, n, Fd] per target, for the ``days`` of a block (their gates are overwritten)."""
    chain = _gate_chain(days)
    w_dyn = model.lstm.weight_ih_l0[:, : model.n_dynamic]  # [4H, Fd]
    if len(model.body) == 0:
        grads = _linear_head_gradients(model, chain, days.h, w_dyn, bounds)
    else:
        grads = [(chain * v.repeat(1, 1, 4)) @ w_dyn for v in _head_gradients(model, days.h, bounds)]
    return [g.transpose(0, 1) for g in grads]


def _gate_chain(days: _Days) -> torch.Tensor:
    """d h / d (gate pre-activations) per unit [n, B, 4H], written over the activated gates (in place:
    these element-wise passes over large arrays are most of the cost, so each allocation counts).

    With dc = s(o) (1 - tanh(c)^2) (d c -> d h): dc tanh(g) s'(i), dc c_before s'(f), dc s(i) tanh'(g)
    and tanh(c) s'(o), where s' = s (1 - s) and tanh' = 1 - tanh^2.
    """
    i, f, g, o = days.gates.chunk(4, dim=-1)
    dc = days.tanh_c.square().neg_().add_(1).mul_(o)
    o.mul_(torch.rsub(o, 1)).mul_(days.tanh_c)
    f.mul_(torch.rsub(f, 1)).mul_(days.c_before).mul_(dc)
    dc.mul_(i)  # dc s(i)
    g_part = g.square().neg_().add_(1).mul_(dc)
    i.neg_().add_(1).mul_(g).mul_(dc)  # (1 - s(i)) tanh(g) dc s(i)
    g.copy_(g_part)
    return days.gates


def _linear_head_gradients(model: LSTM, chain, h, w_dyn, bounds: tuple) -> list[torch.Tensor]:
    """:func:`_block_gradients` for a head right on h: each head output r is the weight row w_r times h,
    so d out_r / d x is one product for all days, and d E_j / d x is the sum of d out_r / d x times
    d E_j / d out_r over the target's own two outputs, its mean and its variance's raw output."""
    rows = model.head.linear.weight  # [2K, H]: the means, then the variances' raw outputs
    weights = torch.cat([w_dyn * row.repeat(4)[:, None] for row in rows], dim=1)
    per_output = (chain @ weights).split(model.n_dynamic, dim=-1)
    k = len(model.targets)
    if all(bound is None for bound in bounds):
        return list(per_output[:k])
    out = model.head.linear(h)
    heads = model.head.outputs(out)
    grads = []
    for j, (target, bound) in enumerate(zip(model.targets, bounds)):
        if bound is None:
            grads.append(per_output[j])
            continue
        d_mean, d_log_var = expected_value_slopes(*heads[target], bound)
        d_raw = d_log_var * model.head.log_var_slope(out[..., k + j])
        grads.append(torch.addcmul(d_mean[..., None] * per_output[j], d_raw[..., None], per_output[k + j]))
    return grads


def _head_gradients(model: LSTM, h: torch.Tensor, bounds: tuple) -> list[torch.Tensor]:
    """d E_j / d h for each target, shaped like ``h``, through the dense body and the head."""
    with torch.enable_grad():
        hh = h.detach().requires_grad_(True)
        outputs = model.head(model.body(hh))
        expected = [expected_value(*outputs[t], bound).sum() for t, bound in zip(model.targets, bounds)]
        last = len(expected) - 1
        return [torch.autograd.grad(e, hh, retain_graph=k < last)[0] for k, e in enumerate(expected)]


class _Mask(nn.Module):
    """A fixed 0/1 mask on a weight (a parametrization): masked entries stay zero and get no gradient."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


@register("ealstm")
class EALSTM(LSTM):
    """Entity-aware LSTM (Kratzert et al. 2019): the static predictors alone set the input gate.

    Implemented as a plain LSTM over [dynamic, static] whose weights are masked so that the
    input gate sees only the static predictors (no dynamic inputs, no recurrence: it is
    constant in time), while the forget and output gates and the cell update see only the
    dynamic predictors and the previous hidden state. This runs on PyTorch's fused LSTM
    kernels, several times faster than a step-by-step Python loop.
    """

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        targets: list[str],
        hidden: list[int] = (64,),
        dropout: float = 0.0,
        **context,
    ):
        super().__init__(n_dynamic, n_static, targets, hidden, dropout)
        size = hidden[0]
        mask_ih = torch.ones(4 * size, n_dynamic + n_static)
        mask_ih[:size, :n_dynamic] = 0  # input gate: static only
        mask_ih[size:, n_dynamic:] = 0  # forget, cell, output: dynamic only
        mask_hh = torch.ones(4 * size, size)
        mask_hh[:size] = 0
        with torch.no_grad():  # forget-gate bias 3: remember by default
            self.lstm.bias_ih_l0[size : 2 * size].fill_(3.0)
            self.lstm.bias_hh_l0[size : 2 * size].fill_(0.0)
        parametrize.register_parametrization(self.lstm, "weight_ih_l0", _Mask(mask_ih))
        parametrize.register_parametrization(self.lstm, "weight_hh_l0", _Mask(mask_hh))
