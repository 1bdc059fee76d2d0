"""Tests of upscale.sources.demo.geography: land mask, PFT map, bbox cut-outs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.sources.demo.common import ALLOWED_PFT
from upscale.errors import DataError
from upscale.sources.demo import DemoSpec, simulate


def test_land_mask_matches_global_land_mask_without_antarctica(tiny):
    from global_land_mask import globe

    world, _ = tiny
    lat, lon = np.meshgrid(world.lat.values, world.lon.values, indexing="ij")
    expected = globe.is_land(lat, lon) & (lat >= -60)
    np.testing.assert_array_equal(world.land_mask.values, expected)
    assert expected.sum() > 100
    pft = world.pft.values
    assert np.all((pft > 0) == expected)
    assert set(np.unique(pft[expected]).tolist()) <= ALLOWED_PFT
    assert len(np.unique(pft[expected])) >= 6  # a mix of vegetation, not one class


def test_bbox_without_cells_and_too_many_sites_are_data_errors():
    with pytest.raises(DataError, match="no cell centre"):
        simulate(DemoSpec(resolution=10, bbox=(1, 1, 2, 2)))
    with pytest.raises(DataError, match="land cells"):
        simulate(DemoSpec(resolution=10, bbox=(0, 40, 20, 60), n_sites=50, end="2018-01-10"))
