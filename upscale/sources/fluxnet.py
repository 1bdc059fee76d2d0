"""FLUXNET2015 / ONEFlux site files read into the canonical site Dataset.

The reader turns FLUXNET2015 / ONEFlux SUBSET or FULLSET CSV files (daily DD, or half-hourly
HH and hourly HR aggregated to days) and AmeriFlux BASE half-hourly files into one Dataset with
dims ``(site, time)`` in canonical names and units (see :mod:`upscale.variables`): every
``-9999`` becomes NaN and every value whose daily QC fraction is under ``qc_min`` is masked.

Each file first goes through :func:`detect_format`, which looks at its name and header
and says which reader handles it (``fluxnet2015-dd``, ``fluxnet-hh`` or ``ameriflux-base``).

Sub-daily records are aggregated to the day of their ``TIMESTAMP_START`` (local standard time,
as in the files): a daily value is the mean of the finite records when at least ``min_coverage``
of the day's records are finite (precipitation: that mean times the records per day, i.e. the
daily total), and its QC is the fraction of the day's records that are measured or good-quality
gap-filled (FLUXNET ``_QC`` flag 0 or 1; in BASE files, a record whose measured, not gap-filled,
column is finite). GPP goes from umol CO2 m-2 s-1 to g C m-2 d-1, ET is computed per record
from LE with the latent heat of vaporisation at that record's air temperature.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import DataError
from upscale.variables import VARIABLES, le_to_et, saturation_vapour_pressure, umol_co2_to_gc_per_day

log = logging.getLogger(__name__)

#: Default minimum daily QC fraction (measured or good-quality gap-filled half hours).
DEFAULT_QC_MIN = 0.8
#: Values at or below this are FLUXNET's missing-value code (-9999 and variants).
MISSING_AT_OR_BELOW = -9990.0
#: Default minimum share of a day's sub-daily records that must be finite for a daily value.
DEFAULT_MIN_COVERAGE = 0.8
#: Air temperature (degC) used for the latent heat of vaporisation where TA_F is missing.
FALLBACK_TA_FOR_LAMBDA = 20.0

GPP_COLUMNS = {"NT": "GPP_NT_VUT_REF", "DT": "GPP_DT_VUT_REF"}
LE_COLUMNS = {"F_MDS": "LE_F_MDS", "CORR": "LE_CORR"}
GPP_QC_COLUMN = "NEE_VUT_REF_QC"
LE_QC_COLUMN = "LE_F_MDS_QC"
#: Canonical meteorological variable -> (FLUXNET column, its QC column or None).
MET_COLUMNS = {
    "tas": ("TA_F", "TA_F_QC"),
    "vpd": ("VPD_F", "VPD_F_QC"),
    "rsds": ("SW_IN_F", "SW_IN_F_QC"),
    "rsds_pot": ("SW_IN_POT", None),
    "pr": ("P_F", "P_F_QC"),
}
VARIABLE_ORDER = ("tas", "vpd", "rsds", "rsds_pot", "pr", "gpp", "le", "et")
TARGETS_REQUIRED = ("gpp", "et")

FORMAT_FLUXNET_DD = "fluxnet2015-dd"
FORMAT_FLUXNET_HH = "fluxnet-hh"
FORMAT_AMERIFLUX_BASE = "ameriflux-base"
#: Records per day of a sub-daily resolution code.
RECORDS_PER_DAY = {"HH": 48, "HR": 24}
#: FLUXNET _QC flags that count as good: 0 measured, 1 good-quality gap fill.
GOOD_QC_FLAGS = (0, 1)
#: AmeriFlux BASE variable -> canonical variable (GPP and LE are the targets).
BASE_VARIABLES = {"tas": "TA", "vpd": "VPD", "rsds": "SW_IN", "rsds_pot": "SW_IN_POT", "pr": "P",
                  "gpp": "GPP", "le": "LE"}
_NA_VALUES = ["-9999", "-9999.0", "-9999.00", "-9999.000"]
_FLX_NAME = re.compile(
    r"^(?P<network>[A-Za-z]+)_(?P<site>[^_]+)_FLUXNET(?:2015)?_(?P<product>[A-Za-z]+)_(?P<res>[A-Za-z]+)_.*\.csv$",
    re.I)
_AMF_BASE_NAME = re.compile(r"^AMF_(?P<site>[^_]+)_BASE_(?P<res>[A-Za-z]+)_.*\.csv$", re.I)
_GLOB_CHARS = re.compile(r"[*?\[]")
_DD_TIMESTAMP = re.compile(r"^\d{8}$")
_HH_TIMESTAMP = re.compile(r"^\d{12}$")
_NAME_HINT = ("FLX_<SITE>_FLUXNET2015_<SUBSET|FULLSET>_<DD|HH|HR>_<YYYY-YYYY>_<version>.csv, "
              "AMF_<SITE>_FLUXNET_<SUBSET|FULLSET>_<DD|HH|HR>_... or AMF_<SITE>_BASE_<HH|HR>_<version>.csv")

# Site-list columns: canonical key -> accepted header spellings (compared case-insensitively).
_SITE_LIST_COLUMNS = {
    "site": ("site_id", "site", "siteid", "site_code", "id"),
    "lat": ("location_lat", "lat", "latitude"),
    "lon": ("location_long", "location_lon", "lon", "long", "longitude"),
    "elevation": ("location_elev", "elevation", "elev", "altitude", "alt"),
    "igbp": ("igbp", "igbp_class", "igbp_code"),
}


@dataclass(frozen=True)
class SourceFile:
    """One recognised input file.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    site : str
        The site id taken from the file name (e.g. ``"US-AR1"``).
    format : str
        The format key that selects the reader (e.g. ``"fluxnet2015-dd"``).
    records_per_day : int
        1 for daily files, 48 for half-hourly (HH) and 24 for hourly (HR) files.
    """

    path: Path
    site: str
    format: str
    records_per_day: int = 1


# --------------------------------------------------------------------------- public API


def read(
    paths,
    site_list=None,
    sites: Sequence[str] | None = None,
    qc_min: float = DEFAULT_QC_MIN,
    gpp: str = "NT",
    le: str = "F_MDS",
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> xr.Dataset:
    """Read FLUXNET2015 / ONEFlux (DD, HH, HR) and AmeriFlux BASE files into one canonical site Dataset.

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        Files or glob patterns of FLUXNET2015 or ONEFlux SUBSET/FULLSET CSV files, named like
        ``FLX_US-AR1_FLUXNET2015_SUBSET_DD_2009-2012_1-3.csv`` or
        ``AMF_US-Ha1_FLUXNET_FULLSET_HH_1991-2020_3-5.csv``, and AmeriFlux BASE files named like
        ``AMF_US-Ha1_BASE_HH_21-5.csv`` (the site id is the second underscore-separated field).
        Daily files are read as they are; half-hourly (HH) and hourly (HR) files are aggregated
        to days (see the module docstring). Several files of one site are joined in time.
    site_list : str or os.PathLike, optional
        CSV with columns SITE_ID, LOCATION_LAT, LOCATION_LONG, LOCATION_ELEV, IGBP (or common
        alternatives such as ``site``, ``lat``, ``lon``, ``elevation``; case-insensitive).
        Without it the coords ``lat``, ``lon``, ``elevation`` are NaN and ``igbp`` is "".
    sites : sequence of str, optional
        Site ids to keep; all sites found in the files when None.
    qc_min : float, default 0.8
        Minimum daily QC fraction (share of measured or good-quality gap-filled half hours);
        values whose QC is below it become NaN. ``0`` disables QC masking.
    gpp : {"NT", "DT"}
        Partitioning of GPP: night-time (GPP_NT_VUT_REF) or day-time (GPP_DT_VUT_REF).
    le : {"F_MDS", "CORR"}
        Latent heat flux: gap-filled (LE_F_MDS) or energy-balance corrected (LE_CORR).
        AmeriFlux BASE files have one GPP (the PI's, ``GPP_PI_F`` or ``GPP``) and no LE_CORR.
    min_coverage : float, default 0.8
        Sub-daily files only: the share of a day's records that must be finite for the day to get
        a value (NaN otherwise).

    Returns
    -------
    xarray.Dataset
        Dims ``(site, time)``, daily ``time`` (datetime64[ns]) from the first to the last day of
        any file, NaN where a site has no data; coords ``site`` (sorted ids), ``lat``, ``lon``,
        ``elevation``, ``igbp``; float32 variables ``tas``, ``vpd``, ``rsds``, ``rsds_pot``,
        ``pr``, ``gpp``, ``le``, ``et``; attrs ``qc_min``, ``gpp_partitioning``, ``le_variant``,
        ``source_files``.

    Raises
    ------
    upscale.errors.DataError
        For missing, unrecognised or malformed files, overlapping files of one site, sites
        unknown to the site list, or a site left without GPP or ET after QC masking.
    """
    gpp_column = _choose(gpp, GPP_COLUMNS, "gpp")
    le_column = _choose(le, LE_COLUMNS, "le")
    qc_min = _check_fraction(qc_min, "qc_min",
                             "Use e.g. 0.8 (80 % measured or good-quality gap-filled half hours), or 0 for no QC")
    min_coverage = _check_fraction(min_coverage, "min_coverage",
                                   "Use e.g. 0.8 (a day needs 80 % of its half hours), or 0 to take any")
    files = [detect_format(path) for path in expand_paths(paths)]
    files = _select_sites(files, sites)
    site_ids = sorted({f.site for f in files})
    meta = _site_metadata(site_list, site_ids)
    frames = {}
    for site in site_ids:
        site_files = [f for f in files if f.site == site]
        frames[site] = _read_site(site_files, _Options(qc_min, gpp_column, le_column, min_coverage))
    columns = {v: _source_column(v, gpp_column, le_column) for v in VARIABLE_ORDER}
    if all(f.format == FORMAT_AMERIFLUX_BASE for f in files):
        columns.update({v: f"{c} (AmeriFlux BASE, gap-filled _PI_F column where present)"
                        for v, c in BASE_VARIABLES.items()})
    ds = _to_dataset(frames, meta, columns)
    ds.attrs.update({
        "qc_min": qc_min,
        "gpp_partitioning": gpp.upper(),
        "le_variant": le.upper(),
        "min_coverage": min_coverage,
        "source_files": [str(f.path) for f in sorted(files, key=lambda f: str(f.path))],
    })
    return ds


def expand_paths(paths) -> list[Path]:
    """Files named by a path, a glob pattern, or a sequence of paths and globs.

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        Literal paths (which must exist) and glob patterns (which must match a file).

    Returns
    -------
    list of pathlib.Path
        The files, without duplicates, sorted.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise DataError("no FLUXNET files given", where="paths",
                        fix="Pass a file, a glob such as 'data/FLX_*_DD_*.csv', or a list of them")
    found: dict[Path, None] = {}
    for item in items:
        for path in _expand_one(os.path.expanduser(os.fspath(item))):
            found[path.resolve()] = None
    return sorted(found)


def detect_format(path) -> SourceFile:
    """Recognise a flux-tower file by its name and header.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    SourceFile
        Its site id, format key (``"fluxnet2015-dd"``, ``"fluxnet-hh"`` or ``"ameriflux-base"``)
        and records per day.

    Raises
    ------
    upscale.errors.DataError
        For weekly/monthly/yearly aggregates, archives, headers that do not fit the name, and
        files it cannot recognise.
    """
    path = Path(path)
    where = str(path)
    name = path.name
    if name.lower().endswith(".zip"):
        raise DataError("zip archives cannot be read directly", where=where,
                        fix="Extract the archive and pass the CSV file inside it")
    match = _FLX_NAME.match(name)
    if match:
        return _detect_fluxnet(path, match)
    match = _AMF_BASE_NAME.match(name)
    if match:
        return _detect_base(path, match)
    header = _read_header(path)
    kind = " (a half-hourly header with TIMESTAMP_START)" if "TIMESTAMP_START" in header else ""
    raise DataError(f"cannot recognise the file{kind}: its name does not follow the FLUXNET or "
                    "AmeriFlux naming, which says its site and time resolution", where=where,
                    fix=f"Keep the original file name, like {_NAME_HINT}")


# --------------------------------------------------------------------------- paths and formats


def _expand_one(text: str) -> list[Path]:
    literal = Path(text)
    if literal.exists():
        if literal.is_dir():
            raise DataError("a directory was given where files are expected", where=text,
                            fix=f"Pass a glob such as '{literal / 'FLX_*_DD_*.csv'}'")
        return [literal]
    if _GLOB_CHARS.search(text):
        matches = [Path(m) for m in sorted(glob(text)) if Path(m).is_file()]
        if not matches:
            raise DataError("the glob pattern matches no file", where=text,
                            fix="Check the directory and the pattern")
        return matches
    raise DataError("file not found", where=text, fix="Check the path")


def _detect_fluxnet(path: Path, match: re.Match) -> SourceFile:
    where = str(path)
    product, res = match["product"].upper(), match["res"].upper()
    if res != "DD" and res not in RECORDS_PER_DAY:
        raise DataError(f"only daily (DD), half-hourly (HH) and hourly (HR) files are read, this is a {res} file",
                        where=where, fix="Use the DD or HH/HR file of the same site")
    if product not in ("SUBSET", "FULLSET"):
        raise DataError(f"{product} files carry no fluxes; only SUBSET and FULLSET files are read",
                        where=where, fix="Pass the SUBSET or FULLSET DD file of the site")
    header = _read_header(path)
    if res in RECORDS_PER_DAY:
        _require_columns(header, ("TIMESTAMP_START",), where, f"a FLUXNET {res} file")
        return SourceFile(path=path, site=match["site"], format=FORMAT_FLUXNET_HH,
                          records_per_day=RECORDS_PER_DAY[res])
    if "TIMESTAMP" not in header:
        extra = " (its columns start with TIMESTAMP_START, as in half-hourly files)" \
            if "TIMESTAMP_START" in header else f" (the header starts with {header[:3]})"
        raise DataError(f"no TIMESTAMP column{extra}", where=where,
                        fix="Pass an unmodified FLUXNET2015 DD file, whose first column is TIMESTAMP (YYYYMMDD)")
    return SourceFile(path=path, site=match["site"], format=FORMAT_FLUXNET_DD)


def _detect_base(path: Path, match: re.Match) -> SourceFile:
    res = match["res"].upper()
    if res not in RECORDS_PER_DAY:
        raise DataError(f"AmeriFlux BASE files are half-hourly (HH) or hourly (HR), this name says {res}",
                        where=str(path), fix="Keep the original file name, like AMF_US-Ha1_BASE_HH_21-5.csv")
    _require_columns(_read_header(path), ("TIMESTAMP_START",), str(path), "an AmeriFlux BASE file")
    return SourceFile(path=path, site=match["site"], format=FORMAT_AMERIFLUX_BASE,
                      records_per_day=RECORDS_PER_DAY[res])


def _require_columns(header: list[str], columns: Sequence[str], where: str, kind: str) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"no {', '.join(missing)} column, which {kind} must have (the header starts with "
                        f"{header[:3]})", where=where, fix="Pass the unmodified file as downloaded")


