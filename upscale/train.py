"""Training: one member, an ensemble, and grouped leave-site-out cross-validation."""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from upscale.batching import SiteData, Tensors, epoch_batches, warmup_steps
from upscale.encoding import Normaliser
from upscale.ensemble import Ensemble
from upscale.members import batchable, new_member, normalised_bounds, stacked_nll, train_stacked
from upscale.models.registry import build, model_class
from upscale.outputs import target_outputs
from upscale.variables import lower_bounds

log = logging.getLogger("upscale")


def gaussian_nll(
    outputs: dict,
    y: torch.Tensor,
    targets: list[str],
    warmup: int = 0,
    site_scale: torch.Tensor | None = None,
    bounds: list[float | None] | None = None,
) -> torch.Tensor:
    """Negative log-likelihood of censored (Tobit) Gaussians summed over targets, averaged over finite observations.

    Parameters
    ----------
    outputs : dict
        target -> (mean [B, T], log_var [B, T]) in normalised units: the latent Gaussian Z.
    y : torch.Tensor
        [B, T, K] normalised observations, NaN where missing.
    warmup : int
        Leading steps that carry no loss (a sequence model's state is still settling there).
    site_scale : torch.Tensor, optional
        [B, K] per-site standard deviation of the observations: adds the NSE-style loss
        mean((y - mean)^2 / (scale + 0.1)^2) of Kratzert et al. (2019), which weighs every site
        alike (a censored observation costs only a latent mean above the bound); the variance is
        then fitted with the mean held fixed.
    bounds : list, optional
        Per target, the lower bound in normalised units, or None (uncensored). The observed flux
        is max(bound, Z): an observation at or below the bound costs ``-log Phi((bound - mean) / sd)``,
        one above it the Gaussian ``0.5 * (log_var + (y - mean)^2 / var)`` (the constant 0.5 log 2 pi
        left out, as it does not depend on the model).
    """
    stack = {target: (mu[None], log_var[None]) for target, (mu, log_var) in outputs.items()}
    member_bounds = [None if b is None else y.new_tensor([b]) for b in (bounds or [None] * len(targets))]
    scale = None if site_scale is None else site_scale[None]
    return stacked_nll(stack, y[None], targets, warmup, scale, member_bounds)[0]


def train_member(
    model_config: dict,
    train: SiteData,
    val: SiteData | None,
    norm: Normaliser,
    cfg,
    seed: int,
    device: str = "cpu",
    bounds: dict[str, float | None] | None = None,
) -> torch.nn.Module:
    """Train one member with AdamW and early stopping on ``val`` sites (if any).

    Parameters
    ----------
    model_config : dict
        ``recipe.model`` as a dict (``type`` plus keyword arguments).
    train, val : SiteData
        Training sites, and the early-stopping sites (never a fold's test sites).
    norm : Normaliser
        Fitted on the training sites of the fold.
    cfg : upscale.recipe.Training
        Epochs, patience, batch sizes, sequence length and warm-up, loss, learning rate.
    seed : int
        Seeds weight initialisation, window sampling and batch order.
    bounds : dict, optional
        Target -> lower bound (physical units, None: unbounded); default the variables' own
        (:func:`upscale.variables.lower_bounds`). A model with ``fit_sites`` (trees) trains itself.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = new_member(model_config, train, norm, device)
    if hasattr(model, "fit_sites"):
        return model.fit_sites(train, val, norm, seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    data = Tensors.of(train, norm, device)
    data = data if model.sequential else data.days()
    step = _EpochSettings(
        warmup=warmup_steps(model.sequential, cfg, data.dynamic.shape[1]),
        nse=cfg.loss == "nse",
        amp=cfg.mixed_precision and device.startswith("cuda"),
        bounds=normalised_bounds(bounds, train.target_names, norm),
    )
    val_data = Tensors.of(val, norm, device) if val is not None and len(val.sites) else None
    val_warm = warmup_steps(model.sequential, cfg, cfg.sequence_length)  # whole series: a full window's warm-up
    best, best_loss, waited = None, np.inf, 0
    for epoch in range(cfg.epochs):
        _train_epoch(model, opt, epoch_batches(data, model.sequential, cfg, gen), train.target_names, step)
        if val_data is None:
            continue
        val_loss = _loss_of(model, val_data, train.target_names, val_warm, step.bounds)
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


@dataclass(frozen=True)
class _EpochSettings:
    warmup: int  # leading steps of each window without loss
    nse: bool  # the NSE-style loss (per-site scale)
    amp: bool  # bfloat16 autocast on a GPU
    bounds: tuple = ()  # per target, the censoring bound in normalised units (None: uncensored)


def _train_epoch(model, opt, batches, targets: list[str], step: _EpochSettings) -> None:
    """One pass over the epoch's mini-batches."""
    model.train()
    for xd, xs, y, scale in batches:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=step.amp):
            outputs = model(xd, xs)[0]
        outputs = {k: (m.float(), v.float()) for k, (m, v) in outputs.items()}
        loss = gaussian_nll(outputs, y, targets, step.warmup, scale if step.nse else None, step.bounds)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _loss_of(model, data: Tensors, targets: list[str], warmup: int, bounds: tuple = ()) -> float:
    """Censored Gaussian NLL of whole series (one pass, no windows)."""
    model.eval()
    with torch.no_grad():
        outputs = model(data.dynamic, data.static)[0]
        return float(gaussian_nll(outputs, data.targets, targets, warmup, bounds=list(bounds) or None))


