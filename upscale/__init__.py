"""upscale: train land-flux models on flux towers and upscale them over global cubes."""

__version__ = "0.1.0"

import warnings as _warnings

# xarray writes consolidated metadata to Zarr v3 stores (which xarray itself reads); zarr warns
# that other implementations may not read it, which is noise for every user of the product.
_warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", module="zarr")
