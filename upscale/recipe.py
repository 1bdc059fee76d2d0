"""The recipe: a pydantic schema, loading from YAML, ``--set`` overrides and path resolution.

Paths inside a recipe (``catalog``) are relative to the recipe file; the run
directory is relative to the working directory the command runs in, like any
output path a command-line tool is given.
"""

from __future__ import annotations

import datetime
import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from upscale.errors import RecipeError
from upscale.variables import TARGETS, VARIABLES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Sites(_Strict):
    """Which flux-tower sites to train on."""

    source: str = Field("fluxnet", description="Catalog entry holding the site observations.")
    include: list[str] | None = Field(None, description="Site ids to use; all sites of the entry when omitted.")
    exclude: list[str] = Field(default_factory=list, description="Site ids to leave out.")
    qc_min: float = Field(0.8, ge=0, le=1, description="Minimum daily QC fraction for an observation to count.")
    gpp_partitioning: Literal["NT", "DT"] = Field("NT", description="GPP_NT_VUT_REF (NT) or GPP_DT_VUT_REF (DT).")
    le_variant: Literal["F_MDS", "CORR"] = Field("F_MDS", description="LE_F_MDS or energy-balance-corrected LE_CORR.")


class Model(_Strict):
    """The model family and its size."""

    type: str = Field("mlp", description="Registered model name (see upscale.models.registry).")
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="Hidden layer widths.")
    dropout: float = Field(0.0, ge=0, lt=1)


class Training(_Strict):
    """How each ensemble member is trained."""

    ensemble: int = Field(5, ge=1, le=100, description="Number of ensemble members.")
    site_fraction: float = Field(0.8, gt=0, le=1, description="Fraction of training sites each member sees; "
                                 "the rest are its early-stopping validation sites.")
    epochs: int = Field(60, ge=1, description="Maximum number of epochs.")
    patience: int = Field(6, ge=1, description="Epochs without validation improvement before stopping.")
    batch_size: int = Field(1024, ge=8)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"


class Validation(_Strict):
    """Cross-validation that estimates skill at unseen sites."""

    scheme: Literal["kfold", "none"] = Field("kfold", description="Grouped leave-site-out k-fold, or none.")
    folds: int = Field(5, ge=2, description="Number of folds (sites are grouped, never split).")


class Period(_Strict):
    start: datetime.date
    end: datetime.date

    @model_validator(mode="after")
    def _ordered(self):
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class Apply(_Strict):
    """Where and how the trained ensemble is applied."""

    period: Period | None = Field(None, description="Dates to apply to; the whole cube when omitted.")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="(lon_min, lat_min, lon_max, lat_max); the whole cube when omitted.")
    tile_lat: int = Field(32, ge=1, description="Tile height in grid cells (also the output chunk).")
    tile_lon: int = Field(64, ge=1, description="Tile width in grid cells (also the output chunk).")
    time_chunk: int = Field(366, ge=1, description="Days per output chunk; sequence state passes between them.")
    batch_size: int = Field(32768, ge=1, description="Pixel-days per inference batch inside a tile "
                            "(bounds memory; pixels per batch = batch_size // days of the time chunk).")


class Output(_Strict):
    """Where the run directory is and what the product holds."""

    run_dir: str | None = Field(None, description="Run directory; runs/<name> when omitted.")
    title: str = "upscale GPP and ET product"
    institution: str = "unknown"
    units: Literal["default", "si"] = Field(
        "default", description="Product units: default g m-2 d-1 (GPP) and kg m-2 d-1 (ET); si: kg m-2 s-1.")


class Cluster(_Strict):
    """The Dask cluster the apply stage runs on."""

    type: Literal["local", "address", "synchronous"] = "local"
    address: str | None = None
    n_workers: int = Field(2, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = "4GiB"

    @model_validator(mode="after")
    def _address_given(self):
        if self.type == "address" and not self.address:
            raise ValueError("cluster.type 'address' needs cluster.address (e.g. tcp://host:8786)")
        return self


class Recipe(_Strict):
    """A complete recipe: sites and targets, predictors, model, training, validation, apply, output, cluster."""

    name: str = Field("upscale", pattern=r"^[A-Za-z0-9_.-]+$")
    catalog: str = Field(..., description="Catalog YAML (relative to the recipe file).")
    targets: list[str] = Field(default_factory=lambda: ["gpp", "et"])
    predictors: dict[str, list[str]] = Field(
        ..., description="Catalog entry -> canonical variables taken from it, e.g. {era5: [tas, vpd]}.")
    sites: Sites = Field(default_factory=Sites)
    model: Model = Field(default_factory=Model)
    training: Training = Field(default_factory=Training)
    validation: Validation = Field(default_factory=Validation)
    apply: Apply = Field(default_factory=Apply)
    output: Output = Field(default_factory=Output)
    cluster: Cluster = Field(default_factory=Cluster)

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        allowed = [t for t in TARGETS if t != "le"]
        for target in value:
            if target not in allowed:
                raise ValueError(f"unknown target {target!r}; choose from {allowed}")
        if not value or len(set(value)) != len(value):
            raise ValueError("targets must be a non-empty list without repeats")
        return value

    @field_validator("predictors")
    @classmethod
    def _known_predictors(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: set[str] = set()
        for entry, names in value.items():
            for name in names:
                if name not in VARIABLES or VARIABLES[name].kind == "target":
                    hint = _nearest(name, [v for v in VARIABLES if VARIABLES[v].kind != "target"])
                    raise ValueError(f"unknown predictor {name!r} under {entry!r}{hint}")
                if name in seen:
                    raise ValueError(f"predictor {name!r} is taken from two entries")
                seen.add(name)
        if not seen:
            raise ValueError("predictors names no variable")
        return value

    def dynamic_predictors(self) -> list[tuple[str, str]]:
        """(entry, variable) pairs of the time-varying predictors, in recipe order."""
        return [(e, v) for e, vs in self.predictors.items() for v in vs if VARIABLES[v].kind == "dynamic"]

    def static_predictors(self) -> list[tuple[str, str]]:
        """(entry, variable) pairs of the static predictors, in recipe order."""
        return [(e, v) for e, vs in self.predictors.items() for v in vs if VARIABLES[v].kind == "static"]


def _nearest(word: str, options) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


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
    return RecipeError("; ".join(lines), where=source,
                       fix="Fix the recipe (`upscale schema` prints every valid key)")


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
            raise RecipeError(f"the value of override {item!r} is not valid YAML", where=source,
                              fix="Quote it, e.g. --set 'model.hidden=[64, 64]'") from None
    return data


def read_yaml(path: Path, what: str, error=RecipeError) -> dict:
    """Read a YAML mapping safely, raising ``error`` with a clear message on failure."""
    if not path.is_file():
        raise error(f"{what} file not found", where=str(path), fix="Check the path")
    try:
        data = yaml.safe_load(path.read_text())
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
    data = apply_overrides(read_yaml(path, "recipe"), overrides, source=f"--set for {path}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, str(path)) from None
    return resolve_paths(recipe, path.parent)


def resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Make the catalog path absolute against ``base`` and the run directory against the cwd."""
    recipe.catalog = str((base / Path(recipe.catalog).expanduser()).resolve())
    run_dir = recipe.output.run_dir or f"runs/{recipe.name}"
    recipe.output.run_dir = str(Path(run_dir).expanduser().resolve())
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (what a run directory stores)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def json_schema() -> dict:
    """The JSON schema of recipes."""
    return Recipe.model_json_schema()
