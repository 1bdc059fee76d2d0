"""Sequence models with memory: the LSTM, the EA-LSTM's static input gate, and per-day states."""

from __future__ import annotations

import pytest
import torch

from upscale.models.lstm import EALSTM


def test_lstm_remembers_earlier_days(make_model, early_change):
    out, changed_out = early_change(make_model("lstm").eval())  # only days 0-4 differ
    assert not torch.allclose(out[:, 10:], changed_out[:, 10:])


def test_lstm_dense_layers_after_the_state(make_model):
    model = make_model("lstm", hidden=(8, 5))
    assert (model.lstm.input_size, model.lstm.hidden_size) == (6 + 4, 8)
    assert model.head.linear.in_features == 5


def reference_ealstm(model: EALSTM, dynamic, static):
    """EA-LSTM step by step (Kratzert et al. 2019, eq. 4-9) from the model's own weights."""
    lstm, size = model.lstm, model.lstm.hidden_size
    w_ih, w_hh = lstm.weight_ih_l0, lstm.weight_hh_l0
    b = lstm.bias_ih_l0 + lstm.bias_hh_l0
    w_ii, w_f, w_g, w_o = w_ih.split(size)
    u_f, u_g, u_o = w_hh[size:].split(size)
    b_i, b_f, b_g, b_o = b.split(size)
    fd = dynamic.shape[-1]
    i = torch.sigmoid(static @ w_ii[:, fd:].T + b_i)
    h = c = torch.zeros(dynamic.shape[0], size)
    hs = []
    for t in range(dynamic.shape[1]):
        x = dynamic[:, t]
        f = torch.sigmoid(x @ w_f[:, :fd].T + h @ u_f.T + b_f)
        g = torch.tanh(x @ w_g[:, :fd].T + h @ u_g.T + b_g)
        o = torch.sigmoid(x @ w_o[:, :fd].T + h @ u_o.T + b_o)
        c = f * c + i * g
        h = o * torch.tanh(c)
        hs.append(h)
    return torch.stack(hs, dim=1)


def test_ealstm_equals_its_equations_and_keeps_its_gate_static_after_training(make_model, make_inputs):
    model = make_model("ealstm")
    dyn, stat = make_inputs(b=4, t=12)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # masked weights must stay masked through optimiser steps
        loss = sum(m.pow(2).mean() for m, _ in model(dyn, stat)[0].values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        h, _ = model.lstm(torch.cat([dyn, stat[:, None].expand(-1, 12, -1)], dim=-1))
        expected = reference_ealstm(model, dyn, stat)
    torch.testing.assert_close(h, expected, rtol=1e-5, atol=1e-6)
    size, fd = model.lstm.hidden_size, model.n_dynamic
    w_ih, w_hh = model.lstm.weight_ih_l0.detach(), model.lstm.weight_hh_l0.detach()
    assert float(w_ih[:size, :fd].abs().max()) == 0.0
    assert float(w_hh[:size].abs().max()) == 0.0


def test_ealstm_starts_with_forget_bias_3_and_static_only_input_gate(make_model):
    model = make_model("ealstm")
    size, fd = model.lstm.hidden_size, model.n_dynamic
    forget = (model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0).detach()[size : 2 * size]
    assert torch.equal(forget, torch.full((size,), 3.0))
    w_ih = model.lstm.weight_ih_l0.detach()
    assert float(w_ih[size:, fd:].abs().max()) == 0.0  # forget, cell and output gates ignore the statics
    assert float(w_ih[:size, fd:].abs().min()) > 0.0  # the input gate does see them


@pytest.mark.parametrize("kind", ["lstm", "ealstm"])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_lstm_states_are_the_states_after_every_day(kind, with_initial_state, make_model, make_inputs):
    model = make_model(kind).eval()
    dyn, stat = make_inputs(b=2, t=6)
    state = model(*make_inputs(b=2, t=4, seed=1))[1] if with_initial_state else None
    with torch.no_grad():
        h, c = model.states(dyn, stat, state)
        assert h.shape == c.shape == (2, 6, 1, model.lstm.hidden_size)
        for t in range(6):  # the state a fresh forward pass over days 0..t ends in
            h_t, c_t = model(dyn[:, : t + 1], stat, state)[1]
            torch.testing.assert_close(h[:, t], h_t, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(c[:, t], c_t, rtol=1e-5, atol=1e-6)
