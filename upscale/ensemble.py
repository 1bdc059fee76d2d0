"""An ensemble of trained members with its normaliser: numpy in, physical units out.

Used for out-of-fold predictions during cross-validation and, loaded from a bundle,
by the apply kernel; both thus predict through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from upscale.distribution import censored_moments, mixture_pit, mixture_quantiles
from upscale.encoding import Normaliser, complete_predictors
from upscale.models.stacked import Stacked, stack_parameters, stackable
from upscale.outputs import prediction_parts, quantile_part


@dataclass
class Prediction:
    """Ensemble prediction of one target, physical units, arrays [P, T].

    The members' latent Gaussians (``latent_mean``, ``latent_sd``, [N, P, T]) and the target's
    ``bound`` define the predictive mixture of censored Gaussians (:mod:`upscale.distribution`);
    ``mean`` and the variances are its moments. Without latent arrays (process parameters) the
    prediction is its moments only.
    """

    mean: np.ndarray
    aleatoric_var: np.ndarray  # mean of member variances
    epistemic_var: np.ndarray  # variance of member means
    latent_mean: np.ndarray | None = None
    latent_sd: np.ndarray | None = None
    bound: float | None = None

    @property
    def sd(self) -> np.ndarray:
        """Total predictive standard deviation sqrt(mean(var_i) + var(mean_i)) (the mixture's)."""
        return np.sqrt(self.aleatoric_var + self.epistemic_var)

    def parts(self, quantiles=()) -> dict[str, np.ndarray]:
        """Mean, standard deviations and the mixture's ``quantiles``, keyed as
        :func:`upscale.outputs.target_outputs` names them (float32)."""
        parts = prediction_parts(self.mean, self.aleatoric_var, self.epistemic_var)
        if len(quantiles):
            values = mixture_quantiles(quantiles, self.latent_mean, self.latent_sd, self.bound)
            parts.update({quantile_part(q): v.astype("float32") for q, v in zip(quantiles, values)})
        return parts

    def pit(self, obs: np.ndarray) -> np.ndarray:
        """The PIT of observations [P, T] under the mixture (see :func:`upscale.distribution.mixture_pit`)."""
        return mixture_pit(obs, self.latent_mean, self.latent_sd, self.bound).astype("float32")


class Ensemble:
    """Trained members sharing one normaliser and feature layout.

    ``bounds`` maps a target to the lower bound of its predictions in physical units
    (:func:`upscale.variables.lower_bounds`); a target without one is predicted unbounded.
    """

    def __init__(
        self,
        members: list[torch.nn.Module],
        normaliser: Normaliser,
        targets: list[str],
        device: str = "cpu",
        bounds: dict[str, float | None] | None = None,
    ):
        self.members = [m.to(device).eval() for m in members]
        self.normaliser = normaliser
        self.targets = list(targets)
        self.bounds = {t: (bounds or {}).get(t) for t in self.targets}
        self.device = device
        self.precision = "float32"  # bfloat16 / float16: autocast on a GPU (ignored on CPU)
        # one pass for all members (upscale.models.stacked) where they stack; on CPU per member is faster
        self.stacked = False
        self._stacked_params = None

    def predict(self, dynamic: np.ndarray, static: np.ndarray, batch_size: int = 32768) -> dict[str, Prediction]:
        """Predict every target for P pixels over T days, from a fresh state.

        Parameters
        ----------
        dynamic : numpy.ndarray
            [P, T, Fd] predictors in canonical units; NaN where missing.
        static : numpy.ndarray
            [P, Fs] encoded static predictors.
        batch_size : int
            Pixel-days per forward pass: bounds memory, and small enough to stay in cache
            (on CPU, ~3x faster than one huge batch).

        Returns
        -------
        dict of Prediction
            NaN wherever any predictor of that pixel and day is missing.
        """
        return self.predict_chunk(dynamic, static, None, batch_size)[0]

    def predict_chunk(
        self, dynamic: np.ndarray, static: np.ndarray, state, batch_size: int = 32768, parameters: tuple[str, ...] = ()
    ):
        """Predict one time chunk, continuing from ``state``; returns (predictions, new state).

        ``state`` is None (a fresh start) or what the previous chunk of the same P pixels
        returned: per member, a tuple of arrays with pixels first. Chunks passed on in order
        give the same result as one call over the whole series. ``parameters`` names process
        parameters of hybrid members to return too, as predictions keyed by their names
        (mean over members; the members' spread as epistemic variance).
        """
        p, t, _ = dynamic.shape
        valid = complete_predictors(dynamic, static)
        xd = np.nan_to_num(self.normaliser.dynamic(dynamic))
        xs = np.nan_to_num(self.normaliser.static(static))
        k, n = len(self.targets), len(self.members)
        means = np.empty((n, k, p, t), dtype="float32")
        variances = np.empty((n, k, p, t), dtype="float32")
        params = {name: np.empty((n, p, t), dtype="float32") for name in parameters}
        new_state: list = [None] * n
        with torch.inference_mode(), self._autocast():
            step = max(1, batch_size // max(t, 1))
            for start in range(0, p, step):
                sl = slice(start, start + step)
                d, s = self.to_device(xd[sl]), self.to_device(xs[sl])
                if self.stacked and not parameters and stackable(self.members):
                    self._predict_stacked(d, s, state, sl, (means, variances), new_state, p)
                    continue
                for i, member in enumerate(self.members):
                    h0 = None if state is None or state[i] is None else tuple(self.to_device(a[sl]) for a in state[i])
                    if parameters:
                        outputs, h, learned = member.forward_with_parameters(d, s, h0)
                        for name in parameters:
                            params[name][i, sl] = learned[name].float().cpu().numpy()
                    else:
                        outputs, h = member(d, s, h0)
                    for j, target in enumerate(self.targets):
                        mu, log_var = outputs[target]
                        means[i, j, sl] = mu.float().cpu().numpy()
                        variances[i, j, sl] = torch.exp(log_var).float().cpu().numpy()
                    new_state[i] = stitch_state(new_state[i], h, p, sl)
        result = self._combine(means, variances, valid)
        for name, values in params.items():
            result[name] = Prediction(
                mean=values.mean(axis=0), aleatoric_var=np.zeros((p, t), "float32"), epistemic_var=values.var(axis=0)
            )
            for arr in (result[name].mean, result[name].epistemic_var):
                arr[~valid] = np.nan
        return result, new_state

    def _predict_stacked(self, d, s, state, sl: slice, out: tuple, new_state: list, n_pixels: int) -> None:
        """All members' pass over one pixel batch at once, written into ``out`` (means, variances) and ``new_state``."""
        if self._stacked_params is None:
            self._stacked_params = stack_parameters(self.members)
        h0 = None
        if state is not None and state[0] is not None:
            h0 = tuple(torch.stack([self.to_device(member[k][sl]) for member in state]) for k in range(2))
        outputs, h = Stacked(self.members[0]).forward(self._stacked_params, d, s, h0)
        for j, target in enumerate(self.targets):
            mu, log_var = outputs[target]
            out[0][:, j, sl] = mu.float().cpu().numpy()
            out[1][:, j, sl] = torch.exp(log_var).float().cpu().numpy()
        for i in range(len(self.members)):
            new_state[i] = stitch_state(new_state[i], None if h is None else tuple(x[i] for x in h), n_pixels, sl)

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        """Host to device; on a GPU through pinned memory, asynchronously, so copies overlap compute."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device == "cpu":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _autocast(self):
        import contextlib

        if self.device == "cpu" or self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=getattr(torch, self.precision))

    def _combine(self, means, variances, valid) -> dict[str, Prediction]:
        """Each target's mixture of the members' censored Gaussians, in physical units."""
        result = {}
        scale = np.float32(self.normaliser.target_std)
        offset = np.float32(self.normaliser.target_mean)
        for j, target in enumerate(self.targets):
            mu = means[:, j] * scale[j] + offset[j]
            sd = np.sqrt(variances[:, j]) * scale[j]
            mu[:, ~valid], sd[:, ~valid] = np.nan, np.nan
            member_mean, member_var = censored_moments(mu, sd, self.bounds[target])
            result[target] = Prediction(
                mean=member_mean.mean(axis=0).astype("float32"),
                aleatoric_var=member_var.mean(axis=0).astype("float32"),
                epistemic_var=member_mean.var(axis=0).astype("float32"),
                latent_mean=mu,
                latent_sd=sd,
                bound=self.bounds[target],
            )
        return result


def stitch_state(buffers, state, n_pixels: int, sl: slice):
    """Write one pixel batch's state (tuple of tensors, pixels first) into full-size numpy buffers."""
    if state is None:
        return None
    if buffers is None:
        buffers = tuple(np.empty((n_pixels, *x.shape[1:]), dtype="float32") for x in state)
    for buf, x in zip(buffers, state):
        buf[sl] = x.float().cpu().numpy()
    return buffers
