"""Units spellings compared in one form."""

from __future__ import annotations

import pytest

from upscale.sources.sitetable import normalise_units
from upscale.variables import VARIABLES


@pytest.mark.parametrize(
    "spelled, canonical",
    [
        ("W/m2", "W m-2"),
        ("W m^-2", "W m-2"),
        ("W m**-2", "W m-2"),
        ("°C", "degC"),
        ("C", "degC"),
        ("gC m-2 d-1", "g m-2 d-1"),
        ("g C / m2 / day", "g m-2 d-1"),
        ("mm/day", "kg m-2 d-1"),
        ("mm d-1", "mm d-1"),
        ("-", "1"),
        ("", "1"),
        ("hPa", "hPa"),
    ],
)
def test_spellings_of_one_unit_compare_equal(spelled, canonical):
    assert normalise_units(spelled) == normalise_units(canonical)


@pytest.mark.parametrize(
    "other, canonical",
    [("K", "degC"), ("umol m-2 s-1", "g m-2 d-1"), ("kPa", "hPa"), ("W m-2", "kg m-2 d-1"), ("g m-2 s-1", "g m-2 d-1")],
)
def test_other_units_differ(other, canonical):
    assert normalise_units(other) != normalise_units(canonical)


def test_every_canonical_unit_is_its_own_normal_form():
    forms = {normalise_units(v.units) for v in VARIABLES.values()}
    assert normalise_units("degC") in forms and len(forms) == len({v.units for v in VARIABLES.values()}) - 1
