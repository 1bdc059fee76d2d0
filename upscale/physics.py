"""Process models in torch, shared by the hybrid model (with learned parameters) and the baselines.

Inputs are canonical units (see :mod:`upscale.variables`): air temperature degC, VPD hPa,
shortwave radiation W m-2 (daily mean). Outputs are GPP in g C m-2 d-1 and ET in mm d-1.
"""

from __future__ import annotations

import torch

from upscale.constants import (
    PAR_PER_SHORTWAVE,
    PSYCHROMETRIC_CONSTANT,
    SHORTWAVE_ALBEDO,
    STEFAN_BOLTZMANN,
)
from upscale.variables import SECONDS_PER_DAY, latent_heat_of_vaporisation


def par_mj(rsds: torch.Tensor) -> torch.Tensor:
    """Daily photosynthetically active radiation (MJ m-2 d-1) from mean shortwave (W m-2)."""
    return rsds * (PAR_PER_SHORTWAVE * SECONDS_PER_DAY * 1e-6)


def saturation_vapour_pressure_kpa(t_c: torch.Tensor) -> torch.Tensor:
    """Saturation vapour pressure (kPa), the Magnus form of :mod:`upscale.variables`."""
    return 0.61094 * torch.exp(17.625 * t_c / (t_c + 243.04))


def net_radiation(
    rsds: torch.Tensor, t_c: torch.Tensor, vpd_hpa: torch.Tensor, rsds_pot: torch.Tensor | None = None
) -> torch.Tensor:
    """Daily net radiation (W m-2), FAO-56 eq. 38-40 with clear-sky radiation 0.75 x top of atmosphere.

    Without ``rsds_pot`` the cloud factor of net longwave is taken as 0.5 (half-cloudy).
    """
    net_short = (1 - SHORTWAVE_ALBEDO) * rsds
    ea = torch.clamp(saturation_vapour_pressure_kpa(t_c) - vpd_hpa / 10.0, min=0.0)
    if rsds_pot is None:
        cloud = torch.full_like(rsds, 0.5)
    else:
        ratio = torch.clamp(rsds / torch.clamp(0.75 * rsds_pot, min=1.0), 0.3, 1.0)
        cloud = 1.35 * ratio - 0.35
    net_long = STEFAN_BOLTZMANN * (t_c + 273.16) ** 4 * (0.34 - 0.14 * torch.sqrt(ea)) * cloud
    return net_short - net_long


def equilibrium_et(rn: torch.Tensor, t_c: torch.Tensor) -> torch.Tensor:
    """Equilibrium evaporation Delta / (Delta + gamma) x Rn / lambda in mm d-1 (Rn below 0 gives 0)."""
    es = saturation_vapour_pressure_kpa(t_c)
    delta = 4098.0 * es / (t_c + 237.3) ** 2
    return (
        delta
        / (delta + PSYCHROMETRIC_CONSTANT)
        * torch.clamp(rn, min=0.0)
        * SECONDS_PER_DAY
        / latent_heat_of_vaporisation(t_c)
    )


def priestley_taylor_et(alpha, rn: torch.Tensor, t_c: torch.Tensor) -> torch.Tensor:
    """Priestley-Taylor evapotranspiration (mm d-1) with coefficient ``alpha`` (1.26 for wet surfaces)."""
    return alpha * equilibrium_et(rn, t_c)


def temperature_scalar(t_c: torch.Tensor, t_opt, t_width) -> torch.Tensor:
    """A bell-shaped temperature response in [0, 1], 1 at ``t_opt``, falling off over ``t_width`` degC."""
    return torch.exp(-(((t_c - t_opt) / t_width) ** 2))


def vpd_scalar(vpd_hpa: torch.Tensor, sensitivity) -> torch.Tensor:
    """Stomatal closure under dry air: exp(-sensitivity x VPD), sensitivity in hPa-1."""
    return torch.exp(-sensitivity * vpd_hpa)


def lue_gpp(lue_max, fapar: torch.Tensor, rsds: torch.Tensor, *scalars) -> torch.Tensor:
    """Light-use-efficiency GPP (g C m-2 d-1): lue_max (g C MJ-1 PAR) x fAPAR x PAR x scalars."""
    gpp = lue_max * fapar * par_mj(rsds)
    for scalar in scalars:
        gpp = gpp * scalar
    return gpp
