"""The apply stage: its domain in the predictor cubes, the job every worker gets, the product, resuming it."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from tests.conftest import tiny_recipe_dict
from upscale.bundle import parameter_info, read_meta
from upscale.cf import product_units
from upscale.errors import BundleError, RecipeError, RunDirError
from upscale.outputs import COMPLETE_ATTR
from upscale.pipeline import Run, apply_domain, apply_index, stage_apply
from upscale.recipe import Recipe

CUBE = xr.Dataset(
    coords={
        "time": pd.date_range("2018-01-01", periods=10),
        "lat": [-5.0, 0.0, 5.0, 10.0],
        "lon": [0.0, 10.0, 20.0, 30.0, 40.0],
    }
)


def recipe_with(**apply) -> Recipe:
    return Recipe.model_validate({"catalog": "c", "predictors": {"era5": ["tas"]}, "apply": apply})


@pytest.mark.parametrize(
    "apply, index",
    [
        ({}, ((0, 10), (0, 4), (0, 5))),
        ({"period": {"start": "2018-01-03", "end": "2018-01-05"}}, ((2, 5), (0, 4), (0, 5))),
        ({"period": {"start": "2017-06-01", "end": "2018-01-01"}}, ((0, 1), (0, 4), (0, 5))),
        ({"bbox": [10, 0, 30, 5]}, ((0, 10), (1, 3), (1, 4))),  # edges included
        ({"bbox": [-180, -90, 180, 90]}, ((0, 10), (0, 4), (0, 5))),
    ],
)
def test_apply_index_of_period_and_bbox(apply, index):
    assert apply_index(recipe_with(**apply), CUBE) == index


@pytest.mark.parametrize(
    "apply, where",
    [
        ({"period": {"start": "2019-01-01", "end": "2019-12-31"}}, "apply.period"),
        ({"bbox": [100, 50, 110, 60]}, "apply.bbox"),  # north of the cube
        ({"bbox": [1, -5, 9, 10]}, "apply.bbox"),  # between two longitudes
    ],
)
def test_an_empty_apply_domain_is_a_recipe_error(apply, where):
    with pytest.raises(RecipeError, match="the apply domain is empty") as err:
        apply_index(recipe_with(**apply), CUBE)
    assert err.value.where == where
    assert "2018-01-01..2018-01-10, lat -5.00..10.00, lon 0.00..40.00" in err.value.fix


@pytest.fixture(scope="module")
def domain(product_run):
    """The finished product run's apply domain (the hybrid bundle, writing parameter maps)."""
    return apply_domain(product_run)


def with_recipe(domain, *changes: tuple[str, str, object]):
    """The domain under a changed copy of its recipe: (section, key, value) changes."""
    recipe = domain.run.recipe.model_copy(deep=True)
    for section, key, value in changes:
        setattr(getattr(recipe, section), key, value)
    run = Run(recipe=recipe, files=domain.run.files, manifest=domain.run.manifest)
    return dataclasses.replace(domain, run=run)


def test_the_job_carries_the_bundle_and_the_domain(domain, product_run):
    job = domain.job("p.zarr")
    meta = read_meta(product_run.files.bundle)
    assert (job.bundle_dir, job.bundle_hash, job.store_path) == (str(product_run.files.bundle), meta["hash"], "p.zarr")
    assert job.catalog_path == str(product_run.catalog.path)
    assert list(job.dynamic) == [tuple(p) for p in product_run.recipe.dynamic_predictors()]
    assert list(job.static) == [tuple(p) for p in product_run.recipe.static_predictors()]
    assert job.time_index == (0, 181) and (job.lat_offset, job.lon_offset) == (0, 0)
    assert job.time_chunk == 60 and job.torch_threads == 1
    assert job.ranges == meta["predictor_ranges"] and job.ranges  # the extrapolation flag's ranges


