"""Building blocks: dense stacks and the Gaussian (mean, log-variance) head per target."""

from __future__ import annotations

import torch
from torch import nn

LOG_VAR_MIN, LOG_VAR_MAX = -9.0, 5.0


class GaussianHead(nn.Module):
    """Maps features [..., H] to a mean and a bounded log-variance per target."""

    def __init__(self, n_in: int, targets: list[str]):
        super().__init__()
        self.targets = list(targets)
        self.linear = nn.Linear(n_in, 2 * len(self.targets))

    def forward(self, h: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = self.linear(h)
        k = len(self.targets)
        mean, raw = out[..., :k], out[..., k:]
        # a soft clamp keeps gradients alive while the variance stays in a sane range
        log_var = LOG_VAR_MIN + (LOG_VAR_MAX - LOG_VAR_MIN) * torch.sigmoid(raw)
        return {t: (mean[..., i], log_var[..., i]) for i, t in enumerate(self.targets)}


def dense_stack(width: int, hidden: list[int], dropout: float) -> tuple[nn.Sequential, int]:
    """SiLU layers of the given widths after an input of ``width``; returns (stack, output width)."""
    layers = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.SiLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers), width


def with_static(dynamic: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    """Append the static predictors [B, Fs] to every step of the dynamic ones [B, T, Fd]."""
    b, t, _ = dynamic.shape
    return torch.cat([dynamic, static[:, None, :].expand(b, t, static.shape[-1])], dim=-1)
