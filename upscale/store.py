"""The output store: template first, then chunk-aligned block writes; atomic outputs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from upscale.outputs import COMPLETE_ATTR

DIMS = ("time", "lat", "lon")


def create_template(
    path: str | Path, coords: dict, variables: dict[str, dict], chunks: tuple[int, int, int], attrs: dict
) -> None:
    """Create the product store: coordinates, bounds, attributes and empty arrays, no data written.

    The store is marked unfinished (global attribute ``upscale_complete = "false"``) until
    :func:`mark_complete` says otherwise.

    Parameters
    ----------
    path : str or Path
        Zarr store to create (must not exist).
    coords : dict
        ``time``, ``lat``, ``lon`` values plus any extra coordinates (e.g. ``spatial_ref``); entries
        with a ``bnds`` dimension (``lat_bnds``, ...) are written as bounds variables.
    variables : dict
        Variable name -> attributes. Arrays are float32 filled with NaN (their ``_FillValue``), except
        flags (attributes with ``flag_values``): those take the dtype of their ``flag_values`` and are
        filled with :data:`upscale.outputs.FLAG_FILL`, one of those values, with no ``_FillValue``.
    chunks : tuple of int
        (time, lat, lon) chunk sizes; tiles and time chunks align with them.
    attrs : dict
        Global attributes.
    """
    from upscale.cf import BOUNDS_DIM, encoding
    from upscale.outputs import fill_value

    shape = tuple(len(coords[d]) for d in DIMS)
    dtypes = {
        name: np.asarray(a["flag_values"]).dtype if "flag_values" in a else np.dtype("float32")
        for name, a in variables.items()
    }
    # one dask chunk per array: nothing is computed (compute=False), and a graph of one task per
    # zarr chunk took minutes at 0.05 degree (benchmarks/plan.py); the zarr chunks are the encoding's
    data_vars = {
        name: (DIMS, da.full(shape, fill_value(dtypes[name]), dtype=dtypes[name], chunks=shape), a)
        for name, a in variables.items()
    }
    bounds = {name: c for name, c in coords.items() if BOUNDS_DIM in getattr(c, "dims", ())}
    attrs = {**attrs, COMPLETE_ATTR: "false"}
    ds = xr.Dataset({**data_vars, **bounds}, coords={k: v for k, v in coords.items() if k not in bounds}, attrs=attrs)
    enc = encoding(ds)
    for name, dtype in dtypes.items():
        fill = dtype.type(fill_value(dtype))
        # zarr's fill_value is what an unwritten chunk reads as; a flag's is one of its flag_values
        enc[name] = (
            {"chunks": chunks, "_FillValue": fill}
            if dtype.kind == "f"
            else {**enc[name], "chunks": chunks, "fill_value": fill}
        )
    ds.to_zarr(path, mode="w-", compute=False, encoding=enc)


def mark_complete(path: str | Path, complete: bool = True) -> None:
    """Set the store's ``upscale_complete`` attribute: ``"true"`` once every tile is written, else ``"false"``."""
    zarr.open_group(str(path), mode="r+").attrs[COMPLETE_ATTR] = "true" if complete else "false"


def write_block(
    path: str | Path, arrays: dict[str, np.ndarray], time_slice: slice, lat_slice: slice, lon_slice: slice
) -> None:
    """Write [t, y, x] blocks (or [y, x] blocks of time-less arrays) into the store's arrays.

    Raises
    ------
    ValueError
        If a region is not aligned with the array's chunks (each start on a chunk boundary, each
        stop on one or at the array's end): two writers of one chunk would race and lose data.
    """
    group = zarr.open_group(str(path), mode="r+")
    region = (time_slice, lat_slice, lon_slice)
    for name, values in arrays.items():
        array = group[name]
        sub = region[-values.ndim :]
        check_aligned(name, sub, array.shape, array.chunks)
        array[sub] = values


def check_aligned(name: str, region: tuple[slice, ...], shape: tuple[int, ...], chunks: tuple[int, ...]) -> None:
    """Refuse a region of an array that does not start and stop on its chunk boundaries (see :func:`write_block`)."""
    for axis, (sl, size, chunk) in enumerate(zip(region, shape, chunks)):
        start, stop, step = sl.indices(size)
        if step != 1 or start % chunk or (stop % chunk and stop != size):
            raise ValueError(
                f"the region {start}:{stop} of axis {axis} of {name!r} is not aligned with its chunks "
                f"of {chunk} (array length {size}); write whole chunks"
            )


def write_atomically(target: str | Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``write(tmp)`` on ``<target>.part``, then rename it to ``target``: never a half-written output.

    A failed or interrupted ``write`` leaves no ``.part`` behind; with ``overwrite`` an existing
    ``target`` is replaced only once the new one is complete, without it an existing ``target`` is
    refused (FileExistsError) before anything is written.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
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
