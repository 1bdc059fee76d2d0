"""The ``upscale`` command line: parses, calls one library function per command, maps errors to exit codes.

Exit codes: 0 success, 2 bad input (recipe, catalog, data, run directory), 1 unexpected failure.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import signal
import threading
import time
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from upscale.errors import UpscaleError
from upscale.variables import VARIABLES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train land-flux models on flux towers and upscale them over global cubes.",
)
console = Console(stderr=True)
out = Console()

RecipeArg = typer.Argument(..., help="Recipe YAML file.", show_default=False)
SetOpt = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a recipe key: key.path=value (repeatable).")
RunDirOpt = typer.Option(None, "--run-dir", help="Run directory (default: output.run_dir of the recipe).")


def _flag(name: str, help: str):
    """A boolean flag that ``--help`` shows without a ``<bool>`` value."""
    return typer.Option(False, name, help=help, metavar="")


DebugOpt = _flag("--debug", "Show tracebacks.")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or a person's ``kill``), raised like Ctrl-C so the same cleanup runs."""


_ELSEWHERE = "write to another disk or folder (--run-dir, --output)"
#: OS errors that are the user's disk or paths, not upscale's bug: errno -> (what, what to do).
DISK_ERRORS = {
    errno.ENOSPC: ("no space left on the disk", f"Free space there, or {_ELSEWHERE}"),
    errno.EDQUOT: ("the disk quota is exceeded", f"Free space there, or {_ELSEWHERE}"),
    errno.EFBIG: ("a file is too large for the file system", f"It limits file sizes (FAT32?): {_ELSEWHERE}"),
    errno.EACCES: ("permission denied", f"Change the folder's permissions, or {_ELSEWHERE}"),
    errno.EPERM: ("operation not permitted", f"Change the folder's permissions, or {_ELSEWHERE}"),
    errno.EROFS: ("the file system is read-only", _ELSEWHERE.capitalize()),
    errno.ENOTDIR: ("a file stands where a folder is expected", "Move the file, or choose another path"),
    errno.EISDIR: ("a folder stands where a file is expected", "Move the folder, or choose another path"),
}


def _disk_error(exc: BaseException) -> OSError | None:
    """The OS error of :data:`DISK_ERRORS` behind ``exc`` (itself, or what it was raised from)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _panel(text: str, title: str) -> None:
    console.print(Panel(text, title=f"[bold red]{title}", title_align="left", expand=False))


@contextlib.contextmanager
def _sigterm_interrupts():
    """While the command runs, SIGTERM raises :class:`Terminated` (in the main thread; other threads leave it)."""

    def terminate(signum, frame):
        raise Terminated

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _guard(func):
    """Turn UpscaleErrors and the user's disk errors into one clear panel and exit code 2; bugs into exit code 1.

    Ctrl-C exits 130 and SIGTERM 143, each with one line saying the run can be resumed.
    """

    @functools.wraps(func)
    def wrapper(*args, debug: bool = False, **kwargs):
        try:
            with _sigterm_interrupts():
                return func(*args, **kwargs)
        except UpscaleError as exc:
            if debug:
                raise
            _panel(exc.message, exc.kind)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as exc:
            how, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
            console.print(f"[yellow]{how}; the same command again resumes where it stopped", soft_wrap=True)
            raise typer.Exit(code) from None
        except typer.Exit:
            raise
        except Exception as exc:
            if debug:
                raise
            disk = _disk_error(exc)
            if disk is not None:
                what, fix = DISK_ERRORS[disk.errno]
                where = disk.filename or "the folder being written (the run directory or --output)"
                _panel(f"{what} (in {where}). {fix}.", "disk error")
                raise typer.Exit(2) from None
            _panel(
                f"{type(exc).__name__}: {exc}\nThis is a bug in upscale or an unexpected input. "
                "Re-run with --debug for the traceback; the run's log.txt has details.",
                "unexpected error",
            )
            raise typer.Exit(1) from None

    return wrapper


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


def _load(recipe_path: Path, sets, run_dir: Path | None = None):
    from upscale.recipe import load_recipe

    overrides = list(sets or [])
    if run_dir is not None:
        overrides.append(f"output.run_dir={Path(run_dir).resolve()}")
    return load_recipe(recipe_path, overrides)


def _execute(recipe_path, sets, run_dir, overwrite, stages, new_run, force=()):
    from upscale import pipeline

    recipe = _load(recipe_path, sets, run_dir)
    started = time.perf_counter()
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        info = pipeline.execute(
            recipe,
            stages,
            overwrite=overwrite,
            new_run=new_run,
            force=force,
            reporter=RichReporter(progress),
            start_cluster=_start_cluster,
        )
    _print_summary(info, time.perf_counter() - started, recipe.targets)


def _start_cluster(cfg):
    """Start the recipe's cluster and say what started and where its dashboard is."""
    from upscale.cluster import describe, make_client

    client = make_client(cfg)
    console.print(f"dask cluster: {describe(cfg)}")
    if client is not None:
        console.print(f"dask dashboard: [link={client.dashboard_link}]{client.dashboard_link}[/link]")
    return client


