"""The command line end to end on a tiny world: its exit codes, what it prints, the errors a person meets.

What the stages do and write is tested in tests/pipeline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from tests.conftest import tiny_recipe_dict
from upscale.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def finished_run(tiny_world, tmp_path_factory):
    """One complete `upscale run` on the tiny world (on a local Dask cluster of one worker)."""
    tmp = tmp_path_factory.mktemp("e2e")
    data = tiny_recipe_dict(tiny_world, tmp / "run")
    data["cluster"] = {"type": "local", "n_workers": 1, "threads_per_worker": 1}
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    result = invoke("run", recipe)
    assert result.exit_code == 0, result.output
    return recipe, tmp / "run", result.output


def test_run_writes_the_run_directory(finished_run):
    _, run_dir, output = finished_run
    for name in (
        "recipe.yaml",
        "manifest.json",
        "log.txt",
        "bundle/bundle.json",
        "bundle/member-0.safetensors",
        "cv/metrics.csv",
        "cv/oof.zarr",
        "cv/folds/fold-0/bundle.json",
        "cv/folds/fold-2/member-1.safetensors",
        "product.zarr",
        "report/report.md",
        "sites.zarr",
    ):
        assert (run_dir / name).exists(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"]
    assert set(manifest["stages"]) == {"extract", "evaluate", "train", "apply", "explain", "report"}
    assert "cross-validated skill" in output and "product.zarr" in output


def test_finished_run_directory_is_not_overwritten(finished_run):
    recipe, run_dir, _ = finished_run
    before = (run_dir / "manifest.json").read_text()
    result = invoke("run", recipe)
    assert result.exit_code == 2
    assert "already holds a finished run" in result.output and "--overwrite" in result.output
    assert (run_dir / "manifest.json").read_text() == before


def test_export_netcdf(finished_run, tmp_path):
    _, run_dir, _ = finished_run
    result = invoke("export", run_dir, "--format", "netcdf", "--output", tmp_path / "p.nc")
    assert result.exit_code == 0, result.output
    nc = xr.open_dataset(tmp_path / "p.nc")
    zr = xr.open_zarr(run_dir / "product.zarr")
    np.testing.assert_array_equal(nc["gpp"].values, zr["gpp"].values)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"modle": {"type": "mlp"}}, "did you mean 'model'"),
        ({"predictors": {"era6": ["tas"]}}, "no entry 'era6'"),
        ({"predictors": {"era5": ["tas"], "eo": ["lai"]}}, "variable 'lai' is not in the cube"),
        ({"catalog": "/nonexistent/catalog.yaml"}, "catalog file not found"),
    ],
)
def test_bad_input_gives_exit_code_2_and_writes_nothing(tiny_world, tmp_path, change, expected):
    data = {**tiny_recipe_dict(tiny_world, tmp_path / "run"), **change}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(data))
    result = invoke("run", recipe)
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "product.zarr").exists()


def test_validate_reports_the_domain(tiny_recipe):
    result = invoke("validate", tiny_recipe)
    assert result.exit_code == 0, result.output
    assert "12 sites" in result.output and "18 x 36 cells" in result.output


def test_validate_with_set_override_error(tiny_recipe):
    result = invoke("validate", tiny_recipe, "--set", "apply.bbox=[100, 86, 110, 89]")
    assert result.exit_code == 2
    assert "apply domain is empty" in " ".join(result.output.split())


def test_refuses_foreign_directory(tiny_recipe, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    result = invoke("run", tiny_recipe, "--run-dir", foreign, "--overwrite")
    assert result.exit_code == 2
    assert "not an upscale run directory" in " ".join(result.output.split())
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_schema_command():
    result = invoke("schema")
    assert result.exit_code == 0
    assert "predictors" in json.loads(result.output)["properties"]


def test_stage_command_refuses_a_changed_recipe(finished_run):
    recipe, _, _ = finished_run
    result = invoke("apply", recipe, "--set", "apply.tile_lat=4")
    assert result.exit_code == 2
    assert "different recipe" in " ".join(result.output.split())
    # where a run computes is not part of its results: another cluster may go on with it
    result = invoke("report", recipe, "--set", "cluster={type: local, n_workers: 1}")
    assert result.exit_code == 0, result.output


def test_report_stage_reruns_on_a_finished_run(finished_run):
    recipe, run_dir, _ = finished_run
    (run_dir / "report" / "report.md").unlink()
    result = invoke("report", recipe)
    assert result.exit_code == 0, result.output
    assert "Cross-validated skill" in (run_dir / "report" / "report.md").read_text()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("training.epochs=[1", "not valid YAML"),
        ("=3", "empty key"),
        ("apply.period={start: 2018-03-01, end: 2018-02-01}", "is after end"),
        ("apply.period={start: 2018-13-45, end: 2018-02-01}", "not valid YAML"),
        ("sites.exclude=[XX-Nope]", "unknown sites: XX-Nope"),
        ("validation.folds=20", "needs at least 20 sites"),
        ("model.type=transformer", "unknown model type"),
    ],
)
def test_more_bad_input_is_exit_code_2(tiny_recipe, tmp_path, override, expected):
    result = invoke("run", tiny_recipe, "--set", override)
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


def test_export_into_a_missing_folder_names_it(finished_run, tmp_path):
    _, run_dir, _ = finished_run
    result = invoke("export", run_dir, "--output", tmp_path / "nope" / "p.nc")
    assert result.exit_code == 2, result.output
    out = "".join(result.output.replace("│", " ").split())
    assert "doesnotexist" in out and str(tmp_path / "nope") in out and "Traceback" not in result.output


def test_the_skill_table_lists_targets_in_recipe_order_with_units_apart(finished_run):
    _, _, output = finished_run
    rows = [line.split() for line in output.splitlines() if line.split()[:1] in (["gpp"], ["et"])]
    assert [row[0] for row in rows[:2]] == ["gpp", "et"]  # the recipe's order, not the manifest's
    assert rows[0][1:4] == ["g", "m-2", "d-1"] and rows[1][1:4] == ["kg", "m-2", "d-1"]  # units whole, in a column


@pytest.mark.parametrize("command", ["run", "explain", "aggregate", "validate"])
def test_flags_show_without_a_value_in_help(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=120)
    assert result.exit_code == 0
    flags = [line for line in result.output.splitlines() if "--debug" in line or "--overwrite" in line]
    assert flags and not any("<bool>" in line for line in flags)


def test_warnings_after_the_baselines_name_their_own_source():
    """pyrealm replaces warnings.formatwarning on import, naming itself as every later warning's source."""
    import warnings

    import numpy as np

    from upscale.baselines import pmodel_gpp

    before = warnings.formatwarning
    pmodel_gpp(np.full(2, 15.0), np.full(2, 10.0), np.full(2, 200.0), np.full(2, 0.5))
    assert warnings.formatwarning is before
    assert "pyrealm" not in warnings.formatwarning("x", UserWarning, "/a/upscale/report.py", 3)


