"""Quality control: QC masking of daily values, per-record quality of sub-daily ones, daily aggregation.

Daily (DD) files give each value's QC as the fraction of good half hours of the day; a value is
kept where it reaches ``qc_min``. Sub-daily records carry a quality flag (or none); they are
aggregated to days with the coverage rule and masked with the share of good records of the day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from upscale.errors import DataError
from upscale.sources.fluxnet.columns import VARIABLE_ORDER
from upscale.sources.fluxnet.options import Options
from upscale.sources.fluxnet.table import line_of, numeric

log = logging.getLogger(__package__)

#: FLUXNET _QC flags that count as good: 0 measured, 1 good-quality gap fill.
GOOD_QC_FLAGS = (0, 1)


# --------------------------------------------------------------------------- daily files


def optional_column(table, column: str, qc_column: str | None, qc_min: float, where: str) -> pd.Series:
    """:func:`masked`, or all NaN (with a warning) where the file lacks ``column``."""
    if column not in table.columns:
        log.warning("%s: column %s is missing; its variable is all NaN", where, column)
        return pd.Series(np.nan, index=table.index)
    return masked(table, column, qc_column, qc_min, where)


def masked(table: pd.DataFrame, column: str, qc_column: str | None, qc_min: float, where: str) -> pd.Series:
    """Values of ``column`` with those whose QC fraction is under ``qc_min`` set to NaN."""
    values = numeric(table, column, where)
    if qc_column is None or qc_min <= 0.0:
        return values
    if qc_column not in table.columns:
        raise DataError(
            f"the QC column {qc_column} of {column} is missing",
            where=where,
            fix="Pass an unmodified FLUXNET2015 file, or set qc_min=0 to use the values without QC",
        )
    qc = _qc_fraction(table, qc_column, where)
    return values.where(qc >= qc_min)  # NaN QC (unknown quality) is masked too


def _qc_fraction(table: pd.DataFrame, qc_column: str, where: str) -> pd.Series:
    return _qc_values(table, qc_column, where, flags=False)


def _qc_flags(table: pd.DataFrame, qc_column: str, where: str) -> pd.Series:
    return _qc_values(table, qc_column, where, flags=True)


def _qc_values(table: pd.DataFrame, qc_column: str, where: str, flags: bool) -> pd.Series:
    """A QC column checked: sub-daily files hold flags 0-3, daily files fractions in [0, 1]."""
    qc = numeric(table, qc_column, where)
    bad = qc.notna() & ~qc.isin((0, 1, 2, 3)) if flags else (qc < 0) | (qc > 1)
    outside = np.flatnonzero(bad.to_numpy())
    if outside.size:
        row = int(outside[0])
        kind, fix = (
            (
                "not one of the flags 0, 1, 2, 3",
                "Half-hourly FLUXNET QC columns are flags (0 measured, 1-3 gap-filled); pass an HH file",
            )
            if flags
            else (
                "not a fraction between 0 and 1",
                "Daily FLUXNET QC columns are fractions of good half hours; pass a DD file",
            )
        )
        raise DataError(
            f"QC value {qc.iloc[row]} on line {line_of(table, row)} is {kind}",
            where=f"{where}, column {qc_column}",
            fix=fix,
        )
    return qc


# --------------------------------------------------------------------------- sub-daily files


@dataclass
class Records:
    """Sub-daily values of canonical variables in canonical units, with per-record quality.

    ``good`` marks records that are measured or good-quality gap-filled; variables in
    ``unflagged`` have no quality information and are never QC-masked.
    """

    start: pd.DatetimeIndex
    values: dict[str, pd.Series]
    good: dict[str, pd.Series]
    unflagged: set[str]


def add_flagged(
    records: Records,
    name: str,
    table: pd.DataFrame,
    columns: tuple[str, str | None],
    opt: Options,
    required: bool = True,
) -> None:
    """Add a FLUXNET column; good records have a _QC flag of 0 or 1 (any finite value without a QC column)."""
    column, qc_column = columns
    where = str(table.attrs.get("path", ""))
    if column not in table.columns and not required:
        log.warning("%s: column %s is missing; its variable is all NaN", where, column)
        records.values[name] = pd.Series(np.nan, index=table.index)
        records.good[name] = pd.Series(False, index=table.index)
        return
    values = numeric(table, column, where)
    records.values[name] = values
    if qc_column is None or (qc_column not in table.columns and opt.qc_min <= 0.0):
        records.good[name] = values.notna()
        records.unflagged.add(name)
        return
    if qc_column not in table.columns:
        raise DataError(
            f"the QC column {qc_column} of {column} is missing",
            where=where,
            fix="Pass an unmodified FLUXNET file, or set qc_min=0 to use the values without QC",
        )
    records.good[name] = values.notna() & _qc_flags(table, qc_column, where).isin(GOOD_QC_FLAGS)


def daily_values(records: Records, records_per_day: int, opt: Options) -> pd.DataFrame:
    """Daily means (precipitation: totals) with the coverage rule and QC masking applied."""
    day = records.start.normalize()
    names = [n for n in VARIABLE_ORDER if n in records.values]
    values = pd.DataFrame({n: records.values[n].to_numpy() for n in names}, index=day)
    good = pd.DataFrame({n: records.good[n].to_numpy(dtype=bool) for n in names}, index=day)
    coverage = values.notna().groupby(level=0).sum() / records_per_day
    qc = good.groupby(level=0).sum() / records_per_day
    daily = values.groupby(level=0).mean().where(coverage >= opt.min_coverage)
    if "pr" in daily:
        daily["pr"] = daily["pr"] * records_per_day  # mm per record -> mm per day
    if opt.qc_min > 0.0:
        flagged = [n for n in names if n not in records.unflagged]
        daily[flagged] = daily[flagged].where(qc[flagged] >= opt.qc_min)
    daily.index = pd.DatetimeIndex(daily.index).as_unit("ns")
    return daily