def member_split(n_sites: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a member's training and early-stopping sites (at least one of each when possible)."""
    order = rng.permutation(n_sites)
    n_train = int(round(fraction * n_sites))
    n_train = min(max(n_train, 1), n_sites - 1) if n_sites > 1 and fraction < 1 else n_sites
    return np.sort(order[:n_train]), np.sort(order[n_train:])


@dataclass
class MemberTask:
    """Everything one member's training needs (picklable, so it can run in another process)."""

    model_config: dict
    fit: SiteData
    val: SiteData | None
    norm: Normaliser
    cfg: object
    seed: int
    device: str
    bounds: dict | None = None  # target -> lower bound (physical units); None: the variables' own


def ensemble_tasks(
    model_config: dict, data: SiteData, cfg, seed: int, device: str = "cpu", bounds: dict | None = None
) -> tuple[Normaliser, list[MemberTask]]:
    """The normaliser (fitted on all of ``data``) and the ``cfg.ensemble`` member tasks of one ensemble.

    Members differ in seed and in the sites they see: each trains on ``site_fraction`` of
    ``data``'s sites and early-stops on the rest.
    """
    norm = Normaliser.fit(data.dynamic, data.static, data.targets)
    tasks = []
    for i in range(cfg.ensemble):
        rng = np.random.default_rng([seed, i])
        fit_idx, stop_idx = member_split(len(data.sites), cfg.site_fraction, rng)
        val = data.subset(stop_idx) if stop_idx.size else None
        tasks.append(MemberTask(model_config, data.subset(fit_idx), val, norm, cfg, seed * 1000 + i, device, bounds))
    return norm, tasks


def _run_task(task: MemberTask) -> torch.nn.Module:
    return train_member(
        task.model_config, task.fit, task.val, task.norm, task.cfg, task.seed, task.device, bounds=task.bounds
    )


def _run_task_weights(task: MemberTask) -> dict:
    """In a pool process: train and return the weights only (parametrized modules do not pickle)."""
    return _run_task(task).state_dict()


def _rebuild(task: MemberTask, weights: dict) -> torch.nn.Module:
    model = build(
        task.model_config,
        task.fit.dynamic.shape[-1],
        task.fit.static.shape[-1],
        task.fit.target_names,
        dynamic_names=task.fit.dynamic_names,
    )
    model.load_state_dict(weights)
    return model.eval()


def _init_worker() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the pool quietly
    torch.set_num_threads(1)  # one process per core: threads inside would only compete


def _indexed_weights(item: tuple[int, MemberTask]) -> tuple[int, dict]:
    return item[0], _run_task_weights(item[1])


def run_tasks(
    tasks: list[MemberTask], workers: int, on_member: Callable[[], None] | None = None
) -> list[torch.nn.Module]:
    """Train the members, in this process (workers <= 1) or in a pool of ``workers`` processes.

    Results do not depend on ``workers``: each member is seeded by its task. An interrupt (Ctrl-C,
    SIGTERM) or a failure stops the pool's processes at once, without their tracebacks. With
    ``training.batched_members`` the members train as ``workers`` stacked models
    (:func:`upscale.members.train_stacked`) where they can (same results within float tolerance).
    """
    if stacks_members(tasks):
        return _run_groups(tasks, workers, on_member)
    if workers <= 1 or len(tasks) <= 1:
        members = []
        for task in tasks:
            members.append(_run_task(task))
            if on_member:
                on_member()
        return members
    members: list = [None] * len(tasks)
    for i, weights in _in_pool(_indexed_weights, list(enumerate(tasks)), workers):
        members[i] = _rebuild(tasks[i], weights)
        if on_member:
            on_member()
    return members


def stacks_members(tasks: list[MemberTask]) -> bool:
    """Whether ``tasks`` train as stacked models: ``training.batched_members`` true, or auto and per-day models.

    auto stacks only per-day models: on a CPU the stacked MLP costs 1.6x less than its members one by
    one, while the stacked LSTM costs 2.3x more than the fused kernel of one member (docs/benchmarks.md).
    """
    choice = tasks[0].cfg.batched_members if tasks else False
    if choice == "auto":
        choice = not model_class(tasks[0].model_config["type"]).sequential
    return bool(choice) and batchable(tasks)  # batchable builds two probe members: only when asked


def _in_pool(function, items: list, workers: int):
    """``function`` of each item in a spawned pool of ``workers`` processes, results as they come."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can hang
    pool = context.Pool(workers, initializer=_init_worker)
    try:
        yield from pool.imap_unordered(function, items)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _group_weights(item: tuple[int, list[MemberTask]]) -> tuple[int, list[dict]]:
    return item[0], [m.state_dict() for m in train_stacked(item[1])]


def _run_groups(tasks: list[MemberTask], workers: int, on_member: Callable[[], None] | None) -> list[torch.nn.Module]:
    """The members as ``workers`` stacked groups of about equal size, in this process or a pool's."""
    n = max(1, min(workers, len(tasks) // 2))
    bounds = np.linspace(0, len(tasks), n + 1).round().astype(int)
    groups = [tasks[a:b] for a, b in itertools.pairwise(bounds)]
    if n == 1:
        members = train_stacked(tasks)
        for _ in members:
            if on_member:
                on_member()
        return members
    members: list = [None] * len(tasks)
    for k, weights in _in_pool(_group_weights, list(enumerate(groups)), n):
        for i, w in enumerate(weights):
            members[bounds[k] + i] = _rebuild(tasks[bounds[k] + i], w)
            if on_member:
                on_member()
    return members


def training_workers(cfg, device: str) -> int:
    """Processes that train members side by side: cfg.workers, or on CPU one per core (at most the members)."""
    import os

    if cfg.workers is not None:
        return cfg.workers
    if device != "cpu":
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), cfg.ensemble))


