"""What the true sensitivities of the demo world are: targets, drivers, steps, units and definition.

The true sensitivities are the instantaneous partial derivatives of a day's GPP and ET with
respect to that day's tas, vpd, rsds, pr and ws, the start-of-day state (soil water, snow,
smoothed temperature, greenness memory), the other drivers and the cloud fraction held fixed:
finite differences of the land model's daily step in float64, taken inside the recorded run
(:func:`upscale.sources.demo.land.day_sensitivities`), averaged per month and over the period.
"""

from __future__ import annotations

#: Targets of the true sensitivities: name -> (units, short name in words).
SENSITIVITY_TARGETS = {"gpp": ("g m-2 d-1", "GPP"), "et": ("kg m-2 d-1", "ET")}
#: Drivers of the true sensitivities: name -> (finite-difference step, inverse units, name in words).
#: Steps are small against the curvature of the model, large against float32 round-off of the inputs.
SENSITIVITY_DRIVERS = {
    "tas": (0.05, "K-1", "air temperature"),
    "vpd": (0.05, "hPa-1", "vapour pressure deficit"),
    "rsds": (0.5, "W-1 m2", "surface downwelling shortwave radiation"),
    "pr": (0.05, "mm-1 d", "precipitation"),
    "ws": (0.05, "m-1 s", "wind speed"),
}
#: Drivers that cannot go below zero: a forward difference where they are smaller than the step.
NON_NEGATIVE_DRIVERS = ("vpd", "rsds", "pr", "ws")

SENSITIVITY_DEFINITION = (
    "instantaneous partial derivative of the day's flux with respect to the same day's driver, with the "
    "state at the start of the day (soil water, snow, smoothed temperature, greenness memory), the other "
    "drivers and the cloud fraction held fixed; central finite difference of the demo world's daily "
    "step (forward where a non-negative driver is below the step), in float64"
)


def sensitivity_attrs(target: str, driver: str, period_mean: bool) -> dict:
    """CF attributes of the sensitivity of ``target`` to ``driver``, a monthly or a period mean."""
    units, target_words = SENSITIVITY_TARGETS[target]
    _, inverse_units, driver_words = SENSITIVITY_DRIVERS[driver]
    what = "mean over all days of the period" if period_mean else "monthly mean"
    return {
        "units": f"{units} {inverse_units}",
        "long_name": f"sensitivity of {target_words} to {driver_words} (instantaneous partial derivative)",
        "cell_methods": "time: mean",
        "comment": f"{what} of the daily {SENSITIVITY_DEFINITION}",
    }


def sensitivity_variables(gridded: dict) -> dict:
    """The true sensitivities, gridded (month, lat, lon) and (lat, lon) arrays, as world variables."""
    variables = {}
    for target in SENSITIVITY_TARGETS:
        for driver in SENSITIVITY_DRIVERS:
            name = f"{target}_sens_{driver}"
            variables[name] = (("month", "lat", "lon"), gridded[name], sensitivity_attrs(target, driver, False))
            variables[f"{name}_mean"] = (
                ("lat", "lon"),
                gridded[f"{name}_mean"],
                sensitivity_attrs(target, driver, True),
            )
    return variables
