"""A corpus of bad inputs a hostile (or hurried) user gives the command line: each is exit code 2, no traceback.

Each case names what it breaks and a phrase the message must hold (the key, the file or what is
wrong). Most go through ``upscale validate`` on a copy of the tiny world, so none trains anything.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path

import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from tests.conftest import tiny_recipe_dict
from upscale.cli import app

runner = CliRunner()


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def squeezed(text: str) -> str:
    """The text without the panel's borders and without any white space (a panel wraps long paths anywhere)."""
    return "".join(text.replace("│", " ").split())


def assert_refused(result, *expected):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for phrase in expected:
        assert squeezed(phrase) in squeezed(result.output), result.output


@pytest.fixture(scope="module")
def shared_world(tiny_world, tmp_path_factory) -> Path:
    """A copy of the tiny world that no case changes."""
    root = tmp_path_factory.mktemp("hostile") / "world"
    shutil.copytree(tiny_world.parent, root)
    return root


@pytest.fixture
def world(tiny_world, tmp_path) -> Path:
    """A private copy of the tiny world, for a case to break."""
    root = tmp_path / "world"
    shutil.copytree(tiny_world.parent, root)
    return root


def write_recipe(world: Path, tmp: Path, **changes) -> Path:
    data = {**tiny_recipe_dict(world / "catalog.yaml", tmp / "run"), **changes}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------- --set overrides

SET_CASES = [
    ("model.type=transformer", "unknown model type 'transformer'", "model.type"),
    ("modle.type=mlp", "did you mean 'model'"),
    ("training.ensemble=0", "training.ensemble", "greater than or equal to 1"),
    ("training.ensemble=1000", "training.ensemble", "less than or equal to 100"),
    ("training.epochs=-1", "training.epochs"),
    ("training.site_fraction=0", "training.site_fraction"),
    ("training.batch_size=4", "training.batch_size"),
    ("training.loss=mse", "training.loss"),
    ("training.learning_rate=0", "training.learning_rate"),
    ("training.device=tpu", "training.device"),
    ("training.epochs=ten", "training.epochs"),
    ("training.epochs=[1", "not valid YAML"),
    ("=3", "empty key"),
    ("validation.folds=1", "validation.folds"),
    ("validation.folds=20", "needs at least 20 sites"),
    ("validation.scheme=random", "validation.scheme"),
    ("sites.qc_min=1.5", "sites.qc_min"),
    ("sites.exclude=[XX-Nope]", "unknown sites: XX-Nope"),
    ("sites.include=[XX-Nope]", "sites not found in the files: XX-Nope"),
    ("sites.gpp_partitioning=XX", "sites.gpp_partitioning"),
    ("apply.tile_lat=0", "apply.tile_lat"),
    ("apply.tile_lat=1000000000000", "apply.tile_lat", "less than or equal to 100000"),
    ("apply.tile_lon=1.0e+30", "apply.tile_lon"),
    ("apply.time_chunk=-5", "apply.time_chunk"),
    ("apply.time_chunk=100000000", "apply.time_chunk"),
    ("apply.batch_size=0", "apply.batch_size"),
    ("apply.bbox=[30, 10, -30, 40]", "apply.bbox", "reversed (lon_min > lon_max)"),
    ("apply.bbox=[-10, 40, 10, 30]", "apply.bbox", "reversed (lat_min > lat_max)"),
    ("apply.bbox=[1, 2, 3]", "apply.bbox"),
    ("apply.bbox=[0, -100, 10, 10]", "apply.bbox", "-90..90"),
    ("apply.bbox=[.nan, 0, 10, 10]", "apply.bbox", "finite"),
    ("apply.bbox=[-170, -50, -120, -10]", "apply.bbox", "no land pixel"),
    ("apply.bbox=[100, 86, 110, 89]", "apply.bbox", "apply domain is empty"),
    ("apply.period={start: 2030-01-01, end: 2030-12-31}", "apply.period", "apply domain is empty"),
    ("apply.period={start: 2018-03-01, end: 2018-02-01}", "is after end"),
    ("apply.period={start: 2018-01-01, end: 2018-02-30}", "apply.period={start: 2018-01-01, end: 2018-02-30}"),
    ("apply.period={start: 2018-01-01, end: '2018-02-30'}", "apply.period.end"),
    ("apply.precision=int8", "apply.precision"),
    ("output.units=imperial", "output.units"),
    ("output.parameters=true", "the mlp model has no process parameters", "output.parameters"),
    ("predictors={era6: [tas]}", "no entry 'era6'"),
    ("predictors={era5: [tas], eo: [lai]}", "variable 'lai' is not in the cube", "catalog entry 'eo'"),
    ("targets=[co2]", "unknown target 'co2'"),
    ("explain={methods: [shap]}", "explain.methods"),
    ("cluster.type=kubernetes", "cluster.type"),
    ("catalog=/nonexistent/catalog.yaml", "catalog file not found", "/nonexistent/catalog.yaml"),
]


