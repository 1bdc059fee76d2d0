"""The figure of the gridded sensitivity maps, from a tiny store."""

from __future__ import annotations

import struct

import numpy as np
import xarray as xr

from upscale.explain.maps import DPI, plot_sensitivity_maps


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_one_panel_per_target_and_predictor(tmp_path):
    lat, lon = np.array([-10.0, 0.0, 10.0]), np.array([0.0, 10.0, 20.0, 30.0])
    rng = np.random.default_rng(0)
    mean = {
        name: (("lat", "lon"), rng.normal(size=(3, 4)), {"units": "g m-2 d-1 K-1"})
        for name in ("gpp_sens_tas_mean", "et_sens_tas_mean", "gpp_sens_rsds_mean", "et_sens_rsds_mean")
    }
    mean["et_sens_rsds_mean"][1][:] = np.nan  # all water: drawn with a unit scale
    mean["gpp_sens_rsds_mean"][1][:] = 0.0  # no sensitivity: drawn with a unit scale too
    monthly = {"gpp_sens_tas": (("time", "lat", "lon"), rng.normal(size=(2, 3, 4)))}  # not drawn
    xr.Dataset({**mean, **monthly}, coords={"lat": lat, "lon": lon}).to_zarr(tmp_path / "sens.zarr")
    name = plot_sensitivity_maps(tmp_path / "sens.zarr", tmp_path / "maps.png")
    assert name == "maps.png"
    # 2 predictors (rows) x 2 targets (columns) of 6 x 3 inches at DPI
    assert png_size(tmp_path / "maps.png") == (int(6.0 * 2 * DPI), int(3.0 * 2 * DPI))


def test_one_predictor_of_one_target(tmp_path):
    ds = xr.Dataset(
        {"gpp_sens_vpd_mean": (("lat", "lon"), np.ones((2, 2)))}, coords={"lat": [0.0, 10.0], "lon": [0.0, 10.0]}
    )
    ds.to_zarr(tmp_path / "sens.zarr")
    plot_sensitivity_maps(tmp_path / "sens.zarr", tmp_path / "one.png")
    assert png_size(tmp_path / "one.png") == (int(6.0 * DPI), int(3.0 * DPI))
