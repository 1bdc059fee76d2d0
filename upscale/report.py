"""The run report: maps of the product, held-out scatter plots and a markdown summary."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402


def write_report(run_dir: str | Path, targets: list[str]) -> list[str]:
    """Write ``report/*.png`` and ``report/report.md``; returns the figure file names."""
    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    figures = []
    if (run_dir / "product.zarr").exists():
        figures.append(_maps(xr.open_zarr(run_dir / "product.zarr"), targets, out / "mean_maps.png"))
    if (run_dir / "cv" / "oof.zarr").exists():
        figures.append(_scatter(xr.open_zarr(run_dir / "cv" / "oof.zarr"), targets, out / "heldout_scatter.png"))
    _markdown(run_dir, figures, out / "report.md")
    return figures


def _maps(product: xr.Dataset, targets: list[str], path: Path) -> str:
    fig, axes = plt.subplots(len(targets), 2, figsize=(12, 3.4 * len(targets)), squeeze=False)
    for row, target in enumerate(targets):
        for col, name in enumerate((target, f"{target}_sd")):
            da = product[name].mean("time")
            im = axes[row, col].pcolormesh(product.lon, product.lat, da, shading="auto",
                                           cmap="YlGn" if col == 0 else "magma_r")
            axes[row, col].set_title(f"{name}: time mean [{product[name].attrs.get('units', '')}]")
            axes[row, col].set_xlabel("longitude [deg E]")
            axes[row, col].set_ylabel("latitude [deg N]")
            fig.colorbar(im, ax=axes[row, col], shrink=0.85)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _scatter(oof: xr.Dataset, targets: list[str], path: Path) -> str:
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        obs, pred = oof[target].values.ravel(), oof[f"{target}_pred"].values.ravel()
        ok = np.isfinite(obs) & np.isfinite(pred)
        ax.hexbin(obs[ok], pred[ok], gridsize=60, mincnt=1, bins="log", cmap="viridis")
        lim = [min(obs[ok].min(), pred[ok].min()), max(obs[ok].max(), pred[ok].max())] if ok.any() else [0, 1]
        ax.plot(lim, lim, "k--", lw=1)
        units = oof[target].attrs.get("units", "")
        ax.set_xlabel(f"observed {target} [{units}]")
        ax.set_ylabel(f"predicted {target}, out of fold [{units}]")
        ax.set_title(f"{target}: held-out sites, daily (n={ok.sum()})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _markdown(run_dir: Path, figures: list[str], path: Path) -> None:
    lines = ["# upscale run report", "", f"Run directory: `{run_dir}`", ""]
    metrics = run_dir / "cv" / "metrics.csv"
    if metrics.exists():
        table = pd.read_csv(metrics)
        med = table.drop(columns="site").groupby("target").median(numeric_only=True)
        lines += ["## Cross-validated skill (median over held-out sites, daily)", "",
                  med.round(3).to_markdown() if _has_tabulate() else "```\n" + med.round(3).to_string() + "\n```", ""]
    for fig in figures:
        lines += [f"![{fig}]({fig})", ""]
    path.write_text("\n".join(lines))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False
