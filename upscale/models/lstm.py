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
