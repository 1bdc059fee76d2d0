"""Fixtures of the demo world tests: the tiny world in memory and written, its FLUXNET tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.sources.demo.common import TINY
from upscale.sources.demo import simulate, write_world


@pytest.fixture(scope="session")
def tiny():
    return simulate(TINY)


@pytest.fixture(scope="session")
def written(tmp_path_factory) -> Path:
    return write_world(TINY, tmp_path_factory.mktemp("demo") / "world")


@pytest.fixture(scope="session")
def flux_tables(written, tiny) -> dict[str, pd.DataFrame]:
    _, sites = tiny
    folder = written.parent / "fluxnet"
    return {sid: pd.read_csv(folder / f"FLX_{sid}_FLUXNET2015_SUBSET_DD_2018-2018_1-4.csv") for sid in sites["SITE_ID"]}
