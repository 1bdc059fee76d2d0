"""The "Explanations" section of a run's report, from what the explain stage wrote into ``explain/``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from upscale.rundir import RunDir

CAPTIONS = {
    "importance.png": "permutation importance: loss of NSE at held-out sites when a predictor is permuted "
    "(dynamic ones in blocks), mean and sd over repeats",
    "memory.png": "memory effects: NSE at held-out sites when the history older than k days is destroyed, for all "
    "dynamic inputs together and for each alone",
    "memory_groups.png": "memory effects per site group (PFT, aridity)",
    "attribution.png": "integrated gradients: mean |attribution| of each day's prediction to each predictor at each "
    "lag (held-out sites)",
    "cell_states.png": "the LSTM cells most related to water storage (cumulative water deficit) against time at "
    "dry sites",
    "sensitivity_maps.png": "gridded sensitivity maps: the whole-period mean of the same-day derivative of the "
    "prediction with respect to each predictor (final ensemble)",
}


def markdown_section(run_dir: str | Path, md_table) -> list[str]:
    """Markdown lines of the Explanations section (empty when the run has no ``explain/``).

    Parameters
    ----------
    run_dir : str or Path
        The run directory.
    md_table : callable
        Renders a DataFrame as markdown lines (the report's table style).
    """
    folder = RunDir(run_dir).explain
    if not folder.is_dir():
        return []
    lines = [
        "## Explanations",
        "",
        "Site-level explanations use each cross-validation fold's ensemble on its own "
        "held-out sites; the maps use the final ensemble over the grid (see docs/explain.md).",
        "",
    ]
    importance = _csv(folder / "importance.csv")
    if importance is not None:
        top = importance.sort_values(["target", "nse_drop"], ascending=[True, False])
        lines += [
            "### Permutation importance (loss of NSE)",
            "",
            *md_table(top[["target", "predictor", "nse_base", "nse_drop", "nse_drop_sd"]]),
        ]
    memory = _csv(folder / "memory_summary.csv")
    if memory is not None:
        overall = memory[memory["group_by"].isin(["all", "aridity"])]
        lines += ["### Memory (skill with the full history minus skill with k = 0 days intact)", "", *md_table(overall)]
    cells = _csv(folder / "cell_states.csv")
    if cells is not None and len(cells):
        strongest = cells.assign(abs_r=cells["r_median"].abs()).sort_values("abs_r", ascending=False)
        best = strongest.groupby("variable", sort=False).head(1)
        lines += [
            "### Cell states (strongest cell per variable, median r over sites)",
            "",
            *md_table(best[["variable", "group", "fold", "member", "cell", "r_median", "r_pooled"]].head(12)),
        ]
    for name, caption in CAPTIONS.items():
        if (folder / "figures" / name).is_file():
            lines += [f"**{name}**: {caption}.", "", f"![{name}](../explain/figures/{name})", ""]
    return lines


def _csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None
