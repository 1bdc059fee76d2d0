"""Ensemble members trained together: one stacked model, one optimizer, each member its own run.

Each member keeps what separate training gives it: its initial weights (built after
``torch.manual_seed(seed)``), its window and batch stream (``torch.Generator(seed)``), its fit and
early-stopping sites and normaliser, and its own early stopping. The loss is the sum of the
members' losses, so the gradient of each member's weights is its own, and AdamW (element-wise)
over the stacked weights is M separate AdamWs; a member without a batch at some step (fewer
batches per epoch) is held still, as if that step did not exist for it. A member that stops is
taken out of the stack, its best weights kept. The results equal separate training
(:func:`upscale.train.train_member`) within float tolerance.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from upscale.batching import Tensors, epoch_batches, warmup_steps
from upscale.encoding import Normaliser
from upscale.models.registry import build
from upscale.models.stacked import Stacked, stack_parameters, stackable, unstack_into
from upscale.variables import lower_bounds


def new_member(model_config: dict, train, norm: Normaliser, device: str) -> torch.nn.Module:
    """A freshly initialised member for the training sites ``train`` (seed the global RNG first)."""
    model = build(
        model_config,
        train.dynamic.shape[-1],
        train.static.shape[-1],
        train.target_names,
        dynamic_names=train.dynamic_names,
    ).to(device)
    if hasattr(model, "attach_normaliser"):
        model.attach_normaliser(norm)
    return model


def normalised_bounds(bounds: dict | None, targets: list[str], norm: Normaliser) -> tuple:
    """The lower bound of each target in the normaliser's units (None where unbounded)."""
    bounds = lower_bounds(targets) if bounds is None else bounds
    return tuple(
        None if bounds.get(t) is None else float((bounds[t] - norm.target_mean[j]) / norm.target_std[j])
        for j, t in enumerate(targets)
    )


def censored_nll(obs, mu, log_var, censored, bound) -> torch.Tensor:
    """Per observation: -log Phi((bound - mu) / sd) where censored, the Gaussian NLL (no constant) elsewhere."""
    gaussian = 0.5 * (log_var + (obs - mu) ** 2 * torch.exp(-log_var))
    if bound is None:
        return gaussian
    tail = -torch.special.log_ndtr((bound - mu) * torch.exp(-0.5 * log_var))
    return torch.where(censored, tail, gaussian)


def batchable(tasks) -> bool:
    """Whether the tasks' members can train as one stacked model (see :func:`upscale.models.stacked.stackable`)."""
    if len(tasks) < 2 or len({(t.device, id(t.cfg)) for t in tasks}) > 1:
        return False
    probe = [new_member(t.model_config, t.fit, t.norm, "cpu") for t in tasks[:2]]
    return stackable(probe) and not hasattr(probe[0], "fit_sites")


def stacked_nll(outputs: dict, y: torch.Tensor, targets: list[str], warmup: int, scale, bounds) -> torch.Tensor:
    """Each member's loss [M], as :func:`upscale.train.gaussian_nll` gives it for that member alone.

    ``outputs``: target -> (mean, log_var) [M, B, T]; ``y`` [M, B, T, K]; ``scale`` [M, B, K] or
    None; ``bounds``: per target, None (unbounded) or the members' lower bounds [M] in normalised
    units. :func:`upscale.train.gaussian_nll` is this loss for a stack of one member.
    """
    total = y.new_zeros(y.shape[0])
    for j, target in enumerate(targets):
        mu, log_var = (o[:, :, warmup:] for o in outputs[target])
        obs = y[:, :, warmup:, j]
        mask = torch.isfinite(obs)
        count = mask.sum((1, 2)).clamp(min=1)
        obs = torch.where(mask, obs, 0.0)
        bound = None if bounds[j] is None else bounds[j].view(-1, 1, 1)
        censored = (obs <= bound) & mask if bound is not None else torch.zeros_like(mask)
        if scale is not None:
            weight = (scale[:, :, None, j] + 0.1) ** -2
            error = obs - mu if bound is None else torch.where(censored, torch.relu(mu - bound), obs - mu)
            total = total + torch.where(mask, weight * error**2, 0.0).sum((1, 2)) / count
            mu = mu.detach()
        total = total + torch.where(mask, censored_nll(obs, mu, log_var, censored, bound), 0.0).sum((1, 2)) / count
    return total


