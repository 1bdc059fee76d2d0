"""The recipe: a pydantic schema, loading from YAML, ``--set`` overrides and path resolution.

Paths inside a recipe (``catalog``) are relative to the recipe file; the run
directory is relative to the working directory the command runs in, like any
output path a command-line tool is given.
"""

from __future__ import annotations

import datetime
import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from upscale.errors import RecipeError
from upscale.variables import TARGETS, VARIABLES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Sites(_Strict):
    """Which flux-tower sites to train on."""

    source: str = Field("fluxnet", description="Catalog entry holding the site observations.")
    include: list[str] | None = Field(None, description="Site ids to use; all sites of the entry when omitted.")
    exclude: list[str] = Field(default_factory=list, description="Site ids to leave out.")
    qc_min: float = Field(0.8, ge=0, le=1, description="Minimum daily QC fraction for an observation to count.")
    gpp_partitioning: Literal["NT", "DT"] = Field("NT", description="GPP_NT_VUT_REF (NT) or GPP_DT_VUT_REF (DT).")
    le_variant: Literal["F_MDS", "CORR"] = Field("F_MDS", description="LE_F_MDS or energy-balance-corrected LE_CORR.")


class Model(_Strict):
    """The model family and its size."""

    type: str = Field("mlp", description="Registered model name (see upscale.models.registry).")
    hidden: list[int] = Field(default_factory=lambda: [64, 64], description="Hidden layer widths.")
    dropout: float = Field(0.0, ge=0, lt=1)


class Training(_Strict):
    """How each ensemble member is trained."""

    ensemble: int = Field(5, ge=1, le=100, description="Number of ensemble members.")
    site_fraction: float = Field(0.8, gt=0, le=1, description="Fraction of training sites each member sees; "
                                 "the rest are its early-stopping validation sites.")
    epochs: int = Field(60, ge=1, description="Maximum number of epochs.")
    patience: int = Field(6, ge=1, description="Epochs without validation improvement before stopping.")
    batch_size: int = Field(1024, ge=8, description="Days per mini-batch of per-day models (mlp).")
    sequence_length: int = Field(365, ge=8, description="Days per training window of sequence models.")
    warmup: int = Field(90, ge=0, description="Leading days of each window that carry no loss while the "
                        "state settles (at most a third of the window).")
    windows_per_batch: int = Field(16, ge=1, description="Windows per mini-batch of sequence models.")
    loss: Literal["nll", "nse"] = Field("nll", description="Gaussian NLL, or NSE-style (each site weighted by "
                                        "its variability) for the mean plus NLL for the variance.")
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: int | None = Field(None, ge=1, description="Processes training ensemble members side by side; "
                                "when omitted one per CPU core on CPU, 1 on a GPU.")
    mixed_precision: bool = Field(False, description="bfloat16 autocast of the forward pass on a GPU "
                                  "(ignored on CPU).")


class Validation(_Strict):
    """Cross-validation that estimates skill at unseen sites."""

    scheme: Literal["kfold", "loso", "group", "none"] = Field(
        "kfold", description="Grouped leave-site-out k-fold, leave-one-site-out, leave-group-out, or none.")
    folds: int = Field(5, ge=2, description="Number of folds of kfold (sites are grouped, never split).")
    group_by: Literal["igbp", "climate"] = Field(
        "igbp", description="Groups of the 'group' scheme: the site's IGBP class, or its Koppen main climate "
                            "zone (A, B, C, D, E) from the site's predictors.")


class Period(_Strict):
    start: datetime.date
    end: datetime.date

    @model_validator(mode="after")
    def _ordered(self):
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class Apply(_Strict):
    """Where and how the trained ensemble is applied."""

    period: Period | None = Field(None, description="Dates to apply to; the whole cube when omitted.")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="(lon_min, lat_min, lon_max, lat_max); the whole cube when omitted.")
    tile_lat: int = Field(32, ge=1, description="Tile height in grid cells (also the output chunk).")
    tile_lon: int = Field(64, ge=1, description="Tile width in grid cells (also the output chunk).")
    time_chunk: int = Field(366, ge=1, description="Days per output chunk; sequence state passes between them.")
    batch_size: int | None = Field(None, ge=1, description="Pixel-days per inference batch inside a tile "
                                   "(bounds memory; pixels per batch = batch_size // days of the time chunk); "
                                   "when omitted 32768 on CPU (cache-sized) and 4194304 on a GPU.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where workers run the model; auto: "
                                                   "the worker's GPU when it has one, else CPU.")
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Inference precision on a GPU (reduced precision is ignored on CPU); "
                               "outputs are float32 either way.")


