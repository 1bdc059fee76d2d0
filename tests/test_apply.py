"""Apply: chunked inference equals in-memory inference; tasks carry no weights (resuming: tests/pipeline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import apply_job, tiny_recipe_dict
from upscale import pipeline
from upscale.apply import ApplyJob, plan_tiles, run_tile, run_tiles
from upscale.bundle import load_bundle
from upscale.cf import product_coords, product_variables
from upscale.encoding import encode_static
from upscale.features import open_predictors
from upscale.recipe import load_recipe
from upscale.store import create_template


@pytest.fixture(scope="module", params=["mlp", "lstm"])
def trained(request, tiny_world, tmp_path_factory):
    """A run directory with extracted sites and a trained bundle (no CV, no apply), per model family."""
    tmp = tmp_path_factory.mktemp("trained")
    data = tiny_recipe_dict(tiny_world, tmp / "run")
    data["validation"] = {"scheme": "none"}
    data["model"] = {"type": request.param, "hidden": [16] if request.param == "lstm" else [32, 32]}
    (tmp / "r.yaml").write_text(yaml.safe_dump(data))
    run = pipeline.open_run(load_recipe(tmp / "r.yaml"))
    pipeline.run_stages(run, ("extract", "train"))
    return run


def in_memory_prediction(run) -> dict[str, np.ndarray]:
    """The whole cube through the ensemble in one call: the reference for chunked apply."""
    ensemble, spec, _ = load_bundle(run.path("bundle"))
    dyn, stat = open_predictors(run.recipe.catalog, spec.dynamic, spec.static)
    values = dyn[spec.dynamic_names].to_array("f").transpose("lat", "lon", "time", "f").values
    ny, nx, nt, nf = values.shape
    static = encode_static({v: stat[v].values.ravel() for _, v in spec.static}, spec, ny * nx)
    preds = ensemble.predict(values.reshape(ny * nx, nt, nf), static)
    out = {}
    for target, pred in preds.items():
        out[target] = pred.mean.reshape(ny, nx, nt).transpose(2, 0, 1)
        out[f"{target}_sd"] = pred.sd.reshape(ny, nx, nt).transpose(2, 0, 1)
    return out


def chunked_prediction(run, store: Path, tile_lat: int, tile_lon: int, time_chunk: int) -> xr.Dataset:
    _, spec, meta = load_bundle(run.path("bundle"))
    dyn, _ = open_predictors(run.recipe.catalog, spec.dynamic, spec.static)
    coords = product_coords(dyn.time.values, dyn.lat.values, dyn.lon.values)
    create_template(store, coords, product_variables(meta["targets"]), (time_chunk, tile_lat, tile_lon), {})
    job = apply_job(run, store, time_chunk=time_chunk, batch_size=1000)
    for tile in plan_tiles(dyn.sizes["lat"], dyn.sizes["lon"], tile_lat, tile_lon):
        run_tile(job, tile)
    return xr.open_zarr(store).load()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tile_lat=st.integers(4, 18), tile_lon=st.integers(7, 36), time_chunk=st.integers(25, 181))
def test_chunked_apply_equals_in_memory(trained, tmp_path_factory, tile_lat, tile_lon, time_chunk):
    reference = in_memory_prediction(trained)
    store = tmp_path_factory.mktemp("chunked") / "p.zarr"
    product = chunked_prediction(trained, store, tile_lat, tile_lon, time_chunk)
    for name, expected in reference.items():
        # the LSTM's state runs through 181 steps in batches of other sizes: float32 round-off only
        np.testing.assert_allclose(product[name].values, expected, rtol=2e-5, atol=2e-5, equal_nan=True)
        assert np.array_equal(np.isnan(product[name].values), np.isnan(expected))


def test_plan_tiles_cover_the_grid_once():
    tiles = plan_tiles(7, 11, 3, 4)
    cover = np.zeros((7, 11), int)
    for t in tiles:
        cover[t.lat0 : t.lat1, t.lon0 : t.lon1] += 1
    assert (cover == 1).all() and len({t.id for t in tiles}) == len(tiles) == 9


def test_workers_load_the_bundle_once_and_tasks_carry_no_weights(trained, tmp_path):
    import pickle

    from distributed import Client, LocalCluster

    from upscale.apply import apply_tiles

    _, spec, meta = load_bundle(trained.path("bundle"))
    dyn, _ = open_predictors(trained.recipe.catalog, spec.dynamic, spec.static)
    store = tmp_path / "p.zarr"
    create_template(
        store,
        product_coords(dyn.time.values, dyn.lat.values, dyn.lon.values),
        product_variables(meta["targets"]),
        (60, 6, 9),
        {},
    )
    job = apply_job(trained, store, time_chunk=60, batch_size=None)
    tiles = plan_tiles(dyn.sizes["lat"], dyn.sizes["lon"], 6, 9)
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        done = []
        apply_tiles(client, job, tiles, done.append)
        loads = client.run(lambda: __import__("upscale.apply").apply._cached_bundle.cache_info()._asdict())
    (info,) = loads.values()
    assert sorted(done) == sorted(t.id for t in tiles) and len(tiles) > 4
    assert info["misses"] == 1 and info["hits"] == len(tiles) - 1  # loaded once, reused by every other tile
    weights = sum(p.stat().st_size for p in trained.path("bundle").glob("*.safetensors"))
    task = pickle.dumps((run_tile, job, tiles[0]))
    assert len(task) < 2000 < weights  # a task holds paths and a hash, never weights


def test_task_size_does_not_grow_with_the_model(tmp_path):
    import pickle

    from upscale.bundle import save_bundle
    from upscale.encoding import FeatureSpec, Normaliser
    from upscale.ensemble import Ensemble
    from upscale.models.registry import build

    sizes = {}
    for hidden in (8, 512):
        members = [build({"type": "lstm", "hidden": [hidden]}, 5, 0, ["gpp"]) for _ in range(3)]
        norm = Normaliser([0.0] * 5, [1.0] * 5, [], [], [0.0], [1.0])
        spec = FeatureSpec([("era5", f"v{i}") for i in range(5)], [], [])
        digest = save_bundle(
            Ensemble(members, norm, ["gpp"]), spec, {"type": "lstm", "hidden": [hidden]}, tmp_path / str(hidden)
        )
        job = ApplyJob(
            catalog_path="catalog.yaml",
            dynamic=(),
            static=(),
            bundle_dir=str(tmp_path / str(hidden)),
            bundle_hash=digest,
            store_path="p.zarr",
            time_index=(0, 7300),
            lat_offset=0,
            lon_offset=0,
            time_chunk=366,
        )
        weights = sum(p.stat().st_size for p in (tmp_path / str(hidden)).glob("*.safetensors"))
        sizes[hidden] = (len(pickle.dumps((run_tile, job, plan_tiles(720, 1440, 32, 64)[-1]))), weights)
    assert sizes[512][1] > 1000 * sizes[8][1] / 10 and sizes[512][1] > 10_000_000  # a big model on disk ...
    assert abs(sizes[512][0] - sizes[8][0]) <= 4  # ... and the same task size (digits of the path aside)


def product_bytes(store: Path) -> dict[str, bytes]:
    """Every product array's stored values, as bytes (NaN payloads and fill values included)."""
    import zarr

    group = zarr.open_group(str(store), mode="r")
    return {name: group[name][...].tobytes() for name in group.array_keys()}