@pytest.mark.parametrize("units", ["default", "si"])
def test_the_job_converts_into_the_product_units(domain, units):
    job = with_recipe(domain, ("output", "units", units)).job("p.zarr")
    assert job.factors == tuple((t, product_units(t, units)[1]) for t in ("gpp", "et"))
    assert (job.factors == (("gpp", 1.0), ("et", 1.0))) is (units == "default")


def test_parameter_maps_only_with_output_parameters(domain):
    names = tuple(parameter_info(domain.meta))
    assert names and domain.job("p.zarr").parameters == names
    assert set(names) <= set(domain.variables())
    without = with_recipe(domain, ("output", "parameters", False))
    assert without.job("p.zarr").parameters == ()
    assert not set(names) & set(without.variables()) and {"gpp", "et_sd"} <= set(without.variables())


def test_a_bbox_offsets_the_job_and_cuts_the_tiles(domain):
    cut = dataclasses.replace(domain, index=((30, 90), (2, 11), (5, 30)))
    job = cut.job("p.zarr")
    assert job.time_index == (30, 90) and (job.lat_offset, job.lon_offset) == (2, 5)
    days, lat, lon = cut.axes()
    assert (days.size, lat.size, lon.size) == (60, 9, 25) and lat[0] == domain.dyn.lat.values[2]
    tiles = cut.tiles()  # tiles of 8 x 16 cells over the 9 x 25 cells
    assert [(t.lat0, t.lat1, t.lon0, t.lon1) for t in tiles] == [
        (0, 8, 0, 16),
        (0, 8, 16, 25),
        (8, 9, 0, 16),
        (8, 9, 16, 25),
    ]


# ---- the product of the finished run ----------------------------------------------------------


def test_product_is_finite_over_land_and_nan_over_ocean(product_run, tiny_world):
    product = xr.open_zarr(product_run.files.product)
    truth = xr.open_zarr(tiny_world.parent / "truth.zarr")
    assert set(product.data_vars) >= {"gpp", "gpp_sd", "et", "et_sd"}
    assert product["gpp"].dims == ("time", "lat", "lon")
    assert product.sizes["time"] == truth.sizes["time"]
    land = truth["land_mask"].values.astype(bool)
    for name in ("gpp", "gpp_sd", "et", "et_sd"):
        values = product[name].values
        assert np.isfinite(values[:, land]).all(), name
        assert np.isnan(values[:, ~land]).all(), name
    assert (product["gpp_sd"].values[:, land] > 0).all()
    assert product["gpp"].attrs["standard_name"] == "gross_primary_productivity_of_biomass_expressed_as_carbon"
    assert product["gpp"].attrs["units"] == "g m-2 d-1"
    assert product["et"].attrs["standard_name"] == "water_evapotranspiration_flux"
    ancillary = "gpp_sd gpp_sd_epistemic gpp_sd_aleatoric gpp_q05 gpp_q50 gpp_q95 extrapolation"
    assert product["gpp"].attrs["ancillary_variables"] == ancillary  # product_run writes three quantiles
    for name in ("gpp", "gpp_q05", "gpp_q50", "gpp_q95", "et", "et_q05"):  # bounded: never negative
        values = product[name].values[:, land]
        assert np.isfinite(values).all() and (values >= 0).all(), name
    assert (product["gpp_q05"].values[:, land] <= product["gpp_q95"].values[:, land]).all()
    assert product.attrs["Conventions"].startswith("CF-")


def test_product_tracks_the_truth(product_run, tiny_world):
    product = xr.open_zarr(product_run.files.product)
    truth = xr.open_zarr(tiny_world.parent / "truth.zarr")
    land = truth["land_mask"].values.astype(bool)
    pred = product["gpp"].values[:, land].ravel()
    true = truth["gpp"].values[:, land].ravel()
    assert np.corrcoef(pred, true)[0, 1] > 0.7


# ---- resuming ---------------------------------------------------------------------------------


def _store_bytes(store: Path) -> dict[str, bytes]:
    """Every chunk file of the data variables (metadata holds timestamps and is left out)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.parent.name not in ("time", "lat", "lon") and not p.name.startswith((".", "zarr"))
    }


@pytest.fixture
def applied(monkeypatch):
    """The tile ids each apply_tiles call of the apply stage is given (the tiles still run)."""
    import upscale.apply

    calls, real = [], upscale.apply.apply_tiles

    def apply_tiles(client, job, tiles, on_tile, task=None):
        calls.append([t.id for t in tiles])
        real(client, job, tiles, on_tile, task)

    monkeypatch.setattr(upscale.apply, "apply_tiles", apply_tiles)
    return calls


def keep_tiles(manifest, ids) -> None:
    """Make the run's tile log record only ``ids`` (as if the run had stopped after them)."""
    manifest.tiles_path.write_text("".join(f"{i}\n" for i in ids))


def test_apply_resumes_only_the_unfinished_tiles(run_copy, applied):
    before = _store_bytes(run_copy.files.product)
    tiles = run_copy.manifest.tiles_path.read_text().split()  # 18 x 36 cells in tiles of 8 x 16
    assert stage_apply(run_copy) == {"tiles": 9, "resumed_tiles": 9} and applied == []  # nothing to run
    keep_tiles(run_copy.manifest, tiles[:4])
    assert stage_apply(run_copy) == {"tiles": 9, "resumed_tiles": 4}
    assert sorted(applied[0]) == sorted(tiles[4:]) and run_copy.manifest.tiles == set(tiles)
    assert _store_bytes(run_copy.files.product) == before


def test_a_new_bundle_starts_the_product_over(run_copy, applied):
    run_copy.manifest.set("product_bundle", "a bundle trained before")
    assert stage_apply(run_copy) == {"tiles": 9, "resumed_tiles": 0} and len(applied[0]) == 9
    assert run_copy.manifest.get("product_bundle") == read_meta(run_copy.files.bundle)["hash"]
    assert not run_copy.manifest.stage_done("apply")  # the stage itself is recorded by run_stages


