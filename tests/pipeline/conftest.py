"""Fixtures of the pipeline tests: the shared finished run, a private copy of it, and a fresh run directory."""

from __future__ import annotations

import shutil

import pytest

from upscale import pipeline
from upscale.recipe import load_recipe


@pytest.fixture
def run_copy(product_run, tmp_path):
    """The finished product run copied to tmp_path/copy and reopened: a test may change it freely."""
    root = tmp_path / "copy"
    shutil.copytree(product_run.dir, root)
    recipe = load_recipe(product_run.files.recipe, [f"output.run_dir={root}"])
    return pipeline.open_run(recipe, new_run=False)


@pytest.fixture
def fresh_run(tiny_recipe):
    """A new, empty run directory (tmp_path/run) of the tiny recipe; nothing has run."""
    return pipeline.open_run(load_recipe(tiny_recipe))
