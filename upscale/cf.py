"""CF metadata of the product: variable and coordinate attributes, grid mapping, global attributes."""

from __future__ import annotations

import datetime

import numpy as np
import xarray as xr

import upscale
from upscale.variables import VARIABLES

CONVENTIONS = "CF-1.8"
GRID_MAPPING = "spatial_ref"


def product_variables(targets: list[str]) -> dict[str, dict]:
    """Attributes of each product variable: the ensemble mean and its total standard deviation."""
    out = {}
    for target in targets:
        var = VARIABLES[target]
        out[target] = {"standard_name": var.standard_name, "long_name": f"{var.long_name}, ensemble mean",
                       "units": var.units, "cell_methods": "time: mean", "grid_mapping": GRID_MAPPING,
                       "ancillary_variables": f"{target}_sd"}
        out[f"{target}_sd"] = {"standard_name": f"{var.standard_name} standard_error",
                               "long_name": f"{var.long_name}, total predictive standard deviation "
                                            "sqrt(mean of member variances + variance of member means)",
                               "units": var.units, "grid_mapping": GRID_MAPPING}
    return out


def product_coords(time: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> dict:
    """Coordinates with CF attributes, plus the EPSG:4326 grid mapping variable (via rioxarray)."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    coords = xr.Dataset(coords={
        "time": ("time", time, {"standard_name": "time", "long_name": "time", "axis": "T"}),
        "lat": ("lat", lat.astype("float64"), {"standard_name": "latitude", "long_name": "latitude",
                                              "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", lon.astype("float64"), {"standard_name": "longitude", "long_name": "longitude",
                                              "units": "degrees_east", "axis": "X"}),
    })
    coords = coords.rio.write_crs("EPSG:4326", grid_mapping_name=GRID_MAPPING)
    return {name: coords[name] for name in coords.coords}


def global_attrs(recipe, bundle_meta: dict) -> dict:
    """Global attributes: title, institution, source (model, bundle hash, version), history, recipe."""
    from upscale.recipe import dump_recipe

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Conventions": CONVENTIONS,
        "title": recipe.output.title,
        "institution": recipe.output.institution,
        "source": f"upscale {upscale.__version__}; model {bundle_meta['model']['type']} ensemble of "
                  f"{len(bundle_meta['members'])}; bundle {bundle_meta['hash']}",
        "history": f"{now}: created by upscale {upscale.__version__} (upscale run)",
        "references": "Jung et al. (2020), Biogeosciences 17, 1343-1365 (FLUXCOM); "
                      "Pastorello et al. (2020), Sci. Data 7, 225 (FLUXNET2015)",
        "recipe": dump_recipe(recipe),
        "training_sites": " ".join(bundle_meta.get("training_sites", [])),
    }
