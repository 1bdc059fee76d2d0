"""One file of each format read into a daily frame of canonical variables (float64, QC-masked).

:data:`READERS` maps the format key of :func:`~upscale.sources.fluxnet.files.detect_format` to
its reader; every reader takes the :class:`~upscale.sources.fluxnet.files.SourceFile` and the
:class:`~upscale.sources.fluxnet.options.Options` and returns a frame indexed by day.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from upscale.errors import DataError
from upscale.sources.fluxnet.columns import (
    BASE_VARIABLES,
    GPP_QC_COLUMN,
    LE_COLUMNS,
    LE_QC_COLUMN,
    MET_COLUMNS,
    TARGETS_REQUIRED,
    base_column,
)
from upscale.sources.fluxnet.files import FORMAT_AMERIFLUX_BASE, FORMAT_FLUXNET_DD, FORMAT_FLUXNET_HH, SourceFile
from upscale.sources.fluxnet.options import Options
from upscale.sources.fluxnet.qc import Records, add_flagged, daily_values, masked, optional_column
from upscale.sources.fluxnet.table import (
    numeric,
    parse_daily_timestamps,
    parse_subdaily_timestamps,
    read_csv,
    required_column,
)
from upscale.sources.fluxnet.units import et_from_le, to_canonical_units, vpd_from_rh


def read_fluxnet_dd(src: SourceFile, opt: Options) -> pd.DataFrame:
    """One DD file as a daily-indexed frame of canonical variables (float64, QC-masked)."""
    table = read_csv(src.path)
    where = str(src.path)
    time = parse_daily_timestamps(table["TIMESTAMP"], where)
    qc_min = opt.qc_min
    out = {}
    for name, (column, qc_column) in MET_COLUMNS.items():
        out[name] = optional_column(table, column, qc_column, qc_min, where)
    out["gpp"] = masked(table, required_column(table, opt.gpp_column, where), GPP_QC_COLUMN, qc_min, where)
    out["le"] = masked(table, required_column(table, opt.le_column, where), LE_QC_COLUMN, qc_min, where)
    out["et"] = et_from_le(out["le"], table, where)
    frame = pd.DataFrame(out)
    frame.index = time
    return frame


def read_fluxnet_hh(src: SourceFile, opt: Options) -> pd.DataFrame:
    """One FLUXNET2015 / ONEFlux HH or HR file aggregated to a daily frame of canonical variables."""
    table = read_csv(src.path)
    where = str(src.path)
    start = parse_subdaily_timestamps(table, where, src.records_per_day)
    records = Records(start, {}, {}, set())
    for name, (column, qc_column) in MET_COLUMNS.items():
        add_flagged(records, name, table, (column, qc_column), opt, required=False)
    add_flagged(records, "gpp", table, (required_column(table, opt.gpp_column, where), GPP_QC_COLUMN), opt)
    add_flagged(records, "le", table, (required_column(table, opt.le_column, where), LE_QC_COLUMN), opt)
    to_canonical_units(records)
    return daily_values(records, src.records_per_day, opt)


def read_ameriflux_base(src: SourceFile, opt: Options) -> pd.DataFrame:
    """One AmeriFlux BASE HH/HR file aggregated to a daily frame of canonical variables."""
    where = str(src.path)
    if opt.le_column != LE_COLUMNS["F_MDS"]:
        raise DataError(
            "AmeriFlux BASE files have no energy-balance corrected LE (LE_CORR)",
            where=where,
            fix="Use le='F_MDS' (the BASE file's LE), or the ONEFlux FLUXNET product of the site",
        )
    table = read_csv(src.path)
    records = Records(parse_subdaily_timestamps(table, where, src.records_per_day), {}, {}, set())
    for name, base in BASE_VARIABLES.items():
        required = name in TARGETS_REQUIRED + ("le",)
        column, measured = base_column(table.columns, base, where, required, quiet=name in ("vpd", "rsds_pot"))
        if column is None:
            continue
        values = numeric(table, column, where)
        records.values[name] = values
        records.good[name] = values.notna() & (numeric(table, measured, where).notna() if measured else True)
    _base_gpp_quality(records, table, where)
    vpd_from_rh(records, table, where)
    for name in MET_COLUMNS:
        records.values.setdefault(name, pd.Series(np.nan, index=table.index))
        records.good.setdefault(name, pd.Series(False, index=table.index))
    records.unflagged.add("rsds_pot")
    to_canonical_units(records)
    return daily_values(records, src.records_per_day, opt)


def _base_gpp_quality(records: Records, table: pd.DataFrame, where: str) -> None:
    """GPP is derived: a record counts as good where NEE (or FC) was measured."""
    for base in ("NEE", "FC"):
        pattern = re.compile(rf"^{base}(?:_PI)?(?:_\d+_\d+_\d+)?$")
        measured = sorted(c for c in table.columns if pattern.match(c))
        if measured:
            records.good["gpp"] = records.values["gpp"].notna() & numeric(table, measured[0], where).notna()
            return


READERS: dict[str, Callable[..., pd.DataFrame]] = {
    FORMAT_FLUXNET_DD: read_fluxnet_dd,
    FORMAT_FLUXNET_HH: read_fluxnet_hh,
    FORMAT_AMERIFLUX_BASE: read_ameriflux_base,
}
