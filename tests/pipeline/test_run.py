"""A recipe bound to its run directory: opening, resuming and refusing it, its log, its summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from upscale.errors import RunDirError
from upscale.pipeline import STAGES, Reporter, open_run, run_log, same_results, summary
from upscale.pipeline.run import timed
from upscale.recipe import dump_recipe, load_recipe


def test_a_new_run_directory(tiny_recipe, tmp_path):
    recipe = load_recipe(tiny_recipe)
    run = open_run(recipe)
    assert run.dir == tmp_path / "run" and run.files.is_run_dir() and isinstance(run.reporter, Reporter)
    assert run.files.recipe.read_text() == dump_recipe(recipe) == run.manifest.get("recipe")
    assert run.manifest.data["stages"] == {} and not run.manifest.get("complete")
    assert Path(run.catalog.path) == Path(recipe.catalog) and run.catalog is run.catalog  # loaded once
    assert run.path("cv", "metrics.csv") == run.files.metrics


def test_an_unfinished_run_resumes_on_another_cluster(fresh_run, tiny_recipe):
    fresh_run.manifest.finish_stage("extract", 1.0, sites=12)
    again = open_run(load_recipe(tiny_recipe, ["cluster={type: local, n_workers: 1}"]))
    assert again.manifest.data["stages"]["extract"]["sites"] == 12
    assert "synchronous" in again.files.recipe.read_text()  # the run keeps the recipe it started with


def test_a_run_of_a_different_recipe_is_refused(fresh_run, tiny_recipe):
    with pytest.raises(RunDirError, match="different recipe"):
        open_run(load_recipe(tiny_recipe, ["training.epochs=3"]))
    with pytest.raises(RunDirError, match="different recipe"):  # single stages refuse it too
        open_run(load_recipe(tiny_recipe, ["training.epochs=3"]), new_run=False)


def test_a_finished_run_is_refused_unless_overwritten(fresh_run, tiny_recipe):
    fresh_run.manifest.finish_stage("extract", 1.0)
    fresh_run.manifest.set("complete", True)
    (fresh_run.files.sites).mkdir()
    with pytest.raises(RunDirError, match="already holds a finished run") as err:
        open_run(load_recipe(tiny_recipe))
    assert "--overwrite" in err.value.message
    assert open_run(load_recipe(tiny_recipe), new_run=False).manifest.stage_done("extract")  # single stages
    fresh = open_run(load_recipe(tiny_recipe, ["training.epochs=3"]), overwrite=True)
    assert fresh.manifest.data["stages"] == {} and not fresh.files.sites.exists()
    assert "epochs: 3" in fresh.files.recipe.read_text() and fresh.manifest.get("recipe") == dump_recipe(
        load_recipe(tiny_recipe, ["training.epochs=3"])
    )


@pytest.mark.parametrize(
    "contents", [{"thesis.tex": "precious"}, {"manifest.json": '{"app": "other"}', "thesis.tex": "precious"}]
)
def test_overwrite_never_deletes_a_foreign_folder(tiny_recipe, tmp_path, contents):
    """A folder upscale did not make is refused and kept, even one holding a manifest.json."""
    precious = tmp_path / "precious"
    precious.mkdir()
    for name, text in contents.items():
        (precious / name).write_text(text)
    with pytest.raises(RunDirError, match="not an upscale run directory"):
        open_run(load_recipe(tiny_recipe, [f"output.run_dir={precious}"]), overwrite=True)
    assert {p.name: p.read_text() for p in precious.iterdir()} == contents


def test_a_run_directory_with_a_stranger_inside_is_refused(fresh_run, tiny_recipe):
    (fresh_run.dir / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"it holds notes\.txt"):
        open_run(load_recipe(tiny_recipe), overwrite=True)
    assert (fresh_run.dir / "notes.txt").exists()


def test_an_empty_existing_folder_becomes_the_run(tiny_recipe, tmp_path):
    (tmp_path / "run").mkdir()
    assert open_run(load_recipe(tiny_recipe)).files.is_run_dir()


def test_run_log_writes_log_txt_while_the_block_runs(fresh_run):
    log = logging.getLogger("upscale")
    handlers = list(log.handlers)
    with pytest.raises(RuntimeError), run_log(fresh_run):
        logging.getLogger("upscale.test").debug("inside the block")
        raise RuntimeError("stage failed")
    log.warning("after the block")
    text = fresh_run.files.log.read_text()
    assert "DEBUG upscale.test: inside the block" in text and "after the block" not in text
    assert log.handlers == handlers


def test_timed_records_a_finished_stage_only(fresh_run):
    timed(fresh_run, "extract", lambda run: {"sites": 3})
    timed(fresh_run, "train", lambda run: None)
    stages = json.loads(fresh_run.files.manifest_file.read_text())["stages"]
    assert stages["extract"]["sites"] == 3 and stages["extract"]["seconds"] >= 0 and "finished" in stages["train"]

    def fail(run):
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        timed(fresh_run, "evaluate", fail)
    assert not fresh_run.manifest.stage_done("evaluate")


def test_summary_of_a_finished_run(product_run):
    info = summary(product_run)
    stages = product_run.manifest.data["stages"]
    product = product_run.files.product
    assert info["run_dir"] == str(product_run.dir) and info["product"] == str(product)
    assert info["product_bytes"] == sum(f.stat().st_size for f in product.rglob("*") if f.is_file()) > 0
    assert info["timings"] == {name: stages[name]["seconds"] for name in STAGES}
    assert info["cv"] == stages["evaluate"]["median"] and set(info["cv"]) == {"gpp", "et"}
    assert info["sites"] == 12 and info["days"] == 181


def test_summary_of_a_run_that_has_not_started(fresh_run):
    info = summary(fresh_run)
    assert info["product_bytes"] == 0 and info["timings"] == {} and info["cv"] == {}
    assert info["sites"] is None and info["days"] is None


def test_same_results_ignores_cluster_explain_and_place(tiny_recipe):
    base = dump_recipe(load_recipe(tiny_recipe))
    moved = load_recipe(
        tiny_recipe, ["cluster={type: local}", "output.run_dir=/elsewhere", "explain={methods: [sensitivity]}"]
    )
    assert same_results(base, dump_recipe(moved))
    assert not same_results(base, dump_recipe(load_recipe(tiny_recipe, ["model.hidden=[8]"])))
    assert not same_results(None, base)  # a manifest without a recipe is no run of it
