"""Real files as distributed: comment headers with blank lines and whitespace, BOMs, Windows line ends,
columns in any order, and SW_IN_POT missing. Each file is written byte for byte, as a user gets it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.sources.fluxnet.builders import base_frame, dd_frame, error_of, hh_frame, write_site_list
from upscale.sources import fluxnet
from upscale.variables import toa_shortwave_daily_mean

DD_NAME = "FLX_US-Aaa_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv"
HH_NAME = "FLX_US-Aaa_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv"
BASE_NAME = "AMF_US-Xyz_BASE_HH_2-5.csv"


def write_bytes(directory, name: str, text: str, newline: str = "\n", bom: bool = False):
    """Write ``text`` (lines joined by \\n) with ``newline`` line ends, UTF-8, optionally with a BOM."""
    path = directory / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", newline).encode())
    return path


def csv_text(frame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def reference(tmp_path, frame, name: str, **kwargs):
    """The file written plainly (no quirk) and read: what every quirky spelling must give."""
    plain = tmp_path / "plain"
    plain.mkdir(exist_ok=True)
    return fluxnet.read(write_bytes(plain, name, csv_text(frame)), **kwargs)


# the AmeriFlux BASE layout as distributed: comment lines, a blank line, then the header
BASE_PREAMBLES = {
    "comments, blank line": "# Site: US-Xyz\n# Version: 2-5\n\n",
    "blank lines around comments": "\n\n# Site: US-Xyz\n\n# Version: 2-5\n\n\n",
    "indented comments, whitespace-only lines": "  # Site: US-Xyz\n\t# Version: 2-5\n   \n \t\n",
}


@pytest.mark.parametrize("preamble", list(BASE_PREAMBLES.values()), ids=list(BASE_PREAMBLES))
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("bom", [False, True], ids=["plain", "BOM"])
def test_base_files_as_distributed_read_like_the_plain_file(tmp_path, preamble, newline, bom):
    frame = base_frame()
    expected = reference(tmp_path, frame, BASE_NAME, qc_min=0)
    path = write_bytes(tmp_path, BASE_NAME, preamble + csv_text(frame), newline, bom)
    got = fluxnet.read(path, qc_min=0)
    for name in ("tas", "vpd", "rsds", "pr", "gpp", "et"):
        np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)
    assert got.sizes["time"] == 2 and np.isfinite(got["gpp"].values).all()


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("bom", [False, True], ids=["plain", "BOM"])
def test_dd_files_with_bom_and_windows_line_ends(tmp_path, newline, bom):
    frame = dd_frame()
    expected = reference(tmp_path, frame, DD_NAME)
    got = fluxnet.read(write_bytes(tmp_path, DD_NAME, csv_text(frame), newline, bom))
    for name in ("tas", "rsds_pot", "gpp", "le", "et"):
        np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)


def test_dd_file_with_leading_blank_lines_and_spaces_around_names(tmp_path):
    frame = dd_frame()
    expected = reference(tmp_path, frame, DD_NAME)
    header, *rows = csv_text(frame).splitlines()
    spaced = ", ".join(f" {c} " for c in header.split(","))
    path = write_bytes(tmp_path, DD_NAME, "\n  \n" + spaced + "\n" + "\n".join(rows) + "\n", "\r\n")
    got = fluxnet.read(path)
    np.testing.assert_array_equal(got["gpp"].values, expected["gpp"].values)
    np.testing.assert_array_equal(got["et"].values, expected["et"].values)


@pytest.mark.parametrize(
    "frame, name",
    [(dd_frame(), DD_NAME), (hh_frame(), HH_NAME), (base_frame(), BASE_NAME)],
    ids=["DD", "HH", "BASE"],
)
def test_columns_in_any_order(tmp_path, frame, name):
    expected = reference(tmp_path, frame, name, qc_min=0)
    shuffled = frame[list(np.random.default_rng(4).permutation(frame.columns))]
    assert list(shuffled.columns) != list(frame.columns)
    got = fluxnet.read(write_bytes(tmp_path, name, csv_text(shuffled)), qc_min=0)
    for var in ("tas", "vpd", "rsds", "pr", "gpp", "et"):
        np.testing.assert_array_equal(got[var].values, expected[var].values, err_msg=var)


SITE = {"SITE_ID": "US-Aaa", "LOCATION_LAT": 41.5, "LOCATION_LONG": -96.0, "LOCATION_ELEV": 300, "IGBP": "CRO"}


def test_rsds_pot_from_astronomy_when_the_file_lacks_sw_in_pot(tmp_path):
    frame = dd_frame(start="2010-06-15", days=20).drop(columns="SW_IN_POT")
    sites = write_site_list(tmp_path, [SITE])
    got = fluxnet.read(write_bytes(tmp_path, DD_NAME, csv_text(frame)), site_list=sites)
    doy = np.arange(166, 186)  # 2010-06-15 is day 166
    np.testing.assert_allclose(got["rsds_pot"].values[0], toa_shortwave_daily_mean(41.5, doy), rtol=1e-6)
    assert 475 < got["rsds_pot"].values.min() < got["rsds_pot"].values.max() < 490  # June at 41.5 N: ~483
    assert "astronomy" in got["rsds_pot"].attrs["source_column"]


def test_rsds_pot_from_astronomy_for_base_files_without_sw_in_pot(tmp_path):
    sites = write_site_list(tmp_path, [{**SITE, "SITE_ID": "US-Xyz", "LOCATION_LAT": -30.0}])
    got = fluxnet.read(write_bytes(tmp_path, BASE_NAME, csv_text(base_frame())), site_list=sites, qc_min=0)
    np.testing.assert_allclose(got["rsds_pot"].values[0], toa_shortwave_daily_mean(-30.0, [60, 61]), rtol=1e-6)


def test_sw_in_pot_of_the_file_is_kept_and_no_coordinates_leave_it_missing(tmp_path):
    frame = dd_frame()
    got = fluxnet.read(write_bytes(tmp_path, DD_NAME, csv_text(frame)), site_list=write_site_list(tmp_path, [SITE]))
    np.testing.assert_allclose(got["rsds_pot"].values[0], frame["SW_IN_POT"].to_numpy(), rtol=1e-6)
    other = tmp_path / "nolist"
    other.mkdir()
    got = fluxnet.read(write_bytes(other, DD_NAME, csv_text(frame.drop(columns="SW_IN_POT"))))
    assert np.isnan(got["rsds_pot"].values).all()  # no site list: no latitude, no astronomy


def test_a_file_of_only_comments_and_blank_lines_is_empty(tmp_path):
    path = write_bytes(tmp_path, BASE_NAME, "# Site: US-Xyz\n\n   \n")
    assert "the file is empty" in error_of(fluxnet.read, path)


def test_utf16_files_are_refused_with_what_to_do(tmp_path):
    path = tmp_path / DD_NAME
    path.write_bytes(csv_text(dd_frame()).encode("utf-16"))
    assert "UTF-8" in error_of(fluxnet.read, path)
