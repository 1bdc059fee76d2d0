"""Running models one day at a time: the states after every day equal those of full passes."""

from __future__ import annotations

import pytest
import torch

from tests.explain.common import N_STATIC, NAMES, random_lstm
from upscale.explain.stepping import states_after, zero_state


class RunningSum(torch.nn.Module):
    """A model without a ``states`` method whose state is the running sum of its inputs, [B, Fd]."""

    sequential = True

    def forward(self, dynamic, static, state=None):
        total = dynamic.cumsum(dim=1) + (0 if state is None else state[0][:, None])
        return {"gpp": (total.sum(-1), torch.zeros_like(total[..., 0]))}, (total[:, -1],)


class Stepped(torch.nn.Module):
    """A model hidden behind a proxy without ``states``: :func:`states_after` must step it day by day."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, dynamic, static, state=None):
        return self.model(dynamic, static, state)


def test_running_sum_states_by_hand():
    dynamic = torch.tensor([[[1.0, 0.0], [2.0, 1.0], [3.0, -1.0]]])  # [B=1, T=3, Fd=2]
    static = torch.zeros(1, 0)
    (states,) = states_after(RunningSum(), dynamic, static)
    assert states.shape == (1, 3, 2)
    torch.testing.assert_close(states[0], torch.tensor([[1.0, 0.0], [3.0, 1.0], [6.0, 0.0]]))
    (after,) = states_after(RunningSum(), dynamic, static, (torch.tensor([[10.0, 20.0]]),))
    torch.testing.assert_close(after[0], states[0] + torch.tensor([10.0, 20.0]))


@pytest.mark.parametrize("proxy", [False, True], ids=["lstm-states", "day-by-day"])
def test_states_after_every_day_equal_full_passes(proxy):
    lstm = random_lstm(3)
    model = Stepped(lstm) if proxy else lstm
    torch.manual_seed(0)
    dynamic, static = torch.randn(2, 9, len(NAMES)), torch.randn(2, N_STATIC)
    states = states_after(model, dynamic, static)
    with torch.no_grad():
        for t in (0, 4, 8):
            for mine, reference in zip(states, lstm(dynamic[:, : t + 1], static)[1]):
                torch.testing.assert_close(mine[:, t], reference, rtol=1e-5, atol=1e-6)
        start = lstm(dynamic[:, :4], static)[1]  # the state after day 3 hands on to the rest
    for rest, whole in zip(states_after(model, dynamic[:, 4:], static, start), states):
        torch.testing.assert_close(rest, whole[:, 4:], rtol=1e-5, atol=1e-6)


def test_zero_state_is_a_fresh_state_of_the_same_shapes():
    state = (torch.ones(2, 1, 4), torch.full((2, 1, 4), 3.0, dtype=torch.float64))
    fresh = zero_state(state)
    assert [s.shape for s in fresh] == [s.shape for s in state]
    assert [s.dtype for s in fresh] == [torch.float32, torch.float64]
    assert all(bool((s == 0).all()) for s in fresh)
    assert bool((state[1] == 3.0).all())  # the original is untouched
