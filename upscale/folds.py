"""Cross-validation folds that never split a site: k-fold, leave-one-site-out, leave-group-out.

Each fold is the array of its test sites' indices; every site is a test site exactly once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from upscale.errors import RecipeError


def kfold(n_sites: int, k: int, seed: int) -> list[np.ndarray]:
    """Grouped k-fold: sites shuffled with ``seed`` and dealt into k folds of near-equal size."""
    if n_sites < k:
        raise RecipeError(
            f"{k}-fold cross-validation needs at least {k} sites, there are {n_sites}",
            where="validation.folds",
            fix="Lower validation.folds or add sites",
        )
    order = np.random.default_rng(seed).permutation(n_sites)
    return [np.sort(f) for f in np.array_split(order, k)]


def leave_one_site_out(n_sites: int) -> list[np.ndarray]:
    """One fold per site."""
    if n_sites < 2:
        raise RecipeError("leave-one-site-out needs at least 2 sites", where="validation.scheme")
    return [np.array([i]) for i in range(n_sites)]


def leave_group_out(groups) -> list[np.ndarray]:
    """One fold per distinct group label (sorted), holding out all of that group's sites."""
    groups = np.asarray([str(g) for g in groups])
    labels = sorted(set(groups))
    if len(labels) < 2:
        raise RecipeError(
            f"leave-group-out needs at least 2 groups, the sites form {len(labels)}",
            where="validation.group_by",
            fix="Use another grouping or scheme: kfold",
        )
    return [np.nonzero(groups == label)[0] for label in labels]


def koppen_main_class(times, tas: np.ndarray, pr: np.ndarray) -> np.ndarray:
    """Koppen-Geiger main class (A, B, C, D, E) of each site from daily air temperature and precipitation.

    Parameters
    ----------
    times : array of datetime64
        The T days.
    tas, pr : numpy.ndarray
        [S, T] daily mean air temperature (degC) and precipitation (mm d-1).

    Notes
    -----
    Peel et al. (2007): E if the warmest month is below 10 degC; B if the annual precipitation
    is below 20 x the annual mean temperature + 140 mm (the threshold for no marked rainy
    season); else A if the coldest month is at least 18 degC, C if it is above 0 degC, D otherwise.
    """
    month = pd.DatetimeIndex(times).month
    monthly_t = np.stack([np.nanmean(tas[:, month == m], axis=1) for m in range(1, 13)], axis=1)
    annual_p = np.nanmean(pr, axis=1) * 365.25
    annual_t = np.nanmean(tas, axis=1)
    warmest, coldest = np.nanmax(monthly_t, axis=1), np.nanmin(monthly_t, axis=1)
    classes = np.where(coldest >= 18, "A", np.where(coldest > 0, "C", "D")).astype(object)
    classes[annual_p < 20 * annual_t + 140] = "B"
    classes[warmest < 10] = "E"
    return classes.astype(str)


def make_folds(scheme: str, n_sites: int, folds: int, seed: int, groups=None) -> list[np.ndarray]:
    """The test folds of a validation scheme ('kfold', 'loso' or 'group' with ``groups`` labels)."""
    if scheme == "kfold":
        return kfold(n_sites, folds, seed)
    if scheme == "loso":
        return leave_one_site_out(n_sites)
    if scheme == "group":
        return leave_group_out(groups)
    raise RecipeError(
        f"unknown validation scheme {scheme!r}", where="validation.scheme", fix="Choose kfold, loso, group or none"
    )
