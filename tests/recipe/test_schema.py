"""The whole recipe: its sections, the predictor and target checks, the explain names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.recipe.conftest import BASE
from upscale.recipe import Recipe, json_schema


def test_schema_lists_sections():
    props = json_schema()["properties"]
    for key in ("sites", "targets", "predictors", "model", "training", "validation", "apply", "output", "cluster"):
        assert key in props
    assert Recipe.model_config["extra"] == "forbid"


def test_dynamic_and_static_split():
    recipe = Recipe.model_validate({"catalog": "c", "predictors": {"era5": ["tas", "pr"], "static": ["pft"]}})
    assert recipe.dynamic_predictors() == [("era5", "tas"), ("era5", "pr")]
    assert recipe.static_predictors() == [("static", "pft")]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"targets": []}, "non-empty list without repeats"),
        ({"targets": ["gpp", "gpp"]}, "non-empty list without repeats"),
        ({"targets": ["le"]}, "target 'le' needs sites.source: table"),
        ({"predictors": {"era5": ["tas"], "other": ["tas"]}}, "predictor 'tas' is taken from two entries"),
        ({"predictors": {"era5": []}}, "predictors names no variable"),
        ({"predictors": {"era5": ["gpp"]}}, "unknown predictor 'gpp' under 'era5'"),
        ({"name": "has space"}, "should match pattern"),
        ({"explain": {"predictors": ["pr"]}}, "explain.predictors names 'pr', which is not a predictor"),
        ({"explain": {"targets": ["gpp", "et"]}, "targets": ["gpp"]}, "explain.targets names 'et'"),
    ],
)
def test_recipe_wide_checks(change, expected):
    with pytest.raises(ValidationError, match=expected):
        Recipe.model_validate({**BASE, **change})


def test_explain_is_absent_unless_given():
    assert Recipe.model_validate(BASE).explain is None
    recipe = Recipe.model_validate({**BASE, "explain": {"predictors": ["tas"], "targets": ["et"]}})
    assert recipe.explain.predictors == ["tas"] and recipe.explain.targets == ["et"]
