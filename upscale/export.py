"""Export a run's product to NetCDF4 or Zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

import upscale
from upscale import cf
from upscale.cf import append_history
from upscale.errors import RunDirError
from upscale.rundir import RunDir
from upscale.store import write_atomically


def export_product(run_dir: str | Path, fmt: str, output: str | Path | None = None) -> Path:
    """Write ``product.zarr`` of ``run_dir`` as NetCDF4 (zlib, chunked) or a Zarr copy; returns the path."""
    files = RunDir(run_dir)
    product = files.finished_product()
    if fmt not in ("netcdf", "zarr"):
        raise RunDirError(f"unknown export format {fmt!r}", where="--format", fix="Use netcdf or zarr")
    target = Path(output) if output else files.export(fmt)
    if target.exists():
        raise RunDirError("the output exists", where=str(target), fix="Remove it or pass another --output")
    if not target.parent.is_dir():
        raise RunDirError(
            "the folder of the output does not exist"
            if not target.parent.exists()
            else "the output's parent is a file",
            where=str(target.parent),
            fix="Create the folder first, or pass an --output inside an existing folder",
        )
    ds = xr.open_zarr(product)
    ds.attrs = append_history(ds.attrs, f"exported to {fmt} by upscale {upscale.__version__} (upscale export)")
    return write_atomically(target, lambda tmp: write_store(ds, tmp, fmt))


def write_store(ds: xr.Dataset, path: Path, fmt: str) -> None:
    """Write ``ds`` (opened from a Zarr store) with CF-safe encodings; NetCDF4 zlib-compressed in its chunks."""
    encoding = netcdf_encoding(ds) if fmt == "netcdf" else cf.encoding(ds)
    for name in ds.variables:  # the stored encodings are the source's; a variable's own coordinates stay
        ds[name].encoding = {k: v for k, v in ds[name].encoding.items() if k == "coordinates"}
        attrs = ds.variables[name].attrs
        for key in ("valid_min", "valid_max", "valid_range"):  # CF: of the variable's type (JSON kept no type)
            if key in attrs:
                attrs[key] = np.asarray(attrs[key], dtype=ds.variables[name].dtype)
    if fmt == "zarr":
        ds.to_zarr(path, mode="w-", encoding=encoding)
    else:
        ds.to_netcdf(path, encoding=encoding, engine="netcdf4", format="NETCDF4")


def netcdf_encoding(ds: xr.Dataset) -> dict:
    """NetCDF4 encodings: :func:`upscale.cf.encoding` plus zlib level 4 and the Zarr chunks of each array."""
    encoding = cf.encoding(ds)
    for name, var in ds.data_vars.items():
        chunks = tuple(c[0] for c in var.chunks) if var.chunks else var.shape
        encoding[name] = {
            **encoding.get(name, {}),
            "zlib": True,
            "complevel": 4,
            "shuffle": True,
            "chunksizes": tuple(min(c, s) for c, s in zip(chunks, var.shape)),
        }
    return encoding
