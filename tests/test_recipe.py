"""Recipe schema, overrides and the errors a person sees."""

from __future__ import annotations

import pytest
import yaml

from upscale.errors import RecipeError
from upscale.recipe import Recipe, apply_overrides, json_schema, load_recipe

BASE = {"catalog": "cat.yaml", "predictors": {"era5": ["tas"]}}


def write(tmp_path, data) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_path_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(write(tmp_path, BASE))
    assert recipe.targets == ["gpp", "et"]
    assert recipe.training.ensemble == 5 and recipe.validation.folds == 5
    assert recipe.catalog == str(tmp_path / "cat.yaml")
    assert recipe.output.run_dir == str(tmp_path / "runs" / "upscale")
    assert recipe.cluster.type == "local"


@pytest.mark.parametrize("data, expected", [
    ({**BASE, "modle": {"type": "mlp"}}, "unknown key 'modle'; did you mean 'model'?"),
    ({**BASE, "training": {"epochz": 3}}, "unknown key 'training.epochz'; did you mean 'epochs'?"),
    ({**BASE, "predictors": {"era5": ["tass"]}}, "did you mean 'tas'?"),
    ({**BASE, "targets": ["nee"]}, "unknown target 'nee'"),
    ({"predictors": {"era5": ["tas"]}}, "missing required key 'catalog'"),
    ({**BASE, "training": {"ensemble": 0}}, "'training.ensemble'"),
    ({**BASE, "cluster": {"type": "address"}}, "needs cluster.address"),
])
def test_recipe_errors_name_key_and_fix(tmp_path, data, expected):
    path = write(tmp_path, data)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert expected in err.value.message
    assert str(path) in err.value.message


def test_overrides_parse_yaml_values(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE), ["training.ensemble=3", "model.hidden=[8, 8]",
                                                 "apply.bbox=[-10, 35, 30, 60]"])
    assert recipe.training.ensemble == 3
    assert recipe.model.hidden == [8, 8]
    assert recipe.apply.bbox == (-10, 35, 30, 60)


def test_override_into_unknown_key_is_rejected(tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'learning_rate'"):
        load_recipe(write(tmp_path, BASE), ["training.learning_rat=0.1"])


def test_malformed_override():
    with pytest.raises(RecipeError, match="key.path=value"):
        apply_overrides({}, ["training.ensemble"])


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_schema_lists_sections():
    props = json_schema()["properties"]
    for key in ("sites", "targets", "predictors", "model", "training", "validation", "apply", "output", "cluster"):
        assert key in props
    assert Recipe.model_config["extra"] == "forbid"


def test_dynamic_and_static_split():
    recipe = Recipe.model_validate({"catalog": "c", "predictors": {"era5": ["tas", "pr"], "static": ["pft"]}})
    assert recipe.dynamic_predictors() == [("era5", "tas"), ("era5", "pr")]
    assert recipe.static_predictors() == [("static", "pft")]


@pytest.mark.parametrize("name", ["demo.yaml", "demo-lstm.yaml", "demo-hybrid.yaml"])
def test_demo_recipes_load_with_their_model_family(name):
    from pathlib import Path

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / name)
    expected = {"demo.yaml": "mlp", "demo-lstm.yaml": "lstm", "demo-hybrid.yaml": "hybrid"}[name]
    assert recipe.model.type == expected and recipe.output.run_dir.endswith(name[:-5].replace(".", ""))
