"""A per-day multilayer perceptron (no memory)."""

from __future__ import annotations

import torch

from upscale.models.base import FluxModel
from upscale.models.heads import GaussianHead, dense_stack, with_static
from upscale.models.registry import register


@register("mlp")
class MLP(FluxModel):
    """Each day's dynamic predictors plus the static ones -> Gaussian per target."""

    sequential = False

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        targets: list[str],
        hidden: list[int] = (64, 64),
        dropout: float = 0.0,
        **context,
    ):
        super().__init__(n_dynamic, n_static, targets)
        self.body, width = dense_stack(n_dynamic + n_static, list(hidden), dropout)
        self.head = GaussianHead(width, targets)

    def forward(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        x = with_static(dynamic, static)
        return self.head(self.body(x)), None