class Output(_Strict):
    """Where the run directory is and what the product holds."""

    run_dir: str | None = Field(None, description="Run directory; runs/<name> when omitted.")
    title: str = "upscale GPP and ET product"
    institution: str = "unknown"
    units: Literal["default", "si"] = Field(
        "default", description="Product units: default g m-2 d-1 (GPP) and kg m-2 d-1 (ET); si: kg m-2 s-1.")
    parameters: bool = Field(False, description="Also write the hybrid model's learned process parameters "
                             "(lue_max, t_opt, vpd_sensitivity, f_water, pt_alpha) as maps.")


EXPLAIN_METHODS = ("importance", "memory", "attribution", "sensitivity", "cell_states")


class Explain(_Strict):
    """Explanations of the trained models (``upscale explain``; a stage of ``upscale run`` when present).

    Site-level methods (importance, memory, attribution, cell_states) use the cross-validation
    fold ensembles on their own test sites; sensitivity maps use the final bundle over the grid.
    """

    methods: list[Literal[EXPLAIN_METHODS]] = Field(
        default_factory=lambda: list(EXPLAIN_METHODS),
        description="Methods to run; memory and cell_states apply to models with memory only.")
    targets: list[str] | None = Field(None, description="Targets to explain; all of the recipe's when omitted.")
    predictors: list[str] | None = Field(
        None, description="Predictors to explain (canonical names); importance: all predictors when omitted; "
                          "memory, attribution, sensitivity: all dynamic predictors when omitted.")
    repeats: int = Field(5, ge=2, le=100, description="Permutation importance: repeats (mean and sd).")
    block_days: int = Field(30, ge=1, description="Permutation importance: days per permuted block.")
    lags: list[int] = Field(default_factory=lambda: [0, 1, 3, 7, 15, 30, 60, 90, 180],
                            description="Memory effects: days of intact history k.")
    window: int = Field(180, ge=1, le=1000, description="Attributions: days of input window before each "
                                                        "explained day (lags 0..window-1).")
    days_per_site: int = Field(8, ge=1, le=365, description="Attributions: explained days per site.")
    sensitivity_every: int = Field(
        1, ge=1, le=31, description="Sensitivity maps: differentiate every n-th day (1: every day, exact means; "
                                    "n > 1: monthly means estimated from every n-th day, about n times faster).")
    seed: int = 0

    @field_validator("lags")
    @classmethod
    def _sorted_lags(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 0 or len(set(value)) != len(value):
            raise ValueError("lags must be distinct non-negative days, e.g. [0, 1, 3, 7, 15, 30]")
        return sorted(value)


_HPC_ONLY = ("queue", "account", "walltime", "cores", "processes", "memory", "job_script_prologue",
             "job_extra_directives", "job_directives_skip", "interface", "log_directory", "gpu_directive",
             "python")


class Cluster(_Strict):
    """The Dask cluster the apply stage runs on.

    ``local`` (default) starts workers on this machine: one per GPU through dask-cuda when
    it is installed and GPUs are visible, else CPU workers. ``address`` connects to a running
    scheduler, ``synchronous`` runs tiles in-process, ``slurm`` and ``pbs`` submit worker jobs
    through dask-jobqueue. Each worker runs one tile at a time and gives torch its threads.
    """

    type: Literal["local", "address", "synchronous", "slurm", "pbs"] = Field(
        "local", description="local, address (a running scheduler), synchronous (in-process), slurm or pbs.")
    address: str | None = Field(None, description="type address: the scheduler, e.g. tcp://host:8786.")
    n_workers: int | None = Field(
        None, ge=1, description="Workers in all. local: default one per GPU, or 2 on CPU; slurm/pbs: default "
                                "`processes` (one job); jobs submitted = ceil(n_workers / processes).")
    threads_per_worker: int | None = Field(
        None, ge=1, description="local/address/synchronous: CPU threads torch uses in a worker (default 1).")
    memory_limit: str | None = Field(None, description="local: memory limit of each worker (default 4GiB).")
    gpus: int | None = Field(
        None, ge=0, description="local: GPUs to use, one worker each (default: all visible when dask-cuda is "
                                "installed; 0 = CPU only); slurm/pbs: GPUs per job.")
    local_directory: str | None = Field(
        None, description="Worker scratch (spill) directory, e.g. $TMPDIR or /scratch/$USER on HPC nodes.")
    queue: str | None = Field(None, description="slurm/pbs: partition (-p) or queue (-q).")
    account: str | None = Field(None, description="slurm/pbs: account or project to charge (-A).")
    walltime: str | None = Field(None, description="slurm/pbs: wall time of each worker job, HH:MM:SS.")
    cores: int | None = Field(None, ge=1, description="slurm/pbs: CPU cores per job.")
    processes: int | None = Field(
        None, ge=1, description="slurm/pbs: workers per job (default 1), sharing its cores and memory.")
    memory: str | None = Field(None, description="slurm/pbs: memory per job, e.g. 64GiB (split among its workers).")
    gpu_directive: Literal["gres", "gpus"] | None = Field(
        None, description="slurm: ask GPUs with --gres=gpu:N (gres, default) or --gpus=N (gpus).")
    job_script_prologue: list[str] = Field(
        default_factory=list, description="slurm/pbs: shell lines run before the worker, e.g. module load.")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="slurm/pbs: extra scheduler directives, e.g. --constraint=a100.")
    job_directives_skip: list[str] = Field(
        default_factory=list, description="slurm/pbs: drop generated directives containing these, e.g. --mem.")
    interface: str | None = Field(None, description="slurm/pbs: network interface of scheduler and workers, e.g. ib0.")
    log_directory: str | None = Field(None, description="slurm/pbs: folder for the worker jobs' stdout/stderr.")
    python: str | None = Field(
        None, description="slurm/pbs: the python that runs workers on the nodes (default: the one running upscale).")

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime_text(cls, value):
        if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 02:00:00 as 7200 (base 60)
            return f"{value // 3600:02d}:{value % 3600 // 60:02d}:{value % 60:02d}"
        return value

    @model_validator(mode="after")
    def _consistent(self):
        hpc = self.type in ("slurm", "pbs")
        if self.type == "address" and not self.address:
            raise ValueError("cluster.type 'address' needs cluster.address (e.g. tcp://host:8786)")
        if self.type != "address" and self.address:
            raise ValueError(f"cluster.address applies only to type 'address', not {self.type!r}")
        if hpc:
            _check_hpc(self)
        else:
            _not_for(self, _HPC_ONLY, "only to type slurm or pbs (to switch types, replace the whole "
                                      f"section, e.g. --set 'cluster={{type: {self.type}}}')")
        if self.type != "local":
            _not_for(self, ("memory_limit",), "only to type local" + (" (see cluster.memory)" if hpc else ""))
        if hpc:
            _not_for(self, ("threads_per_worker",),
                     "only to local, address and synchronous (on slurm/pbs torch gets cores / processes threads)")
        if self.type in ("address", "synchronous"):
            _not_for(self, ("gpus", "n_workers", "local_directory"), f"not to type {self.type!r}")
        if self.memory_limit not in (None, "auto"):
            _size(self.memory_limit, "memory_limit")
        if self.type == "local" and self.gpus and self.n_workers and self.n_workers != self.gpus:
            raise ValueError("on GPUs a local cluster runs one worker per GPU: give cluster.gpus or "
                             "cluster.n_workers, not both with different values")
        return self

    def torch_threads(self) -> int:
        """CPU threads torch uses inside one worker (each worker runs one tile at a time)."""
        if self.type in ("slurm", "pbs"):
            return max(1, self.cores // (self.processes or 1))
        return self.threads_per_worker or 1


def _not_for(cluster: Cluster, names, why: str) -> None:
    """Refuse keys set on a cluster type they do nothing for (never ignore them silently)."""
    for name in names:
        value = getattr(cluster, name)
        if value is not None and value != []:
            raise ValueError(f"cluster.{name} applies {why}")


def _size(value: str, key: str) -> None:
    from dask.utils import parse_bytes

    try:
        parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(f"cluster.{key} {value!r} is not a size such as 64GiB or 120GB") from None


def _check_hpc(cluster: Cluster) -> None:
    """The keys a slurm or pbs cluster needs, and their formats."""
    missing = [k for k in ("cores", "memory", "walltime") if getattr(cluster, k) is None]
    if missing:
        raise ValueError(f"cluster.type {cluster.type!r} needs " + ", ".join(f"cluster.{k}" for k in missing)
                         + " (e.g. cores: 16, memory: 64GiB, walltime: '02:00:00')")
    days = r"(\d+-)?" if cluster.type == "slurm" else ""
    if not re.fullmatch(days + r"\d{1,4}:\d{2}:\d{2}", cluster.walltime):
        form = "[D-]HH:MM:SS" if cluster.type == "slurm" else "HH:MM:SS"
        raise ValueError(f"cluster.walltime {cluster.walltime!r} is not {form} (quote it in YAML: '02:00:00')")
    _size(cluster.memory, "memory")
    if (cluster.processes or 1) > cluster.cores:
        raise ValueError(f"cluster.processes ({cluster.processes}) exceeds cluster.cores ({cluster.cores}): "
                         "each worker needs at least one core")
    if cluster.gpus and (cluster.gpus > 1 or (cluster.processes or 1) > 1):
        raise ValueError("a slurm/pbs worker job takes one GPU and one worker (gpus: 1, processes: 1); "
                         "set n_workers to the number of GPUs wanted: the scheduler packs the jobs onto GPU nodes")
    if cluster.gpu_directive and cluster.type != "slurm":
        raise ValueError("cluster.gpu_directive applies only to type slurm (pbs asks ngpus in its select)")


class Recipe(_Strict):
    """A complete recipe: sites and targets, predictors, model, training, validation, apply, output, cluster."""

    name: str = Field("upscale", pattern=r"^[A-Za-z0-9_.-]+$")
    catalog: str = Field(..., description="Catalog YAML (relative to the recipe file).")
    targets: list[str] = Field(default_factory=lambda: ["gpp", "et"])
    predictors: dict[str, list[str]] = Field(
        ..., description="Catalog entry -> canonical variables taken from it, e.g. {era5: [tas, vpd]}.")
    sites: Sites = Field(default_factory=Sites)
    model: Model = Field(default_factory=Model)
    training: Training = Field(default_factory=Training)
    validation: Validation = Field(default_factory=Validation)
    apply: Apply = Field(default_factory=Apply)
    output: Output = Field(default_factory=Output)
    cluster: Cluster = Field(default_factory=Cluster)
    explain: Explain | None = Field(None, description="Explanations of the models; none when omitted.")

    @model_validator(mode="after")
    def _explain_names(self):
        if self.explain is None:
            return self
        known = [v for _, v in self.dynamic_predictors() + self.static_predictors()]
        for name in self.explain.predictors or []:
            if name not in known:
                raise ValueError(f"explain.predictors names {name!r}, which is not a predictor of the recipe "
                                 f"({', '.join(known)})")
        for name in self.explain.targets or []:
            if name not in self.targets:
                raise ValueError(f"explain.targets names {name!r}, which is not a target of the recipe "
                                 f"({', '.join(self.targets)})")
        return self

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        allowed = [t for t in TARGETS if t != "le"]
        for target in value:
            if target not in allowed:
                raise ValueError(f"unknown target {target!r}; choose from {allowed}")
        if not value or len(set(value)) != len(value):
            raise ValueError("targets must be a non-empty list without repeats")
        return value

    @field_validator("predictors")
    @classmethod
    def _known_predictors(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: set[str] = set()
        for entry, names in value.items():
            for name in names:
                if name not in VARIABLES or VARIABLES[name].kind == "target":
                    hint = _nearest(name, [v for v in VARIABLES if VARIABLES[v].kind != "target"])
                    raise ValueError(f"unknown predictor {name!r} under {entry!r}{hint}")
                if name in seen:
                    raise ValueError(f"predictor {name!r} is taken from two entries")
                seen.add(name)
        if not seen:
            raise ValueError("predictors names no variable")
        return value

    def dynamic_predictors(self) -> list[tuple[str, str]]:
        """(entry, variable) pairs of the time-varying predictors, in recipe order."""
        return [(e, v) for e, vs in self.predictors.items() for v in vs if VARIABLES[v].kind == "dynamic"]

    def static_predictors(self) -> list[tuple[str, str]]:
        """(entry, variable) pairs of the static predictors, in recipe order."""
        return [(e, v) for e, vs in self.predictors.items() for v in vs if VARIABLES[v].kind == "static"]


def _nearest(word: str, options) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def _fields_at(loc: tuple) -> list[str]:
    """The valid keys of the schema node that a validation error location points into."""
    model: Any = Recipe
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
        args = getattr(model, "__args__", ())
        for arg in args:  # unwrap Optional[Model]
            if hasattr(arg, "model_fields"):
                model = arg
    return list(getattr(model, "model_fields", {}))


def _explain(error: ValidationError, source: str) -> RecipeError:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            hint = _nearest(loc[-1], _fields_at(loc))
            lines.append(f"unknown key '{key}'{hint}")
        elif item["type"] == "missing":
            lines.append(f"missing required key '{key}'")
        else:
            msg = item["msg"].removeprefix("Value error, ")
            lines.append(f"'{key}': {msg}")
    return RecipeError("; ".join(lines), where=source,
                       fix="Fix the recipe (`upscale schema` prints every valid key)")


def apply_overrides(data: dict, overrides: list[str] | None, source: str = "--set") -> dict:
    """Apply ``key.path=value`` overrides to a raw recipe mapping (values parsed as YAML)."""
    for item in overrides or []:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not of the form key.path=value", where=source)
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        if not all(keys):
            raise RecipeError(f"override {item!r} has an empty key", where=source)
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise RecipeError(f"cannot set {path!r}: {key!r} is not a section", where=source)
            node = child
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError):  # PyYAML raises ValueError for impossible dates
            raise RecipeError(f"the value of override {item!r} is not valid YAML", where=source,
                              fix="Quote it, e.g. --set 'model.hidden=[64, 64]'") from None
    return data


def read_yaml(path: Path, what: str, error=RecipeError) -> dict:
    """Read a YAML mapping safely, raising ``error`` with a clear message on failure."""
    if not path.is_file():
        raise error(f"{what} file not found", where=str(path), fix="Check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, ValueError) as exc:
        raise error(f"{what} is not valid YAML: {exc}", where=str(path)) from None
    if not isinstance(data, dict):
        raise error(f"{what} must be a YAML mapping of keys to values", where=str(path))
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, override, validate and resolve a recipe file.

    Parameters
    ----------
    path : str or Path
        The recipe YAML.
    overrides : list of str, optional
        ``key.path=value`` strings applied before validation.

    Returns
    -------
    Recipe
        With ``catalog`` made absolute (relative to the recipe file) and
        ``output.run_dir`` absolute (relative to the working directory).
    """
    path = Path(path).resolve()
    data = apply_overrides(read_yaml(path, "recipe"), overrides, source=f"--set for {path}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, str(path)) from None
    return resolve_paths(recipe, path.parent)


def resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    """Make the catalog path absolute against ``base`` and the run directory against the cwd."""
    recipe.catalog = str((base / Path(recipe.catalog).expanduser()).resolve())
    run_dir = recipe.output.run_dir or f"runs/{recipe.name}"
    recipe.output.run_dir = str(Path(run_dir).expanduser().resolve())
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML (what a run directory stores)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def json_schema() -> dict:
    """The JSON schema of recipes."""
    return Recipe.model_json_schema()
