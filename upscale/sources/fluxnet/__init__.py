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

Modules: :mod:`~.files` (finding files, format and site from the name), :mod:`~.options` (the
checked reading choices), :mod:`~.columns` (the columns read per variable, GPP/LE variants),
:mod:`~.table` (CSV, timestamps, numbers), :mod:`~.qc` (QC masking, daily aggregation),
:mod:`~.units` (canonical units, ET from LE), :mod:`~.readers` (one reader per format),
:mod:`~.sites` (the site list), :mod:`~.dataset` (the Dataset) and :mod:`~.reader` (:func:`read`).
"""

from upscale.sources.fluxnet.columns import (
    BASE_VARIABLES,
    GPP_COLUMNS,
    GPP_QC_COLUMN,
    LE_COLUMNS,
    LE_QC_COLUMN,
    MET_COLUMNS,
    TARGETS_REQUIRED,
    VARIABLE_ORDER,
)
from upscale.sources.fluxnet.files import (
    FORMAT_AMERIFLUX_BASE,
    FORMAT_FLUXNET_DD,
    FORMAT_FLUXNET_HH,
    RECORDS_PER_DAY,
    SourceFile,
    detect_format,
    expand_paths,
)
from upscale.sources.fluxnet.options import DEFAULT_MIN_COVERAGE, DEFAULT_QC_MIN
from upscale.sources.fluxnet.qc import GOOD_QC_FLAGS
from upscale.sources.fluxnet.reader import read, scan_sites
from upscale.sources.fluxnet.sites import read_site_list
from upscale.sources.fluxnet.table import MISSING_AT_OR_BELOW
from upscale.sources.fluxnet.units import FALLBACK_TA_FOR_LAMBDA

__all__ = [
    "BASE_VARIABLES",
    "DEFAULT_MIN_COVERAGE",
    "DEFAULT_QC_MIN",
    "FALLBACK_TA_FOR_LAMBDA",
    "FORMAT_AMERIFLUX_BASE",
    "FORMAT_FLUXNET_DD",
    "FORMAT_FLUXNET_HH",
    "GOOD_QC_FLAGS",
    "GPP_COLUMNS",
    "GPP_QC_COLUMN",
    "LE_COLUMNS",
    "LE_QC_COLUMN",
    "MET_COLUMNS",
    "MISSING_AT_OR_BELOW",
    "RECORDS_PER_DAY",
    "TARGETS_REQUIRED",
    "VARIABLE_ORDER",
    "SourceFile",
    "detect_format",
    "expand_paths",
    "read",
    "read_site_list",
    "scan_sites",
]
