"""Apply a trained bundle over the grid: a pure block kernel and the tile wiring around it.

The kernel (:func:`predict_block`) takes numpy arrays and an ensemble and returns numpy
arrays; it knows nothing of xarray or Dask. :func:`run_tile` reads one spatial tile's
inputs time chunk by time chunk, calls the kernel and writes chunk-aligned blocks into
the product store; :func:`run_tiles` does that for several tiles in one pipeline. :func:`apply_tiles`
submits one task per tile to a Dask client (in-process, it streams the tiles through :func:`run_tiles`);
tasks carry paths and the bundle hash, never weights, and each worker loads a bundle once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from upscale.devices import resolve_device
from upscale.encoding import encode_static
from upscale.features import land_mask_arrays, open_predictors
from upscale.outputs import FLAG_NAME, fill_value, target_outputs
from upscale.store import write_block


@dataclass(frozen=True)
class Tile:
    """A spatial tile: index ranges into the product grid."""

    lat0: int
    lat1: int
    lon0: int
    lon1: int

    @property
    def id(self) -> str:
        return f"{self.lat0}-{self.lat1}_{self.lon0}-{self.lon1}"


@dataclass(frozen=True, kw_only=True)
class ApplyJob:
    """Everything a worker needs for any tile, computed once by the driver: no arrays or weights.

    Attributes
    ----------
    catalog_path, dynamic, static
        Where the predictors are and which (catalog entry, variable) pairs feed the model.
    bundle_dir, bundle_hash
        The trained bundle; workers load it once per process and check its hash.
    store_path
        The product store the tiles write into.
    time_index, lat_offset, lon_offset
        [start, stop) into the predictors' time axis; the product grid's first row and column
        in the predictors' grid.
    time_chunk, batch_size
        Days per output chunk; pixel-days per forward pass (None: chosen for the worker's device).
    torch_threads, device, precision
        How a worker runs the kernel.
    factors
        (target, multiplier) pairs from canonical into product units.
    ranges
        The bundle's training predictor ranges (None: no extrapolation flag is written).
    parameters
        Process parameters of a hybrid model to write as maps.
    quantiles
        Quantile levels of the predictive mixture to write (``output.quantiles``).
    prepared
        (path, key) of the prepared cube the tiles read (:mod:`upscale.prepared`); None: the catalog.
    overlap
        Read the next time chunk and write the previous one while the kernel runs (False: one after
        another; the product is the same byte for byte).
    """

    catalog_path: str
    dynamic: tuple
    static: tuple
    bundle_dir: str
    bundle_hash: str
    store_path: str
    time_index: tuple[int, int]
    lat_offset: int
    lon_offset: int
    time_chunk: int
    batch_size: int | None = None
    torch_threads: int = 1
    device: str = "auto"
    precision: str = "float32"
    factors: tuple[tuple[str, float], ...] = ()
    ranges: dict | None = field(default=None, compare=False)
    parameters: tuple[str, ...] = ()
    quantiles: tuple[float, ...] = ()
    prepared: tuple[str, str] | None = None
    overlap: bool = True

    def kernel_options(self) -> dict:
        """The keyword arguments of :func:`predict_block` this job fixes."""
        return {
            "ranges": self.ranges,
            "factors": dict(self.factors),
            "parameters": self.parameters,
            "quantiles": self.quantiles,
        }


def plan_tiles(n_lat: int, n_lon: int, tile_lat: int, tile_lon: int) -> list[Tile]:
    """Cut an n_lat x n_lon grid into tiles of at most tile_lat x tile_lon cells, row-major."""
    return [
        Tile(i, min(i + tile_lat, n_lat), j, min(j + tile_lon, n_lon))
        for i in range(0, n_lat, tile_lat)
        for j in range(0, n_lon, tile_lon)
    ]


def predict_block(
    ensemble,
    dynamic: np.ndarray,
    static: np.ndarray,
    batch_size: int,
    state=None,
    ranges: dict | None = None,
    factors: dict[str, float] | None = None,
    parameters: tuple[str, ...] = (),
    quantiles: tuple[float, ...] = (),
):
    """The block kernel: predictors of P pixels x T days -> product arrays [P, T], and the model state.

    Parameters
    ----------
    ensemble : upscale.ensemble.Ensemble
        The trained members.
    dynamic : numpy.ndarray
        [P, T, Fd] canonical-unit predictors.
    static : numpy.ndarray
        [P, Fs] encoded static predictors.
    batch_size : int
        Pixel-days per forward pass.
    state : optional
        What the previous time chunk of the same pixels returned (None: start of the series).
    ranges : dict, optional
        Training predictor ranges (bundle ``predictor_ranges``); with them the kernel also
        returns the extrapolation flag.
    factors : dict, optional
        Target -> multiplier from canonical into product units (default 1).
    parameters : tuple of str
        Process parameters of a hybrid model to return as well (ensemble means, float32 [P, T]).
    quantiles : tuple of float
        Quantile levels of the predictive mixture to return as ``<target>_qNN``.

    Returns
    -------
    (dict, state)
        float32 [P, T]: ``<target>`` (ensemble mean), ``<target>_sd`` (total predictive sd),
        ``<target>_sd_epistemic``, ``<target>_sd_aleatoric`` and the quantiles; with ``ranges``, int8
        ``extrapolation`` (see :func:`upscale.cf.extrapolation_flag`). Then the state to hand to
        the next time chunk (None for models without memory).
    """
    from upscale.cf import extrapolation_flag

    out = {}
    predictions, state = ensemble.predict_chunk(
        dynamic, static, state, batch_size=batch_size, parameters=tuple(parameters)
    )
    for name in parameters:
        out[name] = predictions.pop(name).mean.astype("float32")
    for target, pred in predictions.items():
        factor = np.float32((factors or {}).get(target, 1.0))
        parts = pred.parts(quantiles)
        for variable in target_outputs(quantiles):
            out[variable.name(target)] = parts[variable.part].astype(variable.dtype) * factor
    if ranges is not None:
        out[FLAG_NAME] = extrapolation_flag(dynamic, static, ranges)
    return out, state


_BUNDLE_LOCK = threading.Lock()


CPU_BATCH, GPU_BATCH = 32768, 1 << 22  # pixel-days: cache-sized on CPU, large enough to fill a GPU


@functools.lru_cache(maxsize=4)
def _cached_bundle(bundle_dir: str, bundle_hash: str, device: str = "cpu", precision: str = "float32"):
    from upscale.bundle import load_bundle
    from upscale.errors import BundleError

    ensemble, spec, meta = load_bundle(bundle_dir, device=device)
    ensemble.precision = precision
    if meta["hash"] != bundle_hash:
        raise BundleError(
            f"bundle hash {meta['hash']} differs from the one the apply was planned with ({bundle_hash})",
            where=bundle_dir,
            fix="Re-run `upscale apply`",
        )
    return ensemble, spec


def worker_bundle(bundle_dir: str, bundle_hash: str, device: str = "auto", precision: str = "float32"):
    """The bundle loaded once per process (keyed by its hash) on this worker's device."""
    with _BUNDLE_LOCK:
        return _cached_bundle(bundle_dir, bundle_hash, resolve_device(device), precision)


@functools.lru_cache(maxsize=4)
def _inputs(catalog_path: str, dynamic: tuple, static: tuple):
    return open_predictors(catalog_path, list(dynamic), list(static))


def run_tile(job: ApplyJob, tile: Tile) -> str:
    """Predict one tile over the whole period, time chunk by time chunk, and write it; returns the tile id."""
    (tile_id,) = run_tiles(job, [tile])  # runs the generator to its end: its pool and dask config closed
    return tile_id


def run_tiles(job: ApplyJob, tiles: Iterable[Tile]) -> Iterator[str]:
    """Predict and write ``tiles`` in turn, yielding each tile's id once all its time chunks are written.

    With ``job.overlap`` one pipeline runs through all of them: the next tile's first time chunk
    is read while this tile's last one is predicted, and written while the next is predicted. Tile
    by tile, a tile of two time chunks would leave half of its reading and writing outside the overlap.
    """
    import dask
    import torch

    torch.set_num_threads(job.torch_threads)
    with dask.config.set(scheduler="synchronous"):  # read in this task; no round trip to the scheduler
        yield from _run_tiles(job, list(tiles))


class _Step(NamedTuple):
    """One time chunk [c0, c1) of one tile, and whether it is the tile's first and last."""

    tile: Tile
    c0: int
    c1: int
    first: bool
    last: bool


def _steps(job: ApplyJob, tiles: list[Tile]) -> list[_Step]:
    spans = time_spans(job)
    n = len(spans)
    return [_Step(tile, c0, c1, k == 0, k == n - 1) for tile in tiles for k, (c0, c1) in enumerate(spans)]


def _run_tiles(job: ApplyJob, tiles: list[Tile]) -> Iterator[str]:
    ensemble, spec = worker_bundle(job.bundle_dir, job.bundle_hash, job.device, job.precision)
    batch_size = job.batch_size or (GPU_BATCH if ensemble.device != "cpu" else CPU_BATCH)
    options = job.kernel_options()
    opened: list[TileInputs] = []  # the tile being read; steps are read one after another, in order
    state = None  # the model state, handed from a tile's time chunk to its next

    def read(step: _Step):
        if step.first:
            opened[:] = [open_tile(job, step.tile, spec)]
        return opened[0], opened[0].read(step.c0, step.c1)

    def predict(step: _Step, read_values):
        nonlocal state
        inputs, values = read_values
        # all-ocean tiles run the kernel on zero pixels: the same names, dtypes and fill values
        predicted, state = predict_block(
            ensemble, values, inputs.static, batch_size, None if step.first else state, **options
        )
        return inputs, predicted

    def write(step: _Step, predicted_values) -> str | None:
        inputs, predicted = predicted_values
        arrays = {name: inputs.to_grid(pred) for name, pred in predicted.items()}
        region = slice(step.c0 - job.time_index[0], step.c1 - job.time_index[0])
        tile = step.tile
        write_block(job.store_path, arrays, region, slice(tile.lat0, tile.lat1), slice(tile.lon0, tile.lon1))
        return tile.id if step.last else None

    if not time_spans(job):
        yield from (tile.id for tile in tiles)
        return
    steps = _steps(job, tiles)
    done = (pipelined if job.overlap else sequential)(steps, read, predict, write)
    yield from (tile_id for tile_id in done if tile_id is not None)


def time_spans(job: ApplyJob) -> list[tuple[int, int]]:
    """The job's time chunks, [c0, c1) into the predictors' time axis, in order."""
    t_start, t_stop = job.time_index
    return [(c0, min(c0 + job.time_chunk, t_stop)) for c0 in range(t_start, t_stop, job.time_chunk)]


def sequential(steps, read, predict, write) -> Iterator:
    """Read, predict and write each step in turn; yields what each write returns, in order."""
    for step in steps:
        yield write(step, predict(step, read(step)))


def pipelined(steps, read, predict, write) -> Iterator:
    """As :func:`sequential`, but step k+1 is read and step k-1 written while step k is predicted.

    Two threads besides the caller's (netCDF4, zarr's codecs and torch release the GIL); at most
    three steps' data are held at once: the one read ahead, the one predicted, the one being written.
    The steps are predicted in order, so the product is the same byte for byte.
    """
    from concurrent.futures import ThreadPoolExecutor

    steps = list(steps)
    if not steps:
        return
    writing = None
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="upscale-tile-io") as pool:
        reading = pool.submit(read, steps[0])
        for k, step in enumerate(steps):
            values = reading.result()
            if k + 1 < len(steps):
                reading = pool.submit(read, steps[k + 1])
            predicted = predict(step, values)
            del values
            written = writing.result() if writing is not None else None  # in order, one write at a time
            writing = pool.submit(write, step, predicted)
            if k:
                yield written  # after the next write is under way: the consumer's work overlaps it
        yield writing.result()