def tile_product(
    run, store: Path, tile_lat: int, tile_lon: int, time_chunk: int, streamed: bool = False, **changes
) -> dict[str, bytes]:
    """The tiles of ``run`` written into a fresh store by a job with ``changes``: tile by tile, or
    (``streamed``) all through one pipeline, which must yield every tile's id, in order."""
    _, spec, meta = load_bundle(run.path("bundle"))
    dyn, _ = open_predictors(run.recipe.catalog, spec.dynamic, spec.static)
    coords = product_coords(dyn.time.values, dyn.lat.values, dyn.lon.values)
    variables = product_variables(meta["targets"])
    create_template(store, coords, variables, (time_chunk, tile_lat, tile_lon), {})
    job = apply_job(run, store, time_chunk=time_chunk, batch_size=700, **changes)
    tiles = plan_tiles(dyn.sizes["lat"], dyn.sizes["lon"], tile_lat, tile_lon)
    if streamed:
        assert list(run_tiles(job, tiles)) == [tile.id for tile in tiles]
    for tile in [] if streamed else tiles:
        run_tile(job, tile)
    return product_bytes(store)


def test_overlapped_and_prepared_applies_equal_the_sequential_direct_one_byte_for_byte(trained, tmp_path):
    from upscale.prepared import open_cube, prepare_cube

    job = apply_job(trained, tmp_path / "unused.zarr")
    n_time, n_lat, n_lon = 181, 18, 36
    sequential = tile_product(trained, tmp_path / "seq.zarr", 7, 16, 40, overlap=False)
    overlapped = tile_product(trained, tmp_path / "over.zarr", 7, 16, 40, overlap=True)
    streamed = tile_product(trained, tmp_path / "stream.zarr", 7, 16, 40, streamed=True, overlap=True)
    cube = prepare_cube(
        job.catalog_path, job.dynamic, job.static, ((0, n_time), (0, n_lat), (0, n_lon)), (40, 7, 16), tmp_path / "c"
    )
    open_cube.cache_clear()
    prepared = tile_product(trained, tmp_path / "prep.zarr", 7, 16, 40, prepared=(cube["path"], cube["key"]))
    assert open_cube.cache_info().misses == 1 and open_cube.cache_info().hits >= 5  # the tiles read the cube
    assert sequential.keys() == overlapped.keys() == prepared.keys() and "gpp_sd_aleatoric" in sequential
    for name, values in sequential.items():
        assert overlapped[name] == values, name
        assert streamed[name] == values, name  # the model state starts afresh at each tile
        assert prepared[name] == values, name
    gpp = np.frombuffer(sequential["gpp"], dtype="float32")
    assert np.isfinite(gpp).mean() > 0.2  # land pixels were predicted, not only fill values compared


def test_an_error_in_a_read_ahead_stops_the_tile():
    from upscale.apply import pipelined

    written = []

    def read(step):
        if step == 20:
            raise OSError("disk gone")
        return np.full(3, step)

    def write(step, predicted):
        written.append(step)
        return step

    done = pipelined([0, 10, 20, 30], read, lambda step, values: values + 1, write)
    with pytest.raises(OSError, match="disk gone"):
        for step in done:
            assert step in written  # a step is handed on only once it is written
    assert written[:2] == [0, 10] and 30 not in written


def test_a_pipeline_hands_on_the_writes_in_order_and_equals_the_sequential_one():
    from upscale.apply import pipelined, sequential

    def read(step):
        return np.arange(3) * step

    def write(step, predicted):
        return step, predicted.sum()

    steps = list(range(6))

    def add(step, values):
        return values + step

    assert list(pipelined(steps, read, add, write)) == list(sequential(steps, read, add, write))
    assert [s for s, _ in pipelined(steps, read, lambda s, v: v, write)] == steps
    assert list(pipelined([], read, lambda s, v: v, write)) == []