@pytest.mark.parametrize("override, expected", [(c[0], c[1:]) for c in SET_CASES], ids=[c[0] for c in SET_CASES])
def test_bad_overrides_are_refused_by_validate(shared_world, tmp_path, override, expected):
    recipe = write_recipe(shared_world, tmp_path)
    assert_refused(invoke("validate", recipe, "--set", override), *expected)


# --------------------------------------------------------------------------- recipe files


def _impossible_date(tmp: Path, world: Path, quote: str = "'") -> Path:
    recipe = write_recipe(world, tmp)
    period = f"  period: {{start: 2018-01-01, end: {quote}2019-02-30{quote}}}\n"
    recipe.write_text(recipe.read_text().replace("apply:\n", "apply:\n" + period))
    return recipe


def _impossible_unquoted_date(tmp: Path, world: Path) -> Path:
    return _impossible_date(tmp, world, quote="")


RECIPE_FILES = {
    "missing": (lambda tmp, world: tmp / "nope.yaml", ["recipe file not found", "nope.yaml"]),
    "a folder": (lambda tmp, world: tmp, ["recipe file not found"]),
    "empty": (lambda tmp, world: _text(tmp / "r.yaml", ""), ["YAML mapping", "r.yaml"]),
    "a list": (lambda tmp, world: _text(tmp / "r.yaml", "- 1\n- 2\n"), ["YAML mapping"]),
    "not YAML": (lambda tmp, world: _text(tmp / "r.yaml", "name: [unclosed\n"), ["not valid YAML", "r.yaml"]),
    "binary": (lambda tmp, world: _bytes(tmp / "r.yaml", b"\xff\xfe\x00garbage"), ["r.yaml"]),
    "impossible date": (_impossible_date, ["apply.period.end"]),
    "impossible unquoted date": (_impossible_unquoted_date, ["apply.period.end"]),
}


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(RECIPE_FILES))
def test_bad_recipe_files_are_refused(shared_world, tmp_path, case):
    make, expected = RECIPE_FILES[case]
    assert_refused(invoke("validate", make(tmp_path, shared_world)), *expected)


# --------------------------------------------------------------------------- catalogs and their data


def _edit_catalog(world: Path, change) -> None:
    path = world / "catalog.yaml"
    data = yaml.safe_load(path.read_text())
    change(data["entries"])
    path.write_text(yaml.safe_dump(data))


def _rewrite_era5(world: Path, change) -> None:
    path = next((world / "era5").glob("*.nc"))
    ds = xr.open_dataset(path).load()
    path.unlink()
    change(ds, path)


def _eo_first_days(world: Path, days: int) -> None:
    store = world / "eo" / "eo_daily.zarr"
    ds = xr.open_zarr(store).load()
    for name in ds.variables:
        ds[name].encoding = {}
    shutil.rmtree(store)
    ds.isel(time=slice(0, days)).to_zarr(store)


def _site_file(world: Path) -> Path:
    return sorted((world / "fluxnet").glob("FLX_*.csv"))[0]


def _cut(path: Path, n_bytes: int) -> None:
    path.write_bytes(path.read_bytes()[:-n_bytes])


