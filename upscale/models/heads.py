"""Output heads: a Gaussian (mean, log-variance) per target."""

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
