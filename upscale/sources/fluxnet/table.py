"""A flux-tower CSV file read as a table, with checked timestamps and numeric columns.

Errors name the file line of a bad value (counting the header and any ``#`` comment lines).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from upscale.errors import DataError

#: Values at or below this are FLUXNET's missing-value code (-9999 and variants).
MISSING_AT_OR_BELOW = -9990.0
_NA_VALUES = ["-9999", "-9999.0", "-9999.00", "-9999.000"]
_DD_TIMESTAMP = re.compile(r"^\d{8}$")
_HH_TIMESTAMP = re.compile(r"^\d{12}$")
#: strftime format -> (pattern the text must match, its name for messages, an example)
_TIME_FORMATS = {
    "%Y%m%d": (_DD_TIMESTAMP, "a date as YYYYMMDD", "Daily FLUXNET files give TIMESTAMP as YYYYMMDD, e.g. 20090101"),
    "%Y%m%d%H%M": (
        _HH_TIMESTAMP,
        "a time as YYYYMMDDHHMM",
        "Sub-daily FLUXNET and AmeriFlux files give times as YYYYMMDDHHMM, e.g. 201001010030",
    ),
}


def read_csv(path: Path) -> pd.DataFrame:
    """The data rows of a FLUXNET or AmeriFlux CSV file; timestamps stay text, ``-9999`` is NaN.

    The lines before the header (``#`` comments, blank or whitespace-only lines, as AmeriFlux
    BASE files have them) are skipped; a UTF-8 BOM and Windows line ends are read as plain text.
    ``attrs`` hold the file (``path``) and its number of lines before the header (``comment_lines``).
    """
    text_columns = dict.fromkeys(("TIMESTAMP", "TIMESTAMP_START", "TIMESTAMP_END"), str)
    skip = len(preamble(path)[0])
    try:
        table = pd.read_csv(
            path, na_values=_NA_VALUES, dtype=text_columns, encoding="utf-8-sig", comment="#", skiprows=skip
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"cannot read the file as CSV: {str(exc).strip()}",
            where=str(path),
            fix="Pass the original FLUXNET CSV file (comma-separated, one header line)",
        ) from None
    table.columns = [str(c).strip() for c in table.columns]
    table.attrs["path"] = str(path)
    table.attrs["comment_lines"] = skip
    if table.empty:
        raise DataError("the file has a header but no data rows", where=str(path))
    return table


def line_of(frame, row: int) -> int:
    """The file line of data row ``row`` (0-based): after the comment lines and the header."""
    return row + 2 + int(frame.attrs.get("comment_lines", 0))


def preamble(path: Path) -> tuple[list[str], str]:
    """The lines before the header (``#`` comments, blank lines, both with any surrounding whitespace)
    and the header line itself ("" for a file of nothing else).

    Raises
    ------
    upscale.errors.DataError
        For a file that is not UTF-8 text (with a special word for UTF-16, as Excel writes it).
    """
    with open(path, "rb") as handle:
        start = handle.read(2)
    if start in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(
            "the file is UTF-16 text (as Excel's 'Unicode text' writes it), not UTF-8",
            where=str(path),
            fix="Save it as CSV UTF-8, or pass the original file",
        )
    before = []
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line in handle:
                stripped = line.strip()
                if stripped and not stripped.startswith("#"):
                    return before, line
                before.append(line)
    except UnicodeDecodeError:
        raise DataError(
            "cannot read the file as a text CSV (it is not UTF-8/ASCII text)",
            where=str(path),
            fix="Pass the original FLUXNET CSV file",
        ) from None
    return before, ""


def parse_daily_timestamps(raw: pd.Series, where: str) -> pd.DatetimeIndex:
    """The TIMESTAMP column of a DD file as days (checked: YYYYMMDD, unique, increasing)."""
    index = _parse_times(raw, where, "TIMESTAMP", "%Y%m%d")
    _check_order(index, where)
    return index


def parse_subdaily_timestamps(table: pd.DataFrame, where: str, records_per_day: int) -> pd.DatetimeIndex:
    """TIMESTAMP_START as times (checked: YYYYMMDDHHMM, unique, increasing, one record long each)."""
    start = _parse_times(table["TIMESTAMP_START"], where, "TIMESTAMP_START", "%Y%m%d%H%M")
    _check_order(start, where, "TIMESTAMP_START", "%Y%m%d%H%M")
    if "TIMESTAMP_END" in table.columns:
        length = pd.Timedelta(days=1) / records_per_day
        end = _parse_times(table["TIMESTAMP_END"], where, "TIMESTAMP_END", "%Y%m%d%H%M")
        wrong = np.flatnonzero((end - start) != length)
        if wrong.size:
            row = int(wrong[0])
            raise DataError(
                f"record {start[row]:%Y%m%d%H%M}-{end[row]:%Y%m%d%H%M} on data row {row + 1} is not "
                f"{int(length.total_seconds() // 60)} minutes long as the file name says",
                where=f"{where}, columns TIMESTAMP_START/TIMESTAMP_END",
                fix="Check that the name (HH = half-hourly, HR = hourly) fits the file",
            )
    return start


def _parse_times(raw: pd.Series, where: str, column: str, fmt: str) -> pd.DatetimeIndex:
    """A timestamp column parsed with ``fmt``; the first bad value is a DataError (line = file line,
    counting one header line)."""
    pattern, kind, fix = _TIME_FORMATS[fmt]
    text = raw.astype("string").str.strip()
    ok = text.str.fullmatch(pattern.pattern).fillna(False).to_numpy(dtype=bool)
    time = pd.to_datetime(text.where(ok), format=fmt, errors="coerce")
    bad = np.flatnonzero(time.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{column} {raw.iloc[row]!r} on line {line_of(raw, row)} is not {kind}",
            where=f"{where}, column {column}",
            fix=fix,
        )
    return pd.DatetimeIndex(time).as_unit("ns")


def _check_order(index: pd.DatetimeIndex, where: str, column: str = "TIMESTAMP", fmt: str = "%Y%m%d") -> None:
    duplicated = index.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataError(
            f"duplicate timestamps: {index[row].strftime(fmt)} appears more than once (again on data row {row + 1})",
            where=f"{where}, column {column}",
            fix="Remove the repeated rows or download the file again",
        )
    steps = np.diff(index.asi8)
    if (steps < 0).any():
        row = int(np.flatnonzero(steps < 0)[0]) + 1
        raise DataError(
            f"timestamps are not in increasing order: {index[row].strftime(fmt)} on data row "
            f"{row + 1} follows {index[row - 1].strftime(fmt)}",
            where=f"{where}, column {column}",
            fix=f"Sort the rows by {column}",
        )


def numeric(table: pd.DataFrame, column: str, where: str) -> pd.Series:
    """A column as float64 with FLUXNET's missing codes (<= -9990) as NaN."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = np.flatnonzero((values.isna() & raw.notna()).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"non-numeric value {raw.iloc[row]!r} on line {line_of(table, row)}",
            where=f"{where}, column {column}",
            fix="Fix or remove the value; FLUXNET marks missing values with -9999",
        )
    return values.mask(values <= MISSING_AT_OR_BELOW)


def required_column(table: pd.DataFrame, column: str, where: str) -> str:
    """``column`` if the table has it; a DataError about the target variant otherwise."""
    if column not in table.columns:
        raise DataError(
            f"the target column {column} is missing",
            where=where,
            fix="Pass a FLUXNET2015 SUBSET/FULLSET file, or choose another gpp=/le= variant",
        )
    return column
