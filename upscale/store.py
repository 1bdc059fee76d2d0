"""The output store and the run manifest: template first, chunk-aligned block writes, resume."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr

DIMS = ("time", "lat", "lon")


def create_template(path: str | Path, coords: dict, variables: dict[str, dict], chunks: tuple[int, int, int],
                    attrs: dict) -> None:
    """Create the product store: coordinates, attributes and empty (NaN) float32 arrays, no data written.

    Parameters
    ----------
    path : str or Path
        Zarr store to create (must not exist).
    coords : dict
        ``time``, ``lat``, ``lon`` values plus any extra coordinates (e.g. ``spatial_ref``).
    variables : dict
        Variable name -> attributes.
    chunks : tuple of int
        (time, lat, lon) chunk sizes; tiles and time chunks align with them.
    attrs : dict
        Global attributes.
    """
    shape = tuple(len(coords[d]) for d in DIMS)
    data_vars = {name: (DIMS, da.full(shape, np.nan, dtype="float32", chunks=chunks), var_attrs)
                 for name, var_attrs in variables.items()}
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    encoding = {name: {"chunks": chunks, "_FillValue": np.float32(np.nan)} for name in variables}
    ds.to_zarr(path, mode="w-", compute=False, encoding=encoding)


def write_block(path: str | Path, arrays: dict[str, np.ndarray], time_slice: slice, lat_slice: slice,
                lon_slice: slice) -> None:
    """Write [t, y, x] blocks into the store's arrays (regions must align with its chunks)."""
    group = zarr.open_group(str(path), mode="r+")
    for name, values in arrays.items():
        group[name][time_slice, lat_slice, lon_slice] = values


class Manifest:
    """``manifest.json``: finished stages (with timings) and finished apply tiles.

    Every update is written atomically (temporary file + rename), so a killed run
    leaves either the old or the new manifest, never a torn one.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"stages": {}, "tiles": []}

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)

    def stage_done(self, name: str) -> bool:
        return name in self.data["stages"]

    def finish_stage(self, name: str, seconds: float, **info) -> None:
        self.data["stages"][name] = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(seconds, 2),
                                     **info}
        self.save()

    def reset_stages(self, *names: str) -> None:
        for name in names:
            self.data["stages"].pop(name, None)
        if "apply" in names:
            self.data["tiles"] = []
        self.save()

    @property
    def tiles(self) -> set[str]:
        return set(self.data["tiles"])

    def add_tile(self, tile_id: str) -> None:
        self.data["tiles"].append(tile_id)
        self.save()

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def get(self, key: str, default=None):
        return self.data.get(key, default)
