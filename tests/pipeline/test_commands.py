"""What the commands call: which stages run (and which are skipped), the cluster, checking a recipe."""

from __future__ import annotations

import pytest

from upscale.errors import RecipeError, RunDirError, UpscaleError
from upscale.pipeline import STAGES, Reporter, execute, explain_run, run_stages, stages_through, summary, validate
from upscale.pipeline import commands as execute_module
from upscale.recipe import load_recipe


@pytest.fixture
def stages(monkeypatch):
    """Every stage replaced by a fake that records its name; apply and explain record the clients they get."""
    ran, closed = [], []

    def fake(name):
        def stage(run):
            ran.append(name)
            return {"fake": name}

        return stage

    def apply(run, client_factory):
        ran.append(("apply", client_factory()))

    def explain(run, client_factory):
        ran.append(("explain", client_factory(), client_factory()))

    site_stages = {name: fake(name) for name in ("extract", "evaluate", "train", "report")}
    monkeypatch.setattr(execute_module, "_SITE_STAGES", site_stages)
    monkeypatch.setattr(execute_module, "stage_apply", apply)
    monkeypatch.setattr(execute_module, "stage_explain", explain)
    monkeypatch.setattr("upscale.cluster.close_client", closed.append)
    return ran, closed


class Clients:
    """A fake ``client_factory``/``start_cluster`` counting the clients it starts."""

    def __init__(self):
        self.started = []

    def __call__(self, *args):
        self.started.append(args)
        return f"client-{len(self.started)}"


@pytest.mark.parametrize(
    "stage, expected",
    [
        ("extract", ("extract",)),
        ("apply", ("extract", "evaluate", "train", "apply")),
        ("report", STAGES),
    ],
)
def test_stages_through(stage, expected):
    assert stages_through(stage) == expected


def test_finished_stages_are_skipped(fresh_run, stages):
    ran, _ = stages
    run_stages(fresh_run, ("extract", "train"))
    assert ran == ["extract", "train"] and not fresh_run.manifest.get("complete")
    assert fresh_run.manifest.data["stages"]["train"]["fake"] == "train"  # what a stage returns is recorded
    run_stages(fresh_run, STAGES)
    assert ran[2:] == ["evaluate", ("apply", None), ("explain", None, None), "report"]
    assert fresh_run.manifest.get("complete")
    run_stages(fresh_run, STAGES)
    assert len(ran) == 6


def test_a_forced_stage_invalidates_the_later_ones(fresh_run, stages):
    ran, _ = stages
    run_stages(fresh_run, STAGES)
    fresh_run.manifest.add_tile("0-8_0-16")
    run_stages(fresh_run, ("train",), force=("train",))
    assert ran[-1] == "train" and len(ran) == 7
    assert [s for s in STAGES if fresh_run.manifest.stage_done(s)] == ["extract", "evaluate", "train"]
    assert fresh_run.manifest.tiles == set() and not fresh_run.manifest.get("complete")


def test_the_client_starts_once_when_a_stage_needs_it_and_is_closed(fresh_run, stages):
    ran, closed = stages
    clients = Clients()
    run_stages(fresh_run, ("extract", "evaluate", "train"), client_factory=clients)
    assert clients.started == [] and closed == []
    run_stages(fresh_run, STAGES, client_factory=clients)
    assert ran[3:5] == [("apply", "client-1"), ("explain", "client-1", "client-1")]
    assert len(clients.started) == 1 and closed == ["client-1"]


def test_the_client_is_closed_before_the_report(fresh_run, stages, monkeypatch):
    """Batch worker jobs must not idle (and be resubmitted at their walltime) through the report."""
    ran, closed = stages
    monkeypatch.setitem(execute_module._SITE_STAGES, "report", lambda run: ran.append(("report", list(closed))))
    run_stages(fresh_run, STAGES, client_factory=Clients())
    assert ran[-1] == ("report", ["client-1"]) and closed == ["client-1"]


def test_the_client_is_closed_when_a_stage_fails(fresh_run, stages, monkeypatch):
    _, closed = stages

    def broken(run):
        raise ValueError("report failed")

    monkeypatch.setitem(execute_module._SITE_STAGES, "report", broken)
    with pytest.raises(ValueError, match="report failed"):
        run_stages(fresh_run, STAGES, client_factory=Clients())
    assert closed == ["client-1"] and not fresh_run.manifest.stage_done("report")
    assert fresh_run.manifest.stage_done("explain") and not fresh_run.manifest.get("complete")