def _read_header(path: Path) -> list[str]:
    """The column names: the first line that is not a '#' comment (AmeriFlux BASE has comments)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            line = handle.readline()
            while line.startswith("#"):
                line = handle.readline()
    except UnicodeDecodeError:
        raise DataError("cannot read the file as a text CSV (it is not UTF-8/ASCII text)", where=str(path),
                        fix="Pass the original FLUXNET CSV file") from None
    except OSError as exc:
        raise DataError(f"cannot open the file: {exc.strerror or exc}", where=str(path)) from None
    if not line.strip():
        raise DataError("the file is empty", where=str(path), fix="Download the file again")
    return [column.strip() for column in line.rstrip("\r\n").split(",")]


def _select_sites(files: list[SourceFile], sites: Sequence[str] | None) -> list[SourceFile]:
    if sites is None:
        return files
    wanted = [sites] if isinstance(sites, str) else list(sites)
    if not wanted:
        raise DataError("the list of sites to keep is empty", where="sites",
                        fix="Leave sites unset to keep every site, or name at least one")
    available = sorted({f.site for f in files})
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise DataError(f"sites not found in the files: {_with_suggestions(unknown, available)}",
                        where="sites", fix=f"Choose among the sites of the files: {', '.join(available)}")
    keep = set(wanted)
    return [f for f in files if f.site in keep]


def _with_suggestions(names: Iterable[str], choices: Sequence[str]) -> str:
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
        parts.append(f"{name} (did you mean {' or '.join(close)}?)" if close else name)
    return ", ".join(parts)


def _choose(value: str, choices: dict[str, str], argument: str) -> str:
    key = str(value).upper()
    if key not in choices:
        raise DataError(f"{argument}={value!r} is not a valid choice", where=argument,
                        fix=f"Use one of {', '.join(repr(c) for c in choices)}")
    return choices[key]


def _check_fraction(raw, argument: str, fix: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise DataError(f"{argument}={raw!r} is not a fraction between 0 and 1", where=argument, fix=fix)
    return value


def _source_column(variable: str, gpp_column: str, le_column: str) -> str:
    if variable == "gpp":
        return gpp_column
    if variable == "le":
        return le_column
    if variable == "et":
        return f"{le_column} (via the latent heat of vaporisation at TA_F)"
    return MET_COLUMNS[variable][0]


@dataclass(frozen=True)
class _Options:
    """The reading choices every reader gets."""

    qc_min: float
    gpp_column: str
    le_column: str
    min_coverage: float = DEFAULT_MIN_COVERAGE


# --------------------------------------------------------------------------- one DD file


def _read_fluxnet_dd(src: SourceFile, opt: _Options) -> pd.DataFrame:
    """One DD file as a daily-indexed frame of canonical variables (float64, QC-masked)."""
    table = _read_csv(src.path)
    where = str(src.path)
    time = _parse_timestamps(table["TIMESTAMP"], where)
    qc_min = opt.qc_min
    out = {}
    for name, (column, qc_column) in MET_COLUMNS.items():
        out[name] = _optional_column(table, column, qc_column, qc_min, where)
    out["gpp"] = _masked(table, _required(table, opt.gpp_column, where), GPP_QC_COLUMN, qc_min, where)
    out["le"] = _masked(table, _required(table, opt.le_column, where), LE_QC_COLUMN, qc_min, where)
    out["et"] = _et_from_le(out["le"], table, where)
    frame = pd.DataFrame(out)
    frame.index = time
    return frame


def _line(frame, row: int) -> int:
    """The file line of data row ``row`` (0-based): after the comment lines and the header."""
    return row + 2 + int(frame.attrs.get("comment_lines", 0))


def _comment_lines(path: Path) -> int:
    count = 0
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for line in handle:
            if not line.startswith("#"):
                break
            count += 1
    return count


def _read_csv(path: Path) -> pd.DataFrame:
    text_columns = {c: str for c in ("TIMESTAMP", "TIMESTAMP_START", "TIMESTAMP_END")}
    try:
        table = pd.read_csv(path, na_values=_NA_VALUES, dtype=text_columns, encoding="utf-8-sig", comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read the file as CSV: {str(exc).strip()}", where=str(path),
                        fix="Pass the original FLUXNET CSV file (comma-separated, one header line)") from None
    table.columns = [str(c).strip() for c in table.columns]
    table.attrs["path"] = str(path)
    table.attrs["comment_lines"] = _comment_lines(path)
    if table.empty:
        raise DataError("the file has a header but no data rows", where=str(path))
    return table


def _parse_timestamps(raw: pd.Series, where: str) -> pd.DatetimeIndex:
    index = _parse_times(raw, where, "TIMESTAMP", "%Y%m%d")
    _check_order(index, where)
    return index


#: strftime format -> (pattern the text must match, its name for messages, an example)
_TIME_FORMATS = {
    "%Y%m%d": (_DD_TIMESTAMP, "a date as YYYYMMDD", "Daily FLUXNET files give TIMESTAMP as YYYYMMDD, e.g. 20090101"),
    "%Y%m%d%H%M": (_HH_TIMESTAMP, "a time as YYYYMMDDHHMM",
                   "Sub-daily FLUXNET and AmeriFlux files give times as YYYYMMDDHHMM, e.g. 201001010030"),
}


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
        raise DataError(f"{column} {raw.iloc[row]!r} on line {_line(raw, row)} is not {kind}",
                        where=f"{where}, column {column}", fix=fix)
    return pd.DatetimeIndex(time).as_unit("ns")


def _check_order(index: pd.DatetimeIndex, where: str, column: str = "TIMESTAMP", fmt: str = "%Y%m%d") -> None:
    duplicated = index.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataError(f"duplicate timestamps: {index[row].strftime(fmt)} appears more than once "
                        f"(again on data row {row + 1})", where=f"{where}, column {column}",
                        fix="Remove the repeated rows or download the file again")
    steps = np.diff(index.asi8)
    if (steps < 0).any():
        row = int(np.flatnonzero(steps < 0)[0]) + 1
        raise DataError(f"timestamps are not in increasing order: {index[row].strftime(fmt)} on data row "
                        f"{row + 1} follows {index[row - 1].strftime(fmt)}", where=f"{where}, column {column}",
                        fix=f"Sort the rows by {column}")


def _numeric(table: pd.DataFrame, column: str, where: str) -> pd.Series:
    """A column as float64 with FLUXNET's missing codes (<= -9990) as NaN."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = np.flatnonzero((values.isna() & raw.notna()).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"non-numeric value {raw.iloc[row]!r} on line {_line(table, row)}",
                        where=f"{where}, column {column}",
                        fix="Fix or remove the value; FLUXNET marks missing values with -9999")
    return values.mask(values <= MISSING_AT_OR_BELOW)


