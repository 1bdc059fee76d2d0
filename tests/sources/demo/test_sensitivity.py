"""Tests of upscale.sources.demo.sensitivity: the targets, drivers and CF attributes of the true sensitivities."""

from __future__ import annotations

import numpy as np
import pytest

from tests.sources.demo.common import DRIVERS, SENSITIVITY_UNITS
from upscale.sources.demo.sensitivity import (
    NON_NEGATIVE_DRIVERS,
    SENSITIVITY_DEFINITION,
    SENSITIVITY_DRIVERS,
    SENSITIVITY_TARGETS,
    sensitivity_attrs,
    sensitivity_variables,
)
from upscale.variables import VARIABLES


def test_targets_and_drivers_are_the_contract():
    assert list(SENSITIVITY_TARGETS) == ["gpp", "et"] and list(SENSITIVITY_DRIVERS) == DRIVERS
    assert set(NON_NEGATIVE_DRIVERS) == set(DRIVERS) - {"tas"}
    for target, (units, _) in SENSITIVITY_TARGETS.items():
        assert units == VARIABLES[target].units
    for step, _, _ in SENSITIVITY_DRIVERS.values():
        assert 0 < step <= 0.5


@pytest.mark.parametrize("name", sorted(SENSITIVITY_UNITS))
@pytest.mark.parametrize("period_mean", [False, True])
def test_attrs_units_and_words(name, period_mean):
    target, driver = name.split("_sens_")
    attrs = sensitivity_attrs(target, driver, period_mean)
    assert attrs["units"] == SENSITIVITY_UNITS[name]
    assert attrs["cell_methods"] == "time: mean"
    assert attrs["long_name"].startswith(f"sensitivity of {SENSITIVITY_TARGETS[target][1]} to ")
    assert SENSITIVITY_DRIVERS[driver][2] in attrs["long_name"]
    what = "mean over all days of the period" if period_mean else "monthly mean"
    assert attrs["comment"] == f"{what} of the daily {SENSITIVITY_DEFINITION}"


def test_sensitivity_variables_of_gridded_arrays():
    gridded = {}
    for name in SENSITIVITY_UNITS:
        gridded[name] = np.zeros((2, 3, 4), "float32")
        gridded[f"{name}_mean"] = np.zeros((3, 4), "float32")
    variables = sensitivity_variables(gridded)
    assert set(variables) == set(gridded)
    dims, values, attrs = variables["et_sens_ws"]
    assert dims == ("month", "lat", "lon") and values is gridded["et_sens_ws"]
    assert attrs == sensitivity_attrs("et", "ws", False)
    dims, values, attrs = variables["gpp_sens_tas_mean"]
    assert dims == ("lat", "lon") and values is gridded["gpp_sens_tas_mean"]
    assert attrs["units"] == "g m-2 d-1 K-1" and attrs["comment"].startswith("mean over all days")
