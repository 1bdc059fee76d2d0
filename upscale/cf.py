"""CF metadata of the product: coordinates with bounds, grid mapping, variables, global attributes.

The product follows CF-1.8: every coordinate has standard_name, units, axis and bounds;
every data variable names the EPSG:4326 grid mapping (as rioxarray writes it); each flux
names its uncertainty variables (``standard_error`` modifier: total, epistemic, aleatoric),
its quantile variables (``<target>_q05``: a ``quantile`` attribute with the probability, no
standard name) and the
extrapolation flag in ``ancillary_variables``; a bounded flux and its quantiles carry the bound
as ``valid_min``. The numpy helpers here (unit
factors, predictor ranges, the extrapolation test) are what the apply kernel uses to
fill those variables, so the metadata and the values are defined in one place.
"""

from __future__ import annotations

import datetime

import numpy as np
import xarray as xr

import upscale
from upscale.encoding import complete_predictors
from upscale.errors import RecipeError
from upscale.outputs import (
    FLAG,
    FLAG_DTYPE,
    FLAG_FILL,
    FLAG_NAME,
    OutputVariable,
    quantile_output,
    target_outputs,
    uncertainty_names,
)
from upscale.variables import SECONDS_PER_DAY, VARIABLES

CONVENTIONS = "CF-1.8"
GRID_MAPPING = "spatial_ref"
BOUNDS_DIM = "bnds"
# the flag has no _FillValue (xarray would decode it to float with NaN): "no prediction" is one of its values
FLAG_VALUES = np.array([FLAG_FILL, 0, 1], dtype=FLAG_DTYPE)
FLAG_MEANINGS = "no_prediction inside_training_range outside_training_range"
TIME_UNITS = "days since 1970-01-01"
CALENDAR = "proleptic_gregorian"
# scalar time coordinate of whole-period means: the name their cell_methods refer to (CF 7.3)
PERIOD = "period"

# product units per unit system; factors convert canonical units (upscale.variables) into them
UNIT_SYSTEMS = ("default", "si")
_TO_SI = {
    "g m-2 d-1": ("kg m-2 s-1", 1e-3 / SECONDS_PER_DAY),
    "kg m-2 d-1": ("kg m-2 s-1", 1.0 / SECONDS_PER_DAY),
    "W m-2": ("W m-2", 1.0),
}
REFERENCES = (
    "Jung et al. (2020), Biogeosciences 17, 1343-1365 (FLUXCOM); "
    "Pastorello et al. (2020), Sci. Data 7, 225 (FLUXNET2015); "
    "Lakshminarayanan et al. (2017), NeurIPS (deep ensembles: aleatoric and epistemic uncertainty)"
)


def product_units(target: str, system: str = "default") -> tuple[str, float]:
    """Units of ``target`` in the product and the factor from its canonical units.

    Parameters
    ----------
    target : str
        A target of :data:`upscale.variables.VARIABLES` (gpp, et, le).
    system : {"default", "si"}
        ``default`` keeps the canonical units (g m-2 d-1, kg m-2 d-1); ``si`` uses kg m-2 s-1.

    Returns
    -------
    (str, float)
        UDUNITS string and the multiplier: product value = canonical value * factor.
    """
    canonical = VARIABLES[target].units
    if system == "default":
        return canonical, 1.0
    if system == "si":
        return _TO_SI[canonical]
    raise RecipeError(f"unknown unit system {system!r}", where="output.units", fix="Use default or si")


def canonical_factor(target: str, units: str) -> float:
    """Multiplier from product values in ``units`` back to the canonical units of ``target``."""
    for system in UNIT_SYSTEMS:
        name, factor = product_units(target, system)
        if name == units:
            return 1.0 / factor
    raise RecipeError(
        f"units {units!r} of {target!r} are not a product unit upscale knows",
        where=target,
        fix=f"Expected {VARIABLES[target].units} or {_TO_SI[VARIABLES[target].units][0]}",
    )


def product_variables(
    targets: list[str], units: str = "default", extrapolation: bool = True, quantiles=(), bounds: dict | None = None
) -> dict[str, dict]:
    """CF attributes of every product variable.

    Parameters
    ----------
    targets : list of str
        Predicted targets.
    units : {"default", "si"}
        Unit system (see :func:`product_units`).
    extrapolation : bool
        Include the extrapolation flag (needs predictor ranges in the bundle).
    quantiles : sequence of float
        Quantile levels written as ``<target>_qNN`` (``output.quantiles``).
    bounds : dict, optional
        Target -> lower bound of its predictions in canonical units (the bundle's ``bounds``).

    Returns
    -------
    dict
        Variable name -> attributes. The flag's ``flag_values`` carry its dtype (int8).
    """
    out = {}
    for target in targets:
        unit, factor = product_units(target, units)
        bound = (bounds or {}).get(target)
        for variable in target_outputs(quantiles):
            attrs = _output_attrs(target, variable, unit)
            if bound is not None and not variable.standard_error:
                attrs["valid_min"] = np.float32(bound * factor)
            out[variable.name(target)] = attrs
        quantile_names = [quantile_output_name(target, q) for q in quantiles]
        ancillary = uncertainty_names(target) + quantile_names + ([FLAG_NAME] if extrapolation else [])
        out[target]["ancillary_variables"] = " ".join(ancillary)
    if extrapolation:
        out[FLAG_NAME] = flag_attrs()
    return out


