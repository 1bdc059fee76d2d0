"""The run directory: its paths, what marks it as upscale's, the manifest, and prepare's create/resume/refuse rules."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import pytest

import upscale
from upscale import rundir as rundir_module
from upscale.errors import RunDirError
from upscale.rundir import Manifest, RunDir, prepare

RECIPE = "name: a\nmodel: {type: mlp}\n"
OTHER = "name: b\nmodel: {type: lstm}\n"


def same(old: str, new: str) -> bool:
    """A trivial ``same_results``: the recipes must be equal as text."""
    return old == new


def always(old: str, new: str) -> bool:
    return True


PROPERTIES = sorted(name for name, value in vars(RunDir).items() if isinstance(value, property))


# --------------------------------------------------------------------------- paths


def test_paths_by_hand(tmp_path):
    files = RunDir(tmp_path)
    assert files.recipe == tmp_path / "recipe.yaml" and files.manifest_file == tmp_path / "manifest.json"
    assert files.oof == tmp_path / "cv" / "oof.zarr" and files.metrics == tmp_path / "cv" / "metrics.csv"
    assert files.cv_summary == tmp_path / "cv" / "summary.csv" and files.baselines == tmp_path / "cv" / "baselines.csv"
    assert files.report_md == tmp_path / "report" / "report.md" and files.product == tmp_path / "product.zarr"
    assert files.fold(3) == tmp_path / "cv" / "folds" / "fold-3"
    assert files.aggregate("month") == tmp_path / "aggregates" / "product_month.zarr"
    assert files.export("netcdf") == tmp_path / "product.nc" and files.export("zarr") == tmp_path / "export.zarr"
    assert files.path("cv", "x.csv") == tmp_path / "cv" / "x.csv"


@pytest.mark.parametrize("name", PROPERTIES)
def test_every_path_lies_under_the_root_in_an_entry_upscale_owns(tmp_path, name):
    path = getattr(RunDir(tmp_path / "run"), name)
    relative = path.relative_to(tmp_path / "run")
    assert relative.parts and relative.parts[0] in RunDir.ENTRIES, name


def test_the_method_paths_lie_in_entries_upscale_owns(tmp_path):
    files = RunDir(tmp_path)
    for path in (files.fold(0), files.aggregate("year"), files.export("netcdf"), files.export("zarr")):
        assert path.relative_to(tmp_path).parts[0] in RunDir.ENTRIES, path
    assert {"recipe", "manifest_file", "log", "oof", "bundle", "product", "explain"} <= set(PROPERTIES)


# --------------------------------------------------------------------------- whose directory


@pytest.mark.parametrize(
    "text, ours",
    [
        (json.dumps({"upscale_run": "0.1.0", "stages": {}, "tiles": []}), True),
        (json.dumps({"stages": {}, "tiles": []}), False),  # someone else's manifest.json
        (json.dumps([1, 2]), False),
        ("3", False),
        ("{not json", False),
    ],
)
def test_only_a_manifest_upscale_wrote_marks_a_run_dir(tmp_path, text, ours):
    (tmp_path / "manifest.json").write_text(text)
    assert RunDir(tmp_path).is_run_dir() is ours


def test_no_manifest_or_no_directory_is_not_a_run_dir(tmp_path):
    assert not RunDir(tmp_path).is_run_dir()
    assert not RunDir(tmp_path / "missing").is_run_dir()
    (tmp_path / "manifest.json").mkdir()  # not even a file
    assert not RunDir(tmp_path).is_run_dir()


def test_foreign_entries_are_the_names_upscale_does_not_write(tmp_path):
    for name in ("recipe.yaml", "zeta.txt", "alpha"):
        (tmp_path / name).write_text("")
    (tmp_path / "cv").mkdir()
    assert RunDir(tmp_path).foreign_entries() == ["alpha", "zeta.txt"]


# --------------------------------------------------------------------------- finished product


def test_a_missing_product_is_refused_with_where_and_fix(tmp_path):
    with pytest.raises(RunDirError) as err:
        RunDir(tmp_path).finished_product()
    assert err.value.what == "no product in the run directory" and err.value.where == str(tmp_path)
    assert "upscale run" in err.value.fix


def test_an_unfinished_product_is_refused_until_apply_finished(tmp_path):
    import zarr

    files = RunDir(tmp_path)
    zarr.open_group(str(files.product), mode="w")  # a store of a version before upscale_complete existed
    with pytest.raises(RunDirError, match="the product is unfinished") as err:
        files.finished_product()
    assert err.value.where == str(files.product) and "resumes" in err.value.fix
    files.manifest().finish_stage("apply", 1.0)
    assert files.finished_product() == tmp_path / "product.zarr"


@pytest.mark.parametrize("mark, finished", [("false", False), ("true", True)])
def test_the_store_itself_must_say_it_is_complete(tmp_path, mark, finished):
    import zarr

    files = RunDir(tmp_path)
    zarr.open_group(str(files.product), mode="w").attrs["upscale_complete"] = mark
    files.manifest().finish_stage("apply", 1.0)
    if finished:
        assert files.finished_product() == files.product
    else:
        with pytest.raises(RunDirError, match="the product is unfinished"):
            files.finished_product()


def test_a_product_that_is_no_store_is_refused_naming_it(tmp_path):
    files = RunDir(tmp_path)
    files.product.mkdir()
    files.manifest().finish_stage("apply", 1.0)
    with pytest.raises(RunDirError, match="the product store cannot be opened") as err:
        files.finished_product()
    assert err.value.where == str(files.product) and "upscale apply" in err.value.fix


# --------------------------------------------------------------------------- manifest


def test_a_new_manifest_is_empty_and_written_only_on_change(tmp_path):
    manifest = Manifest(tmp_path / "manifest.json")
    assert manifest.data == {"stages": {}} and manifest.tiles == set()
    assert not manifest.stage_done("train") and manifest.get("x", 7) == 7
    assert not (tmp_path / "manifest.json").exists()


def test_every_update_is_saved_atomically_and_reloads_equal(tmp_path):
    path = tmp_path / "manifest.json"
    manifest = Manifest(path)
    manifest.finish_stage("extract", 1.234, sites=12)
    manifest.add_tile("0-0")
    manifest.add_tile("0-16")
    manifest.set("complete", True)
    assert not list(tmp_path.glob("*.tmp"))
    again = Manifest(path)
    assert again.data == manifest.data == json.loads(path.read_text())
    stage = again.data["stages"]["extract"]
    assert stage["seconds"] == 1.23 and stage["sites"] == 12
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", stage["finished"])
    assert again.tiles == {"0-0", "0-16"} and again.stage_done("extract") and again.get("complete") is True
    assert (tmp_path / "manifest.tiles").read_text() == "0-0\n0-16\n" and "tiles" not in again.data


def test_recording_a_tile_appends_one_line_and_never_rewrites_the_manifest(tmp_path):
    path = tmp_path / "manifest.json"
    manifest = Manifest(path)
    manifest.finish_stage("train", 1.0)
    stamp = path.stat().st_mtime_ns, path.read_text()
    for k in range(500):
        manifest.add_tile(f"{k}-{k + 1}_0-8")
    assert (path.stat().st_mtime_ns, path.read_text()) == stamp
    assert (tmp_path / "manifest.tiles").stat().st_size == sum(len(f"{k}-{k + 1}_0-8\n") for k in range(500))
    assert Manifest(path).tiles == {f"{k}-{k + 1}_0-8" for k in range(500)}
    with pytest.raises(ValueError, match="newline"):
        manifest.add_tile("0-8\n8-16")


def test_a_line_cut_short_by_a_kill_records_no_tile(tmp_path):
    manifest = Manifest(tmp_path / "manifest.json")
    manifest.add_tile("0-8_0-16")
    with open(tmp_path / "manifest.tiles", "a") as log:
        log.write("8-16_0")  # killed inside the write: no newline
    assert Manifest(tmp_path / "manifest.json").tiles == {"0-8_0-16"}
    resumed = Manifest(tmp_path / "manifest.json")  # the next run: its first record drops the torn piece
    resumed.add_tile("8-16_0-16")
    assert (tmp_path / "manifest.tiles").read_text() == "0-8_0-16\n8-16_0-16\n"
    assert Manifest(tmp_path / "manifest.json").tiles == {"0-8_0-16", "8-16_0-16"}


def test_an_old_manifest_with_a_tiles_list_still_resumes_its_tiles(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"upscale_run": "0.1.0", "stages": {"train": {}}, "tiles": ["0-8_0-16"]}))
    manifest = Manifest(path)
    manifest.add_tile("8-16_0-16")
    assert Manifest(path).tiles == {"0-8_0-16", "8-16_0-16"}
    manifest.reset_stages("apply")
    assert Manifest(path).tiles == set() and not (tmp_path / "manifest.tiles").exists()


def test_a_save_that_dies_before_the_rename_leaves_the_old_manifest(tmp_path, monkeypatch):
    path = tmp_path / "manifest.json"
    manifest = Manifest(path)
    manifest.finish_stage("extract", 1.0)
    before = path.read_text()

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir_module.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        manifest.finish_stage("train", 2.0)
    assert path.read_text() == before and json.loads(before)["stages"].keys() == {"extract"}


def test_resetting_apply_clears_its_tiles_and_explain_its_record(tmp_path):
    manifest = Manifest(tmp_path / "manifest.json")
    for stage in ("train", "apply", "explain"):
        manifest.finish_stage(stage, 1.0)
    manifest.add_tile("0-0")
    manifest.sensitivity_log.add("0-8_0-16")
    manifest.set("explain", {"methods": ["saliency"]})
    manifest.reset_stages("train")
    assert manifest.tiles == {"0-0"} and manifest.get("explain") is not None
    assert set(manifest.data["stages"]) == {"apply", "explain"}
    manifest.reset_stages("apply", "never-ran")
    assert manifest.tiles == set() and set(manifest.data["stages"]) == {"explain"}
    assert manifest.get("explain") is not None and manifest.sensitivity_log.ids == {"0-8_0-16"}
    manifest.reset_stages("explain")
    assert manifest.get("explain") is None and manifest.data["stages"] == {}
    assert not (tmp_path / "manifest.sensitivity-tiles").exists()
    assert Manifest(tmp_path / "manifest.json").data == {"stages": {}}


# --------------------------------------------------------------------------- prepare


def test_prepare_creates_a_run_dir_with_the_recipe(tmp_path):
    root = tmp_path / "deep" / "run"
    files, manifest = prepare(root, RECIPE, same)
    assert files.root == root and root.is_dir() and files.recipe.read_text() == RECIPE
    assert manifest.get("recipe") == RECIPE and manifest.get("upscale_run") == upscale.__version__
    assert files.is_run_dir() and files.foreign_entries() == []
    assert Manifest(root / "manifest.json").data == manifest.data


def test_prepare_accepts_an_empty_existing_directory(tmp_path):
    files, _ = prepare(tmp_path, RECIPE, same)
    assert files.is_run_dir()


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("manifest", [None, {"stages": {}, "tiles": []}])
def test_a_foreign_directory_is_refused_even_with_overwrite_and_kept(tmp_path, overwrite, manifest):
    (tmp_path / "thesis.tex").write_text("years of work")
    if manifest is not None:
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RunDirError, match="is not an upscale run directory") as err:
        prepare(tmp_path, RECIPE, always, overwrite=overwrite)
    assert err.value.where == str(tmp_path) and "never deletes" in err.value.fix
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_foreign_manifest_alone_is_refused_and_kept(tmp_path):
    (tmp_path / "manifest.json").write_text('{"experiment": 4}')
    with pytest.raises(RunDirError, match="is not an upscale run directory"):
        prepare(tmp_path, RECIPE, always, overwrite=True)
    assert (tmp_path / "manifest.json").read_text() == '{"experiment": 4}' and not (tmp_path / "recipe.yaml").exists()


def test_a_run_dir_holding_foreign_files_is_refused_and_names_them(tmp_path):
    prepare(tmp_path, RECIPE, same)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"not an upscale run directory \(it holds notes.txt\)"):
        prepare(tmp_path, RECIPE, same, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "recipe.yaml").exists()


def test_an_unfinished_run_of_the_same_recipe_resumes(tmp_path):
    _, manifest = prepare(tmp_path, RECIPE, same)
    manifest.finish_stage("extract", 1.0)
    manifest.add_tile("0-0")
    files, again = prepare(tmp_path, RECIPE, same)
    assert again.stage_done("extract") and again.tiles == {"0-0"} and files.recipe.read_text() == RECIPE


def test_a_resumed_run_keeps_the_recipe_it_was_started_with(tmp_path):
    prepare(tmp_path, RECIPE, same)
    calls = []
    _, manifest = prepare(tmp_path, OTHER, lambda old, new: calls.append((old, new)) or True)
    assert calls == [(RECIPE, OTHER)]
    assert manifest.get("recipe") == RECIPE and (tmp_path / "recipe.yaml").read_text() == RECIPE


def test_a_finished_run_is_refused_without_overwrite(tmp_path):
    _, manifest = prepare(tmp_path, RECIPE, same)
    manifest.set("complete", True)
    with pytest.raises(RunDirError, match="already holds a finished run") as err:
        prepare(tmp_path, RECIPE, same)
    assert err.value.where == str(tmp_path) and "--overwrite" in err.value.fix
    files, _ = prepare(tmp_path, RECIPE, same, new_run=False)  # a single stage may re-run on it
    assert files.is_run_dir()


def test_a_run_of_a_different_recipe_is_refused(tmp_path):
    prepare(tmp_path, RECIPE, same)
    with pytest.raises(RunDirError, match="holds a run of a different recipe") as err:
        prepare(tmp_path, OTHER, same)
    assert "--overwrite" in err.value.fix and "--run-dir" in err.value.fix
    with pytest.raises(RunDirError, match="different recipe"):
        prepare(tmp_path, OTHER, same, new_run=False)
    assert (tmp_path / "recipe.yaml").read_text() == RECIPE


def finished_run(root: Path) -> dict[str, bytes]:
    """A fake finished run in ``root``; returns :func:`snapshot` of it."""
    _, manifest = prepare(root, RECIPE, same)
    manifest.finish_stage("apply", 1.0)
    manifest.add_tile("0-0")
    manifest.set("complete", True)
    (root / "cv" / "folds").mkdir(parents=True)
    (root / "cv" / "metrics.csv").write_text("site\n")
    (root / "product.zarr" / "gpp").mkdir(parents=True)
    (root / "product.zarr" / "gpp" / "0.0").write_bytes(bytes(range(256)))
    (root / "bundle").mkdir()
    (root / "bundle" / "member-0.safetensors").write_bytes(b"weights" * 100)
    (root / "log.txt").write_text("old log")
    return snapshot(root)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def test_overwrite_sets_the_old_run_aside_and_starts_the_new_recipe(tmp_path):
    old = finished_run(tmp_path)
    files, fresh = prepare(tmp_path, OTHER, same, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".replaced", "manifest.json", "recipe.yaml"]
    assert snapshot(files.replaced) == old  # untouched until the new run has finished a stage
    assert files.recipe.read_text() == OTHER and fresh.get("recipe") == OTHER
    assert fresh.data["stages"] == {} and fresh.tiles == set() and fresh.get("complete") is None
    assert fresh.get("upscale_run") == upscale.__version__ and files.foreign_entries() == []


def test_the_old_run_goes_once_the_new_one_has_finished_a_stage(tmp_path):
    finished_run(tmp_path)
    files, fresh = prepare(tmp_path, OTHER, same, overwrite=True)
    (tmp_path / "sites.zarr").mkdir()
    fresh.finish_stage("extract", 1.0)
    assert files.settle() == "dropped" and not files.replaced.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "recipe.yaml", "sites.zarr"]
    assert files.settle() is None  # nothing pending any more


def test_an_overwrite_that_finished_no_stage_restores_the_old_run_byte_for_byte(tmp_path):
    old = finished_run(tmp_path)
    files, fresh = prepare(tmp_path, OTHER, same, overwrite=True)
    (tmp_path / "sites.zarr").mkdir()  # a partial first stage
    (tmp_path / "log.txt").write_text("new log")
    fresh.set("complete", False)
    assert files.settle() == "restored"
    assert snapshot(tmp_path) == old


class Killed(BaseException):
    """A SIGKILL stand-in: the process stops between two file operations."""


def kill_after(monkeypatch, calls: int, *names: str):
    """Make the ``calls``-th call of the named file operations (``os.replace``, ``shutil.rmtree``...) die."""
    count = [0]
    for name in names:
        *module, attr = name.split(".")
        owner = getattr(rundir_module, module[0]) if module else rundir_module
        real = getattr(owner, attr)

        def dying(*args, real=real, **kwargs):
            count[0] += 1
            if count[0] == calls:
                raise Killed
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, attr, dying)


@pytest.mark.parametrize("calls", range(1, 8))
def test_an_overwrite_killed_while_setting_aside_is_undone_by_the_next_prepare(tmp_path, monkeypatch, calls):
    old = finished_run(tmp_path)
    kill_after(monkeypatch, calls, "os.replace")
    with contextlib.suppress(Killed):
        prepare(tmp_path, OTHER, same, overwrite=True)
    monkeypatch.undo()
    with pytest.raises(RunDirError, match="already holds a finished run"):  # the old run is back
        prepare(tmp_path, OTHER, same)
    assert snapshot(tmp_path) == old


@pytest.mark.parametrize("calls", range(1, 12))
def test_a_restore_killed_half_way_finishes_on_the_next_settle(tmp_path, monkeypatch, calls):
    old = finished_run(tmp_path)
    files, _ = prepare(tmp_path, OTHER, same, overwrite=True)
    (tmp_path / "sites.zarr" / "tas").mkdir(parents=True)
    (tmp_path / "log.txt").write_text("new log")
    kill_after(monkeypatch, calls, "os.replace", "shutil.rmtree", "_remove")
    with contextlib.suppress(Killed):
        files.settle()
    monkeypatch.undo()
    assert files.settle() in ("restored", None)
    assert snapshot(tmp_path) == old


def test_an_overwrite_killed_before_its_first_stage_is_restored_before_the_next_one(tmp_path):
    old = finished_run(tmp_path)
    prepare(tmp_path, OTHER, same, overwrite=True)  # then SIGKILL: nothing settled
    (tmp_path / "sites.zarr").mkdir()
    files, _ = prepare(tmp_path, OTHER, same, overwrite=True)  # the second try
    assert snapshot(files.replaced) == old and not (tmp_path / "sites.zarr").exists()
    assert files.settle() == "restored" and snapshot(tmp_path) == old


def test_an_overwrite_that_cannot_write_its_manifest_restores_the_old_run(tmp_path, monkeypatch):
    old = finished_run(tmp_path)

    def full(self, key, value):
        raise OSError(28, "No space left on device", str(self.path))

    monkeypatch.setattr(Manifest, "set", full)
    with pytest.raises(RunDirError, match="cannot write the run directory: No space left on device") as err:
        prepare(tmp_path, OTHER, same, overwrite=True)
    assert err.value.where == str(tmp_path / "manifest.json")
    assert snapshot(tmp_path) == old


# --------------------------------------------------------------------------- paths that cannot be a run


def test_a_run_dir_that_is_a_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b\n")
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match="is a file, not a folder") as err:
            prepare(path, RECIPE, same, overwrite=overwrite)
        assert err.value.where == str(path) and "folder" in err.value.fix
    assert path.read_text() == "a,b\n"


def test_a_run_dir_below_a_file_is_refused(tmp_path):
    (tmp_path / "results.csv").write_text("")
    with pytest.raises(RunDirError, match="cannot write the run directory") as err:
        prepare(tmp_path / "results.csv" / "run", RECIPE, same)
    assert "results.csv" in err.value.where and "--run-dir" in err.value.fix


def test_a_run_dir_in_a_read_only_folder_is_refused(tmp_path, monkeypatch):
    """Root may write anywhere, so the refusal of the file system is simulated."""

    def refused(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(RunDirError, match="cannot write the run directory: Permission denied") as err:
        prepare(tmp_path / "ro" / "run", RECIPE, same)
    assert err.value.where == str(tmp_path / "ro" / "run") and "permissions" in err.value.fix


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_run_dir_in_a_really_read_only_folder_is_refused(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(RunDirError, match="Permission denied"):
        prepare(tmp_path / "ro" / "run", RECIPE, same)


# --------------------------------------------------------------------------- a corrupt manifest


@pytest.mark.parametrize("text", [b"{not json", b"", b'{"upscale_run": "0.1.0", "stag', b"\xff\xfe"])
def test_a_corrupt_manifest_is_named_and_replaced_only_with_overwrite(tmp_path, text):
    old = finished_run(tmp_path)
    (tmp_path / "manifest.json").write_bytes(text)
    old["manifest.json"] = text
    with pytest.raises(RunDirError, match=r"manifest.json is corrupt \(not JSON\)") as err:
        prepare(tmp_path, RECIPE, same)
    assert err.value.where == str(tmp_path / "manifest.json") and "--overwrite" in err.value.fix
    assert snapshot(tmp_path) == old
    files, fresh = prepare(tmp_path, RECIPE, same, overwrite=True)
    assert fresh.get("recipe") == RECIPE and snapshot(files.replaced) == old
    assert files.settle() == "restored" and snapshot(tmp_path) == old


@pytest.mark.parametrize("others", [{}, {"thesis.tex": "precious"}])
def test_a_corrupt_manifest_alone_or_with_foreign_files_is_no_run(tmp_path, others):
    (tmp_path / "manifest.json").write_text("{not json")
    (tmp_path / "recipe.yaml").write_text("") if others else None
    for name, text in others.items():
        (tmp_path / name).write_text(text)
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(RunDirError, match="is not an upscale run directory"):
            prepare(tmp_path, RECIPE, same, overwrite=overwrite)
    assert snapshot(tmp_path) == before


def test_reading_a_corrupt_manifest_is_a_run_dir_error(tmp_path):
    (tmp_path / "manifest.json").write_text('{"stages": ')
    with pytest.raises(RunDirError, match="corrupt") as err:
        Manifest(tmp_path / "manifest.json")
    assert err.value.where == str(tmp_path / "manifest.json") and "--overwrite" in err.value.fix