def _required(table: pd.DataFrame, column: str, where: str) -> str:
    if column not in table.columns:
        raise DataError(f"the target column {column} is missing", where=where,
                        fix="Pass a FLUXNET2015 SUBSET/FULLSET file, or choose another gpp=/le= variant")
    return column


def _optional_column(table, column: str, qc_column: str | None, qc_min: float, where: str) -> pd.Series:
    if column not in table.columns:
        log.warning("%s: column %s is missing; its variable is all NaN", where, column)
        return pd.Series(np.nan, index=table.index)
    return _masked(table, column, qc_column, qc_min, where)


def _masked(table: pd.DataFrame, column: str, qc_column: str | None, qc_min: float, where: str) -> pd.Series:
    """Values of ``column`` with those whose QC fraction is under ``qc_min`` set to NaN."""
    values = _numeric(table, column, where)
    if qc_column is None or qc_min <= 0.0:
        return values
    if qc_column not in table.columns:
        raise DataError(f"the QC column {qc_column} of {column} is missing", where=where,
                        fix="Pass an unmodified FLUXNET2015 file, or set qc_min=0 to use the values without QC")
    qc = _qc_fraction(table, qc_column, where)
    return values.where(qc >= qc_min)  # NaN QC (unknown quality) is masked too


def _qc_fraction(table: pd.DataFrame, qc_column: str, where: str) -> pd.Series:
    return _qc_values(table, qc_column, where, flags=False)


