"""Feature encoding: the feature layout and its JSON round trip, one-hot statics, the predictor mask, normalisation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from upscale.encoding import FeatureSpec, Normaliser, complete_predictors, encode_static

REPO = Path(__file__).resolve().parents[1]
NAN = np.nan


def spec(pft_classes=(1, 10, 99)) -> FeatureSpec:
    return FeatureSpec(
        dynamic=[("era5", "tas"), ("eo", "fapar")],
        static=[("static", "pft"), ("dem", "elevation")],
        pft_classes=list(pft_classes),
    )


# --------------------------------------------------------------------------- layout


def test_feature_names_spell_out_the_pft_classes():
    s = spec()
    assert s.dynamic_names == ["tas", "fapar"]
    assert s.static_names == ["pft_ENF", "pft_GRA", "pft_99", "elevation"]  # 99 is no IGBP class: its code
    assert FeatureSpec([], [("static", "elevation")], [1, 2]).static_names == ["elevation"]  # no pft: no columns


def test_the_spec_survives_json():
    s = spec()
    again = FeatureSpec.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s and again.dynamic == [("era5", "tas"), ("eo", "fapar")]
    from_numpy = FeatureSpec.from_dict({**s.to_dict(), "pft_classes": np.array([1, 10, 99])})
    assert from_numpy.pft_classes == [1, 10, 99] and all(type(c) is int for c in from_numpy.pft_classes)


# --------------------------------------------------------------------------- static encoding


def test_pft_becomes_one_hot_and_water_or_missing_becomes_nan():
    pft = np.array([1, 10, 0, NAN, 5, -1])  # ENF, GRA, water, missing, a class no site had, a negative code
    elevation = np.array([100, 200, 300, 400, 500, 600])
    out = encode_static({"pft": pft, "elevation": elevation}, spec(pft_classes=(1, 10)), 6)
    assert out.dtype == np.float32 and out.shape == (6, 3)
    np.testing.assert_array_equal(
        out, [[1, 0, 100], [0, 1, 200], [NAN, NAN, 300], [NAN, NAN, 400], [0, 0, 500], [NAN, NAN, 600]]
    )


def test_no_static_predictors_give_an_empty_column_block():
    out = encode_static({}, FeatureSpec([("era5", "tas")], [], []), 4)
    assert out.shape == (4, 0) and out.dtype == np.float32


# --------------------------------------------------------------------------- predictor mask


def test_complete_predictors_by_hand():
    dynamic = np.ones((3, 2, 2))
    dynamic[0, 1, 0] = NAN  # pixel 0, day 1
    static = np.ones((3, 2))
    static[2, 1] = np.inf  # pixel 2: every day
    assert complete_predictors(dynamic, static).tolist() == [[True, False], [True, True], [False, False]]
    assert complete_predictors(np.ones((2, 3, 1)), np.ones((2, 0))).all()  # no statics: only the dynamics count


# --------------------------------------------------------------------------- normaliser


def test_normaliser_fit_by_hand_ignores_nan_and_guards_tiny_std():
    dynamic = np.array([[[1.0, 5.0], [3.0, 5.0]], [[NAN, 5.0], [5.0, 5.0]]])  # [S=2, T=2, F=2]
    static = np.array([[0.0, 2.0], [4.0, 2.0 + 1e-9]])
    targets = np.array([[[2.0], [NAN]], [[6.0], [NAN]]])
    norm = Normaliser.fit(dynamic, static, targets)
    np.testing.assert_allclose(norm.dynamic_mean, [3.0, 5.0])
    np.testing.assert_allclose(norm.dynamic_std, [np.sqrt(8 / 3), 1.0])  # a constant column keeps std 1
    np.testing.assert_allclose(norm.static_mean, [2.0, 2.0])
    np.testing.assert_allclose(norm.static_std, [2.0, 1.0])  # std 5e-10 is below 1e-6
    assert norm.target_mean == [4.0] and norm.target_std == [2.0]
    assert all(type(v) is float for v in norm.dynamic_mean + norm.static_std)  # JSON-ready


def test_normaliser_of_all_missing_or_empty_columns_is_the_identity():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy: mean of an empty slice
        norm = Normaliser.fit(np.full((2, 3, 1), NAN), np.zeros((2, 0)), np.full((2, 3, 1), NAN))
    assert norm.dynamic_mean == [0.0] and norm.dynamic_std == [1.0]
    assert norm.static_mean == [] and norm.static_std == []
    assert norm.target_mean == [0.0] and norm.target_std == [1.0]
    empty = Normaliser.fit(np.zeros((0, 5, 2)), np.zeros((0, 1)), np.zeros((0, 5, 1)))
    assert empty.dynamic_mean == [0.0, 0.0] and empty.dynamic_std == [1.0, 1.0] and empty.static_std == [1.0]


def test_transforms_by_hand_in_float32():
    norm = Normaliser([1.0, 10.0], [2.0, 5.0], [3.0], [0.5], [100.0], [20.0])
    x = np.array([[[3.0, 0.0]]])
    out = norm.dynamic(x)
    assert out.dtype == np.float32 and out.tolist() == [[[1.0, -2.0]]]
    assert norm.static(np.array([[4.0]])).tolist() == [[2.0]] and norm.static(np.array([[4.0]])).dtype == np.float32
    assert norm.targets(np.array([[[60.0]]])).tolist() == [[[-2.0]]]
    assert np.isnan(norm.dynamic(np.array([[[NAN, 10.0]]]))[0, 0, 0])  # missing stays missing


def test_normaliser_round_trips_through_json():
    norm = Normaliser([1.0, 10.0], [2.0, 5.0], [3.0], [0.5], [100.0], [20.0])
    assert Normaliser(**json.loads(json.dumps(norm.to_dict()))) == norm


@settings(max_examples=30, deadline=None)
@given(dynamic=arrays(np.float64, (4, 6, 2), elements=st.integers(-1000, 1000).map(float)))  # no near-constants
def test_fitted_dynamics_have_mean_0_and_std_1_or_are_constant(dynamic):
    norm = Normaliser.fit(dynamic, np.zeros((4, 0)), np.zeros((4, 6, 1)))
    z = norm.dynamic(dynamic).reshape(-1, 2).astype("float64")
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    for k, std in enumerate(z.std(axis=0)):
        assert std == pytest.approx(1.0, rel=1e-3) or norm.dynamic_std[k] == 1.0


# --------------------------------------------------------------------------- imports


def test_importing_encoding_imports_no_xarray_recipe_or_catalog():
    code = (
        "import sys, upscale.encoding; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'xarray' "
        "or m.startswith(('upscale.recipe', 'upscale.sources'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout
