"""The run report: maps, seasonal cycles, held-out skill, calibration, baselines, global totals.

:func:`write_report` writes PNG figures (matplotlib, plain latitude-longitude axes) and
``report/report.md``, which ties them together with the cross-validated skill
(:func:`upscale.evaluation.summarise_metrics`) and the area-weighted global totals
(:func:`upscale.aggregate.global_totals`). Each figure is drawn only when its inputs exist;
``report.md`` says what is missing and why.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from upscale.aggregate import global_totals, zonal_sums
from upscale.cf import flag_share
from upscale.evaluation import prediction_name, summarise_metrics
from upscale.explain.summary import markdown_section as explanations
from upscale.metrics import coverage
from upscale.outputs import COMPLETE_ATTR, FLAG_NAME, uncertainty_names
from upscale.rundir import RunDir

OCEAN = "#dfe7ef"
LAT_BANDS = ((60, 90), (30, 60), (0, 30), (-30, 0), (-60, -30), (-90, -60))
LEVELS = np.round(np.arange(0.1, 1.0, 0.1), 2)
DPI = 90


def write_report(run_dir: str | Path, targets: list[str]) -> list[str]:
    """Write ``report/*.png`` and ``report/report.md`` of a run; returns the figure file names.

    Parameters
    ----------
    run_dir : str or Path
        The run directory (reads ``product.zarr``, ``cv/oof.zarr``, ``cv/metrics.csv`` and,
        when present, ``cv/baselines.csv``).
    targets : list of str
        Targets of the run.
    """
    files = RunDir(run_dir)
    run_dir, out = files.root, files.report
    out.mkdir(exist_ok=True)
    product = xr.open_zarr(files.product) if files.product.exists() else None
    if product is not None and FLAG_NAME in product:  # its time mean is the share of days flagged
        product = product.assign({FLAG_NAME: flag_share(product[FLAG_NAME])})
    oof = xr.open_zarr(files.oof) if files.oof.exists() else None
    metrics = _read_csv(files.metrics)
    baselines = _read_csv(files.baselines)
    figures: dict[str, str] = {}
    means = None
    zonal = None
    if product is not None:
        means = product.mean("time").compute()  # one pass over the product for every map
        zonal = zonal_sums(product, [name for t in targets for name in (t, f"{t}_sd")])  # one for bands, totals
        figures["mean_maps.png"] = _maps(
            means, [(t, f"{t}_sd") for t in targets], out / "mean_maps.png", ("YlGn", "magma_r")
        )
        figures["uncertainty_maps.png"] = _uncertainty_maps(means, targets, out / "uncertainty_maps.png")
        if FLAG_NAME in product:
            figures["extrapolation_map.png"] = _extrapolation_map(means, out / "extrapolation_map.png")
        figures["seasonal_cycle.png"] = _seasonal_cycle(product, zonal, targets, out / "seasonal_cycle.png")
    if oof is not None:
        figures["heldout_scatter.png"] = _scatter(oof, targets, out / "heldout_scatter.png")
        figures["calibration.png"] = _calibration(oof, targets, out / "calibration.png")
    if metrics is not None and baselines is not None:
        figures["baseline_skill.png"] = _baseline_skill(metrics, baselines, targets, out / "baseline_skill.png")
    files.report_md.write_text(_markdown(run_dir, product, zonal, metrics, baselines, means, figures))
    return list(figures)


def _read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def _label(ds: xr.Dataset, name: str) -> str:
    return f"{name} [{ds[name].attrs.get('units', '')}]"


def _map_axes(ax, title: str) -> None:
    ax.set_facecolor(OCEAN)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("longitude [deg E]")
    ax.set_ylabel("latitude [deg N]")
    ax.set_aspect("equal")


def _maps(means: xr.Dataset, rows: list[tuple[str, ...]], path: Path, cmaps: tuple[str, ...]) -> str:
    """A grid of time-mean maps: one row per tuple of variable names, one colour map per column."""
    ncol = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(6.2 * ncol, 3.3 * len(rows)), squeeze=False)
    for i, names in enumerate(rows):
        for j, name in enumerate(names):
            im = axes[i, j].pcolormesh(means.lon, means.lat, means[name], shading="auto", cmap=cmaps[j])
            _map_axes(axes[i, j], f"{_label(means, name)}, time mean")
            fig.colorbar(im, ax=axes[i, j], shrink=0.85)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return "time-mean maps of the ensemble mean (left) and of its total predictive standard deviation (right)"


def _uncertainty_maps(means: xr.Dataset, targets: list[str], path: Path) -> str:
    """Epistemic and aleatoric sd on one colour scale per target, and the epistemic share of the variance."""
    fig, axes = plt.subplots(len(targets), 3, figsize=(18, 3.3 * len(targets)), squeeze=False)
    for i, target in enumerate(targets):
        total, epistemic, aleatoric = uncertainty_names(target)
        vmax = float(np.nanmax([means[epistemic].max(), means[aleatoric].max()]))
        for j, name in enumerate((epistemic, aleatoric)):
            im = axes[i, j].pcolormesh(
                means.lon, means.lat, means[name], shading="auto", cmap="magma_r", vmin=0, vmax=vmax
            )
            _map_axes(axes[i, j], f"{_label(means, name)}, time mean")
            fig.colorbar(im, ax=axes[i, j], shrink=0.85)
        share = means[epistemic] ** 2 / means[total] ** 2
        im = axes[i, 2].pcolormesh(
            means.lon, means.lat, share, shading="auto", cmap="viridis", vmin=0, vmax=_share_max(share)
        )
        _map_axes(axes[i, 2], f"{target}: epistemic share of variance [1], (mean sd_epi / mean sd)^2")
        fig.colorbar(im, ax=axes[i, 2], shrink=0.85)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return (
        "the two parts of the uncertainty: epistemic (ensemble spread; grows away from the training "
        "sites) and aleatoric (predicted noise), on one colour scale, and the epistemic share of the variance"
    )


def _share_max(share: xr.DataArray) -> float:
    """Upper end of a colour scale for a share in [0, 1]: its maximum, at least 0.01 (small shares stay visible)."""
    top = float(share.max()) if np.isfinite(share).any() else 1.0
    return min(1.0, max(0.01, top))


def _extrapolation_map(means: xr.Dataset, path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    im = ax.pcolormesh(
        means.lon, means.lat, means[FLAG_NAME], shading="auto", cmap="Reds", vmin=0, vmax=_share_max(means[FLAG_NAME])
    )
    _map_axes(ax, "share of days with predictors outside the training range [1]")
    fig.colorbar(im, ax=ax, shrink=0.85)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return "share of days each pixel's predictors lie outside the range seen at the training sites (extrapolation)"


def band_means(ds: xr.Dataset, name: str, band: tuple[float, float], zonal: xr.Dataset | None = None) -> xr.DataArray:
    """Area-weighted mean of ``name`` over the cells (with data) whose centres lie in a latitude band, per day.

    The band is [south, north), closed at 90 N; a band without data gives NaN. ``zonal``: the
    product's :func:`~upscale.aggregate.zonal_sums` of ``name``, when already computed.
    """
    zonal = zonal_sums(ds, [name]) if zonal is None else zonal
    inside = (ds.lat >= band[0]) & ((ds.lat < band[1]) | (band[1] >= 90))
    area = zonal[f"{name}_area"].where(inside).sum("lat")
    return zonal[name].where(inside).sum("lat") / area.where(area > 0)


def _seasonal_cycle(product: xr.Dataset, zonal: xr.Dataset, targets: list[str], path: Path) -> str:
    """Mean seasonal cycle (month of year) of each latitude band with land, +- the band's mean total sd.

    ``zonal``: the product's :func:`~upscale.aggregate.zonal_sums` of every target and its ``_sd``.
    """
    fig, axes = plt.subplots(1, len(targets), figsize=(6.2 * len(targets), 4.2), squeeze=False)
    colours = plt.cm.coolwarm(np.linspace(1, 0, len(LAT_BANDS)))
    for ax, target in zip(axes[0], targets):
        for band, colour in zip(LAT_BANDS, colours):
            mean = band_means(product, target, band, zonal).groupby("time.month").mean()
            if not np.isfinite(mean).any():
                continue  # no land in the band
            sd = band_means(product, f"{target}_sd", band, zonal).groupby("time.month").mean()
            ax.plot(mean.month, mean, "o-", color=colour, label=_band_label(band))
            ax.fill_between(mean.month, mean - sd, mean + sd, color=colour, alpha=0.15)
        ax.set_xticks(range(1, 13))
        ax.set_xlabel("month")
        ax.set_ylabel(f"{target}, area-weighted land mean [{product[target].attrs.get('units', '')}]")
        ax.set_title(f"{target}: mean seasonal cycle by latitude band")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return (
        "mean seasonal cycle of the area-weighted land mean in 30-degree latitude bands; shading: +- the "
        "band's mean total standard deviation"
    )


def _band_label(band: tuple[float, float]) -> str:
    def deg(x):
        return f"{abs(x)}{'N' if x > 0 else 'S' if x < 0 else ''}"

    return f"{deg(band[0])}-{deg(band[1])}"


def _scatter(oof: xr.Dataset, targets: list[str], path: Path) -> str:
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 4.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        obs, pred = oof[target].values.ravel(), oof[prediction_name(target)].values.ravel()
        ok = np.isfinite(obs) & np.isfinite(pred)
        hb = ax.hexbin(obs[ok], pred[ok], gridsize=60, mincnt=1, bins="log", cmap="viridis")
        fig.colorbar(hb, ax=ax, label="site-days per hexagon")
        lim = [min(obs[ok].min(), pred[ok].min()), max(obs[ok].max(), pred[ok].max())] if ok.any() else [0, 1]
        ax.plot(lim, lim, "k--", lw=1)
        units = oof[target].attrs.get("units", "")
        ax.set_xlabel(f"observed {target} [{units}]")
        ax.set_ylabel(f"predicted {target}, out of fold [{units}]")
        ax.set_title(f"{target}: held-out sites, daily (n={ok.sum()})")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return "predicted (out of fold) against observed daily values at held-out sites; dashed: 1:1"


def calibration_curve(obs: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Observed coverage of the central Gaussian intervals at the nominal :data:`LEVELS`."""
    return np.array([coverage(obs, mean, sd, level) for level in LEVELS])


def _calibration(oof: xr.Dataset, targets: list[str], path: Path) -> str:
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets), 4.4), squeeze=False)
    for ax, target in zip(axes[0], targets):
        obs, mean, sd = (oof[n].values for n in (target, prediction_name(target), f"{target}_sd"))
        for i in range(obs.shape[0]):
            ax.plot(LEVELS, calibration_curve(obs[i], mean[i], sd[i]), color="0.75", lw=0.7)
        ax.plot(LEVELS, calibration_curve(obs, mean, sd), "o-", color="C3", label="all held-out sites")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        ax.plot([], [], color="0.75", lw=0.7, label="one site")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1)
        ax.set_xlabel("nominal central interval [1]")
        ax.set_ylabel("observed coverage [1]")
        ax.set_title(f"{target}: calibration (out of fold)")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return (
        "share of held-out observations inside the central Gaussian prediction interval against its nominal "
        "probability; below the diagonal: intervals too narrow (over-confident)"
    )


def baseline_comparison(metrics: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Per-site R2 of the learned model next to each baseline's: site, target, model, r2_learned, r2_baseline."""
    learned = metrics[["site", "target", "r2"]].rename(columns={"r2": "r2_learned"})
    base = baselines[["site", "target", "model", "r2"]].rename(columns={"r2": "r2_baseline"})
    return base.merge(learned, on=["site", "target"], how="inner")


def _baseline_skill(metrics: pd.DataFrame, baselines: pd.DataFrame, targets: list[str], path: Path) -> str:
    table = baseline_comparison(metrics, baselines)
    fig, axes = plt.subplots(1, len(targets), figsize=(4.8 * len(targets), 4.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        rows = table[table.target == target]
        for k, (model, group) in enumerate(rows.groupby("model")):
            ax.scatter(group.r2_baseline, group.r2_learned, s=22, marker="os^Dv"[k % 5], label=model)
        values = rows[["r2_baseline", "r2_learned"]].to_numpy(dtype=float)
        lo = float(np.nanmin(values)) if np.isfinite(values).any() else 0.0
        ax.plot([min(lo, 0), 1], [min(lo, 0), 1], "k--", lw=1)
        ax.set_xlabel("R2 of the process baseline [1]")
        ax.set_ylabel("R2 of the learned model, out of fold [1]")
        ax.set_title(f"{target}: per-site skill (above the line: learned better)", fontsize=10)
        if len(rows):
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return "per-site R2 of the learned model against each process baseline at the same held-out sites"


def _md_table(frame: pd.DataFrame, digits: int = 3) -> list[str]:
    """A markdown table (no dependency on tabulate)."""

    def cell(v):
        return f"{v:.{digits}g}" if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return lines + [""]


def _markdown(run_dir: Path, product, zonal, metrics, baselines, means, figures: dict[str, str]) -> str:
    """``report.md``: the product, the held-out skill, global totals, extrapolation, baselines, figures."""
    lines = ["# upscale run report", "", f"Run directory: `{run_dir}`", ""]
    if product is not None:
        lines += [
            f"Product: `product.zarr`, {product.sizes['time']} days from {str(product.time.values[0])[:10]} to "
            f"{str(product.time.values[-1])[:10]}, {product.sizes['lat']} x {product.sizes['lon']} cells; "
            f"source: {product.attrs.get('source', '?')}. Its global attribute `{COMPLETE_ATTR}` is "
            f"`{product.attrs.get(COMPLETE_ATTR, 'absent')}` (`true` once every tile is written: check it before use).",
            "",
        ]
    else:
        lines += ["No product: a site-only study (the recipe has no apply section), or apply has not run yet.", ""]
    if metrics is not None:
        summary = pd.DataFrame(summarise_metrics(metrics)).T.reset_index(names="target")
        lines += ["## Cross-validated skill (median over held-out sites, daily)", "", *_md_table(summary)]
    if product is not None:
        lines += _totals_section(product, zonal, means)
    lines += ["## Skill against the process baseline", "", *_baseline_section(metrics, baselines)]
    lines += ["## Figures", ""]
    for name, caption in figures.items():
        lines += [f"**{name}**: {caption}.", "", f"![{name}]({name})", ""]
    lines += explanations(run_dir, _md_table)
    return "\n".join(lines)


def _totals_section(product, zonal, means) -> list[str]:
    totals = global_totals(product, zonal)
    lines = [
        "## Global totals (area-weighted, true cell areas)",
        "",
        "Mean over the period of the daily global integral, times 365.25 days. `se_upper`: the same "
        "integral of the total standard deviation, the standard error if errors were fully correlated "
        "(an upper bound).",
        "",
        *_md_table(totals.drop(columns="target"), 4),
    ]
    if FLAG_NAME in product:
        share = float(means[FLAG_NAME].mean())
        lines += [
            "## Extrapolation",
            "",
            f"{100 * share:.1f}% of land pixel-days (mean over land pixels) have "
            "a predictor outside the range seen at the training sites (variable `extrapolation`).",
            "",
        ]
    return lines


def _baseline_section(metrics, baselines) -> list[str]:
    if baselines is None:
        return [
            "No process baseline: `cv/baselines.csv` is absent, so the per-site comparison with the "
            "process baseline is not drawn.",
            "",
        ]
    if metrics is None:
        return [
            "`cv/baselines.csv` exists but `cv/metrics.csv` does not (no cross-validation), so there is "
            "nothing to compare the baselines with.",
            "",
        ]
    table = baseline_comparison(metrics, baselines)
    table["learned_better"] = table.r2_learned > table.r2_baseline
    summary = (
        table.groupby(["target", "model"])
        .agg(
            sites=("site", "size"),
            median_r2_learned=("r2_learned", "median"),
            median_r2_baseline=("r2_baseline", "median"),
            learned_better=("learned_better", "sum"),
        )
        .reset_index()
    )
    return ["Per-site R2 at held-out sites (`cv/baselines.csv` against `cv/metrics.csv`):", "", *_md_table(summary)]
