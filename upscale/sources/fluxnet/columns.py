"""The columns read from FLUXNET and AmeriFlux BASE files, per canonical variable, and their variants."""

from __future__ import annotations

import logging
import re

from upscale.errors import DataError

log = logging.getLogger(__package__)

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
#: AmeriFlux BASE variable -> canonical variable (GPP and LE are the targets).
BASE_VARIABLES = {
    "tas": "TA",
    "vpd": "VPD",
    "rsds": "SW_IN",
    "rsds_pot": "SW_IN_POT",
    "pr": "P",
    "gpp": "GPP",
    "le": "LE",
}


def source_columns(gpp_column: str, le_column: str, base_only: bool) -> dict[str, str]:
    """The ``source_column`` attribute of each variable in :data:`VARIABLE_ORDER`.

    Parameters
    ----------
    gpp_column, le_column : str
        The FLUXNET columns of the chosen GPP and LE variants.
    base_only : bool
        Whether every file read is an AmeriFlux BASE file (whose columns are named differently).
    """
    columns = {v: _source_column(v, gpp_column, le_column) for v in VARIABLE_ORDER}
    if base_only:
        columns.update(
            {v: f"{c} (AmeriFlux BASE, gap-filled _PI_F column where present)" for v, c in BASE_VARIABLES.items()}
        )
    return columns


def _source_column(variable: str, gpp_column: str, le_column: str) -> str:
    if variable == "gpp":
        return gpp_column
    if variable == "le":
        return le_column
    if variable == "et":
        return f"{le_column} (via the latent heat of vaporisation at TA_F)"
    return MET_COLUMNS[variable][0]


def base_column(columns, base: str, where: str, required: bool, quiet: bool = False) -> tuple[str | None, str | None]:
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
            found.append(
                ((match["f"] is None, match["h"] is not None, position, match["pi"] is not None), column, match)
            )
    if not found:
        if required:
            raise DataError(
                f"no {base} column (looked for {base}, {base}_PI_F, {base}_1_1_1 and the like)",
                where=where,
                fix=f"Pass a BASE file that has {base}, or leave the site out",
            )
        if not quiet:
            log.warning("%s: no %s column; its variable is all NaN", where, base)
        return None, None
    _, column, match = min(found, key=lambda item: item[0])
    if not match["f"]:
        return column, None
    twins = [column.replace("_F", "", 1), column.replace("_PI_F", "", 1)]  # LE_PI_F -> LE_PI, LE
    return column, next((t for t in twins if t != column and t in columns), None)
