"""Export a run's product to NetCDF4 or Zarr."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from upscale.errors import RunDirError
from upscale.store import Manifest


def export_product(run_dir: str | Path, fmt: str, output: str | Path | None = None) -> Path:
    """Write ``product.zarr`` of ``run_dir`` as NetCDF4 (zlib, chunked) or a Zarr copy; returns the path."""
    run_dir = Path(run_dir)
    product = run_dir / "product.zarr"
    if not product.exists():
        raise RunDirError("no product in the run directory", where=str(run_dir), fix="Run `upscale run` first")
    if not Manifest(run_dir / "manifest.json").stage_done("apply"):
        raise RunDirError("the product is unfinished (its apply stage has not completed)", where=str(product),
                          fix="Finish it with `upscale run` (it resumes) before exporting")
    if fmt not in ("netcdf", "zarr"):
        raise RunDirError(f"unknown export format {fmt!r}", where="--format", fix="Use netcdf or zarr")
    target = Path(output) if output else run_dir / ("product.nc" if fmt == "netcdf" else "export.zarr")
    if target.exists():
        raise RunDirError("the output exists", where=str(target), fix="Remove it or pass another --output")
    ds = xr.open_zarr(product)
    tmp = target.with_name(target.name + ".part")
    if fmt == "zarr":
        ds.to_zarr(tmp, mode="w")
        tmp.rename(target)
        return target
    encoding = {name: {"zlib": True, "complevel": 4, "chunksizes": tuple(
        min(c[0], s) for c, s in zip(ds[name].chunks, ds[name].shape))} for name in ds.data_vars}
    for name in ds.data_vars:
        ds[name].encoding = {}
    ds.to_netcdf(tmp, encoding=encoding, engine="netcdf4")
    tmp.rename(target)
    return target