def quantile_output_name(target: str, level: float) -> str:
    """The product variable of ``target``'s quantile at probability ``level`` (e.g. ``gpp_q05``)."""
    return quantile_output(level).name(target)


def _output_attrs(target: str, variable: OutputVariable, unit: str) -> dict:
    var = VARIABLES[target]
    modifier = " standard_error" if variable.standard_error else ""
    attrs = {
        "standard_name": f"{var.standard_name}{modifier}",
        "long_name": f"{var.long_name}, {variable.description}",
        "units": unit,
        "cell_methods": "time: mean",
        "grid_mapping": GRID_MAPPING,
        "coverage_content_type": variable.coverage_content_type,
    }
    if variable.quantile is not None:
        # no CF modifier or cell method says "quantile": an attribute does. No standard name either, so
        # that the flux's standard name still finds one variable (ds.cf[standard_name] in cf_xarray)
        del attrs["standard_name"]
        attrs["quantile"] = np.float32(variable.quantile)
    return attrs


def parameter_variables(model_type: str, parameter_info: dict[str, dict]) -> dict[str, dict]:
    """CF attributes of the process parameters a (hybrid) model writes as maps.

    Parameters
    ----------
    model_type : str
        The model's type (named in ``long_name``).
    parameter_info : dict
        Parameter name -> ``long_name``, ``units``, ``valid_min``, ``valid_max`` (as a bundle's
        ``parameters`` record them; empty for models without process parameters).
    """
    out = {}
    for name, info in parameter_info.items():
        out[name] = {
            "long_name": f"learned parameter of the {model_type} model: {info['long_name']}, ensemble mean",
            "units": info["units"],
            "valid_min": np.float32(info["valid_min"]),
            "valid_max": np.float32(info["valid_max"]),
            "cell_methods": "time: mean",
            "grid_mapping": GRID_MAPPING,
            "coverage_content_type": "modelResult",
        }
    return out


def flag_attrs() -> dict:
    """Attributes of the extrapolation flag: int8, -127 (``no_prediction``) where predictors are missing (ocean)."""
    return {
        "long_name": FLAG.description,
        "flag_values": FLAG_VALUES,
        "flag_meanings": FLAG_MEANINGS,
        "grid_mapping": GRID_MAPPING,
        "coverage_content_type": FLAG.coverage_content_type,
        "comment": "1 where any dynamic or static predictor of the pixel-day lies outside [min, max] over the "
        "training sites' days with observations (bundle.json predictor_ranges); -127 where there is no "
        "prediction (water, missing predictors)",
    }


def flag_share(flag: xr.DataArray) -> xr.DataArray:
    """The extrapolation flag as float32: 1 outside the training range, 0 inside, NaN where nothing was predicted.

    Its mean over days is the share of days flagged. Products written before the flag had a
    ``no_prediction`` value, whose -127 xarray masks to NaN, read the same.
    """
    return flag.where(flag != FLAG_FILL).astype("float32")


def cell_bounds(centres: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """[n, 2] bounds of cells around ascending ``centres``: midpoints, the ends half a step out.

    Parameters
    ----------
    centres : numpy.ndarray
        Ascending cell centres (at least one).
    lo, hi : float, optional
        Clip the bounds to this range (e.g. -90, 90 for latitude).
    """
    centres = np.asarray(centres, dtype="float64")
    if centres.size == 1:
        edges = centres + np.array([-0.5, 0.5])
    else:
        mid = (centres[1:] + centres[:-1]) / 2
        edges = np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])
    edges = np.clip(edges, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)
    return np.stack([edges[:-1], edges[1:]], axis=-1)


