"""Units strings in one spelling, to compare a table's declared units with upscale's."""

from __future__ import annotations

import re

_UNIT_WORDS = {"°c": "degc", "deg_c": "degc", "celsius": "degc", "c": "degc", "gc": "g", "day": "d", "": "1"}


def normalise_units(text: str) -> str:
    """A units string in one spelling: ``W/m2``, ``W m^-2`` and ``W m-2`` compare equal.

    Also equal: ``degC``/``°C``/``C``, ``gC``/``g C``/``g`` (GPP as carbon), ``day``/``d``,
    ``mm d-1``/``kg m-2 d-1`` (1 mm of water = 1 kg m-2) and ``1``/``-``/``fraction``/empty.
    """
    text = text.strip().lower().replace("**", "^").replace("^", "").replace("·", " ").replace("*", " ")
    text = re.sub(r"\bg\s+c\b", "gc", text)
    if text in ("-", "fraction", "unitless", "dimensionless"):
        return "1"
    parts = []
    for i, chunk in enumerate(text.split("/")):
        for token in chunk.split():
            match = re.fullmatch(r"([a-z°_]+)(-?\d*)", token)
            unit, power = (match[1], int(match[2] or 1)) if match else (token, 1)
            parts.append((_UNIT_WORDS.get(unit, unit), -power if i else power))
    spelled = " ".join(u if p == 1 else f"{u}{p}" for u, p in parts) or "1"
    return {"mm d-1": "kg m-2 d-1"}.get(spelled, spelled)
