"""Reading a site table: the file, its columns, units, time stamps and rows checked, into the site Dataset."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import DataError
from upscale.sources.fluxnet.sites import site_metadata
from upscale.sources.fluxnet.table import MISSING_AT_OR_BELOW
from upscale.sources.sitetable.units import normalise_units
from upscale.variables import VARIABLES

DAILY, IRREGULAR = "daily", "irregular"
#: Column spellings found by default for the row keys (compared case-insensitively).
_KEY_SPELLINGS = {"site": ("site", "site_id", "siteid"), "time": ("time", "date", "timestamp", "datetime")}
_CSV_UNITS = re.compile(r"^(?P<name>.*?)\s*[\[(](?P<units>[^\])]*)[\])]\s*$")
_NETCDF = (".nc", ".nc4", ".netcdf", ".cdf")
_PARQUET = (".parquet", ".pq")


def read_site_table(
    path, site_list, variables: list[str], columns: dict[str, str] | None = None, sites: list[str] | None = None
) -> xr.Dataset:
    """Read a site table into the canonical ``(site, time)`` Dataset.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv``, ``.parquet`` or ``.nc`` file of rows (site, time, variables...).
    site_list : str or os.PathLike
        The site list (SITE_ID, LOCATION_LAT, LOCATION_LONG, LOCATION_ELEV, IGBP, as for FLUXNET).
    variables : list of str
        Canonical variables to read (targets and table predictors).
    columns : dict, optional
        Canonical name (or ``site``, ``time``) -> column of the table, where they differ.
    sites : list of str, optional
        Site ids to keep; all when None.

    Returns
    -------
    xarray.Dataset
        float32 ``variables`` on ``(site, time)`` with units and long names; coords ``lat``, ``lon``,
        ``elevation``, ``igbp``; ``attrs['time_sampling']`` is ``"daily"`` or ``"irregular"``.

    Raises
    ------
    upscale.errors.DataError
        For unknown columns or names, declared units that differ from upscale's, values outside a
        variable's range, unreadable time stamps, duplicate (site, time) rows and unknown sites.
    """
    where = str(path)
    frame, units = _load(Path(path).expanduser(), where)
    chosen = _choose_columns(frame, list(variables), columns or {}, where)
    site = frame[chosen["site"]].astype("string").str.strip()
    time = _times(frame[chosen["time"]], f"{where}, column {chosen['time']}")
    _check_duplicates(site, time, where)
    keep = _kept_rows(site, sites, where)
    values = {v: _values(frame, chosen[v], v, units.get(chosen[v]), where) for v in variables}
    table = pd.DataFrame({"site": site, "time": time, **values})[keep]
    ds = _dataset(table, list(variables), site_list, time_sampling(table), where)
    for v in variables:
        ds[v].attrs["source_column"] = chosen[v]
    return ds


def _load(path: Path, where: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """The table's rows and the units its file declares per column."""
    if not path.is_file():
        raise DataError("site table not found", where=where, fix="Check sites.table (relative to the recipe)")
    suffix = path.suffix.lower()
    try:
        if suffix in _PARQUET:
            return _load_parquet(path, where)
        if suffix in _NETCDF:
            with xr.open_dataset(path) as ds:
                units = {str(k): str(v.attrs["units"]) for k, v in ds.variables.items() if "units" in v.attrs}
                return ds.load().to_dataframe().reset_index(), units
        if suffix == ".csv":
            return _load_csv(path)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the site table: {str(exc).strip()}", where=where) from None
    raise DataError(
        f"cannot tell the format of the site table from its suffix {suffix!r}",
        where=where,
        fix="Give a .csv, .parquet or .nc file",
    )