@dataclass
class TileInputs:
    """The land pixels of one tile: encoded static predictors and a reader of the dynamic ones by time chunk."""

    job: ApplyJob
    window: dict  # lat, lon slices into the predictor grid
    shape: tuple[int, int]  # (ny, nx)
    names: list[str]  # dynamic predictors in model order
    land: np.ndarray  # [ny * nx] bool
    static: np.ndarray  # [n_land, Fs]
    cube: object = None  # the prepared cube's zarr group, when the job reads one
    first: tuple | None = None  # ((c0, c1), all pixels) of the first time chunk until it is read

    @property
    def times(self) -> np.ndarray:
        """The days of the predictors' time axis (the chunks' c0, c1 index into it)."""
        return _inputs(self.job.catalog_path, self.job.dynamic, self.job.static)[0].time.values

    def spans(self) -> list[tuple[int, int]]:
        """The job's time chunks, [c0, c1) into the predictors' time axis, in order."""
        return time_spans(self.job)

    def read(self, c0: int, c1: int) -> np.ndarray:
        """The dynamic predictors of the land pixels on days [c0, c1): float32 [n_land, c1 - c0, Fd]."""
        if self.first is not None and self.first[0] == (c0, c1):
            values, self.first = self.first[1], None  # read once already, for the land mask
        else:
            values = self._read_all(c0, c1)
        return values[self.land]

    def _read_all(self, c0: int, c1: int) -> np.ndarray:
        """Days [c0, c1) of every pixel of the tile: float32 [ny * nx, c1 - c0, Fd]."""
        if self.cube is not None:
            t0, (lat, lon) = self.job.time_index[0], self._cube_window()
            block = np.stack([self.cube[n][c0 - t0 : c1 - t0, lat, lon] for n in self.names], axis=-1)
            values = np.ascontiguousarray(block.transpose(1, 2, 0, 3), dtype="float32")
        else:
            dyn, _ = _inputs(self.job.catalog_path, self.job.dynamic, self.job.static)
            block = dyn[self.names].isel(time=slice(c0, c1), **self.window).to_array("feature")
            values = np.asarray(block.transpose("lat", "lon", "time", "feature").values, dtype="float32")
        return values.reshape(self.land.size, c1 - c0, len(self.names))

    def chunks(self):
        """Yield (c0, c1, dynamic [n_land, c1 - c0, Fd]) for the job's time chunks, in order."""
        for c0, c1 in self.spans():
            yield c0, c1, self.read(c0, c1)

    def _cube_window(self) -> tuple[slice, slice]:
        """The tile in the prepared cube, which covers the apply domain."""
        lat, lon = self.window["lat"], self.window["lon"]
        return (
            slice(lat.start - self.job.lat_offset, lat.stop - self.job.lat_offset),
            slice(lon.start - self.job.lon_offset, lon.stop - self.job.lon_offset),
        )

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """Land-pixel values [n_land, T] -> a [T, ny, nx] block filled over water."""
        full = np.full((self.land.size, values.shape[1]), fill_value(values.dtype), dtype=values.dtype)
        full[self.land] = values
        return full.reshape(*self.shape, values.shape[1]).transpose(2, 0, 1)


