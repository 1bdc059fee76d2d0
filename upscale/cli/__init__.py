"""The ``upscale`` command line: parses, calls one library function per command, maps errors to exit codes.

Exit codes: 0 success, 2 bad input (recipe, catalog, data, run directory), 1 unexpected failure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from upscale.cli.display import RichReporter, console, out, print_summary
from upscale.cli.guard import guard

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train land-flux models on flux towers and upscale them over global cubes.",
)

RecipeArg = typer.Argument(..., help="Recipe YAML file.", show_default=False)
SetOpt = typer.Option(None, "--set", metavar="KEY=VALUE", help="Override a recipe key: key.path=value (repeatable).")
RunDirOpt = typer.Option(None, "--run-dir", help="Run directory (default: output.run_dir of the recipe).")


def _flag(name: str, help: str):
    """A boolean flag that ``--help`` shows without a ``<bool>`` value."""
    return typer.Option(False, name, help=help, metavar="")


DebugOpt = _flag("--debug", "Show tracebacks.")


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
    print_summary(info, time.perf_counter() - started, recipe.targets)


def _start_cluster(cfg):
    """Start the recipe's cluster and say what started and where its dashboard is."""
    from upscale.cluster import describe, make_client

    client = make_client(cfg)
    console.print(f"dask cluster: {describe(cfg)}")
    if client is not None:
        console.print(f"dask dashboard: [link={client.dashboard_link}]{client.dashboard_link}[/link]")
    return client


@app.command()
def run(
    recipe: Path = RecipeArg,
    run_dir: Path | None = RunDirOpt,
    sets: list[str] | None = SetOpt,
    overwrite: bool = _flag(
        "--overwrite", "Replace an existing run (kept until the new run's first stage has finished)."
    ),
    debug: bool = DebugOpt,
):
    """Extract, cross-validate, train, apply, write the product and report: the whole pipeline."""
    from upscale.pipeline import STAGES

    guard(_execute)(recipe, sets, run_dir, overwrite, STAGES, True, debug=debug)


def _stage_command(stage: str, doc: str):
    def command(
        recipe: Path = RecipeArg,
        run_dir: Path | None = RunDirOpt,
        sets: list[str] | None = SetOpt,
        debug: bool = DebugOpt,
    ):
        from upscale.pipeline import stages_through

        # earlier stages run only if missing; the named stage always runs
        guard(_execute)(recipe, sets, run_dir, False, stages_through(stage), False, (stage,), debug=debug)

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

    guard(do_explain)(debug=debug)


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

    guard(check)(debug=debug)


@app.command()
def prepare(recipe: Path = RecipeArg, sets: list[str] | None = SetOpt, debug: bool = DebugOpt):
    """Read the predictors once into a cube chunked like the apply tiles, which the apply then reads."""

    def do_prepare():
        from upscale.cluster import LazyClient, make_client
        from upscale.pipeline.prepare import prepare_inputs

        loaded = _load(recipe, sets)
        # the recipe's cluster writes the blocks side by side, started only for two or more
        with LazyClient(lambda: make_client(loaded.cluster)) as client:
            info = prepare_inputs(loaded, client)
        written, reused = info["blocks"], info["reused_blocks"]
        out.print(f"[green]prepared[/] {info['path']} ({written} blocks written, {reused} reused)")

    guard(do_prepare)(debug=debug)


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

    guard(show)(debug=debug)


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

    guard(do_export)(debug=debug)


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

    guard(do_aggregate)(debug=debug)


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

    guard(write)(debug=debug)


def main():
    app()


if __name__ == "__main__":
    main()