def train_ensemble(
    model_config: dict,
    data: SiteData,
    cfg,
    seed: int,
    device: str = "cpu",
    on_member: Callable[[], None] | None = None,
    bounds: dict | None = None,
) -> Ensemble:
    """Train ``cfg.ensemble`` members that differ in seed and in the sites they see (see :func:`ensemble_tasks`).

    ``bounds``: target -> lower bound of the predictions (the variables' own when omitted).
    """
    bounds = lower_bounds(data.target_names) if bounds is None else bounds
    norm, tasks = ensemble_tasks(model_config, data, cfg, seed, device, bounds)
    members = run_tasks(tasks, training_workers(cfg, device), on_member)
    return Ensemble(members, norm, data.target_names, bounds=bounds)


def cross_validate(
    model_config: dict,
    data: SiteData,
    cfg,
    folds: list[np.ndarray],
    device: str = "cpu",
    on_member: Callable[[], None] | None = None,
    quantiles=(),
) -> dict[str, dict[str, np.ndarray]]:
    """Out-of-fold predictions of every site: train without each fold, predict the held-out fold.

    The members of all folds train side by side (see :func:`run_tasks`).

    Parameters
    ----------
    folds : list of numpy.ndarray
        Test-site indices of each fold (see :mod:`upscale.folds`); every site in exactly one.

    Returns
    -------
    dict
        target -> part -> [S, T] arrays in physical units, the parts of
        :func:`upscale.outputs.target_outputs` (``mean``, ``sd``, ``sd_epistemic``, ``sd_aleatoric``, the
        ``quantiles``) and ``pit`` (see :func:`out_of_fold`).
    """
    return out_of_fold(train_folds(model_config, data, cfg, folds, device, on_member), data, folds, quantiles)


