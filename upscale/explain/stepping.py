"""Running models of the model protocol one day at a time, keeping every day's state.

Sequential models return their state after the last step (a tuple of tensors, batch first);
feeding days one by one and handing the state on is exactly one pass over the series. The
states of every day let explanations restart a model from any day (memory effects) or read
its cells (cell states).
"""

from __future__ import annotations

import torch


def states_after(model, dynamic: torch.Tensor, static: torch.Tensor, state=None) -> tuple[torch.Tensor, ...]:
    """The model's state after each day.

    Parameters
    ----------
    model : upscale.models.base.FluxModel
        A sequential model.
    dynamic : torch.Tensor
        [B, T, Fd] normalised inputs.
    static : torch.Tensor
        [B, Fs] normalised static inputs.
    state : tuple of torch.Tensor, optional
        The state before the first day (None: a fresh start).

    Returns
    -------
    tuple of torch.Tensor
        One tensor per state component, [B, T, ...]: element [:, t] is the state after day t.
    """
    if hasattr(model, "states"):  # a model that knows a faster exact way (the LSTM family)
        return model.states(dynamic, static, state)
    steps = []
    with torch.no_grad():
        for t in range(dynamic.shape[1]):
            _, state = model(dynamic[:, t : t + 1], static, state)
            steps.append(state)
    return tuple(torch.stack([s[i] for s in steps], dim=1) for i in range(len(steps[0])))


def zero_state(state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """A fresh state of the same shapes (for the LSTM-type models zeros are a fresh start)."""
    return tuple(torch.zeros_like(s) for s in state)
