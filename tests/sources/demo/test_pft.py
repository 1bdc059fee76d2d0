"""Tests of upscale.sources.demo.pft: the PFT tables agree with each other, with IGBP and the land model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.sources.demo.common import ALLOWED_PFT
from upscale.sources.demo.land import LandParams
from upscale.sources.demo.pft import PFT_CODES, PFT_NICHES, PFT_PARAMS, PFT_SITE_WORDS, pft_table
from upscale.variables import IGBP_CLASSES


def test_every_table_covers_the_same_pfts():
    assert tuple(PFT_PARAMS) == PFT_CODES and set(PFT_CODES) == ALLOWED_PFT
    assert set(PFT_SITE_WORDS) == set(PFT_CODES)
    assert {code for code, *_ in PFT_NICHES} == set(PFT_CODES)  # every PFT has a niche, no niche is unknown
    assert set(PFT_CODES) <= set(IGBP_CLASSES)


def test_parameters_are_those_of_the_land_model_and_plausible():
    for code, params in PFT_PARAMS.items():
        p = LandParams(*params)
        assert 0 < p.fapar_max <= 1 and 0 <= p.green_min < 1, IGBP_CLASSES[code]
        assert 0 < p.eps < 3 and p.t_green < p.t_opt and p.w_max > 0, IGBP_CLASSES[code]
    assert PFT_PARAMS[2][LandParams._fields.index("green_min")] > PFT_PARAMS[4][LandParams._fields.index("green_min")]


def test_niches_are_plausible_climates():
    for code, t_mean, p_annual, weight in PFT_NICHES:
        assert -30 < t_mean < 35 and 0 < p_annual < 5000 and weight > 0, code


@pytest.mark.parametrize("index", range(len(LandParams._fields)))
def test_pft_table_looks_the_parameter_up_by_igbp_code(index):
    table = pft_table(index)
    assert table.shape == (17,)
    for code in range(17):
        expected = PFT_PARAMS[code][index] if code in PFT_PARAMS else 0.0
        assert table[code] == expected, code
    codes = np.array([12, 0, 1, 12])
    np.testing.assert_array_equal(
        table[codes], [PFT_PARAMS[12][index], 0.0, PFT_PARAMS[1][index], PFT_PARAMS[12][index]]
    )
