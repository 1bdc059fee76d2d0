"""The run report: every figure, the markdown that ties them together, baselines present or absent."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from upscale import cf
from upscale.aggregate import product_areas, zonal_sums
from upscale.evaluation import summarise_metrics
from upscale.report import LEVELS, band_means, baseline_comparison, calibration_curve, write_report

ALL_FIGURES = {
    "mean_maps.png",
    "uncertainty_maps.png",
    "extrapolation_map.png",
    "seasonal_cycle.png",
    "heldout_scatter.png",
    "calibration.png",
}


@pytest.fixture
def report_dir(product_run, tmp_path):
    """A copy of the run's inputs to the report (product linked, cv copied), so tests may add files."""
    run = tmp_path / "run"
    shutil.copytree(product_run.path("cv"), run / "cv")
    (run / "product.zarr").symlink_to(product_run.path("product.zarr"))
    return run


def test_the_run_report_has_every_figure(product_run):
    report = product_run.path("report")
    assert {p.name for p in report.glob("*.png")} >= ALL_FIGURES
    for name in ALL_FIGURES:
        assert (report / name).stat().st_size > 10_000, name  # a drawn figure, not an empty canvas
    text = (report / "report.md").read_text()
    assert all(f"![{name}]({name})" in text for name in ALL_FIGURES)


def test_markdown_uses_summarise_metrics_and_gives_global_totals(product_run):
    text = (product_run.path("report") / "report.md").read_text()
    summary = summarise_metrics(pd.read_csv(product_run.path("cv", "metrics.csv")))
    row = next(line for line in text.splitlines() if line.startswith("| gpp |"))
    assert f"| {summary['gpp']['r2']:.3g} |" in row and f"| {summary['gpp']['coverage_90']:.3g} |" in row
    assert "Pg C yr-1" in text and "10^3 km3 yr-1" in text
    gpp_total = float(re.search(r"\| GPP \| Pg C yr-1 \|[^|]+\|[^|]+\|[^|]+\| ([0-9.e+]+) \|", text).group(1))
    assert 20 < gpp_total < 400  # the demo world's land, in Pg C per year
    assert "baseline_skill.png" in text and "absent" not in text  # the evaluate stage scored the baselines
    assert re.search(r"\d+\.\d% of land pixel-days", text)
    assert "`upscale_complete` is `true`" in text  # and says how to tell a finished product


def test_the_extrapolation_share_leaves_out_the_pixels_without_a_prediction(product_run):
    """The int8 flag's no_prediction value (-127, the ocean) is not averaged into the share."""
    text = (product_run.path("report") / "report.md").read_text()
    reported = float(re.search(r"(\d+\.\d)% of land pixel-days", text).group(1))
    flag = xr.open_zarr(product_run.path("product.zarr"))["extrapolation"]
    share = cf.flag_share(flag).mean("time").mean()
    assert flag.dtype == np.int8 and 0 < reported < 100
    assert reported == pytest.approx(100 * float(share), abs=0.051)


def test_baselines_are_compared_when_present(report_dir):
    metrics = pd.read_csv(report_dir / "cv" / "metrics.csv")
    rows = []
    for model, shift in (("pmodel", -0.2), ("priestley_taylor", 0.5)):
        base = metrics.copy()
        base["r2"] = base["r2"] + shift
        base["model"] = model
        rows.append(base[base.target == ("gpp" if model == "pmodel" else "et")])
    pd.concat(rows).to_csv(report_dir / "cv" / "baselines.csv", index=False)
    figures = write_report(report_dir, ["gpp", "et"])
    assert "baseline_skill.png" in figures and (report_dir / "report" / "baseline_skill.png").stat().st_size > 10_000
    text = (report_dir / "report" / "report.md").read_text()
    n_gpp = int((metrics.target == "gpp").sum())
    n_et = int((metrics.target == "et").sum())
    # pmodel is 0.2 worse at every site (learned better everywhere), priestley_taylor 0.5 better (nowhere)
    assert re.search(rf"\| gpp \| pmodel \| {n_gpp} \| [-0-9.e]+ \| [-0-9.e]+ \| {n_gpp} \|", text), text
    assert re.search(rf"\| et \| priestley_taylor \| {n_et} \| [-0-9.e]+ \| [-0-9.e]+ \| 0 \|", text), text
    assert "absent" not in text
    (report_dir / "cv" / "baselines.csv").unlink()
    write_report(report_dir, ["gpp", "et"])
    assert "cv/baselines.csv` is absent" in (report_dir / "report" / "report.md").read_text()


