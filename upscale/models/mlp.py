"""A per-day multilayer perceptron (no memory)."""

from __future__ import annotations

import torch
from torch import nn

from upscale.models.base import FluxModel
from upscale.models.heads import GaussianHead
from upscale.models.registry import register


@register("mlp")
class MLP(FluxModel):
    """Each day's dynamic predictors plus the static ones -> Gaussian per target."""

    sequential = False

    def __init__(self, n_dynamic: int, n_static: int, targets: list[str],
                 hidden: list[int] = (64, 64), dropout: float = 0.0):
        super().__init__(n_dynamic, n_static, targets)
        layers, width = [], n_dynamic + n_static
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = GaussianHead(width, targets)

    def forward(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        b, t, _ = dynamic.shape
        x = torch.cat([dynamic, static[:, None, :].expand(b, t, static.shape[-1])], dim=-1)
        return self.head(self.body(x)), None
