"""Ensemble members as one model: their weights stacked on a leading member axis, one pass for all.

A per-day MLP is batched with ``torch.func.vmap`` over ``functional_call``. PyTorch's LSTM has no
batching rule (``vmap`` refuses ``aten::lstm``), so the recurrence of stacked LSTM members is
written here: one ``baddbmm`` per day for all members, with a hand-written backward pass through
time (autograd over a per-day Python loop costs several times more). The dense body and the head
after the LSTM are batched with ``vmap`` again. The members' results equal their separate
forward passes within float tolerance.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.utils import parametrize

from upscale.models.heads import with_static
from upscale.models.lstm import EALSTM, LSTM
from upscale.models.mlp import MLP

STACKABLE = (MLP, LSTM, EALSTM)


def stackable(members: list[nn.Module]) -> bool:
    """Whether members can run as one stacked model: the same class (MLP, LSTM, EA-LSTM) and shapes, no dropout."""
    if not members or any(type(m) not in STACKABLE or type(m) is not type(members[0]) for m in members):
        return False
    if any(isinstance(x, nn.Dropout) and x.p > 0 for m in members for x in m.modules()):
        return False
    shapes = [[tuple(p.shape) for p in m.parameters()] for m in members]
    return all(s == shapes[0] for s in shapes)


def stack_parameters(members: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Each parameter name -> the members' values stacked on a new first axis (detached copies)."""
    names = [name for name, _ in members[0].named_parameters()]
    params = [dict(m.named_parameters()) for m in members]
    return {name: torch.stack([p[name].detach() for p in params]) for name in names}


def unstack_into(params: dict[str, torch.Tensor], index: int, member: nn.Module) -> nn.Module:
    """Copy member ``index`` of stacked ``params`` into ``member``'s own parameters."""
    with torch.no_grad():
        for name, p in member.named_parameters():
            p.copy_(params[name][index])
    return member


