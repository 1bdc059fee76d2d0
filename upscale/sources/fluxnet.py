"""FLUXNET2015 / ONEFlux site files read into the canonical site Dataset.

The reader turns daily (DD) SUBSET or FULLSET CSV files into one Dataset with dims
``(site, time)`` in canonical names and units (see :mod:`upscale.variables`): every
``-9999`` becomes NaN and every value whose daily QC fraction is under ``qc_min`` is masked.

Each file first goes through :func:`detect_format`, which looks at its name and header
and says which reader handles it. Only ``fluxnet2015-dd`` has a reader so far; half-hourly
(HH/HR) files and AmeriFlux BASE files are recognised and refused with a clear message.
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
from upscale.variables import VARIABLES, le_to_et

log = logging.getLogger(__name__)

#: Default minimum daily QC fraction (measured or good-quality gap-filled half hours).
DEFAULT_QC_MIN = 0.8
#: Values at or below this are FLUXNET's missing-value code (-9999 and variants).
MISSING_AT_OR_BELOW = -9990.0
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
_NA_VALUES = ["-9999", "-9999.0", "-9999.00", "-9999.000"]
_FLX_NAME = re.compile(
    r"^FLX_(?P<site>[^_]+)_FLUXNET(?:2015)?_(?P<product>[A-Za-z]+)_(?P<res>[A-Za-z]+)_.*\.csv$", re.I)
_AMF_BASE_NAME = re.compile(r"^AMF_(?P<site>[^_]+)_BASE_.*\.csv$", re.I)
_GLOB_CHARS = re.compile(r"[*?\[]")
_DD_TIMESTAMP = re.compile(r"^\d{8}$")
_NAME_HINT = "FLX_<SITE>_FLUXNET2015_<SUBSET|FULLSET>_DD_<YYYY-YYYY>_<version>.csv"

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
    """

    path: Path
    site: str
    format: str


# --------------------------------------------------------------------------- public API


def read(
    paths,
    site_list=None,
    sites: Sequence[str] | None = None,
    qc_min: float = DEFAULT_QC_MIN,
    gpp: str = "NT",
    le: str = "F_MDS",
) -> xr.Dataset:
    """Read FLUXNET2015 daily (DD) files into one canonical site Dataset.

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        Files or glob patterns of FLUXNET2015 SUBSET/FULLSET DD CSV files, named like
        ``FLX_US-AR1_FLUXNET2015_SUBSET_DD_2009-2012_1-3.csv`` (the site id is the second
        underscore-separated field). Several files of one site are joined in time.
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
    qc_min = _check_qc_min(qc_min)
    files = [detect_format(path) for path in expand_paths(paths)]
    files = _select_sites(files, sites)
    site_ids = sorted({f.site for f in files})
    meta = _site_metadata(site_list, site_ids)
    frames = {}
    for site in site_ids:
        site_files = [f for f in files if f.site == site]
        frames[site] = _read_site(site_files, qc_min, gpp_column, le_column)
    ds = _to_dataset(frames, meta, {v: _source_column(v, gpp_column, le_column) for v in VARIABLE_ORDER})
    ds.attrs.update({
        "qc_min": qc_min,
        "gpp_partitioning": gpp.upper(),
        "le_variant": le.upper(),
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
        Its site id and format key (``"fluxnet2015-dd"``).

    Raises
    ------
    upscale.errors.DataError
        For files of a kind with no reader yet (half-hourly or hourly FLUXNET files, AmeriFlux
        BASE files, weekly/monthly/yearly aggregates), archives, and files it cannot recognise.
    """
    path = Path(path)
    where = str(path)
    name = path.name
    if name.lower().endswith(".zip"):
        raise DataError("zip archives cannot be read directly", where=where,
                        fix="Extract the archive and pass the *_DD_*.csv file inside it")
    match = _FLX_NAME.match(name)
    if match:
        return _detect_fluxnet(path, match)
    if _AMF_BASE_NAME.match(name):
        raise DataError("AmeriFlux BASE files are not supported yet", where=where,
                        fix="Use the FLUXNET (ONEFlux) DD product of the site instead")
    header = _read_header(path)
    if "TIMESTAMP_START" in header:
        raise DataError("this looks like a half-hourly file (TIMESTAMP_START column); "
                        "half-hourly files are not supported yet", where=where,
                        fix=f"Use the daily (DD) file of the site, named like {_NAME_HINT}")
    raise DataError("cannot recognise the file: its name does not follow the FLUXNET naming", where=where,
                    fix=f"Pass FLUXNET2015 daily files named like {_NAME_HINT}")


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
    if res in ("HH", "HR"):
        raise DataError(f"half-hourly and hourly ({res}) files are not supported yet", where=where,
                        fix="Use the daily (DD) file of the same site")
    if res != "DD":
        raise DataError(f"only daily (DD) files are supported, this is a {res} file", where=where,
                        fix="Use the daily (DD) file of the same site")
    if product not in ("SUBSET", "FULLSET"):
        raise DataError(f"{product} files carry no fluxes; only SUBSET and FULLSET files are read",
                        where=where, fix="Pass the SUBSET or FULLSET DD file of the site")
    header = _read_header(path)
    if "TIMESTAMP" not in header:
        extra = " (its columns start with TIMESTAMP_START, as in half-hourly files)" \
            if "TIMESTAMP_START" in header else f" (the header starts with {header[:3]})"
        raise DataError(f"no TIMESTAMP column{extra}", where=where,
                        fix="Pass an unmodified FLUXNET2015 DD file, whose first column is TIMESTAMP (YYYYMMDD)")
    return SourceFile(path=path, site=match["site"], format=FORMAT_FLUXNET_DD)


