"""The reading choices of :func:`upscale.sources.fluxnet.read`, checked once, and name suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from upscale.errors import DataError
from upscale.sources.fluxnet.columns import GPP_COLUMNS, LE_COLUMNS

#: Default minimum daily QC fraction (measured or good-quality gap-filled half hours).
DEFAULT_QC_MIN = 0.8
#: Default minimum share of a day's sub-daily records that must be finite for a daily value.
DEFAULT_MIN_COVERAGE = 0.8


@dataclass(frozen=True)
class Options:
    """The reading choices every reader gets."""

    qc_min: float
    gpp_column: str
    le_column: str
    min_coverage: float = DEFAULT_MIN_COVERAGE


def reading_options(qc_min, gpp, le, min_coverage) -> Options:
    """The arguments of ``read`` checked, in this order: ``gpp``, ``le``, ``qc_min``, ``min_coverage``.

    Parameters
    ----------
    qc_min, min_coverage : float
        Fractions in [0, 1] (anything ``float`` accepts).
    gpp, le : str
        Keys of :data:`GPP_COLUMNS` and :data:`LE_COLUMNS`, case-insensitive.

    Returns
    -------
    Options
        With the FLUXNET column names of the chosen GPP and LE variants.

    Raises
    ------
    upscale.errors.DataError
        For an unknown variant or a value that is not a fraction.
    """
    gpp_column = choose_variant(gpp, GPP_COLUMNS, "gpp")
    le_column = choose_variant(le, LE_COLUMNS, "le")
    qc_min = check_fraction(
        qc_min, "qc_min", "Use e.g. 0.8 (80 % measured or good-quality gap-filled half hours), or 0 for no QC"
    )
    min_coverage = check_fraction(
        min_coverage, "min_coverage", "Use e.g. 0.8 (a day needs 80 % of its half hours), or 0 to take any"
    )
    return Options(qc_min, gpp_column, le_column, min_coverage)


def choose_variant(value: str, choices: dict[str, str], argument: str) -> str:
    """The column of the variant ``value`` (a key of ``choices``, case-insensitive)."""
    key = str(value).upper()
    if key not in choices:
        raise DataError(
            f"{argument}={value!r} is not a valid choice",
            where=argument,
            fix=f"Use one of {', '.join(repr(c) for c in choices)}",
        )
    return choices[key]


def check_fraction(raw, argument: str, fix: str) -> float:
    """``raw`` as a float in [0, 1]; a DataError naming ``argument`` otherwise."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise DataError(f"{argument}={raw!r} is not a fraction between 0 and 1", where=argument, fix=fix)
    return value


def with_suggestions(names: Iterable[str], choices: Sequence[str]) -> str:
    """``names`` joined by commas, each followed by the close matches among ``choices`` if any."""
    parts = []
    for name in names:
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
        parts.append(f"{name} (did you mean {' or '.join(close)}?)" if close else name)
    return ", ".join(parts)