# --------------------------------------------------------------------------- overwrite and run directories


def flat(output: str) -> str:
    """The output without the line breaks and spaces a panel adds (long paths wrap)."""
    return "".join(output.split())


@pytest.fixture
def old_run(product_run, tmp_path):
    """A copy of a finished run (tmp_path/run), its recipe (tmp_path/recipe.yaml) and its files' sha256."""
    import hashlib
    import shutil

    root = tmp_path / "run"
    shutil.copytree(product_run.dir, root)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((root / "recipe.yaml").read_text())

    def hashes():
        files = (p for p in root.rglob("*") if p.is_file())
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = hashes()
    assert {"bundle/bundle.json", "product.zarr/zarr.json", "cv/metrics.csv", "report/report.md"} <= set(before)
    return recipe, root, before, hashes


@pytest.mark.parametrize(
    "hidden, expected",
    [("[-4]", "got -4"), ("[0]", "got 0"), ("[64, 100000]", "from 1 to 65536"), ("[65536, 65536]", "weights")],
)
def test_an_overwrite_with_bad_model_sizes_exits_2_and_keeps_the_old_run(old_run, hidden, expected):
    recipe, root, before, hashes = old_run
    result = invoke("run", recipe, "--run-dir", root, "--overwrite", "--set", f"model.hidden={hidden}")
    assert result.exit_code == 2, result.output
    assert "model.hidden" in result.output and expected in " ".join(result.output.split())
    assert "Traceback" not in result.output and "bug" not in result.output
    assert hashes() == before


