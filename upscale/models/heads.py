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
        return self.outputs(self.linear(h))

    def outputs(self, out: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The (mean, log-variance) per target from the linear layer's outputs [..., 2K]."""
        k = len(self.targets)
        mean, raw = out[..., :k], out[..., k:]
        # a soft clamp keeps gradients alive while the variance stays in a sane range
        log_var = LOG_VAR_MIN + (LOG_VAR_MAX - LOG_VAR_MIN) * torch.sigmoid(raw)
        return {t: (mean[..., i], log_var[..., i]) for i, t in enumerate(self.targets)}

    @staticmethod
    def log_var_slope(raw: torch.Tensor) -> torch.Tensor:
        """d log-variance / d raw output, elementwise (the soft clamp's derivative)."""
        s = torch.sigmoid(raw)
        return (LOG_VAR_MAX - LOG_VAR_MIN) * s * (1 - s)


def expected_value(mean: torch.Tensor, log_var: torch.Tensor, bound: float | None) -> torch.Tensor:
    """The mean of the flux the head predicts: ``E[max(bound, Z)]``, ``Z ~ N(mean, exp(log_var))``.

    The torch twin of :func:`upscale.distribution.censored_moments` (differentiable, in the units of
    ``mean``); with ``bound`` None, ``mean`` itself. The product's mean is the members' average of it,
    so its derivative is what a sensitivity of the product is.
    """
    if bound is None:
        return mean
    sd, a, density = _standardised(mean, log_var, bound)
    below = torch.special.ndtr(a)
    return bound * below + mean * (1.0 - below) + sd * density


def expected_value_slopes(
    mean: torch.Tensor, log_var: torch.Tensor, bound: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The derivatives of :func:`expected_value` in ``mean`` and in ``log_var``, elementwise.

    With ``a = (bound - mean) / sd``: d E / d mean = P(Z > bound) = Phi(-a), and
    d E / d log_var = phi(a) sd / 2 (d E / d sd = phi(a)); unbounded: 1 and 0.
    """
    if bound is None:
        return torch.ones_like(mean), torch.zeros_like(mean)
    sd, a, density = _standardised(mean, log_var, bound)
    return torch.special.ndtr(-a), 0.5 * density * sd


def _standardised(mean: torch.Tensor, log_var: torch.Tensor, bound: float):
    """sd, the bound in sd units a = (bound - mean) / sd, and the standard normal density phi(a)."""
    sd = torch.exp(0.5 * log_var)
    a = (bound - mean) / sd
    return sd, a, torch.exp(-0.5 * a * a) * 0.3989422804014327  # 1 / sqrt(2 pi)


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
