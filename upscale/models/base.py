"""The model protocol.

A model is a ``torch.nn.Module`` with
``forward(dynamic[B, T, Fd], static[B, Fs], state=None) -> (outputs, state)`` where
``outputs`` maps each target to ``(mean[B, T], log_var[B, T])`` in normalised units.
Non-sequential models ignore ``state`` and return None; sequential ones return the
state after the last step, so that chunked inference passing the state on equals
one pass over the whole series.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class FluxModel(nn.Module):
    """Base class of all models; subclasses set ``sequential`` and implement ``forward``."""

    sequential: bool = False
    #: entries ``hidden`` needs at least (sequence models take their state size from ``hidden[0]``)
    min_hidden: ClassVar[int] = 0
    # process parameters the model returns by ``forward_with_parameters`` (hybrid models):
    # name -> {"units", "long_name", "valid_min", "valid_max"}
    parameter_info: ClassVar[dict[str, dict]] = {}
    #: whether outputs can be differentiated with respect to the inputs (integrated gradients and
    #: sensitivity maps need it; boosted trees are piecewise constant)
    differentiable: ClassVar[bool] = True

    def __init__(self, n_dynamic: int, n_static: int, targets: list[str]):
        super().__init__()
        self.n_dynamic = n_dynamic
        self.n_static = n_static
        self.targets = list(targets)

    def forward(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):  # pragma: no cover
        raise NotImplementedError
