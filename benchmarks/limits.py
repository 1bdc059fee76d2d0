"""The two limits an apply is measured against, and a count of the input chunks it decompresses.

- :func:`raw_io`: every input chunk read and decompressed once with netCDF4 and zarr directly,
  converted to canonical units in numpy, and the product's arrays written with the product's own
  chunks and codecs (no xarray, no dask, no model);
- :func:`compute`: the block kernel (the ensemble's forward, the product parts, the flag) over the
  same land pixel-days from memory, time chunk by time chunk in the apply's batches;
- :class:`ChunkReads`: counts the chunks each read of the storage libraries touches (netCDF4
  through xarray's wrapper, zarr arrays directly), so that decompressed / distinct input bytes says
  how often each input byte is decompressed. HDF5's own chunk cache can serve a repeated chunk
  without decompressing it again; with chunks of a few MB and reads of a year it rarely does, so
  the count is an upper bound that is close.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ERA5_FIELDS = ("t2m", "d2m", "ssrd", "tp")  # what tas, vpd, rsds and pr are made of


class ChunkReads:
    """Count (array, chunk) touches of netCDF4 and zarr reads while active (a context manager)."""

    def __init__(self, exclude: str = "product.zarr"):
        self.counts: Counter = Counter()
        self.sizes: dict = {}
        self.exclude = exclude
        self._lock, self._local, self._undo = threading.Lock(), threading.local(), []

    def record(self, name: str, shape, chunks, itemsize: int, key) -> None:
        if self.exclude in name:
            return
        key = key if isinstance(key, tuple) else (key,)
        ranges = []
        for axis, (size, chunk) in enumerate(zip(shape, chunks)):
            k = key[axis] if axis < len(key) else slice(None)
            if isinstance(k, slice):
                start, stop, _ = k.indices(size)
            elif np.ndim(k) == 0:
                start, stop = int(k) % size, int(k) % size + 1
            else:
                idx = np.asarray(k).ravel()
                start, stop = (int(idx.min()), int(idx.max()) + 1) if idx.size else (0, 0)
            if stop <= start:
                return
            ranges.append(range(start // chunk, (stop - 1) // chunk + 1))
        nbytes = int(np.prod(chunks)) * itemsize
        with self._lock:
            for index in np.ndindex(*[len(r) for r in ranges]):
                chunk_id = (name, *(r[i] for r, i in zip(ranges, index)))
                self.counts[chunk_id] += 1
                self.sizes[chunk_id] = nbytes

    def figures(self) -> dict:
        """``decompressed_bytes``, ``input_bytes`` (distinct chunks) and their ratio."""
        decompressed = sum(self.sizes[c] * n for c, n in self.counts.items())
        distinct = sum(self.sizes.values())
        return {
            "decompressed_bytes": decompressed,
            "input_bytes": distinct,
            "decompressed_per_input": decompressed / distinct if distinct else float("nan"),
        }

    def __enter__(self):
        import xarray.backends.netCDF4_ as nc
        import zarr

        counter = self
        nc_getitem, zarr_getitem = nc.NetCDF4ArrayWrapper._getitem, zarr.Array.__getitem__

        def counted_nc(wrapper, key):
            var = wrapper.get_array(needs_lock=False)
            chunking = var.chunking()
            chunks = var.shape if chunking == "contiguous" else chunking
            counter.record(f"{wrapper.datastore._filename}:{var.name}", var.shape, chunks, var.dtype.itemsize, key)
            return nc_getitem(wrapper, key)

        def counted_zarr(array, key):
            if getattr(counter._local, "inside", False):
                return zarr_getitem(array, key)
            counter._local.inside = True
            try:
                counter.record(str(array.store_path), array.shape, array.chunks, array.dtype.itemsize, key)
                return zarr_getitem(array, key)
            finally:
                counter._local.inside = False

        nc.NetCDF4ArrayWrapper._getitem, zarr.Array.__getitem__ = counted_nc, counted_zarr
        self._undo = [(nc.NetCDF4ArrayWrapper, "_getitem", nc_getitem), (zarr.Array, "__getitem__", zarr_getitem)]
        return self

    def __exit__(self, *exc):
        for owner, name, original in self._undo:
            setattr(owner, name, original)


def raw_io(catalog_path: str, product: Path, time_chunk: int, tile: tuple[int, int]) -> dict:
    """Read every input chunk once, convert it in numpy, write the product's arrays; seconds and bytes."""
    import glob

    import netCDF4
    import zarr

    from upscale.cf import product_coords, product_variables
    from upscale.sources.catalog import cached_catalog
    from upscale.store import create_template, write_block
    from upscale.variables import vpd_from_dewpoint

    catalog = cached_catalog(catalog_path)
    t0, c0_cpu = time.perf_counter(), time.process_time()
    parts, days, read_bytes = [], [], 0
    for file in sorted(glob.glob(catalog.entry("era5").path)):
        with netCDF4.Dataset(file) as nc:
            nc.set_auto_mask(False)
            fields = [nc[f] for f in ERA5_FIELDS]
            days.append(np.asarray(nc["valid_time"][:], dtype="int64").astype("datetime64[s]"))
            lat, lon = nc["latitude"][::-1], nc["longitude"][:]
            step = fields[0].chunking()[0]
            for c0 in range(0, fields[0].shape[0], step):
                t2m, d2m, ssrd, tp = (f[c0 : c0 + step] for f in fields)
                read_bytes += 4 * t2m.nbytes
                tas = t2m - np.float32(273.15)
                converted = (tas, vpd_from_dewpoint(tas, d2m - np.float32(273.15)), ssrd / 86400.0, tp * 1000.0)
                order = np.argsort(np.where(lon > 180, lon - 360, lon), kind="stable")
                parts.append([c[:, ::-1][:, :, order].astype("float32") for c in converted])
    eo = zarr.open_group(catalog.entry("eo").path, mode="r")
    for name in ("fapar", "ndvi"):
        step = eo[name].chunks[0]
        for c0 in range(0, eo[name].shape[0], step):
            read_bytes += eo[name][c0 : c0 + step].nbytes
    read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0_cpu
    tas = np.concatenate([p[0] for p in parts])
    lon_c = np.sort(np.where(lon > 180, lon - 360, lon))
    coords = product_coords(np.concatenate(days).astype("datetime64[ns]"), lat, lon_c)
    variables = product_variables(["gpp", "et"])
    create_template(product, coords, variables, (time_chunk, *tile), {})
    t1, c1_cpu = time.perf_counter(), time.process_time()
    for c0 in range(0, tas.shape[0], time_chunk):
        for y0 in range(0, tas.shape[1], tile[0]):
            for x0 in range(0, tas.shape[2], tile[1]):
                region = (slice(c0, c0 + time_chunk), slice(y0, y0 + tile[0]), slice(x0, x0 + tile[1]))
                block = tas[region]
                arrays = {
                    n: block if "flag_values" not in a else np.zeros(block.shape, "int8") for n, a in variables.items()
                }
                write_block(product, arrays, *region)
    write_s, write_cpu = time.perf_counter() - t1, time.process_time() - c1_cpu
    figures = {"seconds": read_s + write_s, "cpu_s": read_cpu + write_cpu, "read_s": read_s, "write_s": write_s}
    return {**figures, "read_bytes": read_bytes, "grid": list(tas.shape[1:])}