def _qc_flags(table: pd.DataFrame, qc_column: str, where: str) -> pd.Series:
    return _qc_values(table, qc_column, where, flags=True)


def _qc_values(table: pd.DataFrame, qc_column: str, where: str, flags: bool) -> pd.Series:
    """A QC column checked: sub-daily files hold flags 0-3, daily files fractions in [0, 1]."""
    qc = _numeric(table, qc_column, where)
    bad = qc.notna() & ~qc.isin((0, 1, 2, 3)) if flags else (qc < 0) | (qc > 1)
    outside = np.flatnonzero(bad.to_numpy())
    if outside.size:
        row = int(outside[0])
        kind, fix = (("not one of the flags 0, 1, 2, 3",
                      "Half-hourly FLUXNET QC columns are flags (0 measured, 1-3 gap-filled); pass an HH file")
                     if flags else ("not a fraction between 0 and 1",
                                    "Daily FLUXNET QC columns are fractions of good half hours; pass a DD file"))
        raise DataError(f"QC value {qc.iloc[row]} on line {_line(table, row)} is {kind}",
                        where=f"{where}, column {qc_column}", fix=fix)
    return qc


def _et_from_le(le: pd.Series, table: pd.DataFrame, where: str) -> pd.Series:
    """ET (kg m-2 d-1) from the QC-masked LE, with lambda at the gap-filled TA_F whatever its QC."""
    if "TA_F" in table.columns:
        t_lambda = _numeric(table, "TA_F", where).fillna(FALLBACK_TA_FOR_LAMBDA)
    else:
        t_lambda = pd.Series(FALLBACK_TA_FOR_LAMBDA, index=le.index)
    return le_to_et(le, t_lambda)


