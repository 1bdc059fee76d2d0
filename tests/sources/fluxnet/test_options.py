"""The reading choices: GPP/LE variants and fractions are checked before any file is read."""

from __future__ import annotations

import pytest

from tests.sources.fluxnet.builders import dd_frame, error_of, write_dd
from upscale.sources import fluxnet


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"gpp": "XX"}, "gpp='XX'"),
        ({"le": "raw"}, "le='raw'"),
        ({"qc_min": 1.5}, "qc_min=1.5"),
        ({"qc_min": "high"}, "qc_min='high'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, fragment):
    path = write_dd(tmp_path, dd_frame())
    assert fragment in error_of(fluxnet.read, path, **kwargs)