class MaskedAdamW:
    """AdamW (PyTorch's defaults: betas 0.9, 0.999, eps 1e-8) over stacked weights, each member its own step count.

    Members not ``active`` at a step keep their weights and moments, and their step count.
    """

    def __init__(self, params: dict, lr: float, weight_decay: float):
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, (0.9, 0.999), 1e-8
        self.exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v) for k, v in params.items()}
        self.steps = torch.zeros(next(iter(params.values())).shape[0], dtype=torch.float64)

    def step(self, params: dict, grads: dict, active: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.steps += active.double().cpu()
        step = self.steps.clamp(min=1)
        correction1 = (1 - b1**step).float()
        correction2_sqrt = (1 - b2**step).sqrt().float()
        everyone = bool(active.all())
        with torch.no_grad():
            for name, p in params.items():
                shape = (-1,) + (1,) * (p.dim() - 1)
                new = p * (1 - self.lr * self.weight_decay)
                m = self.exp_avg[name].lerp(grads[name], 1 - b1)
                v = self.exp_avg_sq[name] * b2 + (1 - b2) * grads[name] ** 2
                denom = v.sqrt() / correction2_sqrt.to(p.device).view(shape) + self.eps
                new = new - (self.lr / correction1.to(p.device)).view(shape) * m / denom
                if not everyone:
                    keep = ~active.to(p.device).view(shape)
                    new, m, v = (
                        torch.where(keep, old, x)
                        for old, x in ((p, new), (self.exp_avg[name], m), (self.exp_avg_sq[name], v))
                    )
                p.copy_(new)
                self.exp_avg[name], self.exp_avg_sq[name] = m, v

    def keep(self, index: torch.Tensor) -> None:
        """Only the members at ``index`` remain (in that order)."""
        self.exp_avg = {k: v[index] for k, v in self.exp_avg.items()}
        self.exp_avg_sq = {k: v[index] for k, v in self.exp_avg_sq.items()}
        self.steps = self.steps[index.cpu()]


def pad_stack(items: list, fill: tuple) -> tuple[torch.Tensor, ...]:
    """Stack each member's tensors (a tuple per member, or None) on a new first axis, padding the first
    dimension of each to the longest with ``fill`` (a value per tensor; a missing member is all fill)."""
    present = next(x for x in items if x is not None)
    rows = max(x[0].shape[0] for x in items if x is not None)
    stacked = []
    for k, value in enumerate(fill):
        out = present[k].new_full((len(items), rows, *present[k].shape[1:]), value)
        for m, x in enumerate(items):
            if x is not None:
                out[m, : x[k].shape[0]] = x[k]
        stacked.append(out)
    return tuple(stacked)


class _Group:
    """The members of one stacked run: what stays fixed (data, generators, bounds) and the early stopping."""

    def __init__(self, tasks, models):
        cfg = tasks[0].cfg
        self.sequential = models[0].sequential
        self.targets = tasks[0].fit.target_names
        self.gens = [torch.Generator().manual_seed(t.seed) for t in tasks]
        device = tasks[0].device
        self.data = []
        for t in tasks:
            data = Tensors.of(t.fit, t.norm, device)
            self.data.append(data if self.sequential else data.days())
        self.warmup = warmup_steps(self.sequential, cfg, self.data[0].dynamic.shape[1])
        self.val_warm = warmup_steps(self.sequential, cfg, cfg.sequence_length)
        vals = [Tensors.of(t.val, t.norm, device) if t.val is not None and len(t.val.sites) else None for t in tasks]
        self.has_val = torch.tensor([v is not None for v in vals])
        self.val = None
        if bool(self.has_val.any()):
            self.val = pad_stack(
                [None if v is None else (v.dynamic, v.static, v.targets) for v in vals], (0, 0, np.nan)
            )
        per_member = [normalised_bounds(t.bounds, self.targets, t.norm) for t in tasks]
        self.bounds = [  # per target: None where no member is bounded, else the members' bounds (NaN: unbounded)
            None
            if all(b[j] is None for b in per_member)
            else torch.tensor([math.nan if b[j] is None else b[j] for b in per_member], device=device)
            for j in range(len(self.targets))
        ]
        self.best = [None] * len(tasks)
        self.best_loss = [math.inf] * len(tasks)
        self.waited = [0] * len(tasks)

    def bounds_of(self, alive: list[int]) -> list:
        """Per target, the bounds of the ``alive`` members (None: unbounded), as :func:`stacked_nll` takes them."""
        return [None if b is None else b[alive] for b in self.bounds]

    def batches(self, alive: list[int], cfg):
        """One epoch: per step, each alive member's next mini-batch (None once its epoch is over)."""
        streams = [epoch_batches(self.data[i], self.sequential, cfg, self.gens[i]) for i in alive]
        return itertools.zip_longest(*streams)


def train_stacked(tasks) -> list[torch.nn.Module]:
    """Train the members of ``tasks`` (:class:`upscale.train.MemberTask`, one ``cfg`` and device) as one model.

    Returns the trained members, each as :func:`upscale.train.train_member` returns it.
    """
    cfg = tasks[0].cfg
    models = []
    for task in tasks:
        torch.manual_seed(task.seed)
        models.append(new_member(task.model_config, task.fit, task.norm, task.device))
    stacked, group = Stacked(models[0]), _Group(tasks, models)
    params = {k: v.requires_grad_() for k, v in stack_parameters(models).items()}
    opt = MaskedAdamW(params, cfg.learning_rate, cfg.weight_decay)
    alive, final = list(range(len(tasks))), [None] * len(tasks)
    amp = cfg.mixed_precision and tasks[0].device.startswith("cuda")
    for _ in range(cfg.epochs):
        _train_epoch(stacked, group, params, opt, alive, cfg, amp)
        stopped = _early_stopping(stacked, group, params, alive, cfg.patience)
        for pos in stopped:
            final[alive[pos]] = _weights(group, params, pos, alive[pos])
        if stopped:
            keep = torch.tensor([p for p in range(len(alive)) if p not in stopped], dtype=torch.long)
            alive = [alive[p] for p in keep.tolist()]
            params = {k: v.detach()[keep.to(v.device)].requires_grad_() for k, v in params.items()}
            opt.keep(keep)
        if not alive:
            break
    for pos, i in enumerate(alive):
        final[i] = _weights(group, params, pos, i)
    return [unstack_into(final[i], 0, models[i]).eval().cpu() for i in range(len(tasks))]


def _weights(group: _Group, params: dict, pos: int, member: int) -> dict:
    """What member ``member`` (at ``pos`` in the stack) returns: its best weights, else its current ones."""
    if group.best[member] is not None:
        return group.best[member]
    return {k: v.detach()[pos : pos + 1].clone() for k, v in params.items()}


def _train_epoch(stacked: Stacked, group: _Group, params: dict, opt: MaskedAdamW, alive: list[int], cfg, amp) -> None:
    """One epoch of every alive member's mini-batches, a step of all members at once."""
    nse = cfg.loss == "nse"
    bounds = group.bounds_of(alive)
    for batch in group.batches(alive, cfg):
        active = torch.tensor([b is not None for b in batch])
        xd, xs, y, scale = pad_stack(list(batch), (0, 0, np.nan, 1))
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            outputs = stacked.forward(params, xd, xs)[0]
        outputs = {k: (m.float(), v.float()) for k, (m, v) in outputs.items()}
        loss = stacked_nll(outputs, y, group.targets, group.warmup, scale if nse else None, bounds)
        names = list(params)
        grads = torch.autograd.grad(loss.sum(), [params[k] for k in names])
        opt.step(params, dict(zip(names, grads)), active)


def _early_stopping(stacked: Stacked, group: _Group, params: dict, alive: list[int], patience: int) -> list[int]:
    """Each alive member's validation loss, best weights and patience; the stack positions that stop now."""
    if group.val is None:
        return []
    index = torch.tensor(alive)
    dynamic, static, targets = (v[index.to(v.device)] for v in group.val)
    with torch.no_grad():
        outputs = stacked.forward(params, dynamic, static)[0]
        losses = stacked_nll(outputs, targets, group.targets, group.val_warm, None, group.bounds_of(alive)).tolist()
    stopped = []
    for pos, i in enumerate(alive):
        if not group.has_val[i]:
            continue
        if losses[pos] < group.best_loss[i] - 1e-4:
            group.best[i] = {k: v.detach()[pos : pos + 1].clone() for k, v in params.items()}
            group.best_loss[i], group.waited[i] = losses[pos], 0
        else:
            group.waited[i] += 1
            if group.waited[i] >= patience:
                stopped.append(pos)
    return stopped
