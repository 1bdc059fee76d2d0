"""The recipe's sections other than the cluster: sites, model, training, validation, apply, output, explain."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Sites(_Strict):
    """Which flux-tower sites to train on."""

    source: str = Field(
        "fluxnet", description="Catalog entry holding the site observations, or 'table' (the file sites.table)."
    )
    include: list[str] | None = Field(None, description="Site ids to use; all sites of the entry when omitted.")
    exclude: list[str] = Field(default_factory=list, description="Site ids to leave out.")
    qc_min: float = Field(0.8, ge=0, le=1, description="Minimum daily QC fraction for an observation to count.")
    gpp_partitioning: Literal["NT", "DT"] = Field("NT", description="GPP_NT_VUT_REF (NT) or GPP_DT_VUT_REF (DT).")
    le_variant: Literal["F_MDS", "CORR"] = Field("F_MDS", description="LE_F_MDS or energy-balance-corrected LE_CORR.")
    table: str | None = Field(
        None,
        description="source: table only: a CSV, Parquet or NetCDF file of (site, time) rows "
        "(relative to the recipe file); see docs/data.md.",
    )
    site_list: str | None = Field(
        None, description="source: table only: the site list (SITE_ID, LOCATION_LAT, LOCATION_LONG, IGBP)."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="source: table only: canonical name (site, time, gpp, tas, ...) -> the table's column, "
        "where they differ.",
    )

    @model_validator(mode="after")
    def _table_keys(self):
        given = [k for k in ("table", "site_list") if getattr(self, k)] + (["columns"] if self.columns else [])
        if self.source == "table" and not (self.table and self.site_list):
            raise ValueError("source: table needs 'table' (the file of rows) and 'site_list' (the sites' coordinates)")
        if self.source != "table" and given:
            raise ValueError(f"'{given[0]}' applies to source: table only (source is {self.source!r})")
        return self


#: The widest hidden layer a recipe may ask for (wider ones are a typo, and would not fit in memory).
MAX_WIDTH = 65536


class Trees(_Strict):
    """Gradient boosting of ``model.type: xgboost`` (XGBoost's settings of the same names)."""

    rounds: int = Field(
        1000, ge=1, le=100000, description="Most boosting rounds; early stopping on the member's validation sites."
    )
    learning_rate: float = Field(0.1, gt=0, le=1, description="Shrinkage of each tree (XGBoost's eta).")
    max_depth: int = Field(6, ge=1, le=16, description="Deepest tree.")
    min_child_weight: float = Field(1.0, ge=0, description="Least hessian (observations, for squared error) per leaf.")
    subsample: float = Field(0.8, gt=0, le=1, description="Fraction of rows each tree sees.")
    colsample_bytree: float = Field(0.8, gt=0, le=1, description="Fraction of features each tree sees.")
    early_stopping_rounds: int = Field(20, ge=1, description="Rounds without validation improvement before stopping.")


class Model(_Strict):
    """The model family and its size."""

    type: str = Field("mlp", description="Registered model name (see upscale.models.registry).")
    hidden: list[int] = Field(
        default_factory=lambda: [64, 64], description=f"Hidden layer widths (each 1 to {MAX_WIDTH})."
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout probability between hidden layers (0: none).")
    rolling: dict[str, list[int]] = Field(
        default_factory=dict,
        description="Tree models: trailing means of dynamic predictors over these windows in days, "
        "e.g. {pr: [30, 90]} (memory as tree users engineer it).",
    )
    trees: Trees = Field(default_factory=Trees, description="Boosting settings of model.type xgboost.")

    @field_validator("rolling")
    @classmethod
    def _windows(cls, value: dict[str, list[int]]) -> dict[str, list[int]]:
        bad = [w for windows in value.values() for w in windows if not 2 <= w <= 3660]
        if bad:
            raise ValueError(f"rolling windows are whole numbers of days from 2 to 3660, e.g. [30, 90] (got {bad[0]})")
        return value

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int]) -> list[int]:
        bad = [w for w in value if not 1 <= w <= MAX_WIDTH]
        if bad:
            raise ValueError(f"layer widths must be whole numbers from 1 to {MAX_WIDTH}, e.g. [64, 64] (got {bad[0]})")
        return value


