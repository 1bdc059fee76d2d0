"""Finding flux-tower files and recognising their format and site from their names and headers."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from glob import glob
from pathlib import Path

from upscale.errors import DataError
from upscale.sources.fluxnet.options import with_suggestions
from upscale.sources.fluxnet.table import preamble

FORMAT_FLUXNET_DD = "fluxnet2015-dd"
FORMAT_FLUXNET_HH = "fluxnet-hh"
FORMAT_AMERIFLUX_BASE = "ameriflux-base"
#: Records per day of a sub-daily resolution code.
RECORDS_PER_DAY = {"HH": 48, "HR": 24}
_FLX_NAME = re.compile(
    r"^(?P<network>[A-Za-z]+)_(?P<site>[^_]+)_FLUXNET(?:2015)?_(?P<product>[A-Za-z]+)_(?P<res>[A-Za-z]+)_.*\.csv$", re.I
)
_AMF_BASE_NAME = re.compile(r"^AMF_(?P<site>[^_]+)_BASE_(?P<res>[A-Za-z]+)_.*\.csv$", re.I)
_GLOB_CHARS = re.compile(r"[*?\[]")
_NAME_HINT = (
    "FLX_<SITE>_FLUXNET2015_<SUBSET|FULLSET>_<DD|HH|HR>_<YYYY-YYYY>_<version>.csv, "
    "AMF_<SITE>_FLUXNET_<SUBSET|FULLSET>_<DD|HH|HR>_... or AMF_<SITE>_BASE_<HH|HR>_<version>.csv"
)


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
        raise DataError(
            "no FLUXNET files given",
            where="paths",
            fix="Pass a file, a glob such as 'data/FLX_*_DD_*.csv', or a list of them",
        )
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
        raise DataError(
            "zip archives cannot be read directly",
            where=where,
            fix="Extract the archive and pass the CSV file inside it",
        )
    match = _FLX_NAME.match(name)
    if match:
        return _detect_fluxnet(path, match)
    match = _AMF_BASE_NAME.match(name)
    if match:
        return _detect_base(path, match)
    header = _read_header(path)
    kind = " (a half-hourly header with TIMESTAMP_START)" if "TIMESTAMP_START" in header else ""
    raise DataError(
        f"cannot recognise the file{kind}: its name does not follow the FLUXNET or "
        "AmeriFlux naming, which says its site and time resolution",
        where=where,
        fix=f"Keep the original file name, like {_NAME_HINT}",
    )


def select_sites(files: list[SourceFile], sites: Sequence[str] | None) -> list[SourceFile]:
    """The files of the sites asked for (all files when ``sites`` is None).

    Raises
    ------
    upscale.errors.DataError
        If ``sites`` is empty or names a site that none of the files has.
    """
    if sites is None:
        return files
    wanted = [sites] if isinstance(sites, str) else list(sites)
    if not wanted:
        raise DataError(
            "the list of sites to keep is empty",
            where="sites",
            fix="Leave sites unset to keep every site, or name at least one",
        )
    available = sorted({f.site for f in files})
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise DataError(
            f"sites not found in the files: {with_suggestions(unknown, available)}",
            where="sites",
            fix=f"Choose among the sites of the files: {', '.join(available)}",
        )
    keep = set(wanted)
    return [f for f in files if f.site in keep]


def _expand_one(text: str) -> list[Path]:
    literal = Path(text)
    if literal.exists():
        if literal.is_dir():
            raise DataError(
                "a directory was given where files are expected",
                where=text,
                fix=f"Pass a glob such as '{literal / 'FLX_*_DD_*.csv'}'",
            )
        return [literal]
    if _GLOB_CHARS.search(text):
        matches = [Path(m) for m in sorted(glob(text)) if Path(m).is_file()]
        if not matches:
            raise DataError("the glob pattern matches no file", where=text, fix="Check the directory and the pattern")
        return matches
    raise DataError("file not found", where=text, fix="Check the path")


def _detect_fluxnet(path: Path, match: re.Match) -> SourceFile:
    where = str(path)
    product, res = match["product"].upper(), match["res"].upper()
    if res != "DD" and res not in RECORDS_PER_DAY:
        raise DataError(
            f"only daily (DD), half-hourly (HH) and hourly (HR) files are read, this is a {res} file",
            where=where,
            fix="Use the DD or HH/HR file of the same site",
        )
    if product not in ("SUBSET", "FULLSET"):
        raise DataError(
            f"{product} files carry no fluxes; only SUBSET and FULLSET files are read",
            where=where,
            fix="Pass the SUBSET or FULLSET DD file of the site",
        )
    header = _read_header(path)
    check_not_cut(path, len(header))
    if res in RECORDS_PER_DAY:
        _require_columns(header, ("TIMESTAMP_START",), where, f"a FLUXNET {res} file")
        return SourceFile(path=path, site=match["site"], format=FORMAT_FLUXNET_HH, records_per_day=RECORDS_PER_DAY[res])
    if "TIMESTAMP" not in header:
        extra = (
            " (its columns start with TIMESTAMP_START, as in half-hourly files)"
            if "TIMESTAMP_START" in header
            else f" (the header starts with {header[:3]})"
        )
        raise DataError(
            f"no TIMESTAMP column{extra}",
            where=where,
            fix="Pass an unmodified FLUXNET2015 DD file, whose first column is TIMESTAMP (YYYYMMDD)",
        )
    return SourceFile(path=path, site=match["site"], format=FORMAT_FLUXNET_DD)


def _detect_base(path: Path, match: re.Match) -> SourceFile:
    res = match["res"].upper()
    if res not in RECORDS_PER_DAY:
        raise DataError(
            f"AmeriFlux BASE files are half-hourly (HH) or hourly (HR), this name says {res}",
            where=str(path),
            fix="Keep the original file name, like AMF_US-Ha1_BASE_HH_21-5.csv",
        )
    header = _read_header(path)
    check_not_cut(path, len(header))
    _require_columns(header, ("TIMESTAMP_START",), str(path), "an AmeriFlux BASE file")
    return SourceFile(path=path, site=match["site"], format=FORMAT_AMERIFLUX_BASE, records_per_day=RECORDS_PER_DAY[res])


def _require_columns(header: list[str], columns: Sequence[str], where: str, kind: str) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"no {', '.join(missing)} column, which {kind} must have (the header starts with {header[:3]})",
            where=where,
            fix="Pass the unmodified file as downloaded",
        )


def _read_header(path: Path) -> list[str]:
    """The column names: the first line that is not a ``#`` comment or blank (AmeriFlux BASE files
    have comment lines and a blank line before the header)."""
    try:
        line = preamble(path)[1]
    except OSError as exc:
        raise DataError(f"cannot open the file: {exc.strerror or exc}", where=str(path)) from None
    if not line.strip():
        raise DataError("the file is empty", where=str(path), fix="Download the file again")
    return [column.strip() for column in line.rstrip("\r\n").split(",")]


def check_not_cut(path: Path, n_fields: int) -> None:
    """Refuse a file cut short (an interrupted download or copy): its last line is incomplete.

    A complete file ends with a line break and its last line has as many fields as the header;
    otherwise the last row, or the number it was cut inside, would be read as an observation.

    Raises
    ------
    upscale.errors.DataError
        Naming the file and the line.
    """
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 65536))
        tail = handle.read()
    last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
    if last.strip().startswith(b"#") or not last.strip():
        return
    fields = last.count(b",") + 1
    if fields < n_fields:
        problem = f"its last line has {fields} of the header's {n_fields} fields"
    elif not tail.endswith(b"\n"):
        problem = "it does not end with a line break, so its last value may be cut off"
    else:
        return
    with open(path, "rb") as handle:
        line = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) + 1
    if tail.endswith(b"\n"):
        line -= 1
    raise DataError(
        f"the file looks cut short: {problem}",
        where=f"{path}, line {line}",
        fix="Download or copy the file again; if it is complete, end its last line with a line break",
    )
