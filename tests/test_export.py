"""Export of a finished product to NetCDF4 or Zarr: equal values, compressed chunks, typed attributes, refusals.

On a small hand-made product; the CF checker's verdict on the export of a real run is in tests/test_cf.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from upscale import cf
from upscale.errors import RunDirError
from upscale.export import export_product, netcdf_encoding
from upscale.models.hybrid import Hybrid
from upscale.outputs import FLAG_FILL
from upscale.rundir import Manifest, RunDir
from upscale.store import create_template, mark_complete, write_block

SHAPE, CHUNKS = (5, 4, 6), (2, 2, 3)
TARGETS = ["gpp", "et"]


def make_run(root, finished=True):
    """A run directory holding a written product with one parameter map (``finished``: its apply stage done,
    the store marked complete)."""
    root.mkdir(parents=True)
    times = pd.date_range("2018-01-01", periods=SHAPE[0]).values
    coords = cf.product_coords(times, np.linspace(-67.5, 67.5, SHAPE[1]), np.linspace(-150, 150, SHAPE[2]))
    variables = {**cf.product_variables(TARGETS), **cf.parameter_variables("hybrid", Hybrid.parameter_info)}
    product = RunDir(root).product
    create_template(
        product,
        coords,
        variables,
        CHUNKS,
        {"Conventions": cf.CONVENTIONS, "history": "2018-01-01: written by upscale run"},
    )
    rng = np.random.default_rng(0)
    arrays = {name: rng.random(SHAPE).astype("float32") for name in variables if name != "extrapolation"}
    arrays["gpp"][:, 0, 0] = np.nan  # an ocean pixel
    flag = (rng.random(SHAPE) < 0.3).astype("int8")
    flag[:, 0, 0] = FLAG_FILL
    write_block(product, {**arrays, "extrapolation": flag}, slice(None), slice(None), slice(None))
    if finished:
        mark_complete(product)
        Manifest(RunDir(root).manifest_file).finish_stage("apply", 1.0)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("export") / "run")


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    return export_product(run, "netcdf", tmp_path_factory.mktemp("out") / "product.nc")


# --------------------------------------------------------------------------- NetCDF4 and Zarr


def test_export_is_compressed_and_chunked_and_equal(exported, run):
    import netCDF4

    with netCDF4.Dataset(exported) as nc:
        gpp = nc.variables["gpp"]
        assert gpp.filters()["zlib"] and gpp.filters()["shuffle"] and gpp.chunking() == list(CHUNKS)
        assert nc.variables["extrapolation"].dtype == np.int8
        assert "_FillValue" not in nc.variables["extrapolation"].ncattrs()  # -127 is a flag value
        assert list(nc.variables["extrapolation"].getncattr("flag_values")) == [FLAG_FILL, 0, 1]
        name = next(iter(Hybrid.parameter_info))
        assert nc.variables[name].getncattr("valid_min").dtype == np.float32  # typed as the variable (CF)
    nc, zr = xr.open_dataset(exported), xr.open_zarr(RunDir(run).product)
    for name in ("gpp", "et_sd_epistemic", "extrapolation", "time_bnds", "lat_bnds"):
        np.testing.assert_array_equal(nc[name].values, zr[name].values)
    assert nc["extrapolation"].dtype == np.int8 and (nc["extrapolation"].values[:, 0, 0] == FLAG_FILL).all()
    assert nc.attrs["upscale_complete"] == "true"
    assert nc.attrs["history"].startswith("2018-01-01: written by upscale run")
    assert "exported to netcdf by upscale" in nc.attrs["history"] and "(upscale export)" in nc.attrs["history"]
    assert "upscale export" not in zr.attrs["history"]  # the product itself is left alone


def test_default_paths_and_the_zarr_copy(tmp_path):
    root = make_run(tmp_path / "run")
    path = export_product(root, "zarr")
    assert path == RunDir(root).export("zarr") == root / "export.zarr"
    copy, product = xr.open_zarr(path), xr.open_zarr(root / "product.zarr")
    for name in ("gpp", "et", "extrapolation", "time_bnds"):
        np.testing.assert_array_equal(copy[name].values, product[name].values)
    assert copy["extrapolation"].encoding["dtype"] == np.int8
    assert export_product(root, "netcdf") == root / "product.nc"
    assert not list(root.glob("*.part")) and RunDir(root).foreign_entries() == []


def test_netcdf_encoding_takes_the_zarr_chunks_clipped_to_the_shape():
    ds = xr.Dataset(
        {"a": (("time", "lat"), np.zeros((5, 4), "float32")), "b": (("lat",), np.zeros(4, "float32"))}
    ).chunk({"time": 2, "lat": 4})
    ds["c"] = (("time",), np.zeros(5, "float32"))  # not chunked: one chunk
    encoding = netcdf_encoding(ds)
    assert encoding["a"] == {"zlib": True, "complevel": 4, "shuffle": True, "chunksizes": (2, 4)}
    assert encoding["b"]["chunksizes"] == (4,) and encoding["c"]["chunksizes"] == (5,)


def test_netcdf_encoding_keeps_the_cf_encodings(run):
    ds = xr.open_zarr(RunDir(run).product)
    encoding = netcdf_encoding(ds)
    assert encoding["extrapolation"]["dtype"] == "int8" and encoding["extrapolation"]["_FillValue"] is None
    assert encoding["time_bnds"]["units"] == cf.TIME_UNITS and encoding["time_bnds"]["zlib"]
    assert encoding["gpp"]["chunksizes"] == CHUNKS


# --------------------------------------------------------------------------- refusals


def test_an_unknown_format_is_refused(run, tmp_path):
    with pytest.raises(RunDirError) as err:
        export_product(run, "grib", tmp_path / "p.grib")
    assert err.value.what == "unknown export format 'grib'" and err.value.where == "--format"
    assert err.value.fix == "Use netcdf or zarr" and list(tmp_path.iterdir()) == []


def test_an_existing_output_is_kept(run, tmp_path):
    existing = tmp_path / "there.nc"
    existing.write_text("keep")
    with pytest.raises(RunDirError, match="the output exists") as err:
        export_product(run, "netcdf", existing)
    assert err.value.where == str(existing) and existing.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there.nc"]


@pytest.mark.parametrize(
    "state, expected",
    [
        ("missing", "no product in the run directory"),
        ("unfinished", "the product is unfinished"),
        ("store incomplete", "the product is unfinished"),  # the manifest says done, the store does not
    ],
)
def test_a_run_without_a_finished_product_is_refused(tmp_path, state, expected):
    root = tmp_path / "run"
    if state == "missing":
        (root / "cv").mkdir(parents=True)
    else:
        make_run(root, finished=False)
    if state == "store incomplete":
        Manifest(RunDir(root).manifest_file).finish_stage("apply", 1.0)
    with pytest.raises(RunDirError, match=expected):
        export_product(root, "grib", tmp_path / "p.nc")  # the product is checked before the request
    assert not (tmp_path / "p.nc").exists() and not list(root.glob("*.part"))
