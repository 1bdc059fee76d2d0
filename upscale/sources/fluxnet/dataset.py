"""The daily frames of the sites and their metadata assembled into the canonical (site, time) Dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from upscale.sources.fluxnet.columns import VARIABLE_ORDER
from upscale.variables import VARIABLES


def to_dataset(frames: dict[str, pd.DataFrame], meta: pd.DataFrame, columns: dict[str, str]) -> xr.Dataset:
    """One Dataset of all sites on the days from the first to the last of any site (NaN-padded).

    Parameters
    ----------
    frames : dict of str to pandas.DataFrame
        Site id -> its daily frame of the variables in :data:`VARIABLE_ORDER`.
    meta : pandas.DataFrame
        ``lat``, ``lon``, ``elevation`` and ``igbp`` of the sites, in the order of ``frames``.
    columns : dict of str to str
        Variable -> the ``source_column`` attribute it gets.

    Returns
    -------
    xarray.Dataset
        Float32 variables on dims ``(site, time)`` with canonical units and long names.
    """
    site_ids = list(frames)
    start = min(f.index[0] for f in frames.values())
    end = max(f.index[-1] for f in frames.values())
    time = pd.date_range(start, end, freq="D").as_unit("ns")
    data_vars = {}
    for name in VARIABLE_ORDER:
        values = np.stack([frames[s][name].reindex(time).to_numpy(dtype="float64") for s in site_ids])
        attrs = {"units": VARIABLES[name].units, "long_name": VARIABLES[name].long_name, "source_column": columns[name]}
        data_vars[name] = (("site", "time"), values.astype("float32"), attrs)
    coords = {
        "site": ("site", np.asarray(site_ids, dtype=str)),
        "time": ("time", time.to_numpy(dtype="datetime64[ns]")),
        "lat": ("site", meta["lat"].to_numpy(dtype="float64"), {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("site", meta["lon"].to_numpy(dtype="float64"), {"units": "degrees_east", "standard_name": "longitude"}),
        "elevation": (
            "site",
            meta["elevation"].to_numpy(dtype="float64"),
            {"units": "m", "long_name": "site elevation above sea level"},
        ),
        "igbp": ("site", np.asarray(meta["igbp"].tolist(), dtype=str), {"long_name": "IGBP land cover class"}),
    }
    return xr.Dataset(data_vars, coords=coords)