def _load_csv(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    frame = pd.read_csv(path, encoding="utf-8-sig", skipinitialspace=True)
    names, units = [], {}
    for column in frame.columns:
        match = _CSV_UNITS.match(str(column))
        name = match["name"].strip() if match else str(column).strip()
        if match:
            units[name] = match["units"].strip()
        names.append(name)
    frame.columns = names
    return frame, units


def _load_parquet(path: Path, where: str) -> tuple[pd.DataFrame, dict[str, str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            "reading Parquet needs pyarrow, which is not installed",
            where=where,
            fix="pip install 'upscale[parquet]' (or pyarrow), or give the table as CSV or NetCDF",
        ) from None
    table = pq.read_table(path)
    units = {f.name: f.metadata[b"units"].decode() for f in table.schema if f.metadata and b"units" in f.metadata}
    return table.to_pandas(), units


def _choose_columns(frame: pd.DataFrame, variables: list[str], columns: dict[str, str], where: str) -> dict[str, str]:
    """Canonical name -> the table column holding it (``columns`` first, then the name itself)."""
    present = [str(c) for c in frame.columns]
    for name, column in columns.items():
        if name not in _KEY_SPELLINGS and name not in VARIABLES:
            raise DataError(
                f"sites.columns maps {name!r}, which is not a canonical name{_nearest(name, list(VARIABLES))}",
                where="sites.columns",
                fix="Keys are canonical names (site, time, gpp, et, tas, ...) and values the table's columns",
            )
        if column not in present:
            raise DataError(
                f"sites.columns maps {name!r} to the column {column!r}, which the table does not have"
                f"{_nearest(column, present)}",
                where=where,
                fix=f"Its columns: {', '.join(present)}",
            )
    lower = {c.lower(): c for c in present}
    chosen = {}
    for name in ["site", "time", *variables]:
        spellings = _KEY_SPELLINGS.get(name, (name,))
        found = columns.get(name) or next((lower[s] for s in spellings if s in lower), None)
        if found is None:
            raise DataError(
                f"the site table has no column {name!r}{_nearest(name, present)}",
                where=where,
                fix=f"Add it, or map it with sites.columns: {{{name}: <column>}}; its columns: {', '.join(present)}",
            )
        chosen[name] = found
    return chosen


def _nearest(word: str, options: list[str]) -> str:
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _times(raw: pd.Series, where: str) -> pd.Series:
    """The time column as timezone-naive UTC datetimes; the first unreadable stamp is a DataError."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        time = raw
    else:
        text = raw.astype("string").str.strip()
        time = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
        bad = np.flatnonzero(time.isna().to_numpy())
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"time stamp {raw.iloc[row]!r} on data row {row + 1} is not a date or time",
                where=where,
                fix="Give ISO dates or times, e.g. 2018-01-31 or 2018-01-31T10:30",
            )
    if getattr(time.dt, "tz", None) is not None:
        time = time.dt.tz_convert("UTC").dt.tz_localize(None)
    return time.astype("datetime64[ns]")


def _check_duplicates(site: pd.Series, time: pd.Series, where: str) -> None:
    repeated = pd.DataFrame({"site": site, "time": time}).duplicated(keep=False).to_numpy()
    if repeated.any():
        rows = np.flatnonzero(repeated)
        first = rows[0]
        stamp = time.iloc[first]
        stamp = str(stamp)[:10] if stamp == stamp.normalize() else str(stamp)[:19]
        again = rows[(site.to_numpy()[rows] == site.iloc[first]) & (time.to_numpy()[rows] == time.iloc[first])]
        raise DataError(
            f"duplicate rows: site {site.iloc[first]} at {stamp} appears on data rows "
            f"{', '.join(str(r + 1) for r in again)} ({int(repeated.sum())} rows are repeats)",
            where=where,
            fix="Keep one row per site and time stamp",
        )


def _kept_rows(site: pd.Series, sites: list[str] | None, where: str) -> np.ndarray:
    if sites is None:
        return np.ones(len(site), dtype=bool)
    known = sorted(site.dropna().unique())
    unknown = [s for s in sites if s not in known]
    if unknown:
        raise DataError(
            f"sites.include names sites the table does not have: {', '.join(unknown)}",
            where=where,
            fix=f"Its sites: {', '.join(known)}",
        )
    return site.isin(sites).to_numpy()


def _values(frame: pd.DataFrame, column: str, name: str, declared: str | None, where: str) -> np.ndarray:
    """A column as float64, its declared units and its range checked against the canonical variable."""
    var = VARIABLES[name]
    if declared is not None and normalise_units(declared) != normalise_units(var.units):
        raise DataError(
            f"column {column!r} ({name}) is in {declared!r}, upscale expects {var.units!r}",
            where=where,
            fix=f"Convert it to {var.units} (see upscale/variables.py) before reading",
        )
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", copy=True)
    bad = np.flatnonzero(np.isnan(values) & frame[column].notna().to_numpy())
    values[values <= MISSING_AT_OR_BELOW] = np.nan  # FLUXNET's -9999, as many extracted tables keep it
    if bad.size:
        raise DataError(
            f"non-numeric value {frame[column].iloc[bad[0]]!r} on data row {bad[0] + 1}",
            where=f"{where}, column {column}",
            fix="Fix the value, or leave the cell empty for a missing value",
        )
    with np.errstate(invalid="ignore"):
        outside = np.flatnonzero((values < var.valid_min) | (values > var.valid_max))
    if outside.size:
        row = int(outside[0])
        raise DataError(
            f"{outside.size} values of {name} lie outside {var.valid_min:g}..{var.valid_max:g} {var.units}, "
            f"e.g. {values[row]:g} on data row {row + 1}: are they in other units?",
            where=f"{where}, column {column}",
            fix=f"Convert {name} to {var.units} (see upscale/variables.py), or blank out the bad values",
        )
    return values


def time_sampling(table: pd.DataFrame) -> str:
    """``"daily"`` when every stamp is a midnight and a site's rows are mostly one day apart, else irregular."""
    time = table["time"]
    if (time != time.dt.normalize()).any():
        return IRREGULAR
    steps = table.sort_values(["site", "time"]).groupby("site")["time"].diff().dropna()
    return DAILY if steps.empty or steps.median() <= pd.Timedelta(days=1) else IRREGULAR


def _dataset(table: pd.DataFrame, variables: list[str], site_list, sampling: str, where: str) -> xr.Dataset:
    if table.empty:
        raise DataError("the site table has no rows (for the sites asked for)", where=where)
    site_ids = sorted(table["site"].unique())
    meta = site_metadata(site_list, site_ids)
    if sampling == DAILY:
        time = pd.date_range(table["time"].min(), table["time"].max(), freq="D").as_unit("ns")
    else:
        time = pd.DatetimeIndex(np.unique(table["time"].to_numpy())).as_unit("ns")
    indexed = table.set_index(["site", "time"]).sort_index()
    grid = pd.MultiIndex.from_product([site_ids, time], names=["site", "time"])
    data_vars = {}
    for name in variables:
        values = indexed[name].reindex(grid).to_numpy(dtype="float64").reshape(len(site_ids), len(time))
        attrs = {"units": VARIABLES[name].units, "long_name": VARIABLES[name].long_name}
        data_vars[name] = (("site", "time"), values.astype("float32"), attrs)
    coords = {
        "site": ("site", np.asarray(site_ids, dtype=str)),
        "time": ("time", time.to_numpy(dtype="datetime64[ns]")),
        "lat": ("site", meta["lat"].to_numpy(dtype="float64"), {"units": "degrees_north"}),
        "lon": ("site", meta["lon"].to_numpy(dtype="float64"), {"units": "degrees_east"}),
        "elevation": ("site", meta["elevation"].to_numpy(dtype="float64"), {"units": "m"}),
        "igbp": ("site", np.asarray(meta["igbp"].tolist(), dtype=str)),
    }
    return xr.Dataset(data_vars, coords=coords, attrs={"time_sampling": sampling, "source_files": [where]})
