"""The site metadata table: latitude, longitude, elevation and IGBP class from a FLUXNET site list.

The site list is a CSV with a row per site, such as the FLUXNET2015 site list (SITE_ID,
LOCATION_LAT, LOCATION_LONG, LOCATION_ELEV, IGBP); header spellings are matched case-insensitively.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from upscale.errors import DataError
from upscale.sources.fluxnet.options import with_suggestions
from upscale.sources.fluxnet.table import MISSING_AT_OR_BELOW

# Site-list columns: canonical key -> accepted header spellings (compared case-insensitively).
_SITE_LIST_COLUMNS = {
    "site": ("site_id", "site", "siteid", "site_code", "id"),
    "lat": ("location_lat", "lat", "latitude"),
    "lon": ("location_long", "location_lon", "lon", "long", "longitude"),
    "elevation": ("location_elev", "elevation", "elev", "altitude", "alt"),
    "igbp": ("igbp", "igbp_class", "igbp_code"),
}


def site_metadata(site_list, site_ids: list[str]) -> pd.DataFrame:
    """Per-site lat, lon, elevation, igbp for ``site_ids`` (NaN / "" without a site list).

    Raises
    ------
    upscale.errors.DataError
        If the site list lacks one of ``site_ids`` (or cannot be read, see :func:`read_site_list`).
    """
    if site_list is None:
        return pd.DataFrame(
            {"lat": np.nan, "lon": np.nan, "elevation": np.nan, "igbp": ""}, index=pd.Index(site_ids, name="site")
        )
    table = read_site_list(site_list)
    missing = [s for s in site_ids if s not in table.index]
    if missing:
        raise DataError(
            f"sites missing from the site list: {with_suggestions(missing, list(table.index))}",
            where=str(site_list),
            fix="Add a row for each of these sites, or leave them out with sites=",
        )
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
            raise DataError(
                f"the site list has no {key} column (looked for {', '.join(spellings)})",
                where=where,
                fix=f"Name the columns as in the FLUXNET site list; found {list(table.columns)}",
            )
    return found


def _site_number(table: pd.DataFrame, column: str, where: str) -> np.ndarray:
    raw = table[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = np.flatnonzero((values.isna() & raw.notna() & (raw.str.strip() != "")).to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"non-numeric value {raw.iloc[row]!r} on line {row + 2}", where=f"{where}, column {column}")
    values = values.astype("float64")
    return values.mask(values <= MISSING_AT_OR_BELOW).to_numpy()


def _check_site_list(out: pd.DataFrame, where: str) -> None:
    duplicated = out.index[out.index.duplicated()]
    if len(duplicated):
        raise DataError(
            f"site {duplicated[0]} appears more than once in the site list", where=where, fix="Keep one row per site"
        )
    bad_lat = out.index[(out["lat"].abs() > 90).to_numpy()]
    bad_lon = out.index[(out["lon"].abs() > 180).to_numpy()]
    if len(bad_lat) or len(bad_lon):
        site = (list(bad_lat) + list(bad_lon))[0]
        raise DataError(
            f"site {site} has a latitude or longitude out of range",
            where=where,
            fix="Give latitude in -90..90 and longitude in -180..180 degrees",
        )
