"""The site list: coordinates, alternative headers, missing sites and columns."""

from __future__ import annotations

import numpy as np
import pytest

from tests.sources.fluxnet.builders import dd_frame, error_of, write_dd, write_site_list
from upscale.sources import fluxnet


def test_real_site_list_coords(real_file, tmp_path):
    site_list = write_site_list(
        tmp_path,
        [
            {
                "SITE_ID": "US-AR1",
                "LOCATION_LAT": 36.4267,
                "LOCATION_LONG": -99.42,
                "LOCATION_ELEV": 611,
                "IGBP": "GRA",
            },
            {
                "SITE_ID": "DE-Tha",
                "LOCATION_LAT": 50.9626,
                "LOCATION_LONG": 13.5651,
                "LOCATION_ELEV": 385,
                "IGBP": "ENF",
            },
        ],
    )
    ds = fluxnet.read(real_file, site_list=site_list)
    assert ds["lat"].item() == pytest.approx(36.4267)
    assert ds["lon"].item() == pytest.approx(-99.42)
    assert ds["elevation"].item() == pytest.approx(611.0)
    assert ds["igbp"].item() == "GRA"


def test_site_list_alternative_headers(tmp_path):
    write_dd(tmp_path, dd_frame(), site="US-Aaa")
    write_dd(tmp_path, dd_frame(), site="DE-Bbb")
    site_list = write_site_list(
        tmp_path,
        [
            {"Site": "US-Aaa", "Lat": 40.5, "LON": -105.25, "Elevation": 1500, "igbp": "ENF"},
            {"Site": "DE-Bbb", "Lat": 51.0, "LON": 10.0, "Elevation": -9999, "igbp": ""},
        ],
    )
    ds = fluxnet.read(str(tmp_path / "FLX_*.csv"), site_list=site_list)
    assert ds["lat"].values.tolist() == [51.0, 40.5]  # sorted sites: DE-Bbb, US-Aaa
    assert ds["lon"].values.tolist() == [10.0, -105.25]
    assert np.isnan(ds["elevation"].values[0]) and ds["elevation"].values[1] == 1500.0
    assert ds["igbp"].values.tolist() == ["", "ENF"]


def test_site_missing_from_site_list(tmp_path):
    write_dd(tmp_path, dd_frame(), site="US-Aaa")
    write_dd(tmp_path, dd_frame(), site="DE-Bbb")
    site_list = write_site_list(
        tmp_path, [{"SITE_ID": "US-Aaa", "LOCATION_LAT": 1, "LOCATION_LONG": 2}], name="my_sites.csv"
    )
    message = error_of(fluxnet.read, str(tmp_path / "FLX_*.csv"), site_list=site_list)
    assert "DE-Bbb" in message and "my_sites.csv" in message and "site list" in message
    # ... but leaving the site out with sites= works
    ds = fluxnet.read(str(tmp_path / "FLX_*.csv"), site_list=site_list, sites=["US-Aaa"])
    assert ds["site"].values.tolist() == ["US-Aaa"] and ds["lon"].item() == 2.0


def test_site_list_without_latitude_column(tmp_path):
    path = write_dd(tmp_path, dd_frame())
    site_list = write_site_list(tmp_path, [{"SITE_ID": "US-Aaa", "y": 1, "LOCATION_LONG": 2}])
    message = error_of(fluxnet.read, path, site_list=site_list)
    assert "sites.csv" in message and "lat" in message