def _rename_site_file(world: Path, name: str) -> None:
    """Rename a site file; the catalog's glob takes every FLX_ file, so the new name is not simply skipped."""
    path = _site_file(world)
    path.rename(path.with_name(name))
    _edit_catalog(world, lambda entries: entries["fluxnet"].update(path="fluxnet/FLX_*"))


CATALOG_CASES = {
    "catalog not YAML": (lambda w: _text(w / "catalog.yaml", "entries: [\n"), ["catalog.yaml"]),
    "catalog without entries": (lambda w: _text(w / "catalog.yaml", "description: x\n"), ["'entries' mapping"]),
    "unknown driver": (lambda w: _edit_catalog(w, lambda e: e["eo"].update(driver="hdf4")), ["hdf4"]),
    "era5 path matches nothing": (
        lambda w: shutil.rmtree(w / "era5"),
        ["no ERA5 files match the path", "era5"],
    ),
    "eo store missing": (lambda w: shutil.rmtree(w / "eo"), ["eo"]),
    "static map missing": (lambda w: (w / "static" / "pft.tif").unlink(), ["pft.tif"]),
    "site files missing": (lambda w: shutil.rmtree(w / "fluxnet"), ["fluxnet"]),
    "era5 file copied twice": (
        lambda w: shutil.copy(next((w / "era5").glob("*.nc")), w / "era5" / "era5_daily_2018_copy.nc"),
        ["two ERA5 files hold the same times", "era5_daily_2018_copy.nc", "181 days"],
    ),
    "era5 files overlap": (
        lambda w: _rewrite_era5(
            w,
            lambda ds, p: (
                ds.isel(valid_time=slice(0, 100)).to_netcdf(p.with_name("era5_daily_a.nc")),
                ds.isel(valid_time=slice(90, None)).to_netcdf(p.with_name("era5_daily_b.nc")),
            ),
        ),
        ["two ERA5 files hold the same times", "10 days, 2018-04-01..2018-04-10", "era5_daily_b.nc"],
    ),
    "era5 without d2m": (
        lambda w: _rewrite_era5(w, lambda ds, p: ds.drop_vars("d2m").to_netcdf(p)),
        ["ERA5 field 'd2m' is missing", "vpd", "catalog entry 'era5'"],
    ),
    "era5 t2m in degC": (
        lambda w: _rewrite_era5(w, lambda ds, p: ds.assign(t2m=ds.t2m.assign_attrs(units="degC")).to_netcdf(p)),
        ["'t2m' has units 'degC'"],
    ),
    "eo covering half the period": (
        lambda w: _eo_first_days(w, 90),
        ["cover different periods", "eo: 2018-01-01..2018-03-31 (90 days)", "apply.period"],
    ),
    "site file cut mid-row": (lambda w: _cut(_site_file(w), 20), ["cut short", "fields", "line 182"]),
    "site file cut inside its last value": (
        lambda w: _cut(_site_file(w), 3),
        ["cut short", "line break", "line 182"],
    ),
    "site file empty": (lambda w: _text(_site_file(w), ""), ["the file is empty"]),
    "site file binary": (lambda w: _bytes(_site_file(w), b"\x89PNG\xff\xfe" * 50), ["not UTF-8"]),
    "site file renamed": (
        lambda w: _rename_site_file(w, "FLX_AU-Jh2_FLUXNET2015_SUBSET_DD_x.txt.csv.bak"),
        ["cannot recognise the file", ".bak"],
    ),
    "site file as weekly": (
        lambda w: _rename_site_file(w, "FLX_AU-Jh2_FLUXNET2015_SUBSET_WW_2018-2018_1-4.csv"),
        ["this is a WW file"],
    ),
    "site file named half-hourly": (
        lambda w: _rename_site_file(w, "FLX_AU-Jh2_FLUXNET2015_SUBSET_HH_2018-2018_1-4.csv"),
        ["TIMESTAMP_START"],
    ),
    "site file zipped": (
        lambda w: _rename_site_file(w, "FLX_AU-Jh2_FLUXNET2015_SUBSET_DD_2018.zip"),
        ["zip archives cannot be read directly"],
    ),
}