class Stacked:
    """The forward pass of M members of one class at once, from stacked parameters.

    ``template`` is one of the members: it gives the structure (the other members' weights are
    passed to :meth:`forward`).
    """

    def __init__(self, template: nn.Module):
        self.template = template
        self.sequential = template.sequential
        self.targets = template.targets

    def forward(self, params: dict, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        """Outputs of all members: target -> (mean, log_var) [M, B, T], and the state.

        ``dynamic`` [M, B, T, Fd] and ``static`` [M, B, Fs] (each member its own inputs), or
        [B, T, Fd] and [B, Fs] (the same inputs for all). ``state`` is None or (h, c) [M, B, 1, H].
        """
        shared = dynamic.dim() == 3
        if not self.sequential:
            call = vmap(self._call_mlp, in_dims=(0, None, None) if shared else (0, 0, 0))
            return call(params, dynamic, static), None
        x = with_static(dynamic, static) if shared else vmap(with_static)(dynamic, static)
        h_all, h_n, c_n = self._recurrence(params, x, shared, state)
        head = {k[len("body.") :]: v for k, v in params.items() if k.startswith("body.")}
        head.update({k: v for k, v in params.items() if k.startswith("head.")})
        return vmap(self._call_head)(head, h_all), (h_n[:, :, None], c_n[:, :, None])

    def _call_mlp(self, params, dynamic, static):
        return functional_call(self.template, params, (dynamic, static))[0]

    def _call_head(self, params, h):
        body = {k: v for k, v in params.items() if not k.startswith("head.")}
        head = {k[len("head.") :]: v for k, v in params.items() if k.startswith("head.")}
        features = functional_call(self.template.body, body, (h,)) if body else h
        return functional_call(self.template.head, head, (features,))

    def _recurrence(self, params, x, shared: bool, state):
        """h after every step [M, B, T, H], and the final (h, c) [M, B, H]."""
        w_ih, w_hh = self._weight(params, "weight_ih_l0"), self._weight(params, "weight_hh_l0")
        bias = params["lstm.bias_ih_l0"] + params["lstm.bias_hh_l0"]
        order = _gate_order(w_hh.shape[-1], x.device)  # (o, i, f, g): sigmoids in one block, d c -> (i, f, g) in one
        w_ih, w_hh, bias = w_ih[:, order], w_hh[:, order], bias[:, order]
        equation = "btf,mgf->mtbg" if shared else "mbtf,mgf->mtbg"  # time-major: each day's slice is contiguous
        x_part = (torch.einsum(equation, x, w_ih) + bias[:, None, None]).contiguous()
        m, _, b, _ = x_part.shape
        size = w_hh.shape[-1]
        h0 = x.new_zeros(m, b, size) if state is None else state[0][:, :, 0].to(x.dtype)
        c0 = x.new_zeros(m, b, size) if state is None else state[1][:, :, 0].to(x.dtype)
        h_all, h_n, c_n = _StackedLSTM.apply(x_part, w_hh, h0, c0)
        return h_all.transpose(1, 2), h_n, c_n

    def _weight(self, params, name: str) -> torch.Tensor:
        weight = params.get(f"lstm.{name}")
        if weight is not None:
            return weight
        weight = params[f"lstm.parametrizations.{name}.original"]
        if parametrize.is_parametrized(self.template.lstm, name):
            weight = weight * getattr(self.template.lstm.parametrizations, name)[0].mask
        return weight


def _gate_order(size: int, device) -> torch.Tensor:
    """Rows of PyTorch's gate order (i, f, g, o) rearranged as (o, i, f, g)."""
    i, f, g, o = torch.arange(4 * size, device=device).split(size)
    return torch.cat([o, i, f, g])


class _StackedLSTM(torch.autograd.Function):
    """The LSTM recurrence of M members, gates in (o, i, f, g) order, with backpropagation through time.

    Inputs: the input part of the gates with the bias ``x_part`` [M, T, B, 4H], the recurrent
    weights ``w_hh`` [M, 4H, H], the initial state ``h0``, ``c0`` [M, B, H]. Outputs: h after
    every step [M, T, B, H] and the final h and c.
    """

    @staticmethod
    def forward(ctx, x_part, w_hh, h0, c0):
        m, t, b, four = x_part.shape
        size = four // 4
        gates = torch.empty_like(x_part)
        cells = x_part.new_empty(m, t, b, size)
        h_all = x_part.new_empty(m, t, b, size)
        w_t = w_hh.transpose(1, 2)
        h, c = h0, c0
        for step in range(t):
            a = torch.baddbmm(x_part[:, step], h, w_t, out=gates[:, step])
            a[..., : 3 * size].sigmoid_()
            a[..., 3 * size :].tanh_()
            o, i, f, g = a.split(size, dim=-1)
            c = torch.addcmul(f * c, i, g, out=cells[:, step])
            h = torch.mul(o, torch.tanh(c), out=h_all[:, step])
        ctx.save_for_backward(gates, cells, h_all, w_hh, h0, c0)
        return h_all, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_h_all, d_h_n, d_c_n):
        gates, cells, h_all, w_hh, h0, c0 = ctx.saved_tensors
        m, t, b, four = gates.shape
        size = four // 4
        o, i, f, g = gates.split(size, dim=-1)
        c_prev = torch.cat([c0[:, None], cells[:, :-1]], dim=1)
        tanh_c = torch.tanh(cells)
        # the per-step factors that do not depend on the incoming gradients, for all steps at once
        to_cell = o * (1 - tanh_c**2)  # d h -> d c
        d_o = tanh_c * o * (1 - o)  # d h -> d (o pre-activation)
        from_cell = torch.cat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g**2)], dim=-1)  # d c -> d (i, f, g)
        d_x = torch.empty_like(gates)
        d_h = x_zero(d_h_n, h0)
        d_c = x_zero(d_c_n, c0)
        for step in range(t - 1, -1, -1):
            d_h = d_h + d_h_all[:, step]
            d_c = torch.addcmul(d_c, d_h, to_cell[:, step])
            out = d_x[:, step]
            torch.mul(d_o[:, step], d_h, out=out[..., :size])
            torch.mul(from_cell[:, step].view(m, b, 3, size), d_c[:, :, None], out=out[..., size:].view(m, b, 3, size))
            d_c = d_c * f[:, step]
            d_h = torch.bmm(out, w_hh)
        h_prev = torch.cat([h0[:, None], h_all[:, :-1]], dim=1)
        d_w_hh = torch.bmm(d_x.reshape(m, t * b, four).transpose(1, 2), h_prev.reshape(m, t * b, size))
        return d_x, d_w_hh, d_h, d_c


def x_zero(grad, like: torch.Tensor) -> torch.Tensor:
    """An incoming gradient, or zeros where autograd passes None."""
    return torch.zeros_like(like) if grad is None else grad
