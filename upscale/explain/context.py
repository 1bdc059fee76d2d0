"""The out-of-sample context of site-level explanations: sites, fold ensembles, site groups.

Every site-level method explains a site only with the ensemble of the cross-validation fold
that held it out, so nothing is explained on data the model trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from upscale.ensemble import Ensemble

#: UNEP aridity index P / PET below which a site counts as a dryland.
DRYLAND_ARIDITY = 0.65


@dataclass
class SiteSet:
    """S sites over T days in canonical units (NaN where missing).

    ``static_columns`` maps each static predictor to its encoded columns (``pft`` -> its
    one-hot columns), so that a static predictor is permuted or attributed as one.
    ``groups`` maps a grouping name (``igbp``, ``aridity``) to one label per site.
    """

    sites: np.ndarray  # [S] str
    time: np.ndarray  # [T] datetime64[ns]
    dynamic: np.ndarray  # [S, T, Fd] float32
    static: np.ndarray  # [S, Fs] float32, encoded
    targets: np.ndarray  # [S, T, K] float32, observed
    dynamic_names: list[str]
    static_columns: dict[str, list[int]]
    target_names: list[str]
    groups: dict[str, np.ndarray] = field(default_factory=dict)

    def with_dynamic(self, dynamic: np.ndarray) -> SiteSet:
        """The same sites with other dynamic predictors (e.g. permuted)."""
        return SiteSet(
            self.sites,
            self.time,
            dynamic,
            self.static,
            self.targets,
            self.dynamic_names,
            self.static_columns,
            self.target_names,
            self.groups,
        )

    def with_static(self, static: np.ndarray) -> SiteSet:
        """The same sites with other static predictors."""
        return SiteSet(
            self.sites,
            self.time,
            self.dynamic,
            static,
            self.targets,
            self.dynamic_names,
            self.static_columns,
            self.target_names,
            self.groups,
        )


@dataclass
class FoldModel:
    """One cross-validation fold: its ensemble and the indices of its test sites."""

    ensemble: Ensemble
    test: np.ndarray  # [n] int indices into the SiteSet


@dataclass
class ExplainContext:
    """Sites and the fold ensembles that did not see them."""

    sites: SiteSet
    folds: list[FoldModel]

    @property
    def sequential(self) -> bool:
        """Whether the models carry a state from day to day (have memory)."""
        return bool(getattr(self.folds[0].ensemble.members[0], "sequential", False))

    def predict(self, sites: SiteSet | None = None) -> dict[str, np.ndarray]:
        """Out-of-sample ensemble means [S, T] per target of ``sites`` (default: the original ones).

        ``sites`` must hold the same sites in the same order (typically modified predictors).
        """
        sites = sites or self.sites
        out = {t: np.full(sites.targets.shape[:2], np.nan, "float32") for t in sites.target_names}
        for fold in self.folds:
            pred = fold.ensemble.predict(sites.dynamic[fold.test], sites.static[fold.test])
            for target in sites.target_names:
                out[target][fold.test] = pred[target].mean
        return out


def site_groups(sites: SiteSet) -> list[tuple[str, np.ndarray]]:
    """The site groups explanations are summarised over.

    Returns
    -------
    list of (str, numpy.ndarray)
        ``("all", [S] bool)``, then ``("<grouping>:<label>", [S] bool)`` for each label of each
        grouping of ``sites.groups`` (labels sorted), e.g. ``"aridity:dry"``.
    """
    groups = [("all", np.ones(len(sites.sites), bool))]
    for grouping, labels in sites.groups.items():
        labels = np.asarray(labels).astype(str)
        groups += [(f"{grouping}:{label}", labels == label) for label in np.unique(labels)]
    return groups


def aridity_groups(dynamic: np.ndarray, dynamic_names: list[str]) -> np.ndarray | None:
    """'dry' or 'humid' per site from the aridity index P / PET (Priestley-Taylor, alpha 1.26).

    'unknown' where the index is undefined (no precipitation record, or no PET). None when
    precipitation, temperature, VPD or shortwave radiation is not a predictor.
    """
    from upscale.baselines import priestley_taylor_et

    need = ("pr", "tas", "vpd", "rsds")
    if not all(n in dynamic_names for n in need):
        return None
    col = {n: dynamic[..., dynamic_names.index(n)] for n in need}
    pot = dynamic[..., dynamic_names.index("rsds_pot")] if "rsds_pot" in dynamic_names else None
    pet = priestley_taylor_et(col["tas"], col["vpd"], col["rsds"], pot)
    with np.errstate(all="ignore"):
        index = np.nanmean(col["pr"], axis=1) / np.nanmean(np.maximum(pet, 0), axis=1)
    return np.where(np.isfinite(index), np.where(index < DRYLAND_ARIDITY, "dry", "humid"), "unknown")


def static_columns(spec) -> dict[str, list[int]]:
    """Encoded static columns of each static predictor (``pft`` -> its one-hot columns)."""
    from upscale.encoding import CATEGORICAL

    columns, start = {}, 0
    for _, var in spec.static:
        width = len(spec.pft_classes) if var in CATEGORICAL else 1
        columns[var] = list(range(start, start + width))
        start += width
    return columns


def load_context(run_dir, targets: list[str], device: str = "cpu") -> ExplainContext:
    """The sites (``sites.zarr``) and fold ensembles (``cv/folds``) of a finished cross-validation.

    Raises
    ------
    upscale.errors.RunDirError
        When the run has no fold ensembles (no cross-validation, or one from before they were kept).
    """
    import json

    import xarray as xr

    from upscale.bundle import load_bundle
    from upscale.encoding import FeatureSpec
    from upscale.errors import RunDirError
    from upscale.rundir import RunDir

    files = RunDir(run_dir)
    run_dir = files.root
    fold_dirs = sorted(files.folds.glob("fold-*"), key=lambda p: int(p.name.split("-")[1]))
    if not fold_dirs:
        raise RunDirError(
            "no cross-validation fold ensembles in the run directory (cv/folds)",
            where=str(run_dir),
            fix="Site-level explanations need validation.scheme other than 'none'; re-run "
            "`upscale evaluate` (runs older than this version did not keep the folds)",
        )
    ds = xr.open_zarr(files.sites).load()
    spec = FeatureSpec.from_dict(json.loads(ds.attrs["feature_spec"]))
    ids = np.array([str(s) for s in ds.site.values])
    dynamic = np.stack([ds[v].values for v in spec.dynamic_names], axis=-1).astype("float32")
    sites = SiteSet(
        ids,
        ds.time.values,
        dynamic,
        ds["static"].values.astype("float32"),
        np.stack([ds[t].values for t in targets], axis=-1).astype("float32"),
        spec.dynamic_names,
        static_columns(spec),
        list(targets),
    )
    sites.groups["igbp"] = np.array([str(s) for s in ds.igbp.values])
    aridity = aridity_groups(dynamic, spec.dynamic_names)
    if aridity is not None:
        sites.groups["aridity"] = aridity
    folds = []
    for path in fold_dirs:
        ensemble, _, meta = load_bundle(path, device=device)
        test = np.flatnonzero(np.isin(ids, meta["test_sites"]))
        folds.append(FoldModel(ensemble, test))
    return ExplainContext(sites, folds)
