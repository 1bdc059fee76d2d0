"""Reading recipes: YAML, ``--set`` overrides, validation with clear errors, path resolution, dumping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from upscale.errors import RecipeError
from upscale.recipe.schema import Recipe, _nearest


def _fields_at(loc: tuple) -> list[str]:
    """The valid keys of the schema node that a validation error location points into."""
    model: Any = Recipe
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
        args = getattr(model, "__args__", ())
        for arg in args:  # unwrap Optional[Model]
            if hasattr(arg, "model_fields"):
                model = arg
    return list(getattr(model, "model_fields", {}))


def _explain(error: ValidationError, source: str) -> RecipeError:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            hint = _nearest(loc[-1], _fields_at(loc))
            lines.append(f"unknown key '{key}'{hint}")
        elif item["type"] == "missing":
            lines.append(f"missing required key '{key}'")
        else:
            msg = item["msg"].removeprefix("Value error, ")
            lines.append(f"'{key}': {msg}")
    return RecipeError("; ".join(lines), where=source, fix="Fix the recipe (`upscale schema` prints every valid key)")


def apply_overrides(data: dict, overrides: list[str] | None, source: str = "--set") -> dict:
    """Apply ``key.path=value`` overrides to a raw recipe mapping (values parsed as YAML)."""
    for item in overrides or []:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not of the form key.path=value", where=source)
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        if not all(keys):
            raise RecipeError(f"override {item!r} has an empty key", where=source)
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"cannot set {path!r}: {key!r} is not a section", where=source)
            node = child
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError):  # PyYAML raises ValueError for impossible dates
            raise RecipeError(
                f"the value of override {item!r} is not valid YAML",
                where=source,
                fix="Quote it, e.g. --set 'model.hidden=[64, 64]'",
            ) from None
    return data


class _DatesAsText(yaml.SafeLoader):
    """YAML without the implicit date type: ``2019-02-30`` stays text, so the schema names its key."""


_DatesAsText.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(path: Path, what: str, error=RecipeError, dates_as_text: bool = False) -> dict:
    """Read a YAML mapping safely, raising ``error`` with a clear message on failure.

    With ``dates_as_text``, unquoted dates stay strings (for a schema that parses and checks them).
    """
    if not path.is_file():
        raise error(f"{what} file not found", where=str(path), fix="Check the path")
    try:
        data = yaml.load(path.read_text(), Loader=_DatesAsText if dates_as_text else yaml.SafeLoader)
    except (yaml.YAMLError, ValueError) as exc:
        raise error(f"{what} is not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise error(f"{what} must be a YAML mapping of keys to values", where=str(path))
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override, validate and resolve a recipe file.

    Parameters
    ----------
    path : str or Path
        The recipe YAML.
    overrides : list of str, optional
        ``key.path=value`` strings applied before validation.

    Returns
    -------
    Recipe
        With ``catalog`` made absolute (relative to the recipe file) and
        ``output.run_dir`` absolute (relative to the working directory).
    """
    path = Path(path).resolve()
    data = apply_overrides(read_yaml(path, "recipe", dates_as_text=True), overrides, source=f"--set for {path}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, str(path)) from None
    return resolve_paths(recipe, path.parent)


def resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Make the catalog (and a site table's) paths absolute against ``base``, the run directory against the cwd."""
    if recipe.catalog is not None:
        recipe.catalog = str((base / Path(recipe.catalog).expanduser()).resolve())
    for key in ("table", "site_list"):  # a site table and its site list, like the catalog
        if getattr(recipe.sites, key):
            setattr(recipe.sites, key, str((base / Path(getattr(recipe.sites, key)).expanduser()).resolve()))
    run_dir = recipe.output.run_dir or f"runs/{recipe.name}"
    recipe.output.run_dir = str(Path(run_dir).expanduser().resolve())
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (what a run directory stores)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def json_schema() -> dict:
    """The JSON schema of recipes."""
    return Recipe.model_json_schema()


def results_part(recipe_yaml: str | None) -> dict | None:
    """The part of a dumped recipe that decides a run's results: all but ``cluster``, ``explain`` and the run directory.

    Where a run computes or lies does not change its results, so a run started on a laptop may
    resume on a cluster, and a moved or copied run directory is the same run; explanations do not
    change the product, so they may be added to a run later (``upscale explain``).
    """
    if recipe_yaml is None:
        return None
    data = _with_current_defaults(yaml.safe_load(recipe_yaml))
    data.pop("cluster", None)
    data.pop("explain", None)
    data.get("output", {}).pop("run_dir", None)
    return data


def _with_current_defaults(data: dict) -> dict:
    """A stored recipe with the fields this version added at their defaults, so a run made by an
    older version still counts as the same recipe (unchanged when it no longer validates)."""
    try:
        return Recipe.model_validate(data).model_dump(mode="json")
    except (ValidationError, RecipeError, TypeError, ValueError):
        return data