# --------------------------------------------------------------------------- sub-daily files


@dataclass
class _Records:
    """Sub-daily values of canonical variables in canonical units, with per-record quality.

    ``good`` marks records that are measured or good-quality gap-filled; variables in
    ``unflagged`` have no quality information and are never QC-masked.
    """

    start: pd.DatetimeIndex
    values: dict[str, pd.Series]
    good: dict[str, pd.Series]
    unflagged: set[str]


def _read_fluxnet_hh(src: SourceFile, opt: _Options) -> pd.DataFrame:
    """One FLUXNET2015 / ONEFlux HH or HR file aggregated to a daily frame of canonical variables."""
    table = _read_csv(src.path)
    where = str(src.path)
    start = _parse_subdaily_timestamps(table, where, src.records_per_day)
    records = _Records(start, {}, {}, set())
    for name, (column, qc_column) in MET_COLUMNS.items():
        _add_flagged(records, name, table, (column, qc_column), opt, required=False)
    _add_flagged(records, "gpp", table, (_required(table, opt.gpp_column, where), GPP_QC_COLUMN), opt)
    _add_flagged(records, "le", table, (_required(table, opt.le_column, where), LE_QC_COLUMN), opt)
    records.values["gpp"] = umol_co2_to_gc_per_day(records.values["gpp"])
    _add_et(records)
    return _daily(records, src.records_per_day, opt)


