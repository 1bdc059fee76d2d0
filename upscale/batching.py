"""Training arrays: the sites' predictors and targets, normalised tensors, and one epoch's mini-batches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import xarray as xr

from upscale.encoding import Normaliser, complete_predictors


@dataclass
class SiteData:
    """Training arrays of S sites over T days, canonical units."""

    sites: np.ndarray  # [S] ids
    dynamic: np.ndarray  # [S, T, Fd]
    static: np.ndarray  # [S, Fs]
    targets: np.ndarray  # [S, T, K]
    target_names: list[str]
    dynamic_names: list[str] = field(default_factory=list)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, dynamic_names: list[str], targets: list[str]) -> SiteData:
        """Arrays from an extracted site Dataset (see :func:`upscale.features.extract_sites`)."""
        dyn = np.stack([ds[v].values for v in dynamic_names], axis=-1).astype("float32")
        tgt = np.stack([ds[t].values for t in targets], axis=-1).astype("float32")
        sites = np.array([str(s) for s in ds.site.values])  # Zarr v3 strings come back as StringDType
        return cls(sites, dyn, ds["static"].values.astype("float32"), tgt, list(targets), list(dynamic_names))

    def subset(self, idx: np.ndarray) -> SiteData:
        return SiteData(
            self.sites[idx],
            self.dynamic[idx],
            self.static[idx],
            self.targets[idx],
            self.target_names,
            self.dynamic_names,
        )


@dataclass
class Tensors:
    """Normalised arrays of some sites: predictors NaN -> 0 (the mean), targets NaN where unusable."""

    dynamic: torch.Tensor  # [S, T, Fd]
    static: torch.Tensor  # [S, Fs]
    targets: torch.Tensor  # [S, T, K]
    scale: torch.Tensor  # [S, K] per-site sd of the normalised targets

    @classmethod
    def of(cls, data: SiteData, norm: Normaliser, device: str) -> Tensors:
        dyn, stat, y = norm.dynamic(data.dynamic), norm.static(data.static), norm.targets(data.targets)
        complete = complete_predictors(dyn, stat)
        y = np.where(complete[..., None], y, np.nan).astype("float32")
        with np.errstate(all="ignore"):
            scale = np.nan_to_num(np.nanstd(y, axis=1), nan=1.0).astype("float32")
        arrays = (np.nan_to_num(dyn), np.nan_to_num(stat), y, scale)
        return cls(*(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays))

    def days(self) -> Tensors:
        """Every site-day with an observation as a sequence of length 1 (for per-day models)."""
        s_idx, t_idx = torch.nonzero(torch.isfinite(self.targets).any(-1), as_tuple=True)
        return Tensors(
            self.dynamic[s_idx, t_idx][:, None],
            self.static[s_idx],
            self.targets[s_idx, t_idx][:, None],
            self.scale[s_idx],
        )


def sequence_windows(
    n_sites: int, n_steps: int, length: int, warmup: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows for one epoch: (site index, start) pairs covering each series about once.

    Each site gets ceil(n_steps / (length - warmup)) windows at uniformly random starts, so
    every day falls, on average, about once in the loss-carrying part of a window.
    """
    per_site = -(-n_steps // max(length - warmup, 1)) if n_steps > length else 1
    sites = torch.arange(n_sites).repeat_interleave(per_site)
    starts = torch.randint(0, n_steps - length + 1, (sites.numel(),), generator=gen)
    return sites, starts


def epoch_batches(data: Tensors, sequential: bool, cfg, gen: torch.Generator):
    """One epoch of mini-batches (dynamic, static, targets, scale) and the warm-up steps of each."""
    if not sequential:
        order = torch.randperm(len(data.dynamic), generator=gen).to(data.dynamic.device)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            yield data.dynamic[idx], data.static[idx], data.targets[idx], data.scale[idx]
        return
    n_steps = data.dynamic.shape[1]
    length = min(cfg.sequence_length, n_steps)
    sites, starts = sequence_windows(len(data.dynamic), n_steps, length, cfg.warmup, gen)
    order = torch.randperm(len(sites), generator=gen)
    steps = torch.arange(length)
    for start in range(0, len(order), cfg.windows_per_batch):
        pick = order[start : start + cfg.windows_per_batch]
        s = sites[pick].to(data.dynamic.device)
        t = (starts[pick][:, None] + steps[None, :]).to(data.dynamic.device)
        yield data.dynamic[s[:, None], t], data.static[s], data.targets[s[:, None], t], data.scale[s]


def warmup_steps(sequential: bool, cfg, n_steps: int) -> int:
    """Leading steps without loss: cfg.warmup for sequence models (at most a third of a window), else 0."""
    if not sequential:
        return 0
    return min(cfg.warmup, min(cfg.sequence_length, n_steps) // 3)