def test_baseline_comparison_joins_on_site_and_target():
    metrics = pd.DataFrame({"site": ["A", "B", "A"], "target": ["gpp", "gpp", "et"], "r2": [0.8, 0.6, 0.7]})
    baselines = pd.DataFrame(
        {"site": ["A", "B", "C"], "target": ["gpp", "gpp", "gpp"], "r2": [0.5, 0.9, 0.1], "model": ["pmodel"] * 3}
    )
    table = baseline_comparison(metrics, baselines)
    assert table[["site", "r2_learned", "r2_baseline"]].values.tolist() == [["A", 0.8, 0.5], ["B", 0.6, 0.9]]


def test_calibration_curve_of_gaussian_predictions():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=200_000)
    calibrated = calibration_curve(obs, np.zeros_like(obs), np.ones_like(obs))
    np.testing.assert_allclose(calibrated, LEVELS, atol=0.005)
    overconfident = calibration_curve(obs, np.zeros_like(obs), np.full_like(obs, 0.5))
    assert (overconfident < LEVELS - 0.03).all()


def test_band_means_are_area_weighted():
    lat, lon = np.array([15.0, 45.0, 75.0]), np.array([0.0])
    coords = cf.product_coords(np.array(["2018-01-01"], dtype="datetime64[ns]"), lat, lon)
    ds = xr.Dataset(
        {"gpp": (("time", "lat", "lon"), np.array([[[1.0], [3.0], [np.nan]]]))},
        coords={k: v for k, v in coords.items() if not k.endswith("_bnds")},
    )
    ds["lat_bnds"], ds["lon_bnds"] = coords["lat_bnds"], coords["lon_bnds"]
    # bounds 0-30 and 30-60 N: areas proportional to sin 30 - sin 0 = 0.5 and sin 60 - sin 30 = 0.366
    w1, w2 = 0.5, np.sin(np.pi / 3) - 0.5
    assert float(band_means(ds, "gpp", (0, 90))[0]) == pytest.approx((w1 * 1 + w2 * 3) / (w1 + w2))
    assert float(band_means(ds, "gpp", (30, 60))[0]) == pytest.approx(3.0)
    assert np.isnan(float(band_means(ds, "gpp", (-60, -30))[0]))


def test_band_means_from_zonal_sums_equal_the_weighted_mean_of_each_band():
    rng = np.random.default_rng(3)
    lat, lon = np.arange(-80.0, 90.0, 20.0), np.arange(0.0, 360.0, 40.0)
    time = np.array(["2018-01-01", "2018-01-02", "2018-02-01"], dtype="datetime64[ns]")
    coords = cf.product_coords(time, lat, lon)
    values = rng.gamma(2.0, 1.0, (time.size, lat.size, lon.size))
    values[rng.random(values.shape) < 0.4] = np.nan  # ocean and missing days
    values[:, lat >= 60] = np.nan  # a band without data
    ds = xr.Dataset(
        {"gpp": (("time", "lat", "lon"), values)}, coords={k: v for k, v in coords.items() if not k.endswith("_bnds")}
    )
    ds["lat_bnds"], ds["lon_bnds"] = coords["lat_bnds"], coords["lon_bnds"]
    ds = ds.chunk({"time": 1, "lat": 4})
    zonal = zonal_sums(ds, ["gpp"])
    areas = product_areas(ds)
    for band in ((-90, -60), (-30, 0), (0, 30), (30, 60), (60, 90)):
        inside = (ds.lat >= band[0]) & ((ds.lat < band[1]) | (band[1] >= 90))
        expected = ds.gpp.where(inside).weighted(areas).mean(("lat", "lon")).values
        np.testing.assert_allclose(band_means(ds, "gpp", band, zonal).values, expected, rtol=1e-12)
    assert np.isnan(band_means(ds, "gpp", (60, 90), zonal).values).all()
