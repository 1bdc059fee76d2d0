"""Tests of upscale.sources.demo.spec: DemoSpec validation, normalisation and its cache key."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from upscale.errors import DataError
from upscale.sources.demo import DemoSpec


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"resolution": 7}, "divides 180"),
        ({"resolution": -2}, "divides 180"),
        ({"start": "2019-01-01", "end": "2018-01-01"}, "before start"),
        ({"start": "not a date"}, "not a date"),
        ({"n_sites": 0}, "n_sites"),
        ({"seed": -1}, "seed"),
        ({"bbox": (10, 0, 5, 20)}, "bbox"),
        ({"bbox": (0, 0, 10)}, "bbox"),
        ({"bbox": (170, -10, 190, 10)}, "antimeridian"),
    ],
)
def test_spec_rejects_bad_arguments(kwargs, words):
    with pytest.raises(DataError, match=words):
        DemoSpec(**kwargs)


def test_spec_key_is_short_stable_and_normalised():
    a = DemoSpec(resolution=10, bbox=[-10, 35, 30, 60], start="2018-01-01")
    b = DemoSpec(resolution=10.0, bbox=(-10.0, 35.0, 30.0, 60.0), start=pd.Timestamp("2018-01-01"))
    assert a == b and a.key() == b.key()
    assert re.fullmatch(r"[0-9a-f]{12}", a.key())
    assert DemoSpec(seed=1).key() != DemoSpec(seed=2).key()
    assert DemoSpec(n_sites=10).key() != DemoSpec(n_sites=11).key()
    assert isinstance(hash(a), int)  # frozen, usable as a dict key


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": True}, "seed must be a non-negative integer, got True"),
        ({"seed": 1.5}, "seed must be a non-negative integer, got 1.5"),
        ({"seed": "1"}, "seed must be a non-negative integer, got '1'"),
        ({"n_sites": 2.0}, "n_sites must be a positive integer, got 2.0"),
        ({"resolution": "x"}, "resolution must be a positive number of degrees that divides 180, got 'x'"),
        ({"resolution": float("inf")}, "resolution must be a positive number of degrees that divides 180, got inf"),
        ({"end": None}, "end is not a date: None"),
        ({"bbox": (0, 0, float("nan"), 1)}, "bbox must be (lon_min, lat_min, lon_max, lat_max)"),
        ({"bbox": (0, 0, "x", 1)}, "got (0, 0, 'x', 1)"),
    ],
)
def test_spec_error_names_the_field_and_the_value_as_given(kwargs, message):
    with pytest.raises(DataError) as info:
        DemoSpec(**kwargs)
    assert info.value.what.startswith(message) or message in info.value.what
    assert info.value.where == "demo world spec"


def test_spec_reports_every_bad_field_at_once_with_their_fixes():
    with pytest.raises(DataError) as info:
        DemoSpec(seed=-1, resolution=7)
    error = info.value
    assert error.what == (
        "seed must be a non-negative integer, got -1; resolution must be a positive number "
        "of degrees that divides 180, got 7"
    )
    assert error.fix == "pass e.g. seed=0; use e.g. 0.5, 1, 2, 5 or 10"


def test_spec_model_validate_raises_the_same_errors():
    with pytest.raises(DataError, match="n_sites must be a positive integer"):
        DemoSpec.model_validate({"n_sites": -3})
    assert DemoSpec.model_validate({"seed": 4}) == DemoSpec(seed=4)


def test_spec_unknown_field_is_a_type_error_and_a_catalog_error(tmp_path):
    from upscale.errors import CatalogError
    from upscale.sources.catalog import load_catalog

    with pytest.raises(TypeError, match=r"unexpected keyword argument 'sede'.*seed, resolution"):
        DemoSpec(sede=1)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("demo:\n  sede: 1\n")
    with pytest.raises(CatalogError, match=r"bad demo parameters: .*'sede'"):
        load_catalog(catalog)


def test_spec_normalises_numpy_numbers_and_dates():
    spec = DemoSpec(
        seed=np.int64(3),
        resolution="0.5",
        start=pd.Timestamp("2018-03-01 12:00"),
        end="2018-05-01",
        n_sites=np.int32(4),
        bbox=[-180, -90, 180, 90],
    )
    assert spec.to_dict() == {
        "seed": 3,
        "resolution": 0.5,
        "start": "2018-03-01",
        "end": "2018-05-01",
        "n_sites": 4,
        "bbox": [-180.0, -90.0, 180.0, 90.0],
    }
    assert type(spec.seed) is int and type(spec.n_sites) is int and spec.bbox == (-180.0, -90.0, 180.0, 90.0)


def test_spec_is_frozen_and_a_dict_key():
    spec = DemoSpec(seed=1)
    with pytest.raises(ValidationError, match="frozen"):
        spec.seed = 2
    assert {spec: "world"}[DemoSpec(seed=1)] == "world"
    assert DemoSpec() == DemoSpec(seed=0) and hash(DemoSpec()) == hash(DemoSpec(seed=0))


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({}, "2129d7307d00"),
        ({"seed": 7, "resolution": 10, "start": "2018-11-15", "end": "2019-02-10", "n_sites": 9}, "e9d831668b58"),
        (
            {
                "seed": 5,
                "resolution": 5,
                "start": "2018-12-01",
                "end": "2019-01-31",
                "n_sites": 5,
                "bbox": (-10, 35, 30, 60),
            },
            "770f504e6709",
        ),
    ],
)
def test_spec_key_names_the_same_cache_folders_as_before(kwargs, key):
    # Cache folders demo-<key> of the same WORLD_VERSION stay valid: change these only with WORLD_VERSION (3 now).
    assert DemoSpec(**kwargs).key() == key
