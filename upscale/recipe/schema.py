"""The whole recipe: its sections and the checks that span them."""

from __future__ import annotations

import difflib

from pydantic import Field, field_validator, model_validator

from upscale.recipe.cluster import Cluster
from upscale.recipe.sections import Apply, Explain, Model, Output, Sites, Training, Validation, _Strict
from upscale.variables import TARGETS, VARIABLES


class Recipe(_Strict):
    """A complete recipe: sites and targets, predictors, model, training, validation, apply, output, cluster."""

    name: str = Field(
        "upscale",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name of the run; the default run directory is runs/<name>.",
    )
    catalog: str | None = Field(
        None,
        description="Catalog YAML (relative to the recipe file); needed unless every predictor comes from "
        "a site table (sites.source: table, predictors: {table: [...]}).",
    )
    targets: list[str] = Field(default_factory=lambda: ["gpp", "et"], description="Fluxes to predict: gpp, et.")
    predictors: dict[str, list[str]] = Field(
        ..., description="Catalog entry -> canonical variables taken from it, e.g. {era5: [tas, vpd]}."
    )
    sites: Sites = Field(default_factory=Sites)
    model: Model = Field(default_factory=Model)
    training: Training = Field(default_factory=Training)
    validation: Validation = Field(default_factory=Validation)
    apply: Apply | None = Field(
        None, description="Where the ensemble is applied; none when omitted: a site-only study (no product)."
    )
    output: Output = Field(default_factory=Output)
    cluster: Cluster = Field(default_factory=Cluster)
    explain: Explain | None = Field(None, description="Explanations of the models; none when omitted.")

    @model_validator(mode="after")
    def _explain_names(self):
        if self.explain is None:
            return self
        known = [v for _, v in self.dynamic_predictors() + self.static_predictors()]
        for name in self.explain.predictors or []:
            if name not in known:
                raise ValueError(
                    f"explain.predictors names {name!r}, which is not a predictor of the recipe ({', '.join(known)})"
                )
        for name in self.explain.targets or []:
            if name not in self.targets:
                raise ValueError(
                    f"explain.targets names {name!r}, which is not a target of the recipe ({', '.join(self.targets)})"
                )
        return self

    @model_validator(mode="after")
    def _table_names(self):
        if "le" in self.targets and self.sites.source != "table":
            raise ValueError("target 'le' needs sites.source: table (flux-tower files give gpp and et)")
        if "table" in self.predictors and self.sites.source != "table":
            raise ValueError("predictors under 'table' need sites.source: table (and sites.table)")
        if self.catalog is None and (set(self.predictors) != {"table"} or self.apply is not None):
            raise ValueError("a catalog is needed for predictors from cubes and for apply (give 'catalog')")
        return self

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        allowed = list(TARGETS)
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