def _read_header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig") as handle:
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


def _check_qc_min(qc_min) -> float:
    try:
        value = float(qc_min)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise DataError(f"qc_min={qc_min!r} is not a fraction between 0 and 1", where="qc_min",
                        fix="Use e.g. 0.8 (80 % measured or good-quality gap-filled half hours), or 0 for no QC")
    return value


def _source_column(variable: str, gpp_column: str, le_column: str) -> str:
    if variable == "gpp":
        return gpp_column
    if variable == "le":
        return le_column
    if variable == "et":
        return f"{le_column} (via the latent heat of vaporisation at TA_F)"
    return MET_COLUMNS[variable][0]


# --------------------------------------------------------------------------- one DD file


def _read_fluxnet_dd(src: SourceFile, qc_min: float, gpp_column: str, le_column: str) -> pd.DataFrame:
    """One DD file as a daily-indexed frame of canonical variables (float64, QC-masked)."""
    table = _read_csv(src.path)
    where = str(src.path)
    time = _parse_timestamps(table["TIMESTAMP"], where)
    out = {}
    for name, (column, qc_column) in MET_COLUMNS.items():
        out[name] = _optional_column(table, column, qc_column, qc_min, where)
    out["gpp"] = _masked(table, _required(table, gpp_column, where), GPP_QC_COLUMN, qc_min, where)
    out["le"] = _masked(table, _required(table, le_column, where), LE_QC_COLUMN, qc_min, where)
    out["et"] = _et_from_le(out["le"], table, where)
    frame = pd.DataFrame(out)
    frame.index = time
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, na_values=_NA_VALUES, dtype={"TIMESTAMP": str}, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read the file as CSV: {str(exc).strip()}", where=str(path),
                        fix="Pass the original FLUXNET CSV file (comma-separated, one header line)") from None
    table.columns = [str(c).strip() for c in table.columns]
    if table.empty:
        raise DataError("the file has a header but no data rows", where=str(path))
    return table


def _parse_timestamps(raw: pd.Series, where: str) -> pd.DatetimeIndex:
    text = raw.astype("string").str.strip()
    ok = text.str.fullmatch(_DD_TIMESTAMP.pattern).fillna(False).to_numpy(dtype=bool)
    time = pd.to_datetime(text.where(ok), format="%Y%m%d", errors="coerce")
    bad = np.flatnonzero(time.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"TIMESTAMP {raw.iloc[row]!r} on line {row + 2} is not a date as YYYYMMDD",
                        where=f"{where}, column TIMESTAMP",
                        fix="Daily FLUXNET files give TIMESTAMP as YYYYMMDD, e.g. 20090101")
    index = pd.DatetimeIndex(time).as_unit("ns")
    _check_order(index, where)
    return index


def _check_order(index: pd.DatetimeIndex, where: str) -> None:
    duplicated = index.duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise DataError(f"duplicate timestamps: {index[row]:%Y%m%d} appears more than once "
                        f"(again on line {row + 2})", where=f"{where}, column TIMESTAMP",
                        fix="Remove the repeated rows or download the file again")
    steps = np.diff(index.asi8)
    if (steps < 0).any():
        row = int(np.flatnonzero(steps < 0)[0]) + 1
        raise DataError(f"timestamps are not in increasing order: {index[row]:%Y%m%d} on line {row + 2} "
                        f"follows {index[row - 1]:%Y%m%d}", where=f"{where}, column TIMESTAMP",
                        fix="Sort the rows by TIMESTAMP")


def _numeric(table: pd.DataFrame, column: str, where: str) -> pd.Series:
    """A column as float64 with FLUXNET's missing codes (<= -9990) as NaN."""
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = np.flatnonzero((values.isna() & raw.notna()).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"non-numeric value {raw.iloc[row]!r} on line {row + 2}",
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
    qc = _numeric(table, qc_column, where)
    outside = np.flatnonzero(((qc < 0) | (qc > 1)).to_numpy())
    if outside.size:
        row = int(outside[0])
        raise DataError(f"QC value {qc.iloc[row]} on line {row + 2} is not a fraction between 0 and 1",
                        where=f"{where}, column {qc_column}",
                        fix="Daily FLUXNET QC columns are fractions of good half hours; pass a DD file")
    return qc


def _et_from_le(le: pd.Series, table: pd.DataFrame, where: str) -> pd.Series:
    """ET (kg m-2 d-1) from the QC-masked LE, with lambda at the gap-filled TA_F whatever its QC."""
    if "TA_F" in table.columns:
        t_lambda = _numeric(table, "TA_F", where).fillna(FALLBACK_TA_FOR_LAMBDA)
    else:
        t_lambda = pd.Series(FALLBACK_TA_FOR_LAMBDA, index=le.index)
    return le_to_et(le, t_lambda)


_READERS: dict[str, Callable[..., pd.DataFrame]] = {FORMAT_FLUXNET_DD: _read_fluxnet_dd}


# --------------------------------------------------------------------------- one site


def _read_site(files: list[SourceFile], qc_min: float, gpp_column: str, le_column: str) -> pd.DataFrame:
    """All files of one site joined in time; checks overlap and that targets survive QC."""
    parts = [(f, _READERS[f.format](f, qc_min, gpp_column, le_column)) for f in files]
    parts.sort(key=lambda item: item[1].index[0])
    _check_no_overlap(parts)
    frame = pd.concat([p for _, p in parts])
    _check_targets_left(frame, files, qc_min)
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
