"""What the command line shows: progress bars, panels, the summary and its skill table."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import Progress
from rich.table import Table

from upscale.variables import VARIABLES

console = Console(stderr=True)
out = Console()


def panel(text: str, title: str) -> None:
    """An error panel on stderr: the message under a red title."""
    console.print(Panel(text, title=f"[bold red]{title}", title_align="left", expand=False))


class RichReporter:
    """Progress bars on the terminal for the pipeline's long steps."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self._tasks = {}

    def progress(self, description: str, total: int):
        task = self._tasks.get(description)
        if task is None:
            task = self._tasks[description] = self._progress.add_task(description, total=total)
        return lambda: self._progress.advance(task)

    def done(self, description: str) -> None:
        if description in self._tasks:
            self._progress.update(
                self._tasks[description], completed=self._progress.tasks[self._tasks[description]].total
            )

    def message(self, text: str) -> None:
        console.print(text, markup=False)


def print_summary(info: dict, seconds: float, targets: list[str] = ()) -> None:
    if info["cv"]:
        # off a terminal (a log, a pipe) rich assumes 80 columns; the table is not cut to fit them
        out.print(_skill_table(info["cv"], targets), width=None if out.is_terminal else max(out.width, 100))
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in info["timings"].items())
    out.print(
        Panel(
            _product_lines(info) + f"sites    : {info['sites']} sites x {info['days']} days\n"
            f"stages   : {timings}\n"
            f"total    : {seconds:.0f} s this invocation; log in {info['run_dir']}/log.txt",
            title="[bold green]upscale: done",
            title_align="left",
            expand=False,
        )
    )


def _product_lines(info: dict) -> str:
    if not info["product_bytes"]:  # a site-only study (no apply section), or apply has not run
        return "product  : none (a site-only study: the skill at held-out sites is in cv/)\n"
    size = f"{info['product_bytes'] / 1e6:.1f} MB"
    return f"product  : {info['product']}  ({size})\nopen with: xr.open_zarr({info['product']!r})\n"


#: Columns of the skill table: the metric's key in the CV summary -> its header.
SKILL_COLUMNS = {
    "n": "days",
    "r2": "R2",
    "nse": "NSE",
    "kge": "KGE",
    "rmse": "RMSE",
    "bias": "bias",
    "coverage_50": "50% PI",
    "coverage_90": "90% PI",
}


def _skill_table(cv: dict, targets=()) -> Table:
    """The cross-validated skill, one row per target in recipe order; units (of RMSE, bias) in a column of their own."""
    table = Table(
        title="cross-validated skill at held-out sites (median over sites, daily; RMSE and bias in units)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption="50% PI, 90% PI: share of observations inside the predicted intervals",
        caption_justify="left",
    )
    table.add_column("target", no_wrap=True)
    table.add_column("units", no_wrap=True)
    for header in SKILL_COLUMNS.values():
        table.add_column(header, justify="right", no_wrap=True)
    order = [t for t in targets if t in cv] + [t for t in cv if t not in targets]
    for target in order:
        stats = cv[target]
        units = VARIABLES[target].units if target in VARIABLES else ""
        table.add_row(escape(target), escape(units), *(f"{stats.get(c, float('nan')):.3g}" for c in SKILL_COLUMNS))
    return table