@pytest.mark.parametrize("case", list(CATALOG_CASES))
def test_bad_catalogs_and_data_are_refused(world, tmp_path, case):
    change, expected = CATALOG_CASES[case]
    change(world)
    assert_refused(invoke("validate", write_recipe(world, tmp_path)), *expected)


def test_eo_covering_part_of_the_period_is_accepted_with_an_apply_period_inside_it(world, tmp_path):
    _eo_first_days(world, 90)
    result = invoke(
        "validate", write_recipe(world, tmp_path), "--set", "apply.period={start: 2018-01-10, end: 2018-03-01}"
    )
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- run directories and other commands


def test_run_dir_at_a_file_is_refused(shared_world, tmp_path):
    (tmp_path / "file").write_text("precious")
    result = invoke("run", write_recipe(shared_world, tmp_path), "--run-dir", tmp_path / "file")
    assert_refused(result, str(tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "precious"


@pytest.mark.parametrize("command", ["explain", "export", "aggregate"])
def test_commands_on_a_folder_that_is_no_run_are_refused(tmp_path, command):
    (tmp_path / "thesis.tex").write_text("precious")
    assert_refused(invoke(command, tmp_path), str(tmp_path))
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_demo_data_into_an_existing_folder_is_refused(tmp_path):
    assert_refused(invoke("demo-data", tmp_path), "the folder exists", str(tmp_path))


def test_a_cache_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    (tmp_path / "catalog.yaml").write_text("demo: {resolution: 30, start: 2018-01-01, end: 2018-01-31}\n")
    data = tiny_recipe_dict(tmp_path / "catalog.yaml", tmp_path / "run")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    result = invoke("validate", tmp_path / "r.yaml", env={"UPSCALE_CACHE": str(tmp_path / "cache")})
    assert_refused(result, "the cache folder is a file", str(tmp_path / "cache"), "UPSCALE_CACHE")


# --------------------------------------------------------------------------- the disk and signals


@pytest.mark.parametrize(
    "code, expected",
    [
        (errno.ENOSPC, "no space left"),
        (errno.EFBIG, "too large for the file system"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only"),
        (errno.ENOTDIR, "a file stands where a folder is expected"),
        (errno.EISDIR, "a folder stands where a file is expected"),
    ],
)
def test_disk_errors_are_exit_code_2_naming_the_path(tiny_recipe, monkeypatch, code, expected):
    def write(recipe):
        raise OSError(code, os.strerror(code), "/data/run/product.zarr/gpp/c/0/0/0")

    monkeypatch.setattr("upscale.pipeline.validate", write)
    assert_refused(invoke("validate", tiny_recipe), expected, "/data/run/product.zarr/gpp/c/0/0/0")


def test_a_disk_error_without_a_path_says_where_upscale_writes(tiny_recipe, monkeypatch):
    def write(recipe):
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError as exc:
            raise RuntimeError("zarr could not write a chunk") from exc

    monkeypatch.setattr("upscale.pipeline.validate", write)
    assert_refused(invoke("validate", tiny_recipe), "too large", "the run directory or --output")


def test_other_os_errors_stay_unexpected(tiny_recipe, monkeypatch):
    def fail(recipe):
        raise OSError(errno.ECONNRESET, "Connection reset by peer")

    monkeypatch.setattr("upscale.pipeline.validate", fail)
    result = invoke("validate", tiny_recipe)
    assert result.exit_code == 1 and "unexpected error" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "interrupt, code, expected",
    [
        (lambda: os.kill(os.getpid(), signal.SIGTERM), 143, "terminated (SIGTERM)"),
        (lambda: (_ for _ in ()).throw(KeyboardInterrupt), 130, "interrupted"),
    ],
    ids=["SIGTERM", "Ctrl-C"],
)
def test_signals_end_with_one_line_saying_the_run_resumes(tiny_recipe, monkeypatch, interrupt, code, expected):
    def stopped(recipe):
        interrupt()
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr("upscale.pipeline.validate", stopped)
    result = invoke("validate", tiny_recipe)
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "resumes" in lines[0] and "Traceback" not in result.output
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the command's only