class Messages(Reporter):
    def __init__(self):
        self.lines = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def test_execute_returns_the_summary_and_starts_a_cluster_only_for_apply(tiny_recipe, stages):
    recipe, clients, reporter = load_recipe(tiny_recipe), Clients(), Messages()
    info = execute(recipe, stages=stages_through("train"), start_cluster=clients, reporter=reporter)
    assert clients.started == [] and set(info["timings"]) == {"extract", "evaluate", "train"}
    assert reporter.lines == [f"run directory: {recipe.output.run_dir}"]
    info = execute(recipe, new_run=False, start_cluster=clients)
    assert clients.started == [(recipe.cluster,)] and set(info["timings"]) == set(STAGES)
    assert info == summary(execute_module.open_run(recipe, new_run=False))


def test_execute_checks_the_recipe_before_writing_anything(tiny_recipe, stages):
    recipe = load_recipe(tiny_recipe, ["apply.bbox=[100, 86, 110, 89]"])
    with pytest.raises(RecipeError, match="apply domain is empty"):
        execute(recipe)
    assert stages[0] == [] and not (tiny_recipe.parent / "run").exists()


def test_validate_reports_the_domain(tiny_recipe):
    info = validate(load_recipe(tiny_recipe))
    assert info["sites"] == 12 and info["grid"] == "18 x 36 cells" and info["days"] == 181
    assert info["period"] == "2018-01-01..2018-06-30" and info["catalog"].endswith("catalog.yaml")
    info = validate(
        load_recipe(tiny_recipe, ["apply.bbox=[-30, 0, 30, 30]", "apply.period={start: 2018-02-01, end: 2018-02-28}"])
    )
    assert info["days"] == 28 and info["period"] == "2018-02-01..2018-02-28" and info["grid"] != "18 x 36 cells"


@pytest.mark.parametrize(
    "overrides, error, expected",
    [
        (["model.type=transformer"], RecipeError, "unknown model type 'transformer'"),
        (["output.parameters=true"], RecipeError, "the mlp model has no process parameters"),
        (["validation.scheme=none", "explain={methods: [memory]}"], RecipeError, "run on the cross-validation folds"),
        (["predictors={era6: [tas]}"], UpscaleError, "no entry 'era6'"),
        (["predictors={era5: [tas], eo: [lai]}"], UpscaleError, "variable 'lai' is not in the cube"),
        (["sites.exclude=[XX-Nope]"], UpscaleError, "unknown sites: XX-Nope"),
        (["validation.folds=20"], UpscaleError, "needs at least 20 sites"),
        (["apply.bbox=[-170, -50, -120, -10]"], RecipeError, "the apply domain has no land pixel"),
    ],
)
def test_validate_refuses_recipes_that_do_not_fit_their_data(tiny_recipe, overrides, error, expected):
    with pytest.raises(error) as err:
        validate(load_recipe(tiny_recipe, overrides))
    assert expected in " ".join(err.value.message.split())


def test_explain_run_refuses_what_is_not_a_finished_run(fresh_run, tmp_path):
    with pytest.raises(RunDirError, match="not an upscale run directory"):
        explain_run(tmp_path)
    fresh_run.manifest.finish_stage("extract", 1.0)
    with pytest.raises(RunDirError, match="has not finished evaluate, train"):
        explain_run(fresh_run.dir)


def test_validate_refuses_an_ocean_domain_naming_the_bbox(tiny_recipe):
    with pytest.raises(RecipeError) as err:
        validate(load_recipe(tiny_recipe, ["apply.bbox=[-170, -50, -120, -10]"]))  # the South Pacific
    assert err.value.where == "apply.bbox" and "all NaN" in err.value.message
    validate(load_recipe(tiny_recipe, ["apply.bbox=[-10, 35, 30, 60]"]))  # Europe has land


def test_validate_refuses_predictors_that_cover_different_periods(tiny_world, monkeypatch):
    from upscale.errors import DataError
    from upscale.pipeline import checks
    from upscale.recipe import Period
    from upscale.sources import catalog

    real = catalog.cached_entry

    def eo_first_quarter(path, entry):
        return real(path, entry).isel(time=slice(0, 90)) if entry == "eo" else real(path, entry)

    monkeypatch.setattr(catalog, "cached_entry", eo_first_quarter)
    dynamic = [("era5", "tas"), ("eo", "fapar")]
    with pytest.raises(DataError) as err:
        checks.check_common_period(str(tiny_world), dynamic)
    assert "eo: 2018-01-01..2018-03-31 (90 days)" in err.value.message
    assert "era5: 2018-01-01..2018-06-30 (181 days)" in err.value.message and err.value.where == "predictors"
    # an apply period inside the overlap says the overlap is what is wanted
    checks.check_common_period(str(tiny_world), dynamic, Period(start="2018-01-10", end="2018-03-01"))
    with pytest.raises(DataError):
        checks.check_common_period(str(tiny_world), dynamic, Period(start="2018-01-10", end="2018-05-01"))


