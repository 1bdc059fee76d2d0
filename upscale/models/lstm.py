"""Sequence models with memory: LSTM and the entity-aware EA-LSTM (Kratzert et al. 2019).

Both carry their state as a tuple of tensors with the batch (pixel) dimension first, so
that the ensemble can slice and stitch states of pixel batches, and chunked inference that
hands the state on equals one pass over the whole series.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from upscale.models.base import FluxModel
from upscale.models.heads import GaussianHead, dense_stack, with_static
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

    def day_gradients(self, dynamic: torch.Tensor, static: torch.Tensor, state, days: torch.Tensor):
        """Same-day derivatives d mean_j(t) / d dynamic(t), the state at the start of day t held fixed.

        Exact, through the LSTM cell's gates in closed form (see :func:`lstm_day_gradients`):
        the cost of about two forward passes, where autograd through single-day steps costs six.

        Returns
        -------
        (list of torch.Tensor, tuple)
            Per target, [B, len(days), Fd] in normalised units; and the state after the last day.
        """
        return lstm_day_gradients(self, with_static(dynamic, static), state, days)


def lstm_states(lstm: nn.LSTM, x: torch.Tensor, state=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden and cell states of a one-layer batch-first LSTM after every step, [B, T, 1, H] each.

    The hidden states come from one fused pass; the cell states follow from them exactly through
    the gates, c_t = f_t c_{t-1} + i_t g_t, a cheap element-wise recurrence. This is what
    explanations need (the state before every day) at the cost of about one forward pass,
    instead of a Python loop over the days through the fused kernel.
    """
    with torch.no_grad():
        hc = None if state is None else tuple(s.transpose(0, 1).contiguous() for s in state)
        h, _ = lstm(x, hc)
        b, t, size = h.shape
        h_prev = x.new_zeros(b, size) if state is None else state[0][:, 0]
        c_prev = x.new_zeros(b, size) if state is None else state[1][:, 0]
        w_ih, w_hh = lstm.weight_ih_l0.T, lstm.weight_hh_l0.T
        bias = lstm.bias_ih_l0 + lstm.bias_hh_l0
        x_steps, h_steps = x.transpose(0, 1).contiguous(), h.transpose(0, 1).contiguous()  # day-major, cache-sized
        cells = []
        for step in range(t):
            gates = torch.addmm(bias, x_steps[step], w_ih).addmm_(h_prev, w_hh)
            i, f, g, _ = gates.chunk(4, dim=-1)
            c_prev = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
            cells.append(c_prev)
            h_prev = h_steps[step]
        c = torch.stack(cells, dim=1) if cells else torch.empty_like(h)
    return h[:, :, None, :], c[:, :, None, :]


def lstm_day_gradients(model: LSTM, x: torch.Tensor, state, days: torch.Tensor, block: int = 64):
    """The same-day input gradients of a one-layer LSTM model over [dynamic, static] inputs ``x``.

    With h_{t-1} and c_{t-1} fixed, the day's gates are a = W_ih x_t + W_hh h_{t-1} + b, and
    c_t = s(f) c_{t-1} + s(i) tanh(g), h_t = s(o) tanh(c_t). For each target mean m_j(h_t) (the
    dense body and head, differentiated by autograd on their own), d m_j / d x_t is the chain rule
    through those element-wise gates, ending in one small product with W_ih's dynamic columns.
    The recurrence runs once, step by step, keeping the gates of a block of ``block`` days (memory
    stays bounded); the derivatives of the block's chosen days then take a few batched operations.
    """
    b, t, _ = x.shape
    wanted = torch.zeros(t, dtype=torch.bool)
    wanted[days] = True
    size = model.lstm.hidden_size
    h = x.new_zeros(b, size) if state is None else state[0][:, 0]
    c = x.new_zeros(b, size) if state is None else state[1][:, 0]
    parts = []
    with torch.no_grad():
        for d0 in range(0, t, block):
            sl = slice(d0, min(t, d0 + block))
            gates, c_before, h, c = _recurrence(model.lstm, x[:, sl], h, c)
            pick = wanted[sl]
            if pick.any():
                parts.append(_block_gradients(model, *(a if pick.all() else a[:, pick] for a in (gates, c_before))))
    grads = (
        [torch.cat(p, dim=1) for p in zip(*parts)]
        if parts
        else [x.new_zeros(b, 0, model.n_dynamic)] * len(model.targets)
    )
    return grads, (h[:, None], c[:, None])


def _recurrence(lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """Days [B, L] of the LSTM from (h, c): the activated gates s(i), s(f), tanh(g), s(o) [B, L, 4H] in
    PyTorch's order, the cell state before each day [B, L, H], and the state (h, c) after the last."""
    size = lstm.hidden_size
    x_part = x @ lstm.weight_ih_l0.T + (lstm.bias_ih_l0 + lstm.bias_hh_l0)
    gates = torch.empty_like(x_part)
    c_before = x.new_empty(*x.shape[:2], size)
    w_hh = lstm.weight_hh_l0.T
    for step in range(x.shape[1]):
        a = torch.addmm(x_part[:, step], h, w_hh)
        a[:, : 2 * size].sigmoid_()
        a[:, 2 * size : 3 * size].tanh_()
        a[:, 3 * size :].sigmoid_()
        i, f, g, o = a.chunk(4, dim=-1)
        c_before[:, step] = c
        c = f * c + i * g
        h = o * torch.tanh(c)
        gates[:, step] = a
    return gates, c_before, h, c


def _block_gradients(model: LSTM, gates: torch.Tensor, c_before: torch.Tensor) -> list[torch.Tensor]:
    """d mean_j / d dynamic [B, n, Fd] per target, for days of activated ``gates`` and cell states before."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = f * c_before + i * g
    tanh_c = torch.tanh(c)
    h = o * tanh_c
    dc = o * (1 - tanh_c**2)  # d c -> d h
    # d h / d (gate pre-activations), per unit; the target's d mean / d h multiplies it row by row
    chain = torch.cat(
        [dc * g * i * (1 - i), dc * c_before * f * (1 - f), dc * i * (1 - g**2), tanh_c * o * (1 - o)], -1
    )
    w_dyn = model.lstm.weight_ih_l0[:, : model.n_dynamic]  # [4H, Fd]
    if len(model.body) == 0:  # a linear head: d mean / d h is its weight row, the same for every day
        rows = model.head.linear.weight[: len(model.targets)]  # [K, H]
        weights = torch.cat([w_dyn * rows[j].repeat(4)[:, None] for j in range(len(model.targets))], dim=1)
        return list((chain @ weights).split(model.n_dynamic, dim=-1))
    return [(chain * v.repeat(1, 1, 4)) @ w_dyn for v in _head_gradients(model, h)]


def _head_gradients(model: LSTM, h: torch.Tensor) -> list[torch.Tensor]:
    """d mean_j / d h for each target, shaped like ``h``, through the dense body and the head."""
    with torch.enable_grad():
        hh = h.detach().requires_grad_(True)
        outputs = model.head(model.body(hh))
        means = [outputs[target][0].sum() for target in model.targets]
        return [torch.autograd.grad(m, hh, retain_graph=k < len(means) - 1)[0] for k, m in enumerate(means)]


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