def _read_ameriflux_base(src: SourceFile, opt: _Options) -> pd.DataFrame:
    """One AmeriFlux BASE HH/HR file aggregated to a daily frame of canonical variables."""
    where = str(src.path)
    if opt.le_column != LE_COLUMNS["F_MDS"]:
        raise DataError("AmeriFlux BASE files have no energy-balance corrected LE (LE_CORR)", where=where,
                        fix="Use le='F_MDS' (the BASE file's LE), or the ONEFlux FLUXNET product of the site")
    table = _read_csv(src.path)
    records = _Records(_parse_subdaily_timestamps(table, where, src.records_per_day), {}, {}, set())
    for name, base in BASE_VARIABLES.items():
        required = name in TARGETS_REQUIRED + ("le",)
        column, measured = _base_column(table.columns, base, where, required, quiet=name == "vpd")
        if column is None:
            continue
        values = _numeric(table, column, where)
        records.values[name] = values
        records.good[name] = values.notna() & (_numeric(table, measured, where).notna() if measured else True)
    _base_gpp_quality(records, table, where)
    _base_vpd_from_rh(records, table, where)
    for name in MET_COLUMNS:
        records.values.setdefault(name, pd.Series(np.nan, index=table.index))
        records.good.setdefault(name, pd.Series(False, index=table.index))
    records.values["gpp"] = umol_co2_to_gc_per_day(records.values["gpp"])
    records.unflagged.add("rsds_pot")
    _add_et(records)
    return _daily(records, src.records_per_day, opt)


def _parse_subdaily_timestamps(table: pd.DataFrame, where: str, records_per_day: int) -> pd.DatetimeIndex:
    """TIMESTAMP_START as times (checked: YYYYMMDDHHMM, unique, increasing, one record long each)."""
    start = _parse_times(table["TIMESTAMP_START"], where, "TIMESTAMP_START", "%Y%m%d%H%M")
    _check_order(start, where, "TIMESTAMP_START", "%Y%m%d%H%M")
    if "TIMESTAMP_END" in table.columns:
        length = pd.Timedelta(days=1) / records_per_day
        end = _parse_times(table["TIMESTAMP_END"], where, "TIMESTAMP_END", "%Y%m%d%H%M")
        wrong = np.flatnonzero((end - start) != length)
        if wrong.size:
            row = int(wrong[0])
            raise DataError(f"record {start[row]:%Y%m%d%H%M}-{end[row]:%Y%m%d%H%M} on data row {row + 1} is not "
                            f"{int(length.total_seconds() // 60)} minutes long as the file name says",
                            where=f"{where}, columns TIMESTAMP_START/TIMESTAMP_END",
                            fix="Check that the name (HH = half-hourly, HR = hourly) fits the file")
    return start


def _add_flagged(records: _Records, name: str, table: pd.DataFrame, columns: tuple[str, str | None],
                 opt: _Options, required: bool = True) -> None:
    """Add a FLUXNET column; good records have a _QC flag of 0 or 1 (any finite value without a QC column)."""
    column, qc_column = columns
    where = str(table.attrs.get("path", ""))
    if column not in table.columns and not required:
        log.warning("%s: column %s is missing; its variable is all NaN", where, column)
        records.values[name] = pd.Series(np.nan, index=table.index)
        records.good[name] = pd.Series(False, index=table.index)
        return
    values = _numeric(table, column, where)
    records.values[name] = values
    if qc_column is None or (qc_column not in table.columns and opt.qc_min <= 0.0):
        records.good[name] = values.notna()
        records.unflagged.add(name)
        return
    if qc_column not in table.columns:
        raise DataError(f"the QC column {qc_column} of {column} is missing", where=where,
                        fix="Pass an unmodified FLUXNET file, or set qc_min=0 to use the values without QC")
    records.good[name] = values.notna() & _qc_flags(table, qc_column, where).isin(GOOD_QC_FLAGS)


