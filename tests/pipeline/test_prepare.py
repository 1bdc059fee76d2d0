"""``upscale prepare`` and the apply stage reading its cube: the same product files byte for byte, resumed too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_recipe_dict
from upscale import pipeline
from upscale.errors import DataError, RecipeError
from upscale.pipeline.prepare import prepare_inputs
from upscale.recipe import load_recipe


def chunk_files(store: Path) -> dict[str, bytes]:
    """Every chunk file of the product's data variables (metadata holds timestamps and is left out)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.parent.name not in ("time", "lat", "lon") and not p.name.startswith((".", "zarr"))
    }


def test_apply_reads_the_cube_and_resumes_to_the_same_bytes(tiny_world, tmp_path):
    data = tiny_recipe_dict(tiny_world, tmp_path / "run")
    data["validation"] = {"scheme": "none"}
    data["model"] = {"type": "lstm", "hidden": [8]}
    data["training"]["epochs"] = 2
    (tmp_path / "direct.yaml").write_text(yaml.safe_dump(data))
    run = pipeline.open_run(load_recipe(tmp_path / "direct.yaml"))
    pipeline.run_stages(run, ("extract", "train", "apply"))
    direct = chunk_files(run.files.product)
    assert pipeline.apply_domain(run).job("p").prepared is None  # no cube: the catalog is read

    data["apply"]["prepared"] = str(tmp_path / "cube.zarr")
    (tmp_path / "cube.yaml").write_text(yaml.safe_dump(data))
    recipe = load_recipe(tmp_path / "cube.yaml")
    cube_run = pipeline.Run(recipe, run.files, run.manifest)
    with pytest.raises(DataError, match="no prepared cube"):  # named but not made yet
        pipeline.apply_domain(cube_run).job("p")
    info = prepare_inputs(recipe)
    assert pipeline.apply_domain(cube_run).job("p").prepared == (info["path"], info["key"])

    tiles = sorted(run.manifest.tiles)
    cube_run.manifest.data.pop("tiles", None)  # the tile log says three tiles: as if killed after them
    cube_run.manifest.tiles_path.write_text("".join(f"{t}\n" for t in tiles[:3]))
    assert pipeline.stage_apply(cube_run) == {"tiles": 9, "resumed_tiles": 3}
    assert chunk_files(run.files.product) == direct
    cube_run.manifest.set("product_bundle", "another")  # the whole product again, from the cube
    assert pipeline.stage_apply(cube_run)["resumed_tiles"] == 0
    assert chunk_files(run.files.product) == direct


def test_prepare_needs_an_apply_section(tiny_world, tmp_path):
    data = tiny_recipe_dict(tiny_world, tmp_path / "run")
    del data["apply"]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match="no apply section"):
        prepare_inputs(load_recipe(tmp_path / "r.yaml"))
