"""The output variables of a prediction: one declarative table, read by everything that writes or reads them.

Each target ``t`` of a run yields the variables of :data:`TARGET_OUTPUTS` (``t``, ``t_sd``,
``t_sd_epistemic``, ``t_sd_aleatoric``) and the product one :data:`FLAG` for all targets. The
product template (:mod:`upscale.cf`), the apply kernel (:func:`upscale.apply.predict_block`), the
cross-validation files (:mod:`upscale.evaluation`) and the report all take their names, dtypes,
fill values and descriptions from here, so the parts of a prediction are named one way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutputVariable:
    """One kind of output variable.

    Attributes
    ----------
    suffix : str
        Appended to the target's name (``""`` for the ensemble mean); for the flag, its whole name.
    part : str
        The kernel output that feeds it: a key of :func:`prediction_parts`, or ``"flag"``.
    dtype : str
        On-disk dtype.
    description : str
        Appended to the target's long name in ``long_name``.
    coverage_content_type : str
        ISO 19115 content type (ACDD).
    standard_error : bool
        The CF ``standard_error`` modifier applies (the variable is an uncertainty of its target).
    """

    suffix: str
    part: str
    dtype: str
    description: str
    coverage_content_type: str
    standard_error: bool = False
    quantile: float | None = None  # the probability of a quantile variable

    def name(self, target: str) -> str:
        """The variable name for ``target``."""
        return f"{target}{self.suffix}"

    @property
    def fill_value(self):
        """The missing-value marker: NaN for floats, :data:`FLAG_FILL` for the flag."""
        return fill_value(self.dtype)


TARGET_OUTPUTS = (
    OutputVariable("", "mean", "float32", "ensemble mean", "modelResult"),
    OutputVariable(
        "_sd",
        "sd",
        "float32",
        "total predictive standard deviation sqrt(aleatoric variance + epistemic variance)",
        "qualityInformation",
        standard_error=True,
    ),
    OutputVariable(
        "_sd_epistemic",
        "sd_epistemic",
        "float32",
        "epistemic standard deviation (spread of the ensemble members' means)",
        "qualityInformation",
        standard_error=True,
    ),
    OutputVariable(
        "_sd_aleatoric",
        "sd_aleatoric",
        "float32",
        "aleatoric standard deviation (root mean of the members' predicted variances)",
        "qualityInformation",
        standard_error=True,
    ),
)
UNCERTAINTY_OUTPUTS = tuple(v for v in TARGET_OUTPUTS if v.standard_error)


def quantile_part(level: float) -> str:
    """The part (and name suffix, after ``_``) of the quantile at probability ``level``.

    Whole percents take two digits (0.05 -> ``q05``, 0.5 -> ``q50``); others spell the decimal
    with ``p`` (0.025 -> ``q02p5``, 0.999 -> ``q99p9``).
    """
    percent = round(100.0 * float(level), 6)
    whole = int(percent)
    if percent == whole:
        return f"q{whole:02d}"
    return f"q{whole:02d}p" + f"{percent - whole:.6f}"[2:].rstrip("0")


def quantile_output(level: float) -> OutputVariable:
    """The output variable ``<target>_qNN``: a quantile of the ensemble's predictive mixture."""
    return OutputVariable(
        f"_{quantile_part(level)}",
        quantile_part(level),
        "float32",
        f"{float(level):g} quantile of the ensemble's predictive distribution (mixture of the members' "
        "censored Gaussians)",
        "modelResult",
        quantile=float(level),
    )


def target_outputs(quantiles=()) -> tuple[OutputVariable, ...]:
    """:data:`TARGET_OUTPUTS` and one quantile variable per level of ``quantiles`` (``output.quantiles``)."""
    return TARGET_OUTPUTS + tuple(quantile_output(q) for q in quantiles)


#: The product store's global attribute saying whether every tile has been written ("true") or not ("false").
COMPLETE_ATTR = "upscale_complete"

FLAG_NAME = "extrapolation"
FLAG_DTYPE = np.int8
FLAG_FILL = np.int8(-127)
FLAG = OutputVariable(
    FLAG_NAME,
    "flag",
    "int8",
    "predictors outside the range seen at the training sites (any predictor, this day)",
    "qualityInformation",
)


def fill_value(dtype) -> float | int:
    """The missing-value marker of an output array of ``dtype``: NaN for floats, -127 for the flag.

    The flag's -127 is not a CF ``_FillValue`` but one of its ``flag_values`` (``no_prediction``), so
    the flag opens in xarray as the int8 array it is on disk.
    """
    return np.nan if np.dtype(dtype).kind == "f" else FLAG_FILL


def uncertainty_names(target: str) -> list[str]:
    """The uncertainty variables of ``target``: total, epistemic and aleatoric standard deviation."""
    return [v.name(target) for v in UNCERTAINTY_OUTPUTS]


def prediction_parts(mean: np.ndarray, aleatoric_var: np.ndarray, epistemic_var: np.ndarray) -> dict[str, np.ndarray]:
    """The parts of a Gaussian-mixture prediction that :data:`TARGET_OUTPUTS` name.

    Parameters
    ----------
    mean, aleatoric_var, epistemic_var : numpy.ndarray
        Ensemble mean, mean of the members' variances, variance of the members' means.

    Returns
    -------
    dict
        ``mean``, ``sd`` (sqrt of the total variance), ``sd_epistemic``, ``sd_aleatoric``.
    """
    return {
        "mean": mean,
        "sd": np.sqrt(aleatoric_var + epistemic_var),
        "sd_epistemic": np.sqrt(epistemic_var),
        "sd_aleatoric": np.sqrt(aleatoric_var),
    }