def _print_summary(info: dict, seconds: float, targets: list[str] = ()) -> None:
    if info["cv"]:
        # off a terminal (a log, a pipe) rich assumes 80 columns; the table is not cut to fit them
        out.print(_skill_table(info["cv"], targets), width=None if out.is_terminal else max(out.width, 100))
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in info["timings"].items())
    out.print(
        Panel(
            f"product  : {info['product']}  ({info['product_bytes'] / 1e6:.1f} MB)\n"
            f"open with: xr.open_zarr({info['product']!r})\n"
            f"sites    : {info['sites']} sites x {info['days']} days\n"
            f"stages   : {timings}\n"
            f"total    : {seconds:.0f} s this invocation; log in {info['run_dir']}/log.txt",
            title="[bold green]upscale: done",
            title_align="left",
            expand=False,
        )
    )


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


@app.command()
def run(
    recipe: Path = RecipeArg,
    run_dir: Path | None = RunDirOpt,
    sets: list[str] | None = SetOpt,
    overwrite: bool = _flag("--overwrite", "Delete an existing run directory first."),
    debug: bool = DebugOpt,
):
    """Extract, cross-validate, train, apply, write the product and report: the whole pipeline."""
    from upscale.pipeline import STAGES

    _guard(_execute)(recipe, sets, run_dir, overwrite, STAGES, True, debug=debug)


def _stage_command(stage: str, doc: str):
    def command(
        recipe: Path = RecipeArg,
        run_dir: Path | None = RunDirOpt,
        sets: list[str] | None = SetOpt,
        debug: bool = DebugOpt,
    ):
        from upscale.pipeline import stages_through

        # earlier stages run only if missing; the named stage always runs
        _guard(_execute)(recipe, sets, run_dir, False, stages_through(stage), False, (stage,), debug=debug)

    command.__doc__ = doc
    app.command(name=stage)(command)


_stage_command("train", "Train the final ensemble (after extracting sites if needed).")
_stage_command("evaluate", "Cross-validate by leaving sites out: cv/metrics.csv and cv/oof.zarr.")
_stage_command("apply", "Apply the trained bundle over the grid into product.zarr (resumes finished tiles).")
_stage_command("report", "Write the report figures and report.md.")


@app.command()
def explain(
    run_dir: Path = typer.Argument(..., help="Run directory of a finished (or applied) run."),
    methods: list[str] | None = typer.Option(
        None,
        "--methods",
        help="importance, memory, attribution, sensitivity, cell_states (repeatable or "
        "comma-separated; default: the recipe's explain section, else all).",
    ),
    overwrite: bool = _flag("--overwrite", "Compute finished explanations again."),
    debug: bool = DebugOpt,
):
    """Explain the run's models: out of sample at the sites, and sensitivity maps over the grid (RUN_DIR/explain)."""

    def do_explain():
        from upscale import pipeline

        columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        started = time.perf_counter()
        with Progress(*columns, console=console, transient=False) as progress:
            run = pipeline.explain_run(
                run_dir, methods, overwrite, RichReporter(progress), start_cluster=_start_cluster
            )
        out.print(
            Panel(
                f"explanations: {run.path('explain')}\nreport     : {run.path('report', 'report.md')}\n"
                f"took {time.perf_counter() - started:.0f} s",
                title="[bold green]upscale explain: done",
                title_align="left",
                expand=False,
            )
        )

    _guard(do_explain)(debug=debug)


