"""The prepared cube: equal to the catalog's inputs after conversion, chunked like the tiles, CF-described,
resumable, reused, and refused once stale (the apply reading it: tests/test_apply.py)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import yaml
import zarr
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import tiny_recipe_dict
from upscale.errors import DataError
from upscale.features import open_predictors
from upscale.pipeline.prepare import prepare_inputs
from upscale.prepared import BLOCKS_ATTR, cube_key, default_path, open_cube, resolve_cube, time_blocks
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


@given(
    n_days=st.integers(1, 3000),
    time_chunk=st.integers(1, 400),
    bytes_per_day=st.integers(1, 10**7),
    max_mem=st.integers(1, 10**9),
)
def test_time_blocks_cover_the_period_in_whole_chunks(n_days, time_chunk, bytes_per_day, max_mem):
    blocks = time_blocks(n_days, time_chunk, bytes_per_day, max_mem)
    assert blocks[0][0] == 0 and blocks[-1][1] == n_days
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    assert all(start % time_chunk == 0 for start, _ in blocks)
    for start, stop in blocks:
        assert (stop - start) * bytes_per_day <= max_mem or stop - start <= time_chunk
