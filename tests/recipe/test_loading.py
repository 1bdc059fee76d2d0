"""Reading recipes: defaults and path resolution, ``--set`` overrides, the errors a person sees, results_part."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.recipe.conftest import BASE
from upscale.errors import RecipeError
from upscale.recipe import apply_overrides, dump_recipe, load_recipe, read_yaml, results_part


def test_defaults_and_path_resolution(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(write(BASE))
    assert recipe.targets == ["gpp", "et"]
    assert recipe.training.ensemble == 5 and recipe.validation.folds == 5
    assert recipe.catalog == str(tmp_path / "cat.yaml")
    assert recipe.output.run_dir == str(tmp_path / "runs" / "upscale")
    assert recipe.cluster.type == "local"


@pytest.mark.parametrize(
    "data, expected",
    [
        ({**BASE, "modle": {"type": "mlp"}}, "unknown key 'modle'; did you mean 'model'?"),
        ({**BASE, "training": {"epochz": 3}}, "unknown key 'training.epochz'; did you mean 'epochs'?"),
        ({**BASE, "predictors": {"era5": ["tass"]}}, "did you mean 'tas'?"),
        ({**BASE, "targets": ["nee"]}, "unknown target 'nee'"),
        ({"predictors": {"era5": ["tas"]}}, "a catalog is needed for predictors from cubes"),
        ({**BASE, "training": {"ensemble": 0}}, "'training.ensemble'"),
        ({**BASE, "cluster": {"type": "address"}}, "needs cluster.address"),
    ],
)
def test_recipe_errors_name_key_and_fix(write, data, expected):
    path = write(data)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert expected in err.value.message
    assert str(path) in err.value.message


def test_overrides_parse_yaml_values(write):
    recipe = load_recipe(write(BASE), ["training.ensemble=3", "model.hidden=[8, 8]", "apply.bbox=[-10, 35, 30, 60]"])
    assert recipe.training.ensemble == 3
    assert recipe.model.hidden == [8, 8]
    assert recipe.apply.bbox == (-10, 35, 30, 60)


def test_override_into_unknown_key_is_rejected(write):
    with pytest.raises(RecipeError, match="did you mean 'learning_rate'"):
        load_recipe(write(BASE), ["training.learning_rat=0.1"])


def test_malformed_override():
    with pytest.raises(RecipeError, match=r"key\.path=value"):
        apply_overrides({}, ["training.ensemble"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("=3", "has an empty key"),
        ("training..epochs=3", "has an empty key"),
        ("name.x=3", "'name' is not a section"),
        ("model.hidden=[8", "is not valid YAML"),
    ],
)
def test_bad_overrides_name_the_override(override, expected):
    with pytest.raises(RecipeError, match=expected) as err:
        apply_overrides({"name": "a"}, [override], source="--set for r.yaml")
    assert "r.yaml" in err.value.message


def test_overrides_make_sections_and_empty_values():
    data = apply_overrides({"model": None}, ["model.hidden=[4]", "apply.period.start=2018-01-01", "sites.include="])
    assert data["model"] == {"hidden": [4]} and data["sites"] == {"include": None}
    assert str(data["apply"]["period"]["start"]) == "2018-01-01"


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_a_yaml_list_is_not_a_recipe(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- catalog\n")
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        read_yaml(path, "recipe")


@pytest.mark.parametrize("name", ["demo.yaml", "demo-lstm.yaml", "demo-hybrid.yaml"])
def test_demo_recipes_load_with_their_model_family(name):
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / name)
    expected = {"demo.yaml": "mlp", "demo-lstm.yaml": "lstm", "demo-hybrid.yaml": "hybrid"}[name]
    assert recipe.model.type == expected and recipe.output.run_dir.endswith(name[:-5].replace(".", ""))


def test_dumped_recipe_loads_to_the_same_recipe(write, tmp_path):
    recipe = load_recipe(write({**BASE, "training": {"epochs": 3}, "apply": {"bbox": [0, 0, 10, 10]}}))
    again = tmp_path / "again.yaml"
    again.write_text(dump_recipe(recipe))
    assert load_recipe(again) == recipe


@pytest.mark.parametrize(
    "override, same",
    [
        ("cluster={type: synchronous}", True),
        ("explain={methods: [importance]}", True),
        ("output.run_dir=elsewhere", True),
        ("output.units=si", False),
        ("training.epochs=3", False),
        ("apply.tile_lat=4", False),
        ("name=other", False),
    ],
)
def test_results_part_ignores_where_a_run_computes_and_lies(write, override, same):
    """cluster, explain and output.run_dir do not change a run's results; any other key does."""
    path = write(BASE)
    base = results_part(dump_recipe(load_recipe(path)))
    changed = results_part(dump_recipe(load_recipe(path, [override])))
    assert (changed == base) is same
    assert "cluster" not in base and "explain" not in base and "run_dir" not in base["output"]
    assert base["output"]["units"] == "default"  # the rest of the output section stays


def test_a_run_stored_before_new_fields_existed_is_the_same_recipe(write):
    """A recipe.yaml written by an older version (fewer fields, all at their defaults) still resumes."""
    import yaml

    stored = yaml.safe_load(dump_recipe(load_recipe(write(BASE))))
    del stored["model"]["rolling"], stored["model"]["trees"]  # fields this version added
    assert results_part(yaml.safe_dump(stored)) == results_part(dump_recipe(load_recipe(write(BASE))))
    stored["training"]["epochs"] = 1
    assert results_part(yaml.safe_dump(stored)) != results_part(dump_recipe(load_recipe(write(BASE))))


def test_results_part_of_no_recipe_is_none():
    assert results_part(None) is None


def test_an_impossible_unquoted_date_names_its_key(tmp_path):
    """YAML would refuse ``2019-02-30`` itself ('not valid YAML'); read as text, the schema names the key."""
    text = yaml.safe_dump(BASE)
    (tmp_path / "r.yaml").write_text(text + "\napply: {period: {start: 2018-01-01, end: 2019-02-30}}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "r.yaml")
    assert "'apply.period.end'" in info.value.message and "not valid YAML" not in info.value.message


def test_unquoted_dates_still_load_as_dates(tmp_path):
    text = yaml.safe_dump(BASE)
    (tmp_path / "r.yaml").write_text(text + "\napply: {period: {start: 2018-01-01, end: 2018-12-31}}\n")
    period = load_recipe(tmp_path / "r.yaml").apply.period
    assert (period.start.isoformat(), period.end.isoformat()) == ("2018-01-01", "2018-12-31")
