"""The recipe: a pydantic schema, loading from YAML, ``--set`` overrides and path resolution.

Paths inside a recipe (``catalog``) are relative to the recipe file; the run
directory is relative to the working directory the command runs in, like any
output path a command-line tool is given.

The sections live in :mod:`upscale.recipe.sections` and :mod:`upscale.recipe.cluster`, the
whole recipe in :mod:`upscale.recipe.schema`, reading and writing in :mod:`upscale.recipe.loading`;
this module is the one import path for all of them.
"""

from upscale.recipe.cluster import Cluster
from upscale.recipe.loading import (
    apply_overrides,
    dump_recipe,
    json_schema,
    load_recipe,
    read_yaml,
    resolve_paths,
    results_part,
)
from upscale.recipe.schema import Recipe
from upscale.recipe.sections import EXPLAIN_METHODS, Apply, Explain, Model, Output, Period, Sites, Training, Validation

__all__ = [
    "EXPLAIN_METHODS",
    "Apply",
    "Cluster",
    "Explain",
    "Model",
    "Output",
    "Period",
    "Recipe",
    "Sites",
    "Training",
    "Validation",
    "apply_overrides",
    "dump_recipe",
    "json_schema",
    "load_recipe",
    "read_yaml",
    "resolve_paths",
    "results_part",
]
