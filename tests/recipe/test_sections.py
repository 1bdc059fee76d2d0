"""The recipe's sections other than the cluster: their defaults, bounds and checks."""

from __future__ import annotations

import datetime

import pytest
from pydantic import ValidationError

from upscale.recipe import EXPLAIN_METHODS, Apply, Explain, Model, Output, Period, Sites, Training, Validation


def test_defaults():
    assert Sites().source == "fluxnet" and Sites().include is None and Sites().qc_min == 0.8
    assert Model().type == "mlp" and Model().hidden == [64, 64]
    assert Validation().scheme == "kfold" and Validation().group_by == "igbp"
    assert Apply().period is None and (Apply().tile_lat, Apply().tile_lon, Apply().time_chunk) == (32, 64, 366)
    assert Output().units == "default" and Output().parameters is False and Output().run_dir is None
    assert Explain().methods == list(EXPLAIN_METHODS) and Explain().predictors is None
    assert Output().quantiles == [] and Output().negative_et is False
    assert Output(quantiles=[0.95, 0.05, 0.5]).quantiles == [0.05, 0.5, 0.95]  # sorted


@pytest.mark.parametrize(
    "section, data, expected",
    [
        (Sites, {"qc_min": 1.5}, "less than or equal to 1"),
        (Sites, {"gpp_partitioning": "XX"}, "'NT' or 'DT'"),
        (Model, {"dropout": 1.0}, "less than 1"),
        (Model, {"rolling": {"pr": [30, 1]}}, "rolling windows are whole numbers of days from 2 to 3660"),
        (Model, {"trees": {"max_depth": 0}}, "greater than or equal to 1"),
        (Training, {"ensemble": 101}, "less than or equal to 100"),
        (Training, {"site_fraction": 0}, "greater than 0"),
        (Training, {"batch_size": 4}, "greater than or equal to 8"),
        (Training, {"loss": "mse"}, "'nll' or 'nse'"),
        (Validation, {"folds": 1}, "greater than or equal to 2"),
        (Validation, {"scheme": "random"}, "'kfold', 'loso', 'group' or 'none'"),
        (Apply, {"precision": "int8"}, "'float32', 'bfloat16' or 'float16'"),
        (Apply, {"tile_lat": 0}, "greater than or equal to 1"),
        (Apply, {"tile_lat": 10**30}, "less than or equal to 100000"),
        (Apply, {"tile_lon": 200_000}, "less than or equal to 100000"),
        (Apply, {"time_chunk": 10**6}, "less than or equal to 100000"),
        (Apply, {"bbox": [30, 10, -30, 40]}, r"reversed \(lon_min > lon_max\)"),
        (Apply, {"bbox": [-10, 60, 30, 35]}, r"reversed \(lat_min > lat_max\)"),
        (Apply, {"bbox": [-10, -95, 30, 35]}, "within -90..90"),
        (Apply, {"bbox": [float("nan"), 0, 30, 35]}, "four finite degrees"),
        (Output, {"units": "imperial"}, "'default' or 'si'"),
        (Output, {"quantiles": [0.05, 1.0]}, r"strictly between 0 and 1.*\(got 1.0\)"),
        (Output, {"quantiles": [float("nan")]}, "strictly between 0 and 1"),
        (Output, {"quantiles": [0.5, 0.5]}, "quantiles must be distinct"),
        (Explain, {"methods": ["shap"]}, "'importance'"),
        (Explain, {"repeats": 1}, "greater than or equal to 2"),
        (Sites, {"color": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_refused(section, data, expected):
    with pytest.raises(ValidationError, match=expected):
        section.model_validate(data)


def test_assignment_is_validated():
    """Sections are changed in place (path resolution, explain_run): a bad value never slips in."""
    training = Training()
    training.epochs = 3
    assert training.epochs == 3
    with pytest.raises(ValidationError):
        training.epochs = 0
    with pytest.raises(ValidationError):
        training.epochz = 3


def test_period_is_ordered():
    period = Period(start="2018-01-01", end="2018-01-01")
    assert period.start == period.end == datetime.date(2018, 1, 1)
    with pytest.raises(ValidationError, match="start 2018-03-01 is after end 2018-02-01"):
        Period(start="2018-03-01", end="2018-02-01")


def test_apply_bbox_is_four_numbers():
    assert Apply(bbox=[-10, 35, 30, 60]).bbox == (-10.0, 35.0, 30.0, 60.0)
    with pytest.raises(ValidationError):
        Apply(bbox=[-10, 35, 30])


def test_explain_lags_are_sorted_and_checked():
    assert Explain(lags=[30, 0, 7]).lags == [0, 7, 30]
    for lags in ([], [-1, 3], [3, 3]):
        with pytest.raises(ValidationError, match="distinct non-negative days"):
            Explain(lags=lags)


@pytest.mark.parametrize("hidden, bad", [([0], 0), ([-4], -4), ([64, 65537], 65537), ([10**30], 10**30)])
def test_model_widths_must_be_from_1_to_65536(hidden, bad):
    with pytest.raises(ValidationError, match=rf"layer widths must be whole numbers from 1 to 65536.*got {bad}\)"):
        Model(hidden=hidden)


@pytest.mark.parametrize("hidden", [[1], [65536], [], [8, 8, 8]])
def test_model_widths_in_range_are_kept(hidden):
    assert Model(hidden=hidden).hidden == hidden


def test_a_bad_width_names_model_hidden_in_the_recipe_error(tmp_path):
    from upscale.errors import RecipeError
    from upscale.recipe import load_recipe

    (tmp_path / "r.yaml").write_text("name: a\ncatalog: c.yaml\n")
    with pytest.raises(RecipeError, match=r"'model.hidden': layer widths must be whole numbers") as err:
        load_recipe(tmp_path / "r.yaml", ["model.hidden=[-4]"])
    assert err.value.where == str(tmp_path / "r.yaml")
