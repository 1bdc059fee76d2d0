"""The output variable table: names, parts, fill values, and that the CF product variables follow it exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from upscale import cf
from upscale.outputs import (
    FLAG,
    FLAG_FILL,
    FLAG_NAME,
    TARGET_OUTPUTS,
    UNCERTAINTY_OUTPUTS,
    fill_value,
    prediction_parts,
    uncertainty_names,
)
from upscale.variables import VARIABLES


def test_names_of_a_target():
    assert [v.name("gpp") for v in TARGET_OUTPUTS] == ["gpp", "gpp_sd", "gpp_sd_epistemic", "gpp_sd_aleatoric"]
    assert uncertainty_names("et") == ["et_sd", "et_sd_epistemic", "et_sd_aleatoric"]
    assert FLAG.name("") == FLAG_NAME == "extrapolation"


def test_every_part_is_a_key_of_prediction_parts_and_only_uncertainties_are_standard_errors():
    parts = prediction_parts(np.zeros(1), np.zeros(1), np.zeros(1))
    assert [v.part for v in TARGET_OUTPUTS] == list(parts) == ["mean", "sd", "sd_epistemic", "sd_aleatoric"]
    assert [v.standard_error for v in TARGET_OUTPUTS] == [False, True, True, True]
    assert TARGET_OUTPUTS[1:] == UNCERTAINTY_OUTPUTS
    assert {v.dtype for v in TARGET_OUTPUTS} == {"float32"} and FLAG.dtype == "int8"


def test_prediction_parts_by_hand():
    mean = np.array([1.5, -2.0])
    parts = prediction_parts(mean, np.array([9.0, 0.0]), np.array([16.0, 4.0]))
    assert parts["mean"] is mean
    np.testing.assert_allclose(parts["sd"], [5.0, 2.0])
    np.testing.assert_allclose(parts["sd_aleatoric"], [3.0, 0.0])
    np.testing.assert_allclose(parts["sd_epistemic"], [4.0, 2.0])


variances = arrays(np.float64, 6, elements=st.floats(0.0, 1e6, allow_nan=False))


@settings(max_examples=50, deadline=None)
@given(aleatoric=variances, epistemic=variances)
def test_total_variance_is_aleatoric_plus_epistemic(aleatoric, epistemic):
    parts = prediction_parts(np.zeros(6), aleatoric, epistemic)
    np.testing.assert_allclose(
        parts["sd"] ** 2, parts["sd_aleatoric"] ** 2 + parts["sd_epistemic"] ** 2, rtol=1e-9, atol=1e-9
    )
    assert (parts["sd"] >= np.maximum(parts["sd_aleatoric"], parts["sd_epistemic"])).all()


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.dtype("float16")])
def test_floats_are_filled_with_nan(dtype):
    assert math.isnan(fill_value(dtype))


@pytest.mark.parametrize("dtype", ["int8", np.int8])
def test_the_flag_is_filled_with_minus_127(dtype):
    value = fill_value(dtype)
    assert value == -127 and np.asarray(value).dtype == np.int8 and value == FLAG_FILL


def test_fill_value_of_each_variable_follows_its_dtype():
    assert all(math.isnan(v.fill_value) for v in TARGET_OUTPUTS)
    assert FLAG.fill_value == FLAG_FILL


@pytest.mark.parametrize("targets", [["gpp"], ["gpp", "et"], ["et", "gpp"]])
def test_product_variables_are_the_table_in_order(targets):
    variables = cf.product_variables(targets)
    assert list(variables) == [v.name(t) for t in targets for v in TARGET_OUTPUTS] + [FLAG_NAME]
    for target in targets:
        for v in TARGET_OUTPUTS:
            attrs = variables[v.name(target)]
            assert attrs["long_name"] == f"{VARIABLES[target].long_name}, {v.description}"
            assert attrs["coverage_content_type"] == v.coverage_content_type
            assert attrs["standard_name"].endswith(" standard_error") == v.standard_error
        assert variables[target]["ancillary_variables"] == " ".join(uncertainty_names(target) + [FLAG_NAME])
    assert variables[FLAG_NAME]["long_name"] == FLAG.description
    assert variables[FLAG_NAME]["coverage_content_type"] == FLAG.coverage_content_type
    assert np.asarray(variables[FLAG_NAME]["flag_values"]).dtype == np.dtype(FLAG.dtype)


def test_product_variables_without_the_flag():
    variables = cf.product_variables(["et"], extrapolation=False)
    assert list(variables) == ["et", "et_sd", "et_sd_epistemic", "et_sd_aleatoric"]
    assert variables["et"]["ancillary_variables"] == " ".join(uncertainty_names("et"))


@pytest.mark.parametrize(
    "level, part", [(0.05, "q05"), (0.5, "q50"), (0.95, "q95"), (0.025, "q02p5"), (0.999, "q99p9"), (0.0001, "q00p01")]
)
def test_quantile_names(level, part):
    from upscale.outputs import quantile_output, quantile_part

    assert quantile_part(level) == part
    variable = quantile_output(level)
    assert variable.name("gpp") == f"gpp_{part}" and variable.part == part and variable.quantile == level
    assert not variable.standard_error and variable.dtype == "float32"


def test_target_outputs_append_the_quantiles_in_order():
    from upscale.outputs import TARGET_OUTPUTS, target_outputs

    assert target_outputs() == TARGET_OUTPUTS
    assert [v.name("et") for v in target_outputs([0.05, 0.95])][-2:] == ["et_q05", "et_q95"]
