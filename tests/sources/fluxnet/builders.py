"""Writers of small FLUXNET2015, ONEFlux and AmeriFlux BASE files for the reader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from upscale.errors import DataError


def dd_frame(start: str = "2010-01-01", days: int = 10, seed: int = 0) -> pd.DataFrame:
    """A small, fully valid FLUXNET2015 DD table (all QC = 1)."""
    rng = np.random.default_rng(seed)
    time = pd.date_range(start, periods=days, freq="D")
    ones = np.ones(days)
    return pd.DataFrame(
        {
            "TIMESTAMP": time.strftime("%Y%m%d"),
            "TA_F": rng.uniform(-5, 25, days).round(3),
            "TA_F_QC": ones,
            "SW_IN_POT": rng.uniform(100, 450, days).round(3),
            "SW_IN_F": rng.uniform(20, 300, days).round(3),
            "SW_IN_F_QC": ones,
            "VPD_F": rng.uniform(0, 20, days).round(3),
            "VPD_F_QC": ones,
            "P_F": rng.uniform(0, 5, days).round(3),
            "P_F_QC": ones,
            "LE_F_MDS": rng.uniform(5, 150, days).round(3),
            "LE_F_MDS_QC": ones,
            "LE_CORR": rng.uniform(5, 150, days).round(3),
            "NEE_VUT_REF_QC": ones,
            "GPP_NT_VUT_REF": rng.uniform(0, 12, days).round(4),
            "GPP_DT_VUT_REF": rng.uniform(0, 12, days).round(4),
        }
    )


def write_dd(directory: Path, frame: pd.DataFrame, site: str = "US-Aaa", name: str | None = None) -> Path:
    """Write ``frame`` as a FLUXNET2015 SUBSET DD file named after its site and years."""
    if name is None:
        years = frame["TIMESTAMP"].astype(str).str[:4]
        name = f"FLX_{site}_FLUXNET2015_SUBSET_DD_{years.iloc[0]}-{years.iloc[-1]}_1-4.csv"
    path = directory / name
    frame.to_csv(path, index=False)
    return path


def write_site_list(directory: Path, rows: list[dict], name: str = "sites.csv") -> Path:
    """Write ``rows`` as a site list CSV."""
    path = directory / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def error_of(call, *args, **kwargs) -> str:
    """The message of the DataError that ``call(*args, **kwargs)`` must raise."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    return str(info.value)


def hh_frame(days: int = 2, per_day: int = 48, start: str = "2010-07-01") -> pd.DataFrame:
    """A FLUXNET/ONEFlux HH (or HR) table: TA 10 degC in the first half of each day, 20 in the second,
    GPP 5 umol m-2 s-1, LE 100 W m-2, 0.1 mm of rain in each of the first 10 records, all QC 0."""
    step = pd.Timedelta(days=1) / per_day
    start_times = pd.date_range(start, periods=days * per_day, freq=step)
    n = start_times.size
    half = np.tile(np.repeat([10.0, 20.0], per_day // 2), days)
    zeros = np.zeros(n, dtype=int)
    rain = np.tile(np.r_[np.full(10, 0.1), np.zeros(per_day - 10)], days)
    return pd.DataFrame(
        {
            "TIMESTAMP_START": start_times.strftime("%Y%m%d%H%M"),
            "TIMESTAMP_END": (start_times + step).strftime("%Y%m%d%H%M"),
            "TA_F": half,
            "TA_F_QC": zeros,
            "SW_IN_POT": np.full(n, 300.0),
            "SW_IN_F": np.full(n, 150.0),
            "SW_IN_F_QC": zeros,
            "VPD_F": np.full(n, 8.0),
            "VPD_F_QC": zeros,
            "P_F": rain,
            "P_F_QC": zeros,
            "LE_F_MDS": np.full(n, 100.0),
            "LE_F_MDS_QC": zeros,
            "LE_CORR": np.full(n, 120.0),
            "NEE_VUT_REF_QC": zeros,
            "GPP_NT_VUT_REF": np.full(n, 5.0),
            "GPP_DT_VUT_REF": np.full(n, 6.0),
        }
    )


def write_sub(directory: Path, frame: pd.DataFrame, name: str) -> Path:
    """Write ``frame`` as a sub-daily (HH or HR) file called ``name``."""
    path = directory / name
    frame.to_csv(path, index=False)
    return path


def et_by_hand(le: float, ta: float) -> float:
    """ET (kg m-2 d-1) of LE (W m-2) at TA (degC), written out by hand."""
    return le * 86400.0 / ((2.501 - 0.002361 * ta) * 1e6)


def base_frame(days: int = 2) -> pd.DataFrame:
    """AmeriFlux BASE half hours: two TA sensors, RH (no VPD), measured and gap-filled LE and GPP."""
    n = days * 48
    start_times = pd.date_range("2015-03-01", periods=n, freq="30min")
    le = np.full(n, 80.0)
    le[:8] = -9999.0  # 8 of day 1's 48 records measured-missing: QC 40/48
    nee = np.full(n, -4.0)
    nee[48 : 48 + 24] = -9999.0  # day 2: half the NEE records missing: GPP QC 0.5
    return pd.DataFrame(
        {
            "TIMESTAMP_START": start_times.strftime("%Y%m%d%H%M"),
            "TIMESTAMP_END": (start_times + pd.Timedelta("30min")).strftime("%Y%m%d%H%M"),
            "TA_1_1_1": np.full(n, 20.0),
            "TA_1_2_1": np.full(n, 5.0),
            "RH_1_1_1": np.full(n, 50.0),
            "SW_IN_1_1_1": np.full(n, 200.0),
            "P": np.where(np.arange(n) % 48 < 4, 0.5, 0.0),
            "NEE_PI": nee,
            "LE": le,
            "LE_PI_F": np.full(n, 90.0),
            "GPP_PI_F": np.full(n, 10.0),
        }
    )


def write_base(directory: Path, frame: pd.DataFrame, name: str = "AMF_US-Xyz_BASE_HH_2-5.csv") -> Path:
    """Write ``frame`` as an AmeriFlux BASE file, after its two ``#`` comment lines."""
    path = directory / name
    with open(path, "w") as handle:
        handle.write("# Site: US-Xyz\n# Version: 2-5\n")
        frame.to_csv(handle, index=False)
    return path
