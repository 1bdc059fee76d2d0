"""A hybrid model: a network predicts the parameters of process models, which make the fluxes.

GPP comes from a light-use-efficiency model, ET from Priestley-Taylor (:mod:`upscale.physics`).
Per-pixel constants (``lue_max``, ``t_opt``, ``vpd_sensitivity``) come from the static predictors
through a small dense network; time-varying ones (``f_water``, the water scalar of GPP, and
``pt_alpha``) come from an LSTM over the dynamic predictors, which gives them memory of past
weather, as soil water has. Each parameter is squashed into its physical range by a sigmoid,
so it cannot leave it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from upscale import physics
from upscale.errors import RecipeError
from upscale.models.base import FluxModel
from upscale.models.heads import GaussianHead, dense_stack, with_static
from upscale.models.lstm import lstm_states
from upscale.models.registry import register

# name -> (low, high, UDUNITS units, time-varying, long name)
PARAMETERS = {
    "lue_max": (0.2, 4.0, "g MJ-1", False, "maximum light-use efficiency (g carbon per MJ of PAR)"),
    "t_opt": (0.0, 35.0, "degC", False, "optimum air temperature of photosynthesis"),
    "vpd_sensitivity": (0.0, 0.1, "hPa-1", False, "sensitivity of GPP to vapour pressure deficit"),
    "f_water": (0.0, 1.0, "1", True, "water-limitation scalar of GPP"),
    "pt_alpha": (0.0, 1.6, "1", True, "Priestley-Taylor coefficient of ET"),
}
T_WIDTH = 14.0  # degC: width of the temperature response
NEEDED = {"gpp": ("tas", "vpd", "rsds", "fapar"), "et": ("tas", "vpd", "rsds")}


@register("hybrid")
class Hybrid(FluxModel):
    """LUE GPP and Priestley-Taylor ET with network-predicted, bounded parameters."""

    sequential = True
    min_hidden = 1
    parameter_info: ClassVar[dict[str, dict]] = {
        name: {"units": units, "long_name": long_name, "valid_min": low, "valid_max": high}
        for name, (low, high, units, _, long_name) in PARAMETERS.items()
    }

    def __init__(
        self,
        n_dynamic: int,
        n_static: int,
        targets: list[str],
        hidden: list[int] = (64,),
        dropout: float = 0.0,
        dynamic_names: list[str] | None = None,
        **context,
    ):
        super().__init__(n_dynamic, n_static, targets)
        self.columns = _columns(dynamic_names, targets)
        self.static_params = [p for p, spec in PARAMETERS.items() if not spec[3]]
        self.dynamic_params = [p for p, spec in PARAMETERS.items() if spec[3]]
        self.static_net, width = dense_stack(max(n_static, 1), [hidden[0]], dropout)
        self.static_out = nn.Linear(width, len(self.static_params))
        self.lstm = nn.LSTM(n_dynamic + n_static, hidden[0], batch_first=True)
        self.dynamic_out = nn.Linear(hidden[0], len(self.dynamic_params))
        self.noise = GaussianHead(hidden[0], targets)
        for name, size in (
            ("dynamic_mean", n_dynamic),
            ("dynamic_std", n_dynamic),
            ("target_mean", len(targets)),
            ("target_std", len(targets)),
        ):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

    def attach_normaliser(self, normaliser) -> None:
        """Record the normaliser so that the process models see physical units."""
        for name in ("dynamic_mean", "dynamic_std", "target_mean", "target_std"):
            getattr(self, name).copy_(torch.tensor(getattr(normaliser, name), dtype=torch.float32))

    def process_parameters(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        """The bounded process parameters [B, T] by name, the LSTM features, and the new state."""
        s = static if static.shape[-1] else static.new_zeros(static.shape[0], 1)
        raw_static = self.static_out(self.static_net(s))[:, None, :].expand(-1, dynamic.shape[1], -1)
        hc = None if state is None else tuple(x.transpose(0, 1).contiguous() for x in state)
        h, (h_n, c_n) = self.lstm(with_static(dynamic, static), hc)
        raw_dynamic = self.dynamic_out(h)
        params = {}
        for raw, names in ((raw_static, self.static_params), (raw_dynamic, self.dynamic_params)):
            for i, name in enumerate(names):
                low, high = PARAMETERS[name][:2]
                params[name] = low + (high - low) * torch.sigmoid(raw[..., i])
        return params, h, (h_n.transpose(0, 1), c_n.transpose(0, 1))

    def forward(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        outputs, state, _ = self.forward_with_parameters(dynamic, static, state)
        return outputs, state

    def states(self, dynamic: torch.Tensor, static: torch.Tensor, state=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM state (h, c) after every day, [B, T, 1, H] each."""
        return lstm_states(self.lstm, with_static(dynamic, static), state)

    def forward_with_parameters(self, dynamic: torch.Tensor, static: torch.Tensor, state=None):
        """As ``forward``, plus the process parameters [B, T] by name (in their physical units)."""
        params, h, state = self.process_parameters(dynamic, static, state)
        physical = dynamic * self.dynamic_std + self.dynamic_mean
        fluxes = self.fluxes(params, {name: physical[..., i] for name, i in self.columns.items()})
        noise = self.noise(h)
        outputs = {}
        for j, target in enumerate(self.targets):
            mean = (fluxes[target] - self.target_mean[j]) / self.target_std[j]
            outputs[target] = (mean, noise[target][1])
        return outputs, state, params

    def fluxes(self, params: dict, x: dict) -> dict[str, torch.Tensor]:
        """GPP (g C m-2 d-1) and ET (mm d-1) of the process models with the given parameters."""
        out = {}
        if "gpp" in self.targets:
            fapar = torch.clamp(x["fapar"], 0.0, 1.0)
            out["gpp"] = physics.lue_gpp(
                params["lue_max"],
                fapar,
                torch.clamp(x["rsds"], min=0.0),
                physics.temperature_scalar(x["tas"], params["t_opt"], T_WIDTH),
                physics.vpd_scalar(torch.clamp(x["vpd"], min=0.0), params["vpd_sensitivity"]),
                params["f_water"],
            )
        if "et" in self.targets:
            rn = physics.net_radiation(x["rsds"], x["tas"], x["vpd"], x.get("rsds_pot"))
            out["et"] = physics.priestley_taylor_et(params["pt_alpha"], rn, x["tas"])
        return out


def _columns(dynamic_names: list[str] | None, targets: list[str]) -> dict[str, int]:
    """Column of each predictor the process models need (and of rsds_pot when present)."""
    unknown = [t for t in targets if t not in NEEDED]
    if unknown:
        raise RecipeError(
            f"the hybrid model has no process model for {', '.join(unknown)}",
            where="targets",
            fix=f"Use targets among {sorted(NEEDED)} or another model type",
        )
    names = list(dynamic_names or [])
    needed = sorted({v for t in targets for v in NEEDED[t]})
    missing = [v for v in needed if v not in names]
    if missing:
        raise RecipeError(
            f"the hybrid model needs the predictors {', '.join(missing)}",
            where="predictors",
            fix="Add them to the recipe's predictors (canonical names)",
        )
    wanted = needed + (["rsds_pot"] if "rsds_pot" in names else [])
    return {v: names.index(v) for v in wanted}