def train_folds(
    model_config: dict,
    data: SiteData,
    cfg,
    folds: list[np.ndarray],
    device: str = "cpu",
    on_member: Callable[[], None] | None = None,
    bounds: dict | None = None,
) -> list[Ensemble]:
    """One ensemble per fold, trained on the sites outside it (the members of all folds side by side).

    ``bounds``: target -> lower bound of the predictions (the variables' own when omitted).
    """
    bounds = lower_bounds(data.target_names) if bounds is None else bounds
    norms, tasks = [], []
    for k, test_idx in enumerate(folds):
        train_idx = np.setdiff1d(np.arange(len(data.sites)), test_idx)
        log.info("fold %d/%d: %d training sites, %d test sites", k + 1, len(folds), train_idx.size, test_idx.size)
        norm, fold_tasks = ensemble_tasks(
            model_config, data.subset(train_idx), cfg, cfg.seed + 7919 * (k + 1), device, bounds
        )
        norms.append(norm)
        tasks += fold_tasks
    members = run_tasks(tasks, training_workers(cfg, device), on_member)
    return [
        Ensemble(members[k * cfg.ensemble : (k + 1) * cfg.ensemble], norms[k], data.target_names, bounds=bounds)
        for k in range(len(folds))
    ]


def out_of_fold(
    ensembles: list[Ensemble], data: SiteData, folds: list[np.ndarray], quantiles=()
) -> dict[str, dict[str, np.ndarray]]:
    """Each fold's test sites predicted by the ensemble of that fold (see :func:`cross_validate`).

    Besides the parts of the output variables (with the mixture's ``quantiles``), ``pit`` holds
    the PIT of each observation under its predictive mixture (:meth:`upscale.ensemble.Prediction.pit`).
    """
    s, t, _ = data.dynamic.shape
    parts = [variable.part for variable in target_outputs(quantiles)] + ["pit"]
    oof = {name: {p: np.full((s, t), np.nan, "float32") for p in parts} for name in data.target_names}
    for ensemble, test_idx in zip(ensembles, folds):
        for name, pred in ensemble.predict(data.dynamic[test_idx], data.static[test_idx]).items():
            for part, values in pred.parts(quantiles).items():
                oof[name][part][test_idx] = values
            observed = data.targets[test_idx][..., data.target_names.index(name)]
            oof[name]["pit"][test_idx] = np.where(np.isfinite(observed), pred.pit(observed), np.nan)
    return oof