class Training(_Strict):
    """How each ensemble member is trained."""

    ensemble: int = Field(5, ge=1, le=100, description="Number of ensemble members.")
    site_fraction: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Fraction of training sites each member sees; the rest are its early-stopping validation sites.",
    )
    epochs: int = Field(60, ge=1, description="Maximum number of epochs.")
    patience: int = Field(6, ge=1, description="Epochs without validation improvement before stopping.")
    batch_size: int = Field(1024, ge=8, description="Days per mini-batch of per-day models (mlp).")
    sequence_length: int = Field(365, ge=8, description="Days per training window of sequence models.")
    warmup: int = Field(
        90,
        ge=0,
        description="Leading days of each window that carry no loss while the "
        "state settles (at most a third of the window).",
    )
    windows_per_batch: int = Field(16, ge=1, description="Windows per mini-batch of sequence models.")
    loss: Literal["nll", "nse"] = Field(
        "nll",
        description="Gaussian NLL, or NSE-style (each site weighted by "
        "its variability) for the mean plus NLL for the variance.",
    )
    learning_rate: float = Field(3e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW decoupled weight decay.")
    seed: int = Field(0, description="Seeds the members' site splits, weights, windows and batch order.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where training runs; auto: a GPU when one is visible."
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Processes training ensemble members side by side; "
        "when omitted one per CPU core on CPU, 1 on a GPU.",
    )
    mixed_precision: bool = Field(False, description="bfloat16 autocast of the forward pass on a GPU (ignored on CPU).")
    batched_members: Literal["auto"] | bool = Field(
        "auto",
        description="Train the members of an ensemble (and of all folds) as one stacked model, one step for all "
        "(mlp, lstm, ealstm without dropout; same results within float tolerance); the others train one by one. "
        "auto: stacked for per-day models (mlp: 1.6x less CPU), one by one for sequence models (on CPU the "
        "fused LSTM kernel of one member beats the stack; see docs/benchmarks.md).",
    )


class Validation(_Strict):
    """Cross-validation that estimates skill at unseen sites."""

    scheme: Literal["kfold", "loso", "group", "none"] = Field(
        "kfold", description="Grouped leave-site-out k-fold, leave-one-site-out, leave-group-out, or none."
    )
    folds: int = Field(5, ge=2, description="Number of folds of kfold (sites are grouped, never split).")
    group_by: Literal["igbp", "climate"] = Field(
        "igbp",
        description="Groups of the 'group' scheme: the site's IGBP class, or its Koppen main climate "
        "zone (A, B, C, D, E) from the site's predictors.",
    )


class Period(_Strict):
    """A closed range of days."""

    start: datetime.date = Field(..., description="First day (inclusive), e.g. 2018-01-01.")
    end: datetime.date = Field(..., description="Last day (inclusive).")

    @model_validator(mode="after")
    def _ordered(self):
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class Apply(_Strict):
    """Where and how the trained ensemble is applied."""

    period: Period | None = Field(None, description="Dates to apply to; the whole cube when omitted.")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="(lon_min, lat_min, lon_max, lat_max); the whole cube when omitted."
    )
    tile_lat: int = Field(32, ge=1, le=100_000, description="Tile height in grid cells (also the output chunk).")
    tile_lon: int = Field(64, ge=1, le=100_000, description="Tile width in grid cells (also the output chunk).")
    time_chunk: int = Field(
        366, ge=1, le=100_000, description="Days per output chunk; sequence state passes between them."
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description="Pixel-days per inference batch inside a tile "
        "(bounds memory; pixels per batch = batch_size // days of the time chunk); "
        "when omitted 32768 on CPU (cache-sized) and 4194304 on a GPU.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where workers run the model; auto: the worker's GPU when it has one, else CPU."
    )
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Inference precision on a GPU (reduced precision is ignored on CPU); "
        "outputs are float32 either way.",
    )
    prepared: str | None = Field(
        None,
        description="The prepared cube `upscale prepare` writes and the apply then reads (a Zarr path, relative "
        "to where you run); when omitted, the cache's cube of these inputs and domain, read when it exists.",
    )

    @field_validator("bbox")
    @classmethod
    def _bbox_shape(cls, value):
        if value is None:
            return value
        lon_min, lat_min, lon_max, lat_max = value
        if not all(abs(v) <= 360 for v in value):  # also false for NaN
            raise ValueError("bbox must be four finite degrees (lon_min, lat_min, lon_max, lat_max)")
        if lon_min > lon_max or lat_min > lat_max:
            which = "lon_min > lon_max" if lon_min > lon_max else "lat_min > lat_max"
            raise ValueError(
                f"bbox is reversed ({which}): give (lon_min, lat_min, lon_max, lat_max), "
                "e.g. [-10, 35, 30, 60]; a box across the antimeridian is not supported"
            )
        if lat_min < -90 or lat_max > 90:
            raise ValueError("bbox latitudes must lie within -90..90 (lon_min, lat_min, lon_max, lat_max)")
        return value


