"""Fixtures of the FLUXNET reader tests: the real US-AR1 file of the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

#: The project root (this file is tests/sources/fluxnet/conftest.py); the shared data sit beside it.
ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = ROOT.parent / "shared" / "data"
US_AR1 = SHARED_DATA / "fluxnet" / "FLX_US-AR1_FLUXNET2015_SUBSET_DD_2009-2012_1-3.csv"


@pytest.fixture
def real_file() -> Path:
    """The real FLUXNET2015 SUBSET DD file of US-AR1 (skips where the shared data folder is absent)."""
    if not US_AR1.is_file():
        pytest.skip(f"real FLUXNET2015 file not available: {US_AR1} (the shared data folder is absent)")
    return US_AR1


@pytest.fixture
def raw_real(real_file) -> pd.DataFrame:
    """The US-AR1 file as pandas reads it, -9999 as NaN: the values to compare with."""
    return pd.read_csv(real_file, na_values=[-9999])
