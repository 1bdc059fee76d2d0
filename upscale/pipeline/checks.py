"""Checks of a recipe against its data that ``validate`` runs before anything is written.

Each one catches an input that would otherwise run for minutes or hours and then fail, or
finish with a product that is silently smaller or emptier than the recipe asked for.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from upscale.errors import DataError, RecipeError

#: The dynamic predictors' common days must be at least this share of the longest one's days.
MIN_COMMON_SHARE = 0.9


def check_era5_fields(catalog_path: str, dynamic: list) -> None:
    """A predictor an ERA5 entry cannot compute is reported as the ERA5 field it lacks (``d2m``, not ``vpd``)."""
    from upscale.sources.catalog import cached_entry
    from upscale.sources.era5 import missing_field_error

    for entry, var in dynamic:
        ds = cached_entry(catalog_path, entry)
        error = None if var in ds else missing_field_error(ds, var, f"catalog entry '{entry}'")
        if error is not None:
            raise error


def check_common_period(catalog_path: str, dynamic: list, period=None) -> None:
    """Refuse dynamic predictors whose common days are much fewer than one of them covers.

    The run would silently shrink to the overlap (an EO cube covering half the ERA5 years, say).
    An ``apply.period`` that lies inside the common days says the overlap is what is wanted.

    Raises
    ------
    upscale.errors.DataError
        Listing each catalog entry's period.
    """
    from upscale.sources.catalog import cached_entry

    spans = {entry: cached_entry(catalog_path, entry)[var].time.values for entry, var in dynamic}
    if len(spans) < 2:
        return
    common = _common_days(list(spans.values()))
    longest = max(times.size for times in spans.values())
    if common.size >= MIN_COMMON_SHARE * longest:
        return
    if period is not None and common.size:
        start, end = np.datetime64(period.start, "ns"), np.datetime64(period.end, "ns")
        if common[0] <= start and end <= common[-1]:
            return
    listing = "; ".join(f"{entry}: {_span(times)}" for entry, times in spans.items())
    overlap = _span(common) if common.size else "none"
    raise DataError(
        f"the dynamic predictors cover different periods ({listing}); the run would use only "
        f"their common days ({overlap}), fewer than {MIN_COMMON_SHARE:.0%} of the longest",
        where="predictors",
        fix="Give inputs that cover the same period, or set apply.period inside the common days to use only those",
    )


def check_land_in_domain(recipe, dyn: xr.Dataset, stat: xr.Dataset, index: tuple) -> None:
    """Refuse an apply domain with no land pixel (open ocean): the product would be all NaN.

    Land is where every predictor is finite on the domain's first day, as in training.
    """
    from upscale.features import land_mask

    (t0, _), lat_index, lon_index = index
    cells = dict(lat=slice(*lat_index), lon=slice(*lon_index))
    mask = land_mask(dyn.isel(time=slice(t0, t0 + 1), **cells), stat.isel(**cells, missing_dims="ignore"))
    if mask is None or mask.any():
        return
    where = "apply.bbox" if recipe.apply.bbox else "predictors"
    raise RecipeError(
        "the apply domain has no land pixel: every cell is ocean or no-data in the predictors "
        f"(on {str(dyn.time.values[t0])[:10]}), so the product would be all NaN",
        where=where,
        fix="Move apply.bbox over land" if recipe.apply.bbox else "Check the predictors' land/sea mask",
    )


def _common_days(spans: list[np.ndarray]) -> np.ndarray:
    common = spans[0]
    for times in spans[1:]:
        common = np.intersect1d(common, times)
    return common


def _span(times: np.ndarray) -> str:
    return f"{str(times[0])[:10]}..{str(times[-1])[:10]} ({times.size} days)"