@pytest.mark.parametrize("failure, code", [(RuntimeError("extract broke"), 1), (KeyboardInterrupt(), 130)])
def test_an_overwrite_that_fails_before_its_first_stage_leaves_the_old_run_byte_for_byte(
    old_run, monkeypatch, failure, code
):
    from upscale.pipeline import commands

    recipe, root, before, hashes = old_run

    def extract(run):
        run.files.sites.mkdir()
        (run.files.sites / "zarr.json").write_text("{}")
        raise failure

    monkeypatch.setitem(commands._SITE_STAGES, "extract", extract)
    result = invoke("run", recipe, "--run-dir", root, "--overwrite", "--set", "training.epochs=2")
    assert result.exit_code == code, result.output
    assert "holds its previous run again" in result.output and "Traceback" not in result.output
    assert hashes() == before and not (root / ".replaced").exists()


def test_a_run_dir_that_is_a_file_exits_2_naming_it(tiny_recipe, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    result = invoke("run", tiny_recipe, "--run-dir", path)
    assert result.exit_code == 2, result.output
    assert "is a file, not a folder" in " ".join(result.output.split()) and str(path) in flat(result.output)
    assert "Traceback" not in result.output and path.read_text() == "mine"


def test_a_run_dir_in_a_read_only_folder_exits_2_naming_it(tiny_recipe, tmp_path, monkeypatch):
    from pathlib import Path

    def refused(self, *args, **kwargs):  # as root, chmod does not stop a write
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    result = invoke("run", tiny_recipe, "--run-dir", tmp_path / "ro" / "run")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "cannot write the run directory: Permission denied" in text and "--run-dir" in text
    assert str(tmp_path / "ro" / "run") in flat(result.output) and "Traceback" not in result.output


def test_a_corrupt_manifest_is_named_and_overwrite_replaces_it(old_run, monkeypatch):
    from upscale.pipeline import commands

    recipe, root, _, hashes = old_run
    (root / "manifest.json").write_text('{"upscale_run": "0.1.0", "stag')
    before = hashes()
    result = invoke("run", recipe, "--run-dir", root)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "manifest.json is corrupt (not JSON)" in text and "--overwrite" in text
    assert "not an upscale run directory" not in text and hashes() == before

    def extract(run):
        raise KeyboardInterrupt

    monkeypatch.setitem(commands._SITE_STAGES, "extract", extract)  # an overwrite is accepted, and undone
    assert invoke("run", recipe, "--run-dir", root, "--overwrite").exit_code == 130
    assert hashes() == before


# ---- a bundle broken after training: verified in the client, one panel, nothing written --------


@pytest.fixture
def trained_copy(product_run, tmp_path):
    """A copy of the finished product run as it stood after training (no product), and a recipe of it."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(product_run.dir, root, ignore=shutil.ignore_patterns("product.zarr", "report", "explain"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k in ("extract", "evaluate", "train")}
    manifest.update(complete=False)
    (root / "manifest.tiles").unlink()
    manifest.pop("product_bundle", None)
    (root / "manifest.json").write_text(json.dumps(manifest))
    data = yaml.safe_load(product_run.files.recipe.read_text())
    data["output"]["run_dir"] = str(root)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    return recipe, root


def _rehash(bundle, change) -> None:
    """Edit bundle.json and record a matching hash (the checks behind the hash still catch the edit)."""
    from upscale.bundle import _meta_hash, _sha256

    meta = json.loads((bundle / "bundle.json").read_text())
    change(meta)
    for item in meta["members"]:
        item["sha256"] = _sha256(bundle / item["file"])
    meta["hash"] = _meta_hash(meta)
    (bundle / "bundle.json").write_text(json.dumps(meta))


def _pickle_as_safetensors(bundle, rehash: bool) -> None:
    import pickle

    (bundle / "member-0.safetensors").write_bytes(pickle.dumps({"weight": [1.0]}))
    if rehash:
        _rehash(bundle, lambda meta: None)


BROKEN_BUNDLES = {
    "truncated weights": (
        lambda b: (b / "member-0.safetensors").write_bytes((b / "member-0.safetensors").read_bytes()[:200]),
        "member-0.safetensors does not match its checksum",
    ),
    "edited bundle.json": (
        lambda b: (b / "bundle.json").write_text((b / "bundle.json").read_text().replace('"hybrid"', '"mlp"')),
        "bundle metadata does not match its hash",
    ),
    "bundle.json cut short": (
        lambda b: (b / "bundle.json").write_text((b / "bundle.json").read_text()[:300]),
        "bundle metadata is not valid JSON",
    ),
    "a pickle renamed .safetensors": (
        lambda b: _pickle_as_safetensors(b, False),
        "member-0.safetensors does not match its checksum",
    ),
    "a pickle renamed, its checksum recorded": (
        lambda b: _pickle_as_safetensors(b, True),
        "member-0.safetensors is not a safetensors file",
    ),
    "a deleted member": (lambda b: (b / "member-1.safetensors").unlink(), "member-1.safetensors is missing"),
    "a wrong tensor shape": (
        lambda b: _rehash(b, lambda meta: meta["model"].update(hidden=[24])),
        "member-0.safetensors does not fit the model bundle.json records",
    ),
}


@pytest.mark.parametrize("command", ["apply", "run"])
@pytest.mark.parametrize("case", list(BROKEN_BUNDLES))
def test_a_broken_bundle_is_exit_2_with_one_panel_and_no_product(trained_copy, case, command):
    recipe, root = trained_copy
    breakage, expected = BROKEN_BUNDLES[case]
    breakage(root / "bundle")
    result = invoke(command, recipe)
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "bundle error" in text and expected in text and "upscale train" in text
    assert "Traceback" not in result.output and text.count("bundle error") == 1
    assert not (root / "product.zarr").exists()


def test_apply_on_a_finished_run_reads_its_truncated_weights(product_run, tmp_path):
    """`upscale apply` on a finished product is no silent no-op: the bundle is verified first."""
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(product_run.dir, root)
    data = yaml.safe_load(product_run.files.recipe.read_text())
    data["output"]["run_dir"] = str(root)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    weights = root / "bundle" / "member-1.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    result = invoke("apply", tmp_path / "r.yaml")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "member-1.safetensors does not match its checksum" in text, result.output
    assert "Traceback" not in result.output
    assert xr.open_zarr(root / "product.zarr").attrs["upscale_complete"] == "true"  # the product is untouched


def test_prepare_writes_the_cube_and_refuses_a_recipe_without_apply(tiny_world, tmp_path):
    data = tiny_recipe_dict(tiny_world, tmp_path / "run")
    data["apply"]["prepared"] = str(tmp_path / "cube.zarr")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    result = invoke("prepare", tmp_path / "r.yaml")
    assert result.exit_code == 0, result.output
    assert "prepared" in result.output and (tmp_path / "cube.zarr" / "tas").is_dir()
    del data["apply"]
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump(data))
    result = invoke("prepare", tmp_path / "bare.yaml")
    assert result.exit_code == 2 and "no apply section" in result.output and "Traceback" not in result.output