class Output(_Strict):
    """Where the run directory is and what the product holds."""

    run_dir: str | None = Field(None, description="Run directory; runs/<name> when omitted.")
    title: str = Field("upscale GPP and ET product", description="The product's CF `title` attribute.")
    institution: str = Field("unknown", description="The product's CF `institution` attribute.")
    units: Literal["default", "si"] = Field(
        "default", description="Product units: default g m-2 d-1 (GPP) and kg m-2 d-1 (ET); si: kg m-2 s-1."
    )
    parameters: bool = Field(
        False,
        description="Also write the hybrid model's learned process parameters "
        "(lue_max, t_opt, vpd_sensitivity, f_water, pt_alpha) as maps.",
    )
    quantiles: list[float] = Field(
        default_factory=list,
        description="Quantiles of the ensemble's predictive distribution to write as <target>_q05-style "
        "variables (and score out of fold), e.g. [0.05, 0.5, 0.95]; probabilities strictly between 0 and 1.",
    )
    negative_et: bool = Field(
        False,
        description="Allow negative ET and LE (dew): their predictions are then unbounded Gaussians; "
        "GPP stays non-negative.",
    )

    @field_validator("quantiles")
    @classmethod
    def _quantile_levels(cls, value: list[float]) -> list[float]:
        from upscale.outputs import quantile_part

        bad = [q for q in value if not 0.0 < q < 1.0]  # also true for NaN
        if bad:
            raise ValueError(f"quantiles must lie strictly between 0 and 1, e.g. [0.05, 0.5, 0.95] (got {bad[0]})")
        names = [quantile_part(q) for q in value]
        if len(set(names)) != len(names):
            raise ValueError(f"quantiles must be distinct (to 0.0001), got {value}")
        return sorted(value)


EXPLAIN_METHODS = ("importance", "memory", "attribution", "sensitivity", "cell_states")


class Explain(_Strict):
    """Explanations of the trained models (``upscale explain``; a stage of ``upscale run`` when present).

    Site-level methods (importance, memory, attribution, cell_states) use the cross-validation
    fold ensembles on their own test sites; sensitivity maps use the final bundle over the grid.
    """

    methods: list[Literal[EXPLAIN_METHODS]] = Field(
        default_factory=lambda: list(EXPLAIN_METHODS),
        description="Methods to run; memory and cell_states apply to models with memory only.",
    )
    targets: list[str] | None = Field(None, description="Targets to explain; all of the recipe's when omitted.")
    predictors: list[str] | None = Field(
        None,
        description="Predictors to explain (canonical names); importance: all predictors when omitted; "
        "memory, attribution, sensitivity: all dynamic predictors when omitted.",
    )
    repeats: int = Field(5, ge=2, le=100, description="Permutation importance: repeats (mean and sd).")
    block_days: int = Field(30, ge=1, description="Permutation importance: days per permuted block.")
    lags: list[int] = Field(
        default_factory=lambda: [0, 1, 3, 7, 15, 30, 60, 90, 180],
        description="Memory effects: days of intact history k.",
    )
    window: int = Field(
        180,
        ge=1,
        le=1000,
        description="Attributions: days of input window before each explained day (lags 0..window-1).",
    )
    days_per_site: int = Field(8, ge=1, le=365, description="Attributions: explained days per site.")
    sensitivity_every: int = Field(
        1,
        ge=1,
        le=31,
        description="Sensitivity maps: differentiate every n-th day (1: every day, exact means; "
        "n > 1: monthly means estimated from every n-th day, about n times faster).",
    )
    seed: int = Field(0, description="Seeds the permutations, shuffled histories and sampled days.")

    @field_validator("lags")
    @classmethod
    def _sorted_lags(cls, value: list[int]) -> list[int]:
        if not value or min(value) < 0 or len(set(value)) != len(value):
            raise ValueError("lags must be distinct non-negative days, e.g. [0, 1, 3, 7, 15, 30]")
        return sorted(value)