def _base_column(columns, base: str, where: str, required: bool,
                 quiet: bool = False) -> tuple[str | None, str | None]:
    """The column of a BASE variable and its measured (not gap-filled) twin, if any.

    Preference: gap-filled (``_F``) before measured, unqualified before positional
    (``_H_V_R``), lower positions first, PI-provided (``_PI``) after the plain name.
    """
    pattern = re.compile(rf"^{base}(?P<pi>_PI)?(?P<f>_F)?(?:_(?P<h>\d+)_(?P<v>\d+)_(?P<r>\d+))?$")
    found = []
    for column in columns:
        match = pattern.match(column)
        if match:
            position = tuple(int(match[k]) for k in ("h", "v", "r")) if match["h"] else (0, 0, 0)
            found.append(((match["f"] is None, match["h"] is not None, position, match["pi"] is not None),
                          column, match))
    if not found:
        if required:
            raise DataError(f"no {base} column (looked for {base}, {base}_PI_F, {base}_1_1_1 and the like)",
                            where=where, fix=f"Pass a BASE file that has {base}, or leave the site out")
        if not quiet:
            log.warning("%s: no %s column; its variable is all NaN", where, base)
        return None, None
    _, column, match = min(found, key=lambda item: item[0])
    if not match["f"]:
        return column, None
    twins = [column.replace("_F", "", 1), column.replace("_PI_F", "", 1)]  # LE_PI_F -> LE_PI, LE
    return column, next((t for t in twins if t != column and t in columns), None)


def _base_gpp_quality(records: _Records, table: pd.DataFrame, where: str) -> None:
    """GPP is derived: a record counts as good where NEE (or FC) was measured."""
    for base in ("NEE", "FC"):
        pattern = re.compile(rf"^{base}(?:_PI)?(?:_\d+_\d+_\d+)?$")
        measured = sorted(c for c in table.columns if pattern.match(c))
        if measured:
            records.good["gpp"] = records.values["gpp"].notna() & _numeric(table, measured[0], where).notna()
            return


def _base_vpd_from_rh(records: _Records, table: pd.DataFrame, where: str) -> None:
    """VPD (hPa) from TA and RH (%) where the BASE file gives no VPD."""
    if "vpd" in records.values or "tas" not in records.values:
        return
    column, measured = _base_column(table.columns, "RH", where, required=False)
    if column is None:
        return
    rh = _numeric(table, column, where)
    vpd = saturation_vapour_pressure(records.values["tas"]) * (1.0 - rh / 100.0)
    records.values["vpd"] = vpd.clip(lower=0.0)
    rh_good = rh.notna() & (_numeric(table, measured, where).notna() if measured else True)
    records.good["vpd"] = records.values["vpd"].notna() & records.good["tas"] & rh_good


def _add_et(records: _Records) -> None:
    """ET per record from LE, with lambda at that record's air temperature (20 degC where missing)."""
    t_lambda = records.values["tas"].fillna(FALLBACK_TA_FOR_LAMBDA)
    records.values["et"] = le_to_et(records.values["le"], t_lambda)
    records.good["et"] = records.good["le"]


def _daily(records: _Records, records_per_day: int, opt: _Options) -> pd.DataFrame:
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


_READERS: dict[str, Callable[..., pd.DataFrame]] = {
    FORMAT_FLUXNET_DD: _read_fluxnet_dd,
    FORMAT_FLUXNET_HH: _read_fluxnet_hh,
    FORMAT_AMERIFLUX_BASE: _read_ameriflux_base,
}


# --------------------------------------------------------------------------- one site


def _read_site(files: list[SourceFile], opt: _Options) -> pd.DataFrame:
    """All files of one site joined in time; checks overlap and that targets survive QC."""
    parts = [(f, _READERS[f.format](f, opt)) for f in files]
    parts.sort(key=lambda item: item[1].index[0])
    _check_no_overlap(parts)
    frame = pd.concat([p for _, p in parts])
    _check_targets_left(frame, files, opt.qc_min)
    return frame


def _check_no_overlap(parts: list[tuple[SourceFile, pd.DataFrame]]) -> None:
    for (file_a, a), (file_b, b) in zip(parts, parts[1:]):
        if b.index[0] <= a.index[-1]:
            raise DataError(
                f"two files of site {file_a.site} overlap in time "
                f"({b.index[0]:%Y-%m-%d} to {min(a.index[-1], b.index[-1]):%Y-%m-%d})",
                where=f"{file_a.path} and {file_b.path}",
                fix="Pass only one file per period for each site (e.g. the newest version)")


def _check_targets_left(frame: pd.DataFrame, files: list[SourceFile], qc_min: float) -> None:
    for name in TARGETS_REQUIRED:
        if frame[name].notna().any():
            continue
        site = files[0].site
        raise DataError(
            f"site {site} has no {name} value left after removing -9999 and masking values "
            f"with QC below qc_min={qc_min:g}",
            where=", ".join(str(f.path) for f in files),
            fix=f"Lower qc_min below {qc_min:g} (0 disables QC masking) "
                f"or drop site {site} (leave it out of sites=)")


# --------------------------------------------------------------------------- site list


