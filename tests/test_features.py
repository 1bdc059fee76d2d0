"""Predictor features: the land mask, nearest land pixels on the sphere, site checks, excluded sites, text arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from upscale.errors import DataError
from upscale.features import (
    EARTH_RADIUS_KM,
    check_site_pixels,
    exclude_sites,
    land_mask,
    nearest_land_pixels,
    pft_classes,
    text_array,
)

NAN = np.nan


def sites_ds(lat, lon, ids=None):
    ids = ids or [f"S{i}" for i in range(len(lat))]
    return xr.Dataset(
        coords={"site": ids, "lat": ("site", np.asarray(lat, float)), "lon": ("site", np.asarray(lon, float))}
    )


# --------------------------------------------------------------------------- land mask


def test_land_mask_needs_every_static_and_every_dynamic_on_the_first_day():
    tas = np.ones((2, 2, 3))
    tas[0, 1, 1] = NAN  # the first day: masks the pixel
    tas[1, 0, 2] = NAN  # a later day: does not
    pr = np.ones((2, 2, 3))
    pr[0, 0, 0] = NAN
    dyn = xr.Dataset({"tas": (("time", "lat", "lon"), tas), "pr": (("time", "lat", "lon"), pr)})
    stat = xr.Dataset({"pft": (("lat", "lon"), np.array([[1.0, 1.0, 1.0], [1.0, 1.0, NAN]]))})
    assert land_mask(dyn, stat).tolist() == [[False, True, True], [True, False, False]]
    assert land_mask(xr.Dataset(), stat).tolist() == [[True, True, True], [True, True, False]]  # statics only


def test_pft_classes_are_the_positive_codes_present():
    static = xr.Dataset({"pft": (("lat", "lon"), np.array([[0.0, 10.0, NAN], [1.0, 10.0, -3.0]]))})
    assert pft_classes(static) == [1, 10] and pft_classes(xr.Dataset()) == []


# --------------------------------------------------------------------------- nearest land pixel


def test_nearest_land_pixel_is_great_circle_not_degrees():
    # at 80 N a pixel 50 degrees of longitude away is nearer than one 10 degrees of latitude away
    lat, lon = np.array([70.0, 80.0]), np.array([0.0, 50.0])
    mask = np.array([[False, True], [True, False]])  # land at (70 N, 50 E) and (80 N, 0 E)
    ilat, ilon, dist = nearest_land_pixels(lat, lon, mask, np.array([80.0]), np.array([50.0]))
    assert (ilat.tolist(), ilon.tolist()) == ([1], [0])
    by_hand = 2 * 6371.0 * math.asin(math.cos(math.radians(80)) * math.sin(math.radians(25)))  # 935.9 km
    assert dist[0] == pytest.approx(by_hand, rel=1e-12) and 930 < dist[0] < 940


def test_nearest_land_pixel_distances_by_hand():
    lat, lon = np.array([0.0, 10.0]), np.array([0.0, 10.0, 20.0])
    mask = np.array([[True, False, False], [False, False, True]])
    ilat, ilon, dist = nearest_land_pixels(lat, lon, mask, np.array([0.0, 9.0, 10.0]), np.array([1.0, 20.0, 20.0]))
    assert ilat.tolist() == [0, 1, 1] and ilon.tolist() == [0, 2, 2]
    one_degree = EARTH_RADIUS_KM * math.pi / 180  # 111.19 km along the equator or a meridian
    np.testing.assert_allclose(dist, [one_degree, one_degree, 0.0], rtol=1e-12, atol=1e-9)


def test_no_land_at_all_is_a_data_error():
    with pytest.raises(DataError, match=r"the predictors have no land pixel \(all NaN\)"):
        nearest_land_pixels(np.array([0.0]), np.array([0.0]), np.zeros((1, 1), bool), np.array([0.0]), np.array([0.0]))


# --------------------------------------------------------------------------- site checks


def test_site_checks():
    lat, lon = np.array([0.5, 1.5]), np.array([10.5, 11.5])  # cells cover 0..2 N, 10..12 E
    check_site_pixels(sites_ds([0.1, 1.9], [10.1, 11.9]), lat, lon, np.array([10.0, 150.0]))
    with pytest.raises(DataError, match="sites without coordinates: S1"):
        check_site_pixels(sites_ds([0.5, np.nan], [10.5, 11.0]), lat, lon, None)
    with pytest.raises(DataError, match=r"sites outside the predictor cubes \(lat 0..2, lon 10..12\): S1 \(2.5, 11\)"):
        check_site_pixels(sites_ds([0.5, 2.5], [10.5, 11.0]), lat, lon, None)
    # one cell diagonal at 1 N: 111.19 km * hypot(1, cos 1 deg) = 157.2 km; 1.5 of it is 235.8 km
    with pytest.raises(DataError, match="only ocean or no-data pixels near sites: S0 \\(nearest land pixel 240 km"):
        check_site_pixels(sites_ds([1.0], [11.0]), lat, lon, np.array([240.0]))
    check_site_pixels(sites_ds([1.0], [11.0]), lat, lon, np.array([235.0]))


def test_site_check_errors_say_where_and_what_to_do():
    lat, lon = np.array([0.5, 1.5]), np.array([10.5, 11.5])
    with pytest.raises(DataError) as err:
        check_site_pixels(sites_ds([np.nan, 1.0, 1.0], [10.5, np.nan, 11.0], ["A", "B", "C"]), lat, lon, None)
    assert err.value.what == "sites without coordinates: A, B" and err.value.where == "sites"
    assert "site_list" in err.value.fix
    with pytest.raises(DataError) as err:
        check_site_pixels(sites_ds([1.0, 1.0], [9.0, 13.5], ["W", "E"]), lat, lon, None)
    assert err.value.what.endswith(": W (1, 9), E (1, 13.5)") and "sites.exclude" in err.value.fix
    with pytest.raises(DataError) as err:
        check_site_pixels(sites_ds([1.0, 1.0], [11.0, 11.0], ["near", "far"]), lat, lon, np.array([5.0, 300.0]))
    assert err.value.what == "only ocean or no-data pixels near sites: far (nearest land pixel 300 km away)"
    assert "land/sea mask" in err.value.fix


# --------------------------------------------------------------------------- excluded sites


def test_exclude_sites_drops_the_named_sites():
    ds = sites_ds([0, 1, 2], [0, 1, 2], ["A", "B", "C"])
    assert exclude_sites(ds, []) is ds
    assert exclude_sites(ds, ["B"]).site.values.tolist() == ["A", "C"]


def test_excluding_unknown_sites_names_them_and_the_known_ones():
    ds = sites_ds([0, 1], [0, 1], ["B", "A"])
    with pytest.raises(DataError) as err:
        exclude_sites(ds, ["Z", "A", "Y"])
    assert err.value.what == "sites.exclude names unknown sites: Y, Z" and err.value.where == "sites.exclude"
    assert err.value.fix == "Known sites: A, B"


def test_excluding_every_site_leaves_nothing_to_train_on():
    with pytest.raises(DataError, match=r"sites\.exclude leaves no site to train on"):
        exclude_sites(sites_ds([0, 1], [0, 1], ["A", "B"]), ["A", "B"])


# --------------------------------------------------------------------------- text


def test_text_array_is_an_object_array_of_str():
    out = text_array(np.array(["US-AR1", "DE-Tha"]))
    assert out.dtype == object and out.tolist() == ["US-AR1", "DE-Tha"] and all(type(v) is str for v in out)
    assert text_array([1, 2.5]).tolist() == ["1", "2.5"] and text_array([]).shape == (0,)
