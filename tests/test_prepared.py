"""The prepared cube: equal to the catalog's inputs after conversion, chunked like the tiles, CF-described,
resumable, reused, and refused once stale (the apply reading it: tests/test_apply.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_recipe_dict
from upscale.errors import DataError
from upscale.features import open_predictors
from upscale.pipeline.prepare import prepare_inputs
from upscale.prepared import BLOCKS_ATTR, cube_blocks, cube_key, default_path, open_cube, prepare_cube, resolve_cube
from upscale.recipe import load_recipe


def recipe_with(tiny_world, tmp_path, **apply):
    data = tiny_recipe_dict(tiny_world, tmp_path / "run")
    data["apply"].update(apply)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    return load_recipe(tmp_path / "r.yaml")


@pytest.fixture(scope="module")
def prepared(tiny_world, tmp_path_factory):
    """A cube of a bbox of the tiny world (so that the domain's offsets matter), and its recipe."""
    tmp = tmp_path_factory.mktemp("prepared")
    recipe = recipe_with(tiny_world, tmp, prepared=str(tmp / "cube.zarr"), bbox=[-150, -40, 120, 70], time_chunk=50)
    return recipe, prepare_inputs(recipe)


def test_cube_equals_the_converted_inputs(prepared):
    recipe, info = prepared
    dyn, stat = open_predictors(str(recipe.catalog), recipe.dynamic_predictors(), recipe.static_predictors())
    box = dict(lat=slice(-40, 70), lon=slice(-150, 120))
    dyn, stat = dyn.sel(**box), stat.sel(**box)
    group = zarr.open_group(info["path"], mode="r")
    for name in [*dyn.data_vars, *stat.data_vars]:
        expected = (dyn if name in dyn else stat)[name].values
        assert group[name].shape == expected.shape
        np.testing.assert_array_equal(group[name][...], expected)  # NaN where NaN, every value exact
        assert group[name].dtype == expected.dtype
    assert group["tas"].chunks == (50, 8, 16)
    assert group["pft"].chunks == (8, 16)
    assert group["tas"].attrs["units"] == "degC" and group["fapar"].attrs["units"] == "1"
    assert group["lat"].attrs["units"] == "degrees_north"


def test_prepare_again_reuses_the_cube(prepared):
    recipe, info = prepared
    again = prepare_inputs(recipe)
    assert again["key"] == info["key"] and again["blocks"] == 0 and again["reused_blocks"] == info["blocks"]


def test_interrupted_prepare_resumes(tiny_world, tmp_path):
    recipe = recipe_with(tiny_world, tmp_path, prepared=str(tmp_path / "c.zarr"), time_chunk=30)
    full = prepare_inputs(recipe)
    group = zarr.open_group(full["path"], mode="r+")
    done = group.attrs[BLOCKS_ATTR]
    reference = group["rsds"][...]
    group["rsds"][-5:] = 0.0  # the last block was being written when the process died
    group.attrs[BLOCKS_ATTR] = done[:-1]
    resumed = prepare_inputs(recipe)
    assert resumed["blocks"] == 1 and resumed["reused_blocks"] == len(done) - 1
    np.testing.assert_array_equal(zarr.open_group(full["path"], mode="r")["rsds"][...], reference)


def test_stale_cube_is_refused(tiny_world, tmp_path):
    from upscale.encoding import FeatureSpec

    recipe = recipe_with(tiny_world, tmp_path, prepared=str(tmp_path / "c.zarr"))
    info = prepare_inputs(recipe)
    spec = FeatureSpec(recipe.dynamic_predictors(), recipe.static_predictors(), [])
    index = ((0, 181), (0, 18), (0, 36))
    assert resolve_cube(recipe.apply.prepared, str(recipe.catalog), spec, index, recipe.apply) == (
        info["path"],
        info["key"],
    )
    with pytest.raises(DataError, match="stale"):  # another domain
        resolve_cube(recipe.apply.prepared, str(recipe.catalog), spec, ((0, 90), (0, 18), (0, 36)), recipe.apply)
    era5 = sorted((tiny_world.parent / "era5").glob("*.nc"))[0]
    os.utime(era5, ns=(era5.stat().st_atime_ns, era5.stat().st_mtime_ns + 10**9))  # the input changed
    open_cube.cache_clear()
    with pytest.raises(DataError, match="stale") as caught:
        resolve_cube(recipe.apply.prepared, str(recipe.catalog), spec, index, recipe.apply)
    assert "upscale prepare" in caught.value.fix
    with pytest.raises(DataError, match="no prepared cube"):
        resolve_cube(str(tmp_path / "none.zarr"), str(recipe.catalog), spec, index, recipe.apply)
    assert prepare_inputs(recipe)["blocks"] > 0  # prepare makes the stale cube again
    os.utime(era5, ns=(era5.stat().st_atime_ns, era5.stat().st_mtime_ns - 10**9))


def test_without_a_path_the_cache_cube_is_found(tiny_world, tmp_path, monkeypatch):
    from upscale.encoding import FeatureSpec

    monkeypatch.setenv("UPSCALE_CACHE", str(tmp_path / "cache"))
    recipe = recipe_with(tiny_world, tmp_path, time_chunk=90)
    spec = FeatureSpec(recipe.dynamic_predictors(), recipe.static_predictors(), [])
    index = ((0, 181), (0, 18), (0, 36))
    assert resolve_cube(None, str(recipe.catalog), spec, index, recipe.apply) is None  # none made yet
    info = prepare_inputs(recipe)
    key = cube_key(str(recipe.catalog), spec.dynamic, spec.static, index, (90, 8, 16))
    assert info["key"] == key and info["path"] == str(default_path(key))
    assert info["path"].startswith(str(tmp_path / "cache"))
    assert resolve_cube(None, str(recipe.catalog), spec, index, recipe.apply) == (info["path"], key)


def test_a_foreign_directory_is_not_overwritten(tiny_world, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    recipe = recipe_with(tiny_world, tmp_path, prepared=str(tmp_path / "mine"))
    with pytest.raises(DataError, match="not a prepared cube"):
        prepare_inputs(recipe)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@settings(deadline=None)  # up to 10**5 blocks of one day and one row in the worst examples
@given(
    n_days=st.integers(1, 1000),
    n_rows=st.integers(1, 100),
    time_chunk=st.integers(1, 400),
    tile_lat=st.integers(1, 64),
    bytes_per_row_day=st.integers(1, 10**5),
    max_mem=st.integers(1, 10**10),
)
def test_cube_blocks_tile_the_domain_in_whole_chunks_within_max_mem(
    n_days, n_rows, time_chunk, tile_lat, bytes_per_row_day, max_mem
):
    blocks = cube_blocks(n_days, n_rows, (time_chunk, tile_lat), bytes_per_row_day, max_mem)
    covered = np.zeros((n_days, n_rows), dtype=int)
    for start, stop, row0, row1 in blocks:
        assert start % time_chunk == 0 and row0 % tile_lat == 0  # aligned: no chunk is shared by two blocks
        assert (stop % time_chunk == 0 or stop == n_days) and (row1 % tile_lat == 0 or row1 == n_rows)
        smallest = stop - start <= time_chunk and row1 - row0 <= tile_lat
        assert (stop - start) * (row1 - row0) * bytes_per_row_day <= max_mem or smallest
        covered[start:stop, row0:row1] += 1
    assert (covered == 1).all()  # every day and row once


def cube_arguments(recipe):
    """The catalog path, predictors, apply index and 50-day chunks that `prepare_cube` takes for `recipe`."""
    from upscale.pipeline.domain import apply_index
    from upscale.sources.catalog import cached_catalog

    catalog = str(cached_catalog(str(recipe.catalog)).path)
    dynamic, static = recipe.dynamic_predictors(), recipe.static_predictors()
    index = apply_index(recipe, open_predictors(catalog, dynamic, static)[0])
    chunks = (50, recipe.apply.tile_lat, recipe.apply.tile_lon)
    return catalog, dynamic, static, index, chunks


def test_a_cube_written_in_bands_of_rows_equals_one_written_whole(tiny_world, tmp_path):
    recipe = recipe_with(tiny_world, tmp_path, prepared=str(tmp_path / "whole.zarr"), time_chunk=50)
    whole = prepare_inputs(recipe)
    catalog, dynamic, static, index, chunks = cube_arguments(recipe)
    banded = prepare_cube(catalog, dynamic, static, index, chunks, tmp_path / "bands.zarr", max_mem=1)
    n_rows = index[1][1] - index[1][0]
    assert whole["blocks"] == 1  # the tiny world fits one block
    assert banded["blocks"] == -(-(index[0][1] - index[0][0]) // 50) * -(-n_rows // chunks[1]) > 1
    a, b = zarr.open_group(whole["path"], mode="r"), zarr.open_group(banded["path"], mode="r")
    for name, _ in a.arrays():
        np.testing.assert_array_equal(a[name][...], b[name][...])
    group = zarr.open_group(banded["path"], mode="r+")
    group.attrs[BLOCKS_ATTR] = group.attrs[BLOCKS_ATTR][:-1]  # the last band was cut short
    again = prepare_cube(catalog, dynamic, static, index, chunks, tmp_path / "bands.zarr", max_mem=1)
    assert again["blocks"] == 1 and again["reused_blocks"] == banded["blocks"] - 1
    group.attrs[BLOCKS_ATTR] = group.attrs[BLOCKS_ATTR][:1]  # cut short, then resumed with another layout:
    group["tas"][:, 8:] = 0.0  # what the first band does not prove written is written again
    no_cluster = lambda: pytest.fail("a cluster started for one block")  # noqa: E731
    relaid = prepare_cube(catalog, dynamic, static, index, chunks, tmp_path / "bands.zarr", client_factory=no_cluster)
    assert relaid["blocks"] == 1 and relaid["reused_blocks"] == 0
    np.testing.assert_array_equal(zarr.open_group(banded["path"], mode="r")["tas"][...], a["tas"][...])
    group.attrs[BLOCKS_ATTR] = [0]  # an earlier version's record: the start day of a whole-domain block
    assert prepare_cube(catalog, dynamic, static, index, chunks, tmp_path / "bands.zarr")["blocks"] == 0


def test_a_cube_written_by_dask_workers_equals_one_written_here(tiny_world, tmp_path):
    from distributed import Client, LocalCluster

    recipe = recipe_with(tiny_world, tmp_path, prepared=str(tmp_path / "here.zarr"), time_chunk=50)
    here = prepare_inputs(recipe)
    catalog, dynamic, static, index, chunks = cube_arguments(recipe)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        out = tmp_path / "workers.zarr"
        info = prepare_cube(catalog, dynamic, static, index, chunks, out, max_mem=1, client_factory=lambda: client)
    a, b = zarr.open_group(here["path"], mode="r"), zarr.open_group(info["path"], mode="r")
    assert info["blocks"] == len(b.attrs[BLOCKS_ATTR]) > 2 and b.attrs["upscale_prepared_complete"] == "true"
    for name, _ in a.arrays():
        np.testing.assert_array_equal(a[name][...], b[name][...])


def test_a_relative_cube_path_is_made_absolute_for_the_workers(tiny_world, tmp_path, monkeypatch):
    recipe = recipe_with(tiny_world, tmp_path, time_chunk=50)
    catalog, dynamic, static, index, chunks = cube_arguments(recipe)
    monkeypatch.chdir(tmp_path)
    info = prepare_cube(catalog, dynamic, static, index, chunks, "relative.zarr", max_mem=1)
    assert info["path"] == str(tmp_path / "relative.zarr")
    assert zarr.open_group(info["path"], mode="r").attrs["upscale_prepared_complete"] == "true"


def test_a_failed_block_task_raises_after_the_finished_blocks_are_recorded(tiny_world, tmp_path, monkeypatch):
    from distributed import Client, LocalCluster

    import upscale.prepared as prepared_module

    recipe = recipe_with(tiny_world, tmp_path, time_chunk=50)
    catalog, dynamic, static, index, chunks = cube_arguments(recipe)
    (t0, t1), (y0, y1), (x0, x1) = index
    blocks = cube_blocks(t1 - t0, y1 - y0, chunks[:2], 4 * len(dynamic) * (x1 - x0), 1)  # as prepare_cube's
    write_one = prepared_module._block_task

    def fail_the_first(*args):
        if tuple(args[-1]) == blocks[0]:
            raise RuntimeError("disk full")
        return write_one(*args)

    monkeypatch.setattr(prepared_module, "_block_task", fail_the_first)  # threads: the workers see the patch
    out = tmp_path / "failed.zarr"
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    with cluster, Client(cluster) as client, pytest.raises(RuntimeError, match="disk full"):
        prepare_cube(catalog, dynamic, static, index, chunks, out, max_mem=1, client_factory=lambda: client)
    group = zarr.open_group(str(out), mode="r")
    recorded = sorted(tuple(b) for b in group.attrs[BLOCKS_ATTR])
    assert len(blocks) > 2 and recorded == sorted(blocks[1:])  # every block but the failed one
    assert group.attrs["upscale_prepared_complete"] != "true"