def test_killed_run_resumes_to_the_same_bytes(tiny_world, tmp_path):
    data = tiny_recipe_dict(tiny_world, tmp_path / "run")
    data["validation"] = {"scheme": "none"}
    data["apply"] = {"tile_lat": 2, "tile_lon": 4, "time_chunk": 60}  # 81 tiles: time to kill mid-apply
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "upscale.cli", "run", str(recipe)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest, tile_log = tmp_path / "run" / "manifest.json", tmp_path / "run" / "manifest.tiles"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if tile_log.exists() and tile_log.read_text().count("\n") >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = tile_log.read_text().count("\n")
    assert 0 < done_before < 81
    resumed = subprocess.run(
        [sys.executable, "-m", "upscale.cli", "run", str(recipe)], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "complete" in manifest.read_text()
    resumed_bytes = _store_bytes(tmp_path / "run" / "product.zarr")
    # the same bundle applied again from scratch, uninterrupted
    (tmp_path / "run" / "product.zarr").rename(tmp_path / "resumed.zarr")
    again = subprocess.run(
        [sys.executable, "-m", "upscale.cli", "apply", str(recipe)], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    fresh_bytes = _store_bytes(tmp_path / "run" / "product.zarr")
    assert resumed_bytes.keys() == fresh_bytes.keys() and len(fresh_bytes) > 0
    assert all(resumed_bytes[k] == fresh_bytes[k] for k in fresh_bytes)


# ---- the bundle verified once, in the client, before anything is written or started -----------


@pytest.fixture
def unapplied(run_copy):
    """The copy of the finished run as it stood after training: a bundle, no product."""
    import shutil

    shutil.rmtree(run_copy.files.product)
    run_copy.manifest.reset_stages("apply", "explain", "report")
    run_copy.manifest.data.pop("product_bundle", None)
    run_copy.manifest.set("complete", False)
    return run_copy


def never_started():
    raise AssertionError("a Dask client was started")


def truncate_member(run: Run) -> Path:
    path = run.files.bundle / "member-0.safetensors"
    path.write_bytes(path.read_bytes()[:64])
    return path


def edit_bundle_json(run: Run) -> Path:
    path = run.files.bundle / "bundle.json"
    meta = json.loads(path.read_text())
    meta["training_sites"] = meta["training_sites"][:-1]
    path.write_text(json.dumps(meta))
    return path


def delete_member(run: Run) -> Path:
    path = run.files.bundle / "member-1.safetensors"
    path.unlink()
    return path


@pytest.mark.parametrize("corrupt", [truncate_member, edit_bundle_json, delete_member])
def test_a_corrupt_bundle_stops_the_apply_before_the_template_and_the_workers(unapplied, corrupt):
    path = corrupt(unapplied)
    with pytest.raises(BundleError) as err:
        stage_apply(unapplied, client_factory=never_started)
    assert err.value.where == str(path) and "upscale train" in err.value.fix
    assert not unapplied.files.product.exists() and unapplied.manifest.get("product_bundle") is None


def test_a_forced_apply_of_a_finished_product_verifies_its_bundle(run_copy, applied):
    """`upscale apply` on a finished run: every tile is done, and the truncated weights are still found."""
    before = _store_bytes(run_copy.files.product)
    path = truncate_member(run_copy)
    with pytest.raises(BundleError, match="does not match its checksum") as err:
        stage_apply(run_copy, client_factory=never_started)
    assert err.value.where == str(path) and applied == []
    assert _store_bytes(run_copy.files.product) == before


def test_a_finished_product_needs_no_client(run_copy, applied):
    assert stage_apply(run_copy, client_factory=never_started) == {"tiles": 9, "resumed_tiles": 9}


def test_the_client_is_started_once_there_are_tiles_to_run(run_copy, applied):
    started = []
    keep_tiles(run_copy.manifest, sorted(run_copy.manifest.tiles)[:8])
    assert stage_apply(run_copy, client_factory=lambda: started.append(1)) == {"tiles": 9, "resumed_tiles": 8}
    assert started == [1] and len(applied[0]) == 1


# ---- the store says whether it is complete ----------------------------------------------------


def test_the_finished_product_says_it_is_complete(product_run):
    assert xr.open_zarr(product_run.files.product).attrs[COMPLETE_ATTR] == "true"
    assert product_run.files.finished_product() == product_run.files.product


def test_a_product_stopped_mid_apply_says_it_is_incomplete(run_copy, monkeypatch):
    import upscale.apply

    def one_tile_then_fail(client, job, tiles, on_tile, task=None):
        on_tile(upscale.apply.run_tile(job, tiles[0]))
        raise KeyboardInterrupt

    keep_tiles(run_copy.manifest, [])
    monkeypatch.setattr(upscale.apply, "apply_tiles", one_tile_then_fail)
    with pytest.raises(KeyboardInterrupt):
        stage_apply(run_copy)
    assert xr.open_zarr(run_copy.files.product).attrs[COMPLETE_ATTR] == "false"
    with pytest.raises(RunDirError, match="the product is unfinished"):
        run_copy.files.finished_product()  # even where a manifest says apply finished
    monkeypatch.undo()
    assert stage_apply(run_copy)["resumed_tiles"] == 1
    assert xr.open_zarr(run_copy.files.product).attrs[COMPLETE_ATTR] == "true"


def test_the_store_is_incomplete_while_its_tiles_are_written(unapplied, monkeypatch):
    import upscale.apply

    seen, real = [], upscale.apply.apply_tiles

    def apply_tiles(client, job, tiles, on_tile, task=None):
        seen.append(xr.open_zarr(job.store_path).attrs[COMPLETE_ATTR])
        real(client, job, tiles, on_tile, task)

    monkeypatch.setattr(upscale.apply, "apply_tiles", apply_tiles)
    stage_apply(unapplied)
    assert seen == ["false"] and xr.open_zarr(unapplied.files.product).attrs[COMPLETE_ATTR] == "true"
