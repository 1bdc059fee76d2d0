"""Predictors taken from a site table instead of extracted from cubes: dynamic columns, static per-site values."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from upscale.errors import DataError
from upscale.variables import IGBP_CLASSES

#: Static predictors that come from the site list, not from the table's columns.
SITE_LIST_STATICS = ("pft", "elevation")
_IGBP_CODES = {abbr: code for code, abbr in IGBP_CLASSES.items()}


def table_variables(targets: list[str], predictors: list[str]) -> list[str]:
    """The canonical variables read from the table's columns: the targets and the table predictors."""
    return list(targets) + [v for v in predictors if v not in SITE_LIST_STATICS and v not in targets]


def site_predictors(sites: xr.Dataset, dynamic: list[str], static: list[str]) -> tuple[dict, dict, list[int]]:
    """The predictors of a site table's sites, as extraction gives them from cubes.

    Parameters
    ----------
    sites : xarray.Dataset
        From :func:`~upscale.sources.sitetable.read_site_table` (coords ``igbp``, ``elevation``).
    dynamic, static : list of str
        Canonical names of the dynamic and static table predictors.

    Returns
    -------
    dynamic_values : dict
        name -> [S, T] float32.
    static_values : dict
        name -> [S]: ``pft`` the IGBP code of the site list's class, ``elevation`` the site list's,
        any other the site's one value in the table.
    pft_classes : list of int
        The IGBP codes present (the one-hot columns of ``pft``).

    Raises
    ------
    upscale.errors.DataError
        For an IGBP class the site list lacks or does not know, or a static column that varies in time.
    """
    dynamic_values = {v: sites[v].transpose("site", "time").values.astype("float32") for v in dynamic}
    static_values = {}
    for name in static:
        if name == "pft":
            static_values[name] = _igbp_codes(sites)
        elif name == "elevation":
            static_values[name] = np.asarray(sites["elevation"].values, dtype="float64")
        else:
            static_values[name] = _per_site(sites, name)
    codes = static_values.get("pft", np.array([]))
    return dynamic_values, static_values, sorted(int(c) for c in np.unique(codes))


def _igbp_codes(sites: xr.Dataset) -> np.ndarray:
    classes = [str(c).strip().upper() for c in sites["igbp"].values]
    unknown = [f"{s} ({c or 'empty'})" for s, c in zip(sites.site.values, classes) if c not in _IGBP_CODES]
    if unknown:
        raise DataError(
            f"sites without a known IGBP class, which the predictor pft needs: {', '.join(unknown)}",
            where="sites.site_list",
            fix=f"Give each site an IGBP class ({', '.join(_IGBP_CODES)}), or leave pft out of the predictors",
        )
    return np.array([_IGBP_CODES[c] for c in classes], dtype="float64")


def _per_site(sites: xr.Dataset, name: str) -> np.ndarray:
    values = sites[name].transpose("site", "time").values.astype("float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a site without any value: NaN, quietly
        low, high, mean = np.nanmin(values, axis=1), np.nanmax(values, axis=1), np.nanmean(values, axis=1)
    varying = np.flatnonzero(high - low > 1e-6 * np.maximum(1.0, np.abs(mean)))
    if varying.size:
        raise DataError(
            f"the static predictor {name} changes in time at sites {', '.join(map(str, sites.site.values[varying]))}",
            where=f"site table, column {sites[name].attrs.get('source_column', name)}",
            fix="Give a static predictor one value per site, or make it a dynamic one",
        )
    return mean