def _site_metadata(site_list, site_ids: list[str]) -> pd.DataFrame:
    """Per-site lat, lon, elevation, igbp for ``site_ids`` (NaN / "" without a site list)."""
    if site_list is None:
        return pd.DataFrame({"lat": np.nan, "lon": np.nan, "elevation": np.nan, "igbp": ""},
                            index=pd.Index(site_ids, name="site"))
    table = read_site_list(site_list)
    missing = [s for s in site_ids if s not in table.index]
    if missing:
        raise DataError(f"sites missing from the site list: {_with_suggestions(missing, list(table.index))}",
                        where=str(site_list),
                        fix="Add a row for each of these sites, or leave them out with sites=")
    return table.loc[site_ids]


def read_site_list(path) -> pd.DataFrame:
    """Read a FLUXNET-style site list.

    Parameters
    ----------
    path : str or os.PathLike
        CSV with a site id column (SITE_ID or site), latitude (LOCATION_LAT or lat), longitude
        (LOCATION_LONG or lon) and optionally elevation (LOCATION_ELEV or elevation) and IGBP.
        Header spellings are matched case-insensitively.

    Returns
    -------
    pandas.DataFrame
        Indexed by site id, columns ``lat``, ``lon``, ``elevation`` (float) and ``igbp`` (str).
    """
    where = str(path)
    table = _read_site_table(Path(path).expanduser(), where)
    columns = _site_list_columns(table, where)
    table = table[table[columns["site"]].fillna("").str.strip() != ""]
    out = pd.DataFrame(index=pd.Index(table[columns["site"]].str.strip(), name="site"))
    for key in ("lat", "lon", "elevation"):
        out[key] = _site_number(table, columns.get(key), where) if key in columns else np.nan
    out["igbp"] = table[columns["igbp"]].fillna("").str.strip().to_numpy() if "igbp" in columns else ""
    _check_site_list(out, where)
    return out


def _read_site_table(path: Path, where: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("site list not found", where=where, fix="Check the path of the site list")
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            table = pd.read_csv(path, dtype=str, encoding=encoding, skipinitialspace=True)
            break
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise DataError(f"cannot read the site list as CSV: {str(exc).strip()}", where=where) from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _site_list_columns(table: pd.DataFrame, where: str) -> dict[str, str]:
    by_lower = {c.lower(): c for c in table.columns}
    found = {}
    for key, spellings in _SITE_LIST_COLUMNS.items():
        hit = next((by_lower[s] for s in spellings if s in by_lower), None)
        if hit is not None:
            found[key] = hit
        elif key in ("site", "lat", "lon"):
            raise DataError(f"the site list has no {key} column (looked for {', '.join(spellings)})",
                            where=where,
                            fix=f"Name the columns as in the FLUXNET site list; found {list(table.columns)}")
    return found


def _site_number(table: pd.DataFrame, column: str, where: str) -> np.ndarray:
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero((values.isna() & raw.notna() & (raw.str.strip() != "")).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"non-numeric value {raw.iloc[row]!r} on line {row + 2}",
                        where=f"{where}, column {column}")
    values = values.astype("float64")
    return values.mask(values <= MISSING_AT_OR_BELOW).to_numpy()


def _check_site_list(out: pd.DataFrame, where: str) -> None:
    duplicated = out.index[out.index.duplicated()]
    if len(duplicated):
        raise DataError(f"site {duplicated[0]} appears more than once in the site list", where=where,
                        fix="Keep one row per site")
    bad_lat = out.index[(out["lat"].abs() > 90).to_numpy()]
    bad_lon = out.index[(out["lon"].abs() > 180).to_numpy()]
    if len(bad_lat) or len(bad_lon):
        site = (list(bad_lat) + list(bad_lon))[0]
        raise DataError(f"site {site} has a latitude or longitude out of range", where=where,
                        fix="Give latitude in -90..90 and longitude in -180..180 degrees")


# --------------------------------------------------------------------------- Dataset


def _to_dataset(frames: dict[str, pd.DataFrame], meta: pd.DataFrame, columns: dict[str, str]) -> xr.Dataset:
    site_ids = list(frames)
    start = min(f.index[0] for f in frames.values())
    end = max(f.index[-1] for f in frames.values())
    time = pd.date_range(start, end, freq="D").as_unit("ns")
    data_vars = {}
    for name in VARIABLE_ORDER:
        values = np.stack([frames[s][name].reindex(time).to_numpy(dtype="float64") for s in site_ids])
        attrs = {"units": VARIABLES[name].units, "long_name": VARIABLES[name].long_name,
                 "source_column": columns[name]}
        data_vars[name] = (("site", "time"), values.astype("float32"), attrs)
    coords = {
        "site": ("site", np.asarray(site_ids, dtype=str)),
        "time": ("time", time.to_numpy(dtype="datetime64[ns]")),
        "lat": ("site", meta["lat"].to_numpy(dtype="float64"),
                {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("site", meta["lon"].to_numpy(dtype="float64"),
                {"units": "degrees_east", "standard_name": "longitude"}),
        "elevation": ("site", meta["elevation"].to_numpy(dtype="float64"),
                      {"units": "m", "long_name": "site elevation above sea level"}),
        "igbp": ("site", np.asarray(meta["igbp"].tolist(), dtype=str), {"long_name": "IGBP land cover class"}),
    }
    return xr.Dataset(data_vars, coords=coords)
