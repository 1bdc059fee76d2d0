"""Training: one member, an ensemble, and grouped leave-site-out cross-validation."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import xarray as xr

from upscale.ensemble import Ensemble
from upscale.features import Normaliser
from upscale.models.registry import build

log = logging.getLogger("upscale")


@dataclass
class SiteData:
    """Training arrays of S sites over T days, canonical units."""

    sites: np.ndarray  # [S] ids
    dynamic: np.ndarray  # [S, T, Fd]
    static: np.ndarray  # [S, Fs]
    targets: np.ndarray  # [S, T, K]
    target_names: list[str]

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, dynamic_names: list[str], targets: list[str]) -> SiteData:
        """Arrays from an extracted site Dataset (see :func:`upscale.features.extract_sites`)."""
        dyn = np.stack([ds[v].values for v in dynamic_names], axis=-1).astype("float32")
        tgt = np.stack([ds[t].values for t in targets], axis=-1).astype("float32")
        sites = np.array([str(s) for s in ds.site.values])  # Zarr v3 strings come back as StringDType
        return cls(sites, dyn, ds["static"].values.astype("float32"), tgt, list(targets))

    def subset(self, idx: np.ndarray) -> SiteData:
        return SiteData(self.sites[idx], self.dynamic[idx], self.static[idx], self.targets[idx], self.target_names)


def gaussian_nll(outputs: dict, y: torch.Tensor, targets: list[str]) -> torch.Tensor:
    """Gaussian negative log-likelihood summed over targets, averaged over finite observations only."""
    total = y.new_zeros(())
    for j, target in enumerate(targets):
        mu, log_var = outputs[target]
        obs = y[..., j]
        mask = torch.isfinite(obs)
        if mask.any():
            diff = obs[mask] - mu[mask]
            total = total + 0.5 * (log_var[mask] + diff ** 2 * torch.exp(-log_var[mask])).mean()
    return total


def _day_samples(data: SiteData, norm: Normaliser):
    """Flatten sites x days into per-day samples with complete predictors and at least one target."""
    dyn = norm.dynamic(data.dynamic)
    stat = norm.static(data.static)
    y = norm.targets(data.targets)
    ok = (np.isfinite(dyn).all(-1) & np.isfinite(stat).all(-1)[:, None] & np.isfinite(y).any(-1))
    s_idx, t_idx = np.nonzero(ok)
    return (torch.from_numpy(dyn[s_idx, t_idx][:, None, :]), torch.from_numpy(stat[s_idx]),
            torch.from_numpy(y[s_idx, t_idx][:, None, :]))


def train_member(model_config: dict, train: SiteData, val: SiteData | None, norm: Normaliser, cfg,
                 seed: int, device: str = "cpu") -> torch.nn.Module:
    """Train one member with Adam and early stopping on ``val`` sites (if any).

    Parameters
    ----------
    model_config : dict
        ``recipe.model`` as a dict (``type`` plus keyword arguments).
    train, val : SiteData
        Training sites, and the early-stopping sites (never a fold's test sites).
    norm : Normaliser
        Fitted on the training sites of the fold.
    cfg : upscale.recipe.Training
        Epochs, patience, batch size, learning rate, weight decay.
    seed : int
        Seeds weight initialisation and batch order.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build(model_config, train.dynamic.shape[-1], train.static.shape[-1], train.target_names).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    xd, xs, y = (t.to(device) for t in _day_samples(train, norm))
    val_tensors = [t.to(device) for t in _day_samples(val, norm)] if val is not None else None
    if val_tensors is not None and len(val_tensors[0]) == 0:
        val_tensors = None
    best, best_loss, waited = None, np.inf, 0
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(xd), generator=gen).to(device)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            outputs, _ = model(xd[idx], xs[idx])
            loss = gaussian_nll(outputs, y[idx], train.target_names)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if val_tensors is None:
            continue
        model.eval()
        with torch.no_grad():
            val_loss = float(gaussian_nll(model(val_tensors[0], val_tensors[1])[0], val_tensors[2],
                                          train.target_names))
        if val_loss < best_loss - 1e-4:
            best, best_loss, waited = copy.deepcopy(model.state_dict()), val_loss, 0
        else:
            waited += 1
            if waited >= cfg.patience:
                log.debug("early stop at epoch %d (val NLL %.4f)", epoch, best_loss)
                break
    if best is not None:
        model.load_state_dict(best)
    return model.eval().cpu()


def member_split(n_sites: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a member's training and early-stopping sites (at least one of each when possible)."""
    order = rng.permutation(n_sites)
    n_train = int(round(fraction * n_sites))
    n_train = min(max(n_train, 1), n_sites - 1) if n_sites > 1 and fraction < 1 else n_sites
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def train_ensemble(model_config: dict, data: SiteData, cfg, seed: int, device: str = "cpu",
                   on_member: Callable[[], None] | None = None) -> Ensemble:
    """Train ``cfg.ensemble`` members that differ in seed and in the sites they see.

    The normaliser is fitted on all of ``data`` (the fold's training sites).
    """
    norm = Normaliser.fit(data.dynamic, data.static, data.targets)
    members = []
    for i in range(cfg.ensemble):
        rng = np.random.default_rng([seed, i])
        fit_idx, stop_idx = member_split(len(data.sites), cfg.site_fraction, rng)
        val = data.subset(stop_idx) if stop_idx.size else None
        members.append(train_member(model_config, data.subset(fit_idx), val, norm, cfg, seed * 1000 + i, device))
        if on_member:
            on_member()
    return Ensemble(members, norm, data.target_names)


def site_folds(n_sites: int, k: int, seed: int) -> list[np.ndarray]:
    """Grouped k-fold: each site's index falls in exactly one test fold."""
    if n_sites < k:
        from upscale.errors import RecipeError
        raise RecipeError(f"{k}-fold cross-validation needs at least {k} sites, there are {n_sites}",
                          where="validation.folds", fix="Lower validation.folds or add sites")
    order = np.random.default_rng(seed).permutation(n_sites)
    return [np.sort(f) for f in np.array_split(order, k)]


def cross_validate(model_config: dict, data: SiteData, cfg, folds: int, device: str = "cpu",
                   on_member: Callable[[], None] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Out-of-fold predictions of every site: train on k-1 folds, predict the held-out fold.

    Returns
    -------
    dict
        target -> {"mean": [S, T], "sd": [S, T]} in physical units.
    """
    s, t, _ = data.dynamic.shape
    oof = {name: {"mean": np.full((s, t), np.nan, "float32"), "sd": np.full((s, t), np.nan, "float32")}
           for name in data.target_names}
    for k, test_idx in enumerate(site_folds(s, folds, cfg.seed)):
        train_idx = np.setdiff1d(np.arange(s), test_idx)
        log.info("fold %d/%d: %d training sites, %d test sites", k + 1, folds, train_idx.size, test_idx.size)
        ensemble = train_ensemble(model_config, data.subset(train_idx), cfg, cfg.seed + 7919 * (k + 1),
                                  device, on_member)
        preds = ensemble.predict(data.dynamic[test_idx], data.static[test_idx])
        for name, pred in preds.items():
            oof[name]["mean"][test_idx] = pred.mean
            oof[name]["sd"][test_idx] = pred.sd
    return oof


def pick_device(requested: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested
