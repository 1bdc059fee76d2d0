"""Finding files and recognising their format and site from name and header."""

from __future__ import annotations

import pandas as pd

from tests.sources.fluxnet.builders import base_frame, dd_frame, error_of, hh_frame, write_base, write_dd, write_sub
from upscale.sources import fluxnet


def test_file_not_found_and_empty_glob(tmp_path):
    missing = tmp_path / "FLX_US-Aaa_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv"
    message = error_of(fluxnet.read, missing)
    assert "not found" in message and missing.name in message
    message = error_of(fluxnet.read, [str(tmp_path / "nothing_*.csv")])
    assert "matches no file" in message and "nothing_*.csv" in message
    assert "no FLUXNET files" in error_of(fluxnet.read, [])
    assert "directory" in error_of(fluxnet.read, tmp_path)


def test_no_timestamp_column(tmp_path):
    path = write_dd(
        tmp_path,
        dd_frame().rename(columns={"TIMESTAMP": "DATE"}),
        name="FLX_US-Aaa_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv",
    )
    message = error_of(fluxnet.read, path)
    assert "no TIMESTAMP column" in message and path.name in message


def test_other_formats_are_refused(tmp_path):
    hh = pd.DataFrame({"TIMESTAMP_START": ["201001010000"], "TIMESTAMP_END": ["201001010030"], "TA_F": [1.0]})
    # a DD name with a half-hourly header
    dd_named = tmp_path / "FLX_US-Bbb_FLUXNET2015_FULLSET_DD_2010-2010_1-4.csv"
    hh.to_csv(dd_named, index=False)
    message = error_of(fluxnet.read, dd_named)
    assert "no TIMESTAMP column" in message and "TIMESTAMP_START" in message
    # an unknown name with a half-hourly header
    odd = tmp_path / "tower_halfhours.csv"
    hh.to_csv(odd, index=False)
    message = error_of(fluxnet.read, odd)
    assert "cannot recognise" in message and "TIMESTAMP_START" in message and "tower_halfhours.csv" in message
    # an HH name without TIMESTAMP_START
    hh_named = write_dd(tmp_path, dd_frame(), name="FLX_US-Ccc_FLUXNET2015_FULLSET_HH_2010-2010_1-4.csv")
    assert "no TIMESTAMP_START column" in error_of(fluxnet.read, hh_named)
    base_daily = tmp_path / "AMF_US-Aaa_BASE_DD_5-5.csv"
    hh.to_csv(base_daily, index=False)
    assert "AmeriFlux BASE files are half-hourly" in error_of(fluxnet.read, base_daily)
    weekly = write_dd(tmp_path, dd_frame(), name="FLX_US-Aaa_FLUXNET2015_SUBSET_WW_2010-2010_1-4.csv")
    assert "only daily (DD), half-hourly (HH) and hourly (HR)" in error_of(fluxnet.read, weekly)
    unknown = write_dd(tmp_path, dd_frame(), name="my_site_daily.csv")
    message = error_of(fluxnet.read, unknown)
    assert "cannot recognise" in message and "my_site_daily.csv" in message


def test_detect_format(tmp_path):
    path = write_dd(tmp_path, dd_frame(), site="CH-Dav")
    src = fluxnet.detect_format(path)
    assert (src.site, src.format, src.records_per_day) == ("CH-Dav", fluxnet.FORMAT_FLUXNET_DD, 1)
    oneflux_dd = write_dd(tmp_path, dd_frame(), name="AMF_US-Ha1_FLUXNET_SUBSET_DD_1991-2020_3-5.csv")
    assert fluxnet.detect_format(oneflux_dd).format == fluxnet.FORMAT_FLUXNET_DD
    hh = hh_frame(days=1)
    hr = write_sub(tmp_path, hh, "AMF_US-Ha1_FLUXNET_FULLSET_HR_1991-2020_3-5.csv")
    assert (fluxnet.detect_format(hr).format, fluxnet.detect_format(hr).records_per_day) == ("fluxnet-hh", 24)
    base = write_base(tmp_path, base_frame(days=1), "AMF_US-Xyz_BASE_HH_2-5.csv")
    src = fluxnet.detect_format(base)
    assert (src.site, src.format, src.records_per_day) == ("US-Xyz", fluxnet.FORMAT_AMERIFLUX_BASE, 48)


def test_sites_filter_and_unknown_sites(tmp_path):
    write_dd(tmp_path, dd_frame(), site="US-Aaa")
    write_dd(tmp_path, dd_frame(), site="DE-Bbb")
    pattern = str(tmp_path / "FLX_*.csv")
    assert fluxnet.read(pattern, sites=["US-Aaa"])["site"].values.tolist() == ["US-Aaa"]
    message = error_of(fluxnet.read, pattern, sites=["US-Aab", "XX-Zzz"])
    assert "US-Aab" in message and "did you mean US-Aaa" in message and "XX-Zzz" in message


def test_a_file_cut_short_is_refused_naming_the_line(tmp_path):
    path = write_dd(tmp_path, dd_frame(days=10))
    complete = path.read_bytes()
    assert fluxnet.detect_format(path).site == "US-Aaa"
    path.write_bytes(complete[:-25])  # mid-row: the last line lacks fields
    message = error_of(fluxnet.read, path)
    assert "cut short" in message and "fields" in message and f"{path}, line 11" in message
    path.write_bytes(complete[:-2])  # inside the last value: every field there, no line break
    message = error_of(fluxnet.read, path)
    assert "cut short" in message and "line break" in message and "line 11" in message
    path.write_bytes(complete.replace(b"\n", b"\r\n"))  # Windows line ends are complete too
    assert fluxnet.detect_format(path).site == "US-Aaa"
    header_only = write_dd(tmp_path, dd_frame().iloc[:0], name="FLX_US-Bbb_FLUXNET2015_SUBSET_DD_2010-2010_1-4.csv")
    assert fluxnet.detect_format(header_only).site == "US-Bbb"
