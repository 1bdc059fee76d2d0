"""What the memory and restart tests share: hand-made models whose memory is known, and their sites."""

from __future__ import annotations

import numpy as np
import torch

from upscale.encoding import Normaliser
from upscale.explain.context import SiteSet
from upscale.models.lstm import LSTM

NAMES = ["tas", "pr", "rsds"]
TARGETS = ["gpp", "et"]
N_SITES, N_DAYS, N_STATIC = 6, 300, 2
READ_COLUMN, READ_LAG = 1, 5


class ShiftRegister(torch.nn.Module):
    """gpp_t = x_{t-lag} of one column, et_t = 2 x_{t-lag}; the state is the last ``lag`` inputs [B, lag]."""

    sequential = True

    def __init__(self, column: int, lag: int):
        super().__init__()
        self.column, self.lag, self.targets = column, lag, list(TARGETS)

    def forward(self, dynamic, static, state=None):
        register = dynamic.new_zeros(dynamic.shape[0], self.lag) if state is None else state[0]
        sequence = torch.cat([register, dynamic[..., self.column]], dim=1)
        mean = sequence[:, : dynamic.shape[1]]
        outputs = {t: (mean * (i + 1), torch.zeros_like(mean)) for i, t in enumerate(self.targets)}
        return outputs, (sequence[:, -self.lag :],)


class PerDay(torch.nn.Module):
    """A per-day model without state: a fixed weighted sum of the day's inputs."""

    sequential = False

    def __init__(self, weights):
        super().__init__()
        self.weights, self.targets = torch.tensor(weights, dtype=torch.float32), list(TARGETS)

    def forward(self, dynamic, static, state=None):
        mean = (dynamic * self.weights).sum(-1) + static.sum(-1, keepdim=True)
        return {t: (mean * (i + 1), torch.zeros_like(mean)) for i, t in enumerate(self.targets)}, None


def identity_normaliser() -> Normaliser:
    """Normalised units are the physical ones."""
    k = len(TARGETS)
    return Normaliser([0.0] * len(NAMES), [1.0] * len(NAMES), [0.0] * N_STATIC, [1.0] * N_STATIC, [0.0] * k, [1.0] * k)


def make_sites(seed: int = 0, n_sites: int = N_SITES, n_days: int = N_DAYS) -> SiteSet:
    """Seasonal random predictors; the targets are column ``READ_COLUMN`` ``READ_LAG`` days before (et: twice)."""
    rng = np.random.default_rng(seed)
    day = np.arange(n_days)
    season = np.sin(2 * np.pi * day / 365.25)
    dynamic = (
        season[None, :, None] * rng.uniform(0.5, 1.5, (n_sites, 1, len(NAMES)))
        + rng.normal(0, 1, (n_sites, n_days, len(NAMES)))
    ).astype("float32")
    static = rng.normal(0, 1, (n_sites, N_STATIC)).astype("float32")
    shifted = np.full((n_sites, n_days), np.nan, "float32")
    shifted[:, READ_LAG:] = dynamic[:, :-READ_LAG, READ_COLUMN]
    targets = np.stack([shifted, 2 * shifted], axis=-1)
    time = np.datetime64("2018-01-01", "ns") + day.astype("timedelta64[D]")
    groups = {
        "igbp": np.array(["ENF", "GRA"] * (n_sites // 2)),
        "aridity": np.array(["dry"] * 2 + ["humid"] * (n_sites - 2)),
    }
    return SiteSet(
        np.array([f"S{i}" for i in range(n_sites)]),
        time,
        dynamic,
        static,
        targets,
        list(NAMES),
        {"pft": [0, 1]},
        list(TARGETS),
        groups,
    )


def random_lstm(seed: int) -> LSTM:
    """A seeded, untrained LSTM in eval mode."""
    torch.manual_seed(seed)
    return LSTM(len(NAMES), N_STATIC, TARGETS, hidden=[8]).eval()