def compute(
    run_dir: Path, time_chunk: int, tile_shape: tuple[int, int], device: str = "cpu", precision: str = "float32"
) -> dict:
    """The block kernel over the apply's land pixel-days from memory, in the apply's blocks and batches; seconds.

    On ``device`` (``cuda``: the apply's GPU batch, inputs copied to it and results back in the time).
    """
    import torch

    from upscale.apply import CPU_BATCH, GPU_BATCH, plan_tiles, predict_block
    from upscale.bundle import load_bundle
    from upscale.cf import product_units
    from upscale.encoding import encode_static
    from upscale.features import land_mask, open_predictors
    from upscale.recipe import load_recipe

    torch.set_num_threads(1)
    recipe = load_recipe(run_dir / "recipe.yaml")
    ensemble, spec, meta = load_bundle(run_dir / "bundle", device=device)
    ensemble.precision = precision
    batch = CPU_BATCH if device == "cpu" else GPU_BATCH
    dyn, stat = open_predictors(str(recipe.catalog), spec.dynamic, spec.static)
    values = dyn[spec.dynamic_names].to_array("f").transpose("lat", "lon", "time", "f").values.astype("float32")
    ny, nx, nt, _ = values.shape
    static = encode_static({v: stat[v].values.ravel() for _, v in spec.static}, spec, ny * nx)
    land = (land_mask(dyn.isel(time=slice(0, 1)), stat).ravel() & np.isfinite(static).all(axis=-1)).reshape(ny, nx)
    static = static.reshape(ny, nx, -1)
    factors = {t: product_units(t, recipe.output.units)[1] for t in meta["targets"]}
    if device != "cpu":  # CUDA context and cuDNN plans are made once per process, not per block: outside the time
        rows, cols = (i[:8] for i in np.nonzero(land))
        predict_block(ensemble, values[rows, cols, :time_chunk], static[rows, cols], batch, factors=factors)
    seconds = cpu = 0.0
    for tile in plan_tiles(ny, nx, *tile_shape):  # the apply's blocks: a tile's land pixels x a time chunk
        window = (slice(tile.lat0, tile.lat1), slice(tile.lon0, tile.lon1))
        mask = land[window]
        pixels, pixel_static = np.ascontiguousarray(values[window][mask]), static[window][mask]
        state, t0, c0_cpu = None, time.perf_counter(), time.process_time()
        for c0 in range(0, nt, time_chunk):
            _, state = predict_block(
                ensemble, pixels[:, c0 : c0 + time_chunk], pixel_static, batch, state,
                ranges=meta.get("predictor_ranges"), factors=factors,
            )  # fmt: skip
        seconds, cpu = seconds + time.perf_counter() - t0, cpu + time.process_time() - c0_cpu
    return {"seconds": seconds, "cpu_s": cpu, "land_pixels": int(land.sum()), "days": int(nt), "grid": [ny, nx]}
