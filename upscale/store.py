"""The output store and the run manifest: template first, chunk-aligned block writes, resume."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import dask.array as da
import numpy as np
import xarray as xr
import zarr

DIMS = ("time", "lat", "lon")


def create_template(path: str | Path, coords: dict, variables: dict[str, dict], chunks: tuple[int, int, int],
                    attrs: dict) -> None:
    """Create the product store: coordinates, bounds, attributes and empty arrays, no data written.

    Parameters
    ----------
    path : str or Path
        Zarr store to create (must not exist).
    coords : dict
        ``time``, ``lat``, ``lon`` values plus any extra coordinates (e.g. ``spatial_ref``); entries
        with a ``bnds`` dimension (``lat_bnds``, ...) are written as bounds variables.
    variables : dict
        Variable name -> attributes. Arrays are float32 filled with NaN, except flags (attributes
        with ``flag_values``), which take the dtype of their ``flag_values`` and the CF fill value.
    chunks : tuple of int
        (time, lat, lon) chunk sizes; tiles and time chunks align with them.
    attrs : dict
        Global attributes.
    """
    from upscale.cf import BOUNDS_DIM, encoding, fill_value

    shape = tuple(len(coords[d]) for d in DIMS)
    dtypes = {name: np.asarray(a["flag_values"]).dtype if "flag_values" in a else np.dtype("float32")
              for name, a in variables.items()}
    data_vars = {name: (DIMS, da.full(shape, fill_value(dtypes[name]), dtype=dtypes[name], chunks=chunks), a)
                 for name, a in variables.items()}
    bounds = {name: c for name, c in coords.items() if BOUNDS_DIM in getattr(c, "dims", ())}
    ds = xr.Dataset({**data_vars, **bounds}, coords={k: v for k, v in coords.items() if k not in bounds},
                    attrs=attrs)
    enc = encoding(ds)
    enc.update({name: {"chunks": chunks, "_FillValue": dtypes[name].type(fill_value(dtypes[name]))}
                for name in variables})
    ds.to_zarr(path, mode="w-", compute=False, encoding=enc)


def write_block(path: str | Path, arrays: dict[str, np.ndarray], time_slice: slice, lat_slice: slice,
                lon_slice: slice) -> None:
    """Write [t, y, x] blocks (or [y, x] blocks of time-less arrays) into the store's arrays.

    Regions must align with the store's chunks.
    """
    group = zarr.open_group(str(path), mode="r+")
    region = (time_slice, lat_slice, lon_slice)
    for name, values in arrays.items():
        group[name][region[-values.ndim:]] = values


def write_atomically(target: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``write(tmp)`` on ``<target>.part``, then rename it to ``target``: never a half-written output.

    A failed or interrupted ``write`` leaves no ``.part`` behind; with ``overwrite`` an existing
    ``target`` is replaced only once the new one is complete.
    """
    target = Path(target)
    tmp = target.with_name(target.name + ".part")
    _remove(tmp)
    try:
        write(tmp)
    except BaseException:
        _remove(tmp)
        raise
    if overwrite:
        _remove(target)
    tmp.rename(target)
    return target


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def finished_product(run_dir: str | Path) -> Path:
    """The ``product.zarr`` of ``run_dir``, refusing a missing or unfinished one (RunDirError)."""
    from upscale.errors import RunDirError

    run_dir = Path(run_dir)
    product = run_dir / "product.zarr"
    if not product.exists():
        raise RunDirError("no product in the run directory", where=str(run_dir), fix="Run `upscale run` first")
    if not Manifest(run_dir / "manifest.json").stage_done("apply"):
        raise RunDirError("the product is unfinished (its apply stage has not completed)", where=str(product),
                          fix="Finish it with `upscale run` (it resumes) before using it")
    return product


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
        if "explain" in names:  # its methods and sensitivity tiles
            self.data.pop("explain", None)
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
