"""Shared fixtures: a tiny demo world written once per test session, and recipes over it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TINY = dict(seed=3, resolution=10.0, start="2018-01-01", end="2018-06-30", n_sites=12)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """Catalog path of a tiny demo world (10 degree grid, 6 months, 12 sites)."""
    from upscale.sources.demo import DemoSpec, write_world

    return write_world(DemoSpec(**TINY), tmp_path_factory.mktemp("world") / "demo")


def tiny_recipe_dict(catalog: Path, run_dir: Path) -> dict:
    """A small, fast recipe over the tiny world."""
    return {
        "name": "tiny",
        "catalog": str(catalog),
        "targets": ["gpp", "et"],
        "predictors": {"era5": ["tas", "vpd", "rsds", "rsds_pot", "pr"], "eo": ["fapar", "ndvi"], "static": ["pft"]},
        "model": {"type": "mlp", "hidden": [32, 32]},
        "training": {"ensemble": 2, "epochs": 15, "patience": 3, "batch_size": 256, "seed": 1, "workers": 1},
        "validation": {"scheme": "kfold", "folds": 3},
        "apply": {"tile_lat": 8, "tile_lon": 16, "time_chunk": 60},
        "output": {"run_dir": str(run_dir)},
        "cluster": {"type": "synchronous"},
    }


@pytest.fixture
def tiny_recipe(tiny_world, tmp_path) -> Path:
    """Path of a recipe file for the tiny world; the run directory is tmp_path/run."""
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe_dict(tiny_world, tmp_path / "run")))
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch thread is fastest, and immune to a busy machine's thread contention.

    Request it in a torch test module (``pytestmark = pytest.mark.usefixtures("one_thread")``);
    tests/explain applies it to every module.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def product_run(tiny_world, tmp_path_factory):
    """One complete tiny run (all stages, in process): shared by the CF, aggregate and report tests.

    The hybrid model writing its parameter maps, so that the CF checks cover those variables too.
    """
    from upscale.pipeline import STAGES, open_run, run_stages
    from upscale.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("cfrun")
    data = tiny_recipe_dict(tiny_world, tmp / "run")
    data["model"] = {"type": "hybrid", "hidden": [16]}
    data["output"]["parameters"] = True
    data["output"]["quantiles"] = [0.05, 0.5, 0.95]  # the CF checks cover the quantile variables too
    (tmp / "r.yaml").write_text(yaml.safe_dump(data))
    run = open_run(load_recipe(tmp / "r.yaml"))
    run_stages(run, STAGES)
    return run


def apply_job(run, store, **changes):
    """The apply job the pipeline builds for ``run`` (:meth:`upscale.pipeline.ApplyDomain.job`), writing into
    ``store``, with ``changes`` (e.g. another ``time_chunk``) for a store the test made itself."""
    from dataclasses import replace

    from upscale.pipeline import apply_domain

    return replace(apply_domain(run).job(str(store)), **changes)


@pytest.fixture(scope="session")
def site_table(tiny_world, tmp_path_factory) -> dict:
    """A user's own site table written from the tiny world's site files: ``daily`` (one CSV row per site
    and day), ``irregular`` (every third day at 10:30, as satellite overpasses) and their ``site_list``."""
    import pandas as pd

    from upscale.sources import fluxnet

    folder = tiny_world.parent / "fluxnet"
    ds = fluxnet.read(sorted(folder.glob("FLX_*_DD_*.csv")), site_list=folder / "sites.csv", qc_min=0)
    names = ["tas", "vpd", "rsds", "rsds_pot", "pr", "gpp", "le", "et"]
    rows = ds[names].reset_coords(drop=True).to_dataframe().reset_index().dropna(subset=["gpp", "et"], how="all")
    out = tmp_path_factory.mktemp("site_table")
    rows.to_csv(out / "daily.csv", index=False)
    overpasses = rows[rows["time"].dt.day_of_year % 3 == 0].assign(time=lambda f: f["time"] + pd.Timedelta("10h30min"))
    overpasses.to_csv(out / "irregular.csv", index=False)
    return {"daily": out / "daily.csv", "irregular": out / "irregular.csv", "site_list": folder / "sites.csv"}


def table_recipe_dict(table: dict, run_dir: Path, sampling: str = "daily") -> dict:
    """A site-only study on ``site_table``: every predictor from the table, no apply section, no catalog."""
    return {
        "name": "table",
        "targets": ["gpp", "et"],
        "predictors": {"table": ["tas", "vpd", "rsds", "rsds_pot", "pr", "pft"]},
        "sites": {"source": "table", "table": str(table[sampling]), "site_list": str(table["site_list"])},
        "model": {"type": "mlp", "hidden": [16]},
        "training": {"ensemble": 1, "epochs": 4, "patience": 2, "batch_size": 256, "seed": 1, "workers": 1},
        "validation": {"scheme": "loso"},
        "output": {"run_dir": str(run_dir)},
        "cluster": {"type": "synchronous"},
    }


@pytest.fixture(scope="session")
def tiled_reference(product_run, tmp_path_factory) -> dict[str, bytes]:
    """The product run's bundle applied in the fault tests' tiles (tests/faults.py), in process, uninterrupted."""
    from tests.faults import open_copy, product_arrays, trained_copy
    from upscale.pipeline import stage_apply

    root = tmp_path_factory.mktemp("tiled") / "run"
    run = open_copy(trained_copy(product_run, root, {"type": "synchronous"}))
    stage_apply(run)
    return product_arrays(run.files.product)
