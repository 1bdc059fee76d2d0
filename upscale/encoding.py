"""Feature encoding without xarray: the feature layout, static encoding, the predictor mask, normalisation.

Numpy only, so the apply kernel and the training loop import no catalog, recipe or xarray.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from upscale.variables import IGBP_CLASSES

CATEGORICAL = ("pft",)


@dataclass
class FeatureSpec:
    """Which predictors feed the model and how static classes are one-hot encoded."""

    dynamic: list[tuple[str, str]]
    static: list[tuple[str, str]]
    pft_classes: list[int]

    @property
    def dynamic_names(self) -> list[str]:
        return [v for _, v in self.dynamic]

    @property
    def static_names(self) -> list[str]:
        names = []
        for _, var in self.static:
            if var in CATEGORICAL:
                names += [f"{var}_{IGBP_CLASSES.get(c, c)}" for c in self.pft_classes]
            else:
                names.append(var)
        return names

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(
            dynamic=[tuple(x) for x in data["dynamic"]],
            static=[tuple(x) for x in data["static"]],
            pft_classes=[int(c) for c in data["pft_classes"]],
        )


def encode_static(values: dict[str, np.ndarray], spec: FeatureSpec, n: int) -> np.ndarray:
    """Static predictors of ``n`` pixels -> [n, Fs] float32; categorical maps become one-hot (NaN stays NaN)."""
    columns = [np.zeros((n, 0), dtype="float32")]
    for _, var in spec.static:
        v = np.asarray(values[var], dtype="float64")
        if var in CATEGORICAL:
            onehot = np.stack([(v == c).astype("float32") for c in spec.pft_classes], axis=-1)
            onehot[~np.isfinite(v) | (v <= 0)] = np.nan
            columns.append(onehot)
        else:
            columns.append(v[:, None].astype("float32"))
    return np.concatenate(columns, axis=-1)


def complete_predictors(dynamic: np.ndarray, static: np.ndarray) -> np.ndarray:
    """[P, T] True where every dynamic predictor of the pixel-day and every static one of the pixel is finite.

    Parameters
    ----------
    dynamic : numpy.ndarray
        [P, T, Fd] predictors.
    static : numpy.ndarray
        [P, Fs] encoded static predictors.
    """
    return np.isfinite(dynamic).all(axis=-1) & np.isfinite(static).all(axis=-1)[:, None]


@dataclass
class Normaliser:
    """Per-feature means and standard deviations, fitted on training sites only."""

    dynamic_mean: list[float]
    dynamic_std: list[float]
    static_mean: list[float]
    static_std: list[float]
    target_mean: list[float]
    target_std: list[float]

    @classmethod
    def fit(cls, dynamic: np.ndarray, static: np.ndarray, targets: np.ndarray) -> Normaliser:
        """Fit on arrays [S, T, Fd], [S, Fs], [S, T, K] of the training sites (NaN ignored)."""

        def stats(a, axes):
            mean = np.nanmean(a, axis=axes) if a.size else np.zeros(a.shape[-1])
            std = np.nanstd(a, axis=axes) if a.size else np.ones(a.shape[-1])
            std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)
            return np.nan_to_num(mean).tolist(), std.tolist()

        dm, ds = stats(dynamic, (0, 1))
        sm, ss = stats(static, (0,))
        tm, ts = stats(targets, (0, 1))
        return cls(dm, ds, sm, ss, tm, ts)

    def dynamic(self, x: np.ndarray) -> np.ndarray:
        return ((x - np.float32(self.dynamic_mean)) / np.float32(self.dynamic_std)).astype("float32")

    def static(self, x: np.ndarray) -> np.ndarray:
        return ((x - np.float32(self.static_mean)) / np.float32(self.static_std)).astype("float32")

    def targets(self, y: np.ndarray) -> np.ndarray:
        return ((y - np.float32(self.target_mean)) / np.float32(self.target_std)).astype("float32")

    def to_dict(self) -> dict:
        return asdict(self)
