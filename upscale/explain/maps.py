"""The figure of the gridded sensitivity maps: whole-period means, one panel per target and predictor."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

OCEAN = "#dfe7ef"
DPI = 90


def plot_sensitivity_maps(store: str | Path, path: str | Path) -> str:
    """Maps of each ``<target>_sens_<predictor>_mean`` of a sensitivity store; returns the file name.

    Rows are predictors, columns targets; a diverging colour scale centred on zero, clipped at the
    98th percentile of |value| so a few extreme pixels do not wash out the map.
    """
    ds = xr.open_zarr(store)
    names = [n for n in ds.data_vars if n.endswith("_mean")]
    targets = list(dict.fromkeys(n.split("_sens_")[0] for n in names))
    predictors = list(dict.fromkeys(n.split("_sens_")[1].removesuffix("_mean") for n in names))
    fig, axes = plt.subplots(
        len(predictors), len(targets), figsize=(6.0 * len(targets), 3.0 * len(predictors)), squeeze=False
    )
    for i, predictor in enumerate(predictors):
        for j, target in enumerate(targets):
            var = ds[f"{target}_sens_{predictor}_mean"]
            values = var.values
            limit = float(np.nanpercentile(np.abs(values), 98)) if np.isfinite(values).any() else 1.0
            ax = axes[i, j]
            im = ax.pcolormesh(
                ds.lon, ds.lat, values, shading="auto", cmap="RdBu_r", vmin=-(limit or 1.0), vmax=limit or 1.0
            )
            ax.set_facecolor(OCEAN)
            ax.set_aspect("equal")
            ax.set_title(f"d{target}/d{predictor}, period mean", fontsize=10)
            fig.colorbar(im, ax=ax, shrink=0.85, label=var.attrs.get("units", ""))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return Path(path).name
