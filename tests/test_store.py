"""The output store: an empty template, chunk-aligned block writes (refusing unaligned ones), atomic outputs."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from upscale import cf
from upscale.outputs import COMPLETE_ATTR, FLAG_FILL
from upscale.store import check_aligned, create_template, mark_complete, write_atomically, write_block


def template(path: Path, shape=(5, 4, 6), chunks=(2, 2, 3), targets=("gpp",)) -> Path:
    """A product template of ``shape`` (time, lat, lon) in ``chunks``."""
    t, y, x = shape
    times = pd.date_range("2018-01-01", periods=t).values
    lat = np.linspace(-80, 80, y) if y > 1 else np.array([0.0])
    lon = np.linspace(-170, 170, x) if x > 1 else np.array([0.0])
    create_template(
        path, cf.product_coords(times, lat, lon), cf.product_variables(list(targets)), chunks, {"title": "test"}
    )
    return path


def chunk_files(path: Path, name: str) -> list[Path]:
    return [p for p in (path / name).rglob("*") if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs")]


# --------------------------------------------------------------------------- template


def test_template_dtypes_fill_values_and_chunks(tmp_path):
    store = template(tmp_path / "p.zarr")
    group = zarr.open_group(str(store), mode="r")
    assert group["gpp"].dtype == np.float32 and math.isnan(group["gpp"].fill_value)
    assert group["extrapolation"].dtype == np.int8 and group["extrapolation"].fill_value == FLAG_FILL
    assert "_FillValue" not in group["extrapolation"].attrs  # -127 is a flag value, not a CF fill
    for name in ("gpp", "gpp_sd", "gpp_sd_epistemic", "gpp_sd_aleatoric", "extrapolation"):
        assert group[name].shape == (5, 4, 6) and group[name].chunks == (2, 2, 3), name
        assert chunk_files(store, name) == [], name  # nothing written: every chunk reads as the fill value
    ds = xr.open_zarr(store)
    assert np.isnan(ds["gpp"].values).all() and ds.attrs["title"] == "test"
    np.testing.assert_array_equal(ds.lat.values, np.linspace(-80, 80, 4))
    assert {"time_bnds", "lat_bnds", "lon_bnds"} <= set(ds.variables) and ds["lat_bnds"].shape == (4, 2)


def test_an_unwritten_flag_chunk_reads_as_no_prediction_in_an_int8_flag(tmp_path):
    """xarray opens the flag as the int8 array it is (no _FillValue to decode it to float with NaN)."""
    store = template(tmp_path / "p.zarr")
    flag = xr.open_zarr(store)["extrapolation"]
    assert flag.dtype == np.int8 and (flag.values == FLAG_FILL).all()
    meanings = dict(zip(flag.attrs["flag_values"], flag.attrs["flag_meanings"].split()))
    assert meanings == {FLAG_FILL: "no_prediction", 0: "inside_training_range", 1: "outside_training_range"}
    assert np.isnan(cf.flag_share(flag).values).all()


def test_flag_share_masks_no_prediction_and_reads_old_float_flags():
    flag = xr.DataArray(np.array([FLAG_FILL, 0, 1, 1], dtype="int8"))
    np.testing.assert_array_equal(cf.flag_share(flag).values, [np.nan, 0, 1, 1])
    assert cf.flag_share(flag).dtype == np.float32 and float(cf.flag_share(flag).mean()) == pytest.approx(2 / 3)
    old = xr.DataArray(np.array([np.nan, 0, 1], dtype="float32"))  # products whose -127 was a _FillValue
    np.testing.assert_array_equal(cf.flag_share(old).values, [np.nan, 0, 1])


def test_a_template_is_marked_incomplete_until_marked_complete(tmp_path):
    store = template(tmp_path / "p.zarr")
    assert xr.open_zarr(store).attrs[COMPLETE_ATTR] == "false"
    mark_complete(store)
    assert xr.open_zarr(store).attrs[COMPLETE_ATTR] == "true"  # the consolidated metadata agrees
    mark_complete(store, False)
    assert xr.open_zarr(store).attrs[COMPLETE_ATTR] == "false"


def test_template_refuses_an_existing_store(tmp_path):
    store = template(tmp_path / "p.zarr")
    with pytest.raises(FileExistsError):
        template(store)


# --------------------------------------------------------------------------- block writes


def tiles(size: int, step: int) -> list[slice]:
    return [slice(a, min(a + step, size)) for a in range(0, size, step)]


@settings(max_examples=12, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 5)), data=st.data())
def test_tiled_writes_equal_one_whole_write(shape, data):
    chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    steps = tuple(c * data.draw(st.integers(1, 3)) for c in chunks)  # tiles are whole chunks
    values = np.arange(np.prod(shape), dtype="float32").reshape(shape) + 0.5
    flag = (values.astype(int) % 2).astype("int8")
    with tempfile.TemporaryDirectory() as tmp:
        store = template(Path(tmp) / "p.zarr", shape, chunks)
        write_block(store, {"gpp_sd": values}, slice(None), slice(None), slice(None))  # whole, in one write
        for t in tiles(shape[0], steps[0]):
            for y in tiles(shape[1], steps[1]):
                for x in tiles(shape[2], steps[2]):
                    write_block(store, {"gpp": values[t, y, x], "extrapolation": flag[t, y, x]}, t, y, x)
        group = zarr.open_group(str(store), mode="r")
        np.testing.assert_array_equal(group["gpp_sd"][:], values)
        np.testing.assert_array_equal(group["gpp"][:], group["gpp_sd"][:])
        np.testing.assert_array_equal(group["extrapolation"][:], flag)
        assert np.isnan(group["gpp_sd_epistemic"][:]).all()  # arrays not named stay unwritten


@pytest.mark.parametrize(
    "region, axis, start, stop",
    [
        ((slice(0, 2), slice(1, 3), slice(0, 3)), 1, 1, 3),  # starts inside a chunk
        ((slice(0, 2), slice(0, 2), slice(0, 4)), 2, 0, 4),  # stops inside a chunk
        ((slice(1, 2), slice(0, 2), slice(0, 3)), 0, 1, 2),
        ((slice(0, 4, 2), slice(0, 2), slice(0, 3)), 0, 0, 4),  # strided
    ],
)
def test_unaligned_regions_are_refused_naming_variable_axis_and_chunk(tmp_path, region, axis, start, stop):
    store = template(tmp_path / "p.zarr")
    block = np.ones(tuple(len(range(*s.indices(n))) for s, n in zip(region, (5, 4, 6))), dtype="float32")
    chunk = (2, 2, 3)[axis]
    length = (5, 4, 6)[axis]
    with pytest.raises(ValueError) as err:
        write_block(store, {"gpp_sd": block}, *region)
    assert str(err.value) == (
        f"the region {start}:{stop} of axis {axis} of 'gpp_sd' is not aligned with its chunks "
        f"of {chunk} (array length {length}); write whole chunks"
    )
    assert np.isnan(zarr.open_group(str(store), mode="r")["gpp_sd"][:]).all()  # nothing written


def test_a_region_ending_at_the_array_end_is_aligned(tmp_path):
    store = template(tmp_path / "p.zarr")  # time 5 in chunks of 2: the last chunk holds one day
    write_block(store, {"gpp": np.full((1, 2, 3), 7, "float32")}, slice(4, 5), slice(2, 4), slice(3, 6))
    write_block(store, {"gpp": np.full((3, 4, 6), 8, "float32")}, slice(2, None), slice(None), slice(None))
    gpp = zarr.open_group(str(store), mode="r")["gpp"][:]
    assert np.isnan(gpp[:2]).all() and (gpp[2:] == 8).all()
    with pytest.raises(ValueError, match="region 3:5 of axis 0"):
        write_block(store, {"gpp": np.ones((2, 4, 6), "float32")}, slice(3, 5), slice(None), slice(None))


def test_check_aligned_by_hand():
    check_aligned("v", (slice(0, 4), slice(8, 10)), (10, 10), (4, 4))  # 10 is the end of the axis
    with pytest.raises(ValueError, match="region 8:9 of axis 1 of 'v'"):
        check_aligned("v", (slice(0, 4), slice(8, 9)), (10, 10), (4, 4))


def test_time_less_arrays_take_the_lat_lon_part_of_the_region(tmp_path):
    store = template(tmp_path / "p.zarr")
    group = zarr.open_group(str(store), mode="r+")
    group.create_array("rooting_depth", shape=(4, 6), chunks=(2, 3), dtype="float32", fill_value=np.nan)
    zarr.consolidate_metadata(str(store))  # the template's readers go by its consolidated metadata
    block = np.arange(6, dtype="float32").reshape(2, 3)
    write_block(
        store, {"rooting_depth": block, "gpp": np.ones((5, 2, 3), "float32")}, slice(None), slice(2, 4), slice(3, 6)
    )
    out = zarr.open_group(str(store), mode="r")["rooting_depth"][:]
    np.testing.assert_array_equal(out[2:, 3:], block)
    assert np.isnan(out[:2]).all() and np.isnan(out[:, :3]).all()
    with pytest.raises(ValueError, match="region 1:3 of axis 0 of 'rooting_depth'"):
        write_block(store, {"rooting_depth": block}, slice(None), slice(1, 3), slice(0, 3))


# --------------------------------------------------------------------------- atomic outputs


def test_a_successful_write_is_renamed_into_place(tmp_path):
    seen = []

    def write(tmp: Path):
        seen.append(tmp)
        tmp.write_text("done")

    target = write_atomically(tmp_path / "out.csv", write)
    assert target == tmp_path / "out.csv" and target.read_text() == "done"
    assert seen == [tmp_path / "out.csv.part"] and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_failed_write_leaves_nothing_and_keeps_the_old_output(tmp_path, kind):
    def write(tmp: Path):
        if kind == "file":
            tmp.write_text("half")
        else:
            (tmp / "c").mkdir(parents=True)
        raise KeyboardInterrupt  # an interrupt too, not only errors

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "new.zarr", write)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.zarr").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "old.zarr", write, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old.zarr"] and (tmp_path / "old.zarr").read_text() == "old"


def test_a_stale_part_is_replaced(tmp_path):
    (tmp_path / "out.zarr.part").mkdir()
    (tmp_path / "out.zarr.part" / "stale").write_text("")
    write_atomically(tmp_path / "out.zarr", lambda tmp: tmp.mkdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"] and list((tmp_path / "out.zarr").iterdir()) == []


def test_overwrite_replaces_an_existing_directory(tmp_path):
    (tmp_path / "out.zarr").mkdir()
    (tmp_path / "out.zarr" / "old").write_text("")

    def write(tmp: Path):
        tmp.mkdir()
        (tmp / "new").write_text("")
        assert (tmp_path / "out.zarr" / "old").exists()  # the old output lives until the new one is complete

    write_atomically(tmp_path / "out.zarr", write, overwrite=True)
    assert [p.name for p in (tmp_path / "out.zarr").iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_without_overwrite_an_existing_output_is_kept_and_nothing_left_behind(tmp_path, kind):
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("old")
    else:
        target.mkdir()
        (target / "old").write_text("")

    def write(tmp: Path):
        if kind == "file":
            tmp.write_text("new")
        else:
            tmp.mkdir()
            (tmp / "new").write_text("")

    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        write_atomically(target, write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (target.read_text() == "old") if kind == "file" else [p.name for p in target.iterdir()] == ["old"]
