"""``upscale prepare``: the recipe's predictors over its apply domain, read once into a cube chunked like its tiles."""

from __future__ import annotations

from upscale.errors import RecipeError


def prepare_inputs(recipe, client_factory=None) -> dict:
    """Write (or finish, or reuse) the prepared cube of ``recipe`` (see :mod:`upscale.prepared`),
    its blocks as tasks on the Dask client of ``client_factory`` where more than one is left to write.

    Returns
    -------
    dict
        ``path``, ``key``, ``blocks`` written now and ``reused_blocks``.

    Raises
    ------
    upscale.errors.RecipeError
        The recipe has no apply section.
    """
    from upscale.features import open_predictors
    from upscale.pipeline.domain import apply_index
    from upscale.prepared import cube_key, default_path, prepare_cube
    from upscale.sources.catalog import cached_catalog

    if recipe.apply is None:
        raise RecipeError(
            "the recipe has no apply section, so there is nothing to prepare",
            where="apply",
            fix="Add an apply section (the cube covers its domain, chunked like its tiles)",
        )
    catalog = str(cached_catalog(str(recipe.catalog)).path)
    dynamic, static = recipe.dynamic_predictors(), recipe.static_predictors()
    dyn, _ = open_predictors(catalog, dynamic, static)
    index = apply_index(recipe, dyn)
    chunks = (recipe.apply.time_chunk, recipe.apply.tile_lat, recipe.apply.tile_lon)
    path = recipe.apply.prepared or default_path(cube_key(catalog, dynamic, static, index, chunks))
    return prepare_cube(catalog, dynamic, static, index, chunks, path, client_factory=client_factory)
