"""What demo world to build: :class:`DemoSpec`, a frozen pydantic model that names its cache folder."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from upscale.errors import DataError

#: Bumped whenever the generator changes what it produces, so cached worlds are not reused.
WORLD_VERSION = 3  # 3: air-mass humidity, VPD effect on GPP from 2 hPa

_WHERE = "demo world spec"


def _numpy_integer_as_int(value: Any) -> Any:
    """numpy integers count as integers (pydantic's strict int takes Python ints only, and no bools)."""
    return int(value) if isinstance(value, np.integer) else value


_Count = Annotated[int, BeforeValidator(_numpy_integer_as_int), Field(strict=True)]

# Per field: what a bad value gets told (``{value!r}`` is the value as given) and what to do.
_FIELD_ERRORS = {
    "seed": ("seed must be a non-negative integer, got {value!r}", "pass e.g. seed=0"),
    "resolution": (
        "resolution must be a positive number of degrees that divides 180, got {value!r}",
        "use e.g. 0.5, 1, 2, 5 or 10",
    ),
    "start": ("start is not a date: {value!r}", "use an ISO date like 2018-01-01"),
    "end": ("end is not a date: {value!r}", "use an ISO date like 2018-01-01"),
    "n_sites": ("n_sites must be a positive integer, got {value!r}", None),
    "bbox": (
        (
            "bbox must be (lon_min, lat_min, lon_max, lat_max) with -180 <= lon_min < lon_max <= 180 and "
            "-90 <= lat_min < lat_max <= 90, got {value!r}"
        ),
        "boxes across the antimeridian are not supported; pass None for the globe",
    ),
}
_ORDER_FIX = "give an end date on or after the start date"


class DemoSpec(BaseModel):
    """What demo world to build: seed, grid, period and number of flux sites.

    Frozen and hashable; equal specs build bit-identical worlds and share a cache folder
    (:meth:`key`). A bad value raises :class:`~upscale.errors.DataError` that names the field, an
    unknown field a ``TypeError`` (like an unknown keyword argument).

    Parameters
    ----------
    seed : int
        Seed of all random streams (>= 0).
    resolution : float
        Grid spacing in degrees; must divide 180 (e.g. 0.5, 1, 2, 5, 10).
    start, end : str
        First and last day (inclusive), ISO dates (anything pandas reads as a date; kept as
        ``YYYY-MM-DD``).
    n_sites : int
        Number of flux-tower sites.
    bbox : tuple of 4 floats or None
        ``(lon_min, lat_min, lon_max, lat_max)`` in degrees, lon in [-180, 180]; None = global.
        The grid is the global grid's cells whose centres lie inside the box.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    seed: _Count = Field(0, ge=0, description="Seed of all random streams.")
    resolution: float = Field(2.0, gt=0, description="Grid spacing in degrees; divides 180.")
    start: str = Field("2018-01-01", description="First day, ISO date.")
    end: str = Field("2019-12-31", description="Last day (inclusive), ISO date.")
    n_sites: _Count = Field(80, ge=1, description="Number of flux-tower sites.")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="(lon_min, lat_min, lon_max, lat_max) in degrees; None for the globe."
    )

    @model_validator(mode="wrap")
    @classmethod
    def _user_facing_errors(cls, values: Any, handler):
        """Unknown fields raise TypeError and bad values DataError, as callers of DemoSpec expect."""
        if isinstance(values, dict):
            unknown = [name for name in values if name not in cls.model_fields]
            if unknown:
                raise TypeError(
                    f"DemoSpec got an unexpected keyword argument {unknown[0]!r} "
                    f"(its fields: {', '.join(cls.model_fields)})"
                )
        try:
            return handler(values)
        except ValidationError as exc:
            raise _data_error(exc, values if isinstance(values, dict) else {}) from None

    @field_validator("resolution")
    @classmethod
    def _divides_180(cls, res: float) -> float:
        n_lat = 180.0 / res
        if abs(n_lat - round(n_lat)) > 1e-6 * max(1.0, n_lat):
            raise ValueError("does not divide 180")
        return res

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> str:
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError):
            ts = pd.NaT
        if pd.isna(ts):
            raise ValueError("not a date")
        return ts.normalize().strftime("%Y-%m-%d")

    @field_validator("bbox")
    @classmethod
    def _ordered_box(cls, box):
        if box is not None:
            lon0, lat0, lon1, lat1 = box
            if not (-180 <= lon0 < lon1 <= 180 and -90 <= lat0 < lat1 <= 90):
                raise ValueError("not an ordered box")
        return box

    @model_validator(mode="after")
    def _ordered_period(self):
        if pd.Timestamp(self.end) < pd.Timestamp(self.start):
            raise DataError(f"end {self.end} is before start {self.start}", _WHERE, _ORDER_FIX)
        return self

    def to_dict(self) -> dict:
        """The fields as plain JSON-able values."""
        d = self.model_dump()
        d["bbox"] = list(self.bbox) if self.bbox is not None else None
        return d

    def key(self) -> str:
        """A short stable hash of the fields (and of the generator version), for cache folder names."""
        payload = json.dumps({**self.to_dict(), "version": WORLD_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _data_error(exc: ValidationError, values: dict) -> DataError:
    """One DataError for all the fields pydantic refused, each described by :data:`_FIELD_ERRORS`."""
    fields = list(dict.fromkeys(str(item["loc"][0]) for item in exc.errors() if item["loc"]))
    whats = [_FIELD_ERRORS[name][0].format(value=values.get(name)) for name in fields]
    fixes = [_FIELD_ERRORS[name][1] for name in fields if _FIELD_ERRORS[name][1]]
    return DataError("; ".join(whats) or str(exc), _WHERE, "; ".join(dict.fromkeys(fixes)) or None)