def open_tile(job: ApplyJob, tile: Tile, spec) -> TileInputs:
    """The land pixels and static predictors of ``tile`` (the same land rule as site extraction).

    With ``job.prepared`` they come from the prepared cube, with zarr and numpy only; its values
    are those of the catalog's readers, so the pixels and predictors are the same.
    """
    window = dict(
        lat=slice(job.lat_offset + tile.lat0, job.lat_offset + tile.lat1),
        lon=slice(job.lon_offset + tile.lon0, job.lon_offset + tile.lon1),
    )
    ny, nx = tile.lat1 - tile.lat0, tile.lon1 - tile.lon0
    names = [v for _, v in spec.dynamic]
    inputs = TileInputs(job, window, (ny, nx), names, np.ones(ny * nx, bool), np.empty((0, 0)))
    if job.prepared is not None:
        from upscale.prepared import open_cube

        inputs.cube = open_cube(*job.prepared)
        lat, lon = inputs._cube_window()
        stat = {v: inputs.cube[v][lat, lon] for _, v in spec.static}
    else:
        _, ds = _inputs(job.catalog_path, job.dynamic, job.static)
        stat = {v: ds[v].isel(**window).values for _, v in spec.static}
    spans = inputs.spans()
    if spans:  # the first chunk is read once: its first day for the land rule, all of it for the kernel
        inputs.first = (spans[0], inputs._read_all(*spans[0]))
    first_day = inputs.first[1][:, 0, :].T.reshape(len(names), ny, nx) if spans else []
    static_px = encode_static({v: a.reshape(-1) for v, a in stat.items()}, spec, ny * nx)
    # the same land rule as site extraction, plus encoded static columns finite (pft 0 = water)
    land = land_mask_arrays([*stat.values(), *first_day]).reshape(-1) & np.isfinite(static_px).all(axis=-1)
    inputs.land, inputs.static = land, static_px[land]
    return inputs


def apply_tiles(client, job, tiles: Iterable[Tile], on_tile: Callable[[str], None], task=None) -> None:
    """Run ``task(job, tile)`` (default :func:`run_tile`) for every tile, on the Dask ``client``
    (or in-process when it is None).

    ``on_tile(tile_id)`` is called in this process as each tile finishes, in completion order.
    """
    tiles = list(tiles)
    if client is None:  # the apply's own tiles stream through one pipeline (:func:`run_tiles`)
        for tile_id in run_tiles(job, tiles) if task is None else (task(job, tile) for tile in tiles):
            on_tile(tile_id)
        return
    task = task or run_tile
    from distributed import as_completed

    name = getattr(task, "__name__", "task").replace("_", "-")
    futures = [
        client.submit(task, job, tile, key=f"upscale-{name}-{job.bundle_hash}-{tile.id}", pure=False) for tile in tiles
    ]
    for future in as_completed(futures):
        on_tile(future.result())
