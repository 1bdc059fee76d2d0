"""The prepared cube: the apply's predictors read once and rechunked like its tiles, in canonical units.

CDS delivers ERA5 in chunks of (31 days, whole globe) and EO cubes often come in (year, whole
globe) chunks, so every spatial tile of a direct apply decompresses whole-globe chunks again: with
9 tiles the meteorology is read 9 times, with hundreds of tiles hundreds of times.
:func:`prepare_cube` reads the catalog's inputs once, converts them (the same readers as a direct
read: the values are identical), and writes them into a Zarr store chunked (time_chunk, tile_lat,
tile_lon) over the apply domain, so that each tile reads exactly one chunk per variable and time
chunk, with zarr and numpy only.

The cube records the key of what it was made from (:func:`cube_key`: the catalog, the sizes and
modification times of its input files, the predictors, the domain and the chunks); apply refuses a
cube whose key differs (:func:`open_cube`). It is written block by block (whole time chunks, or
bands of tile rows where a time chunk of the domain exceeds ``max_mem``) and records the blocks it
finished, so an interrupted ``upscale prepare`` resumes; later runs over the same inputs
and domain reuse it.

``rechunker`` (the field's library for this) pins zarr < 3, which the product store needs; the
rechunking here is a dask compute per block, whose graph shares every source chunk among the
variables and tiles that need it, with memory bounded by ``max_mem``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from upscale.errors import DataError

KEY_ATTR = "upscale_prepared_key"
BLOCKS_ATTR = "upscale_prepared_blocks"
COMPLETE_ATTR = "upscale_prepared_complete"
#: Bytes of converted predictors one block of :func:`prepare_cube` may hold in memory.
MAX_MEM = 2 << 30


def input_fingerprint(catalog_path: str, entries: list[str]) -> list:
    """(path, size, mtime_ns) of every file under the catalog entries (and of the catalog itself).

    Remote paths (URLs) enter by name only.
    """
    from upscale.sources.catalog import cached_catalog

    catalog = cached_catalog(catalog_path)
    found = [_stat(Path(catalog_path))]
    for name in sorted(set(entries)):
        path = catalog.entry(name).path
        if "://" in path:
            found.append((path, None, None))
            continue
        for match in sorted(Path("/").glob(str(Path(path).expanduser().absolute()).lstrip("/"))):
            files = sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() else [match]
            found.extend(_stat(f) for f in files)
    return found


def _stat(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def cube_key(catalog_path: str, dynamic, static, index, chunks) -> str:
    """The hash of what a prepared cube is made from (see the module docstring)."""
    pairs = sorted(map(tuple, [*dynamic, *static]))
    what = {
        "inputs": input_fingerprint(catalog_path, [entry for entry, _ in pairs]),
        "predictors": pairs,
        "index": [list(map(int, axis)) for axis in index],
        "chunks": list(map(int, chunks)),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def default_path(key: str) -> Path:
    """Where a cube of ``key`` lives when the recipe names none: ``$UPSCALE_CACHE/prepared/<key>.zarr``."""
    cache = os.environ.get("UPSCALE_CACHE") or Path.home() / ".cache" / "upscale"
    return Path(cache).expanduser().absolute() / "prepared" / f"{key[:20]}.zarr"


def prepare_cube(
    catalog_path: str, dynamic, static, index, chunks, path, max_mem: int = MAX_MEM, client_factory=None
) -> dict:
    """Write (or finish) the prepared cube of these predictors over ``index`` at ``path``.

    Parameters
    ----------
    catalog_path : str
        The catalog.
    dynamic, static : list of (entry, variable)
        The predictors.
    index : ((t0, t1), (y0, y1), (x0, x1))
        The apply domain in the predictors' axes.
    chunks : (time_chunk, tile_lat, tile_lon)
        The apply's time chunk and tile: the cube's chunks.
    path : str or Path
        The Zarr store; a cube of another key there is replaced, anything else there refused.
    max_mem : int
        Bytes of converted values one block may hold (in each worker, with a ``client``).
    client_factory : callable, optional
        Returns a Dask client to write the blocks on as tasks, one block a task; called only when
        more than one block is left to write (None, or returning None: one after another here).
        Blocks never share a chunk, so the tasks write side by side; this process records each as it
        ends. The caller closes the client.

    Returns
    -------
    dict
        ``path``, ``key``, ``blocks`` (blocks written now) and ``reused_blocks``.
    """
    import zarr

    # absolute: the block tasks open it on workers, whose working directory may be another
    path, key = Path(path).expanduser().absolute(), cube_key(catalog_path, dynamic, static, index, chunks)
    group = _existing(path, key)
    dyn, stat = _domain(catalog_path, dynamic, static, index)
    (t0, t1), (y0, y1), (x0, x1) = index
    if group is None:
        _template(path, dyn, stat, chunks, key)
        group = zarr.open_group(str(path), mode="r+")
        for name in stat.data_vars:
            group[name][...] = np.asarray(stat[name].values, dtype=group[name].dtype)
    blocks = cube_blocks(t1 - t0, y1 - y0, chunks[:2], 4 * len(dynamic) * (x1 - x0), max_mem)
    done = _finished_blocks(group.attrs.get(BLOCKS_ATTR, []), blocks)
    todo = [block for block in blocks if block not in done]
    client = client_factory() if client_factory is not None and len(todo) > 1 else None
    for block in _written(todo, group, dyn, (catalog_path, dynamic, static, index, str(path)), client):
        done.add(block)
        group.attrs[BLOCKS_ATTR] = sorted(map(list, done))
    group.attrs[COMPLETE_ATTR] = "true"
    written = len(todo)
    return {"path": str(path), "key": key, "blocks": written, "reused_blocks": len(blocks) - written}


def cube_blocks(
    n_days: int, n_rows: int, chunks: tuple[int, int], bytes_per_row_day: int, max_mem: int
) -> list[tuple[int, int, int, int]]:
    """(start, stop, row0, row1) blocks of the cube that each hold at most ``max_mem`` bytes.

    Whole time chunks of the whole domain while one time chunk fits; otherwise one time chunk of
    bands of whole tile rows, as many rows as fit (at least one tile row). Every block is aligned to
    the cube's chunks ``(time_chunk, tile_lat)``, so no two blocks write into one chunk. A band reads
    the whole-globe source chunks of its days again: the price of bounded memory.
    """
    time_chunk, tile_lat = chunks
    chunk_bytes = time_chunk * bytes_per_row_day * n_rows
    if chunk_bytes <= max_mem:
        per_block = time_chunk * max(1, max_mem // max(1, chunk_bytes))
        return [(s, min(s + per_block, n_days), 0, n_rows) for s in range(0, n_days, per_block)]
    rows = tile_lat * max(1, max_mem // max(1, time_chunk * bytes_per_row_day * tile_lat))
    return [
        (s, min(s + time_chunk, n_days), r, min(r + rows, n_rows))
        for s in range(0, n_days, time_chunk)
        for r in range(0, n_rows, rows)
    ]


def _finished_blocks(recorded: list, blocks: list[tuple[int, int, int, int]]) -> set[tuple[int, int, int, int]]:
    """The planned ``blocks`` that the cube's record says are written.

    A block counts only where its whole extent (start, stop, row0, row1) was recorded, so a resume
    with another ``max_mem`` (another layout) rewrites what it cannot prove written. Cubes of earlier
    versions recorded the start day of whole-domain time blocks: those still count for such blocks.
    """
    exact = {tuple(b) for b in recorded if isinstance(b, list) and len(b) == 4}
    starts = {b for b in recorded if isinstance(b, int)}
    n_rows = max((b[3] for b in blocks), default=0)
    return {b for b in blocks if b in exact or (b[0] in starts and b[2:] == (0, n_rows))}


def _domain(catalog_path: str, dynamic, static, index):
    """The dynamic and static predictors over the domain ``index`` (lazy)."""
    from upscale.features import open_predictors

    dyn, stat = open_predictors(catalog_path, list(map(tuple, dynamic)), list(map(tuple, static)))
    (t0, t1), (y0, y1), (x0, x1) = index
    dyn = dyn[[v for _, v in dynamic]].isel(time=slice(t0, t1), lat=slice(y0, y1), lon=slice(x0, x1))
    return dyn, stat[[v for _, v in static]].isel(lat=slice(y0, y1), lon=slice(x0, x1))


def _written(todo: list, group, dyn, source: tuple, client):
    """Write the ``todo`` blocks, here into ``group`` in turn or as tasks on ``client`` (each opening
    ``source``: catalog, predictors, index, cube path); yield each once it is written."""
    if client is None:
        for block in todo:
            _write_block(group, dyn, *block)
            yield block
        return
    from distributed import as_completed

    futures = [client.submit(_block_task, *source, block, pure=False) for block in todo]
    failed = None  # every block that finishes is recorded before the first failure is raised
    for future in as_completed(futures):
        if future.status == "error":
            failed = failed or future
            continue
        yield future.result()
    if failed is not None:
        failed.result()


def _block_task(catalog_path: str, dynamic, static, index, path: str, block: tuple) -> tuple:
    """One block on a worker: its own reading of the inputs, its own chunks of the cube."""
    import zarr

    _write_block(zarr.open_group(path, mode="r+"), _domain(catalog_path, dynamic, static, index)[0], *block)
    return block


def _write_block(group, dyn, start: int, stop: int, row0: int, row1: int) -> None:
    """Compute days [start, stop) and rows [row0, row1) of every dynamic predictor in one dask graph and write them."""
    import dask

    names = list(dyn.data_vars)
    window = dict(time=slice(start, stop), lat=slice(row0, row1))
    with dask.config.set(scheduler="synchronous"):
        values = dask.compute(*[dyn[n].isel(**window).data for n in names])
    for name, block in zip(names, values):
        group[name][start:stop, row0:row1] = np.asarray(block, dtype=group[name].dtype)


def _existing(path: Path, key: str):
    """The group of an unfinished or finished cube of ``key`` at ``path``; None once nothing is there."""
    import zarr

    if not path.exists():
        return None
    try:
        group = zarr.open_group(str(path), mode="r+")
        old = group.attrs.get(KEY_ATTR)
    except Exception:  # noqa: BLE001 -- not a zarr group at all
        old = None
    if old is None:
        raise DataError(
            "the path holds something that is not a prepared cube",
            where=str(path),
            fix="Choose another apply.prepared path, or remove what is there",
        )
    if old == key:
        return group
    shutil.rmtree(path)  # a cube of other inputs, domain or chunks: made again
    return None


def _template(path: Path, dyn, stat, chunks, key: str) -> None:
    """The CF-described empty cube: coordinates, attributes, float32 arrays chunked like the tiles."""
    import dask.array as da
    import xarray as xr

    time_chunk, tile_lat, tile_lon = chunks
    data = {}
    for name, src in [*dyn.data_vars.items(), *stat.data_vars.items()]:
        shape = tuple(src.sizes[d] for d in src.dims)
        sizes = {"time": time_chunk, "lat": tile_lat, "lon": tile_lon}
        fill = np.nan if src.dtype.kind == "f" else 0
        data[name] = (src.dims, da.full(shape, fill, dtype=src.dtype, chunks=[sizes[d] for d in src.dims]), src.attrs)
    coords = {c: dyn[c] if c in dyn.coords else stat[c] for c in ("time", "lat", "lon")}
    attrs = {
        "title": "upscale prepared predictors (canonical units, chunked like the apply tiles)",
        "Conventions": "CF-1.8",
        KEY_ATTR: key,
        COMPLETE_ATTR: "false",
    }
    ds = xr.Dataset(data, coords={c: (c, v.values, v.attrs) for c, v in coords.items()}, attrs=attrs)
    encoding = {n: {"chunks": tuple(c[0] for c in ds[n].data.chunks)} for n in data}
    for name in data:
        if ds[name].dtype.kind == "f":
            encoding[name]["_FillValue"] = ds[name].dtype.type(np.nan)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_zarr(str(path), mode="w-", compute=False, encoding=encoding, consolidated=False)


@functools.lru_cache(maxsize=8)
def open_cube(path: str, key: str):
    """The finished prepared cube at ``path`` as a read-only zarr group, refusing a stale or unfinished one.

    Raises
    ------
    upscale.errors.DataError
        No cube there, a cube of other inputs (its key differs) or an unfinished one.
    """
    import zarr

    fix = "Run `upscale prepare RECIPE` (it makes the cube again from the current inputs)"
    try:
        group = zarr.open_group(path, mode="r")
    except Exception:  # noqa: BLE001 -- zarr raises several kinds for a missing or broken store
        raise DataError("no prepared cube at the path", where=path, fix=fix) from None
    if group.attrs.get(KEY_ATTR) != key:
        raise DataError(
            "the prepared cube was made from other inputs, predictors, domain or chunks (it is stale)",
            where=path,
            fix=fix,
        )
    if group.attrs.get(COMPLETE_ATTR) != "true":
        raise DataError("the prepared cube is unfinished", where=path, fix=fix)
    return group


def resolve_cube(prepared: str | None, catalog_path: str, spec, index, apply) -> tuple[str, str] | None:
    """The (path, key) of the prepared cube an apply reads, or None to read the catalog directly.

    Parameters
    ----------
    prepared : str or None
        The recipe's ``apply.prepared``: that cube must be there and current. None: the cache's cube
        of these inputs and domain is read when ``upscale prepare`` made one.
    catalog_path, spec, index
        The catalog, the bundle's feature spec and the apply domain.
    apply : upscale.recipe.sections.Apply
        The recipe's apply section (its time chunk and tile are the cube's chunks).

    Raises
    ------
    upscale.errors.DataError
        ``prepared`` names a missing, stale or unfinished cube.
    """
    chunks = (apply.time_chunk, apply.tile_lat, apply.tile_lon)
    key = cube_key(catalog_path, spec.dynamic, spec.static, index, chunks)
    path = Path(prepared).expanduser().absolute() if prepared else default_path(key)
    if not prepared and not path.exists():
        return None
    open_cube(str(path), key)
    return str(path), key