def spatial_bounds(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``lat_bnds`` and ``lon_bnds`` of a product; derived from the centres for products without them."""
    if "lat_bnds" in ds and "lon_bnds" in ds:
        return ds["lat_bnds"].values, ds["lon_bnds"].values
    return cell_bounds(ds.lat.values, -90.0, 90.0), cell_bounds(ds.lon.values)


def time_bounds(time: np.ndarray) -> np.ndarray:
    """[n, 2] bounds of daily values: [day, day + 1)."""
    start = np.asarray(time, dtype="datetime64[ns]")
    return np.stack([start, start + np.timedelta64(1, "D")], axis=-1)


def product_coords(time: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict:
    """Coordinates with CF attributes and bounds, plus the EPSG:4326 grid mapping variable.

    Returns
    -------
    dict
        ``time``, ``lat``, ``lon``, their bounds ``time_bnds``, ``lat_bnds``, ``lon_bnds`` (dims
        ``(<axis>, bnds)``) and ``spatial_ref`` (as rioxarray writes it) as DataArrays.
    """
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    ds = xr.Dataset(
        coords={
            "time": ("time", np.asarray(time, dtype="datetime64[ns]"), axis_attrs("time")),
            "lat": ("lat", lat, axis_attrs("lat")),
            "lon": ("lon", lon, axis_attrs("lon")),
        }
    )
    ds["time_bnds"] = (("time", BOUNDS_DIM), time_bounds(time))
    ds["lat_bnds"] = (("lat", BOUNDS_DIM), cell_bounds(lat, -90.0, 90.0), {"units": "degrees_north"})
    ds["lon_bnds"] = (("lon", BOUNDS_DIM), cell_bounds(lon), {"units": "degrees_east"})
    return {**{name: ds[name] for name in ("time_bnds", "lat_bnds", "lon_bnds")}, **grid_mapping(ds)}


def axis_attrs(axis: str) -> dict:
    """CF attributes of the ``time``, ``lat`` or ``lon`` coordinate (with its ``bounds``)."""
    base = {
        "time": {"standard_name": "time", "long_name": "time", "axis": "T"},
        "lat": {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y"},
        "lon": {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"},
    }
    return {**base[axis], "bounds": f"{axis}_bnds"}


def period_coord(start: np.datetime64, end: np.datetime64) -> xr.DataArray:
    """The scalar ``period`` coordinate of means over the whole time axis, from ``start`` to ``end`` (exclusive).

    Its value is the start; the span is in its ``comment`` rather than in bounds, since the IOOS
    compliance-checker (6.1) warns on any bounds variable of fewer than two dimensions.
    """
    span = f"{str(start)[:10]} to {str(end)[:10]} (end exclusive)"
    attrs = {"standard_name": "time", "long_name": "start of the averaging period", "comment": f"means over {span}"}
    return xr.DataArray(np.datetime64(start, "ns"), attrs=attrs, name=PERIOD)


_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
# What rioxarray's ``write_crs("EPSG:4326")`` writes (tests/test_cf.py keeps them equal): a constant, so that
# the apply's template needs neither rioxarray nor GDAL and PROJ underneath it.
WGS84_GRID_MAPPING = {
    "crs_wkt": _WGS84_WKT,
    "semi_major_axis": 6378137.0,
    "semi_minor_axis": 6356752.314245179,
    "inverse_flattening": 298.257223563,
    "reference_ellipsoid_name": "WGS 84",
    "longitude_of_prime_meridian": 0.0,
    "prime_meridian_name": "Greenwich",
    "geographic_crs_name": "WGS 84",
    "horizontal_datum_name": "World Geodetic System 1984",
    "grid_mapping_name": "latitude_longitude",
    "spatial_ref": _WGS84_WKT,
    "long_name": "coordinate reference system (WGS 84, EPSG:4326)",
}


def grid_mapping(ds: xr.Dataset) -> dict:
    """The coordinates of ``ds`` plus ``spatial_ref``, the EPSG:4326 grid mapping (as rioxarray writes it)."""
    crs = xr.DataArray(np.int64(0), attrs=dict(WGS84_GRID_MAPPING), name=GRID_MAPPING)
    return {**{name: ds[name] for name in ds.coords}, GRID_MAPPING: crs}


def encoding(ds: xr.Dataset) -> dict:
    """CF-1.8-safe encodings (Zarr and NetCDF): float64 time in days, no fill on coordinates, int8 flags.

    Flags get no ``_FillValue``: their missing marker is one of their ``flag_values``. Also casts
    the ``flag_values`` attribute of ``ds``'s flags back to int8 (in place), since Zarr attributes
    come back as plain integers.
    """
    enc = {}
    for name in ("time", "time_bnds", PERIOD):
        if name in ds.variables:
            enc[name] = {"units": TIME_UNITS, "calendar": CALENDAR, "dtype": "float64", "_FillValue": None}
    for name in ("lat", "lon", "lat_bnds", "lon_bnds"):
        if name in ds.variables:
            enc[name] = {"_FillValue": None}
    if GRID_MAPPING in ds.variables:
        enc[GRID_MAPPING] = {"dtype": "int32"}
    for name, var in ds.data_vars.items():
        if "flag_values" in var.attrs:  # int8 on disk and in xarray (a _FillValue would decode to float)
            var.attrs["flag_values"] = np.asarray(var.attrs["flag_values"], dtype=FLAG_DTYPE)
            enc[name] = {"dtype": "int8", "_FillValue": None}
    return enc


def global_attrs(recipe, bundle_meta: dict) -> dict:
    """Global attributes: title, institution, source (model, bundle hash, version), history, recipe, sites."""
    from upscale.recipe import dump_recipe

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    sites = bundle_meta.get("training_sites", [])
    return {
        "Conventions": CONVENTIONS,
        "title": recipe.output.title,
        "institution": recipe.output.institution,
        "source": f"upscale {upscale.__version__}; model {bundle_meta['model']['type']} ensemble of "
        f"{len(bundle_meta['members'])}; bundle {bundle_meta['hash']}",
        "history": f"{now}: created by upscale {upscale.__version__} (upscale run)",
        "references": REFERENCES,
        "comment": "Daily means on the predictor grid, land only. Uncertainty: each ensemble member predicts a "
        "Gaussian censored at the flux's lower bound (GPP and, by default, ET are never negative: days at "
        "the bound are a point mass there) as its aleatoric part; the spread of the member means is the "
        "epistemic part; the mean, sd and quantiles are those of the mixture of the members; "
        "'extrapolation' marks pixel-days whose predictors lie outside the training sites' range.",
        "recipe": dump_recipe(recipe),
        "training_sites": " ".join(sites),
    }


def append_history(attrs: dict, line: str) -> dict:
    """``attrs`` with a timestamped ``line`` appended to its ``history``."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = attrs.get("history", "")
    return {**attrs, "history": f"{previous}\n{now}: {line}".strip()}


def predictor_ranges(
    dynamic: np.ndarray, static: np.ndarray, targets: np.ndarray, dynamic_names: list[str], static_names: list[str]
) -> dict:
    """Min and max of each predictor over the training sites' days with at least one observed target.

    Parameters
    ----------
    dynamic, static, targets : numpy.ndarray
        [S, T, Fd], [S, Fs] and [S, T, K] arrays of the training sites (canonical units).
    dynamic_names, static_names : list of str
        Feature names, in column order.

    Returns
    -------
    dict
        ``{"dynamic": {name: [min, max]}, "static": {name: [min, max]}}`` (JSON-ready; NaN-free:
        a feature never seen gets ``[None, None]`` and flags every finite value).
    """
    seen = np.isfinite(targets).any(axis=-1)  # [S, T]
    dyn = dynamic[seen]  # [N, Fd]
    return {"dynamic": _min_max(dyn, dynamic_names), "static": _min_max(static, static_names)}


def _min_max(values: np.ndarray, names: list[str]) -> dict:
    out = {}
    for j, name in enumerate(names):
        col = values[:, j][np.isfinite(values[:, j])]
        out[name] = [float(col.min()), float(col.max())] if col.size else [None, None]
    return out


def extrapolation_flag(dynamic: np.ndarray, static: np.ndarray, ranges: dict) -> np.ndarray:
    """The extrapolation flag of P pixels x T days: 1 outside the training range, 0 inside, fill if missing.

    Parameters
    ----------
    dynamic : numpy.ndarray
        [P, T, Fd] predictors in canonical units, columns in the order of ``ranges["dynamic"]``.
    static : numpy.ndarray
        [P, Fs] encoded static predictors, columns in the order of ``ranges["static"]``.
    ranges : dict
        As returned by :func:`predictor_ranges`.

    Returns
    -------
    numpy.ndarray
        int8 [P, T]; :data:`FLAG_FILL` where any predictor is missing (the prediction is NaN there).
    """
    d_lo, d_hi = _bounds(ranges["dynamic"])
    s_lo, s_hi = _bounds(ranges["static"])
    with np.errstate(invalid="ignore"):
        outside = ((dynamic < d_lo) | (dynamic > d_hi)).any(axis=-1)
        outside |= ((static < s_lo) | (static > s_hi)).any(axis=-1)[:, None]
    valid = complete_predictors(dynamic, static)
    return np.where(valid, outside.astype(FLAG_DTYPE), FLAG_FILL).astype(FLAG_DTYPE)


def _bounds(named: dict) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(named.values())
    lo = np.array([np.inf if a is None else a for a, _ in pairs], dtype="float64")
    hi = np.array([-np.inf if b is None else b for _, b in pairs], dtype="float64")
    return lo, hi