@app.command()
def validate(recipe: Path = RecipeArg, sets: list[str] | None = SetOpt, debug: bool = DebugOpt):
    """Check a recipe and its data (schema, catalog entries, variables, domain) in seconds."""

    def check():
        from upscale.pipeline import validate as check_recipe

        info = check_recipe(_load(recipe, sets))
        out.print(
            f"[green]recipe OK[/]: {info['sites']} sites; grid {info['grid']}; "
            f"{info['days']} days ({info['period']}); catalog {info['catalog']}"
        )

    _guard(check)(debug=debug)


@app.command()
def schema():
    """Print the JSON schema of recipes."""
    from upscale.recipe import json_schema

    out.print_json(json.dumps(json_schema()))


@app.command("cluster-script")
def cluster_script(recipe: Path = RecipeArg, sets: list[str] | None = SetOpt, debug: bool = DebugOpt):
    """Print the job script a slurm or pbs cluster would submit for each worker job; submits nothing."""

    def show():
        from upscale.cluster import job_script

        script = job_script(_load(recipe, sets).cluster)
        out.print(script, markup=False, highlight=False, soft_wrap=True)
        console.print("[dim]the scheduler address is filled in when `upscale run` starts the cluster[/]")

    _guard(show)(debug=debug)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    format: str = typer.Option("netcdf", "--format", help="netcdf or zarr."),
    output: Path | None = typer.Option(None, "--output", help="Output path."),
    debug: bool = DebugOpt,
):
    """Export the product of a run to NetCDF4 (compressed) or a copy in Zarr."""

    def do_export():
        from upscale.export import export_product

        path = export_product(run_dir, format, output)
        out.print(f"wrote {path}")

    _guard(do_export)(debug=debug)


@app.command()
def aggregate(
    run_dir: Path = typer.Argument(..., help="Run directory."),
    freq: str = typer.Option("month", "--freq", help="month or year."),
    overwrite: bool = _flag("--overwrite", "Replace an existing aggregate."),
    debug: bool = DebugOpt,
):
    """Monthly or annual means of the product into RUN_DIR/aggregates/product_<freq>.zarr."""

    def do_aggregate():
        from upscale.aggregate import aggregate_product

        path = aggregate_product(run_dir, freq, overwrite)
        out.print(f"wrote {path}")

    _guard(do_aggregate)(debug=debug)


@app.command("demo-data")
def demo_data(
    directory: Path = typer.Argument(..., help="Folder to write the demo world into (must not exist)."),
    seed: int = typer.Option(0, "--seed"),
    resolution: float = typer.Option(2.0, "--resolution"),
    start: str = typer.Option("2018-01-01", "--start"),
    end: str = typer.Option("2019-12-31", "--end"),
    sites: int = typer.Option(80, "--sites"),
    debug: bool = DebugOpt,
):
    """Write the synthetic demo world (ERA5-like, EO, GeoTIFF, FLUXNET2015 CSVs, truth, sensitivities) to DIR."""

    def write():
        from upscale.errors import RunDirError
        from upscale.sources.demo import DemoSpec, write_world

        if directory.exists():
            raise RunDirError("the folder exists", where=str(directory), fix="Give a new folder")
        with console.status("generating the demo world"):
            catalog = write_world(
                DemoSpec(seed=seed, resolution=resolution, start=start, end=end, n_sites=sites), directory
            )
        out.print(f"demo world written; catalog: {catalog}")

    _guard(write)(debug=debug)


def main():
    app()


if __name__ == "__main__":
    main()