# --------------------------------------------------------------------------- overwrite


def hashes(root) -> dict[str, str]:
    """sha256 of every file under ``root`` by relative path (a run's product, bundle, CV...)."""
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def overwrite_of(run_copy, *overrides):
    """The copied finished run's recipe with ``overrides``, to be run with ``overwrite=True``."""
    return load_recipe(run_copy.files.recipe, [f"output.run_dir={run_copy.dir}", *overrides])


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), RuntimeError("extract broke"), OSError(28, "disk full")])
def test_an_overwrite_interrupted_before_its_first_stage_restores_the_old_run(run_copy, stages, monkeypatch, failure):
    old = hashes(run_copy.dir)
    assert {"bundle/bundle.json", "product.zarr/zarr.json", "cv/metrics.csv"} <= set(old)

    def extract(run):
        (run.files.sites).mkdir()  # a partial first stage
        raise failure

    monkeypatch.setitem(execute_module._SITE_STAGES, "extract", extract)
    reporter = Messages()
    with pytest.raises(type(failure)):
        execute(overwrite_of(run_copy, "training.epochs=3"), overwrite=True, reporter=reporter)
    assert hashes(run_copy.dir) == old and not run_copy.files.replaced.exists()
    assert reporter.lines[-1] == f"the run directory holds its previous run again: {run_copy.dir}"
    assert stages[0] == []


def test_a_successful_overwrite_leaves_no_old_run_behind(run_copy, stages, monkeypatch):
    seen = []
    monkeypatch.setitem(execute_module._SITE_STAGES, "evaluate", lambda run: seen.append(run.files.replaced.exists()))
    info = execute(overwrite_of(run_copy, "training.epochs=3"), overwrite=True)
    assert seen == [False]  # the old run went when extract had finished
    assert not run_copy.files.replaced.exists() and not any(p.name.startswith(".") for p in run_copy.dir.iterdir())
    assert set(info["timings"]) == set(STAGES) and not run_copy.files.product.exists()
    assert "epochs: 3" in run_copy.files.recipe.read_text()


def test_an_overwrite_failing_after_its_first_stage_keeps_the_new_run_to_resume(run_copy, stages, monkeypatch):
    def evaluate(run):
        raise RuntimeError("evaluate broke")

    monkeypatch.setitem(execute_module._SITE_STAGES, "evaluate", evaluate)
    recipe = overwrite_of(run_copy, "training.epochs=3")
    with pytest.raises(RuntimeError):
        execute(recipe, overwrite=True)
    assert not run_copy.files.replaced.exists() and not run_copy.files.product.exists()
    monkeypatch.setitem(execute_module._SITE_STAGES, "evaluate", lambda run: None)
    execute(recipe)  # resumes the new run
    assert stages[0][0] == "extract" and stages[0].count("extract") == 1


# --------------------------------------------------------------------------- the model, before anything runs


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model.type=lstm", "model.hidden=[]"], "the lstm model needs model.hidden to give its state size"),
        (["model.type=ealstm", "model.hidden=[]"], "the ealstm model needs model.hidden"),
        (["model.type=hybrid", "model.hidden=[]"], "the hybrid model needs model.hidden"),
        (["model.hidden=[65536, 65536]"], "makes a model of 4.3e+09 weights per ensemble member"),
        (["model.type=lstm", "model.hidden=[20000]"], "makes a model of 1.6e+09 weights"),
        (["model.type=hybrid", "predictors={era5: [tas, rsds], eo: [fapar]}"], "needs the predictors vpd"),
    ],
)
def test_validate_refuses_models_that_could_not_train(tiny_recipe, overrides, expected):
    with pytest.raises(RecipeError) as err:
        validate(load_recipe(tiny_recipe, overrides))
    assert expected in err.value.message and err.value.where in ("model.hidden", "predictors")


@pytest.mark.parametrize("model", ["{type: mlp, hidden: []}", "{type: lstm, hidden: [4096]}", "{type: ealstm}"])
def test_validate_accepts_models_that_fit(tiny_recipe, model):
    assert validate(load_recipe(tiny_recipe, [f"model={model}"]))["sites"] == 12


def test_an_overwrite_with_a_bad_model_touches_nothing(run_copy, stages):
    old = hashes(run_copy.dir)
    with pytest.raises(RecipeError, match=r"model\.hidden"):
        execute(overwrite_of(run_copy, "model.hidden=[]", "model.type=lstm"), overwrite=True)
    assert hashes(run_copy.dir) == old and stages[0] == []
