"""The reader: files found and recognised, read site by site, and joined into one Dataset."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from upscale.errors import DataError
from upscale.sources.fluxnet.columns import TARGETS_REQUIRED, source_columns
from upscale.sources.fluxnet.dataset import to_dataset
from upscale.sources.fluxnet.files import FORMAT_AMERIFLUX_BASE, SourceFile, detect_format, expand_paths, select_sites
from upscale.sources.fluxnet.options import DEFAULT_MIN_COVERAGE, DEFAULT_QC_MIN, Options, reading_options
from upscale.sources.fluxnet.readers import READERS
from upscale.sources.fluxnet.sites import site_metadata
from upscale.sources.fluxnet.units import potential_radiation


def read(
    paths,
    site_list=None,
    sites: Sequence[str] | None = None,
    qc_min: float = DEFAULT_QC_MIN,
    gpp: str = "NT",
    le: str = "F_MDS",
    min_coverage: float = DEFAULT_MIN_COVERAGE,
) -> xr.Dataset:
    """Read FLUXNET2015 / ONEFlux (DD, HH, HR) and AmeriFlux BASE files into one canonical site Dataset.

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        Files or glob patterns of FLUXNET2015 or ONEFlux SUBSET/FULLSET CSV files, named like
        ``FLX_US-AR1_FLUXNET2015_SUBSET_DD_2009-2012_1-3.csv`` or
        ``AMF_US-Ha1_FLUXNET_FULLSET_HH_1991-2020_3-5.csv``, and AmeriFlux BASE files named like
        ``AMF_US-Ha1_BASE_HH_21-5.csv`` (the site id is the second underscore-separated field).
        Daily files are read as they are; half-hourly (HH) and hourly (HR) files are aggregated
        to days (see :mod:`upscale.sources.fluxnet`). Several files of one site are joined in time.
    site_list : str or os.PathLike, optional
        CSV with columns SITE_ID, LOCATION_LAT, LOCATION_LONG, LOCATION_ELEV, IGBP (or common
        alternatives such as ``site``, ``lat``, ``lon``, ``elevation``; case-insensitive).
        Without it the coords ``lat``, ``lon``, ``elevation`` are NaN and ``igbp`` is "".
    sites : sequence of str, optional
        Site ids to keep; all sites found in the files when None.
    qc_min : float, default 0.8
        Minimum daily QC fraction (share of measured or good-quality gap-filled half hours);
        values whose QC is below it become NaN. ``0`` disables QC masking.
    gpp : {"NT", "DT"}
        Partitioning of GPP: night-time (GPP_NT_VUT_REF) or day-time (GPP_DT_VUT_REF).
    le : {"F_MDS", "CORR"}
        Latent heat flux: gap-filled (LE_F_MDS) or energy-balance corrected (LE_CORR).
        AmeriFlux BASE files have one GPP (the PI's, ``GPP_PI_F`` or ``GPP``) and no LE_CORR.
    min_coverage : float, default 0.8
        Sub-daily files only: the share of a day's records that must be finite for the day to get
        a value (NaN otherwise).

    Returns
    -------
    xarray.Dataset
        Dims ``(site, time)``, daily ``time`` (datetime64[ns]) from the first to the last day of
        any file, NaN where a site has no data; coords ``site`` (sorted ids), ``lat``, ``lon``,
        ``elevation``, ``igbp``; float32 variables ``tas``, ``vpd``, ``rsds``, ``rsds_pot``,
        ``pr``, ``gpp``, ``le``, ``et``; attrs ``qc_min``, ``gpp_partitioning``, ``le_variant``,
        ``min_coverage``, ``source_files``.

    Raises
    ------
    upscale.errors.DataError
        For missing, unrecognised or malformed files, overlapping files of one site, sites
        unknown to the site list, or a site left without GPP or ET after QC masking.
    """
    opt = reading_options(qc_min, gpp, le, min_coverage)
    files = select_sites([detect_format(path) for path in expand_paths(paths)], sites)
    site_ids = sorted({f.site for f in files})
    meta = site_metadata(site_list, site_ids)
    frames = {site: read_site([f for f in files if f.site == site], opt) for site in site_ids}
    ds = _joined(frames, meta, opt, files)
    ds.attrs.update(_reading_attrs(opt, gpp, le, files))
    return ds


def _joined(frames: dict, meta: pd.DataFrame, opt: Options, files: list[SourceFile]) -> xr.Dataset:
    """The sites' frames as one Dataset, ``rsds_pot`` from astronomy for sites whose files lack SW_IN_POT."""
    base_only = all(f.format == FORMAT_AMERIFLUX_BASE for f in files)
    columns = source_columns(opt.gpp_column, opt.le_column, base_only)
    filled = [potential_radiation(frame, meta.loc[site, "lat"], site) for site, frame in frames.items()]
    if any(filled):
        columns["rsds_pot"] += " where the file has it, else astronomy (FAO-56, site latitude)"
    return to_dataset(frames, meta, columns)


def read_site(files: list[SourceFile], opt: Options) -> pd.DataFrame:
    """All files of one site joined in time; checks overlap and that targets survive QC."""
    parts = [(f, READERS[f.format](f, opt)) for f in files]
    parts.sort(key=lambda item: item[1].index[0])
    _check_no_overlap(parts)
    frame = pd.concat([p for _, p in parts])
    _check_targets_left(frame, files, opt.qc_min)
    return frame


def _reading_attrs(opt: Options, gpp: str, le: str, files: list[SourceFile]) -> dict:
    """The Dataset attrs that record how it was read."""
    return {
        "qc_min": opt.qc_min,
        "gpp_partitioning": gpp.upper(),
        "le_variant": le.upper(),
        "min_coverage": opt.min_coverage,
        "source_files": [str(f.path) for f in sorted(files, key=lambda f: str(f.path))],
    }


def _check_no_overlap(parts: list[tuple[SourceFile, pd.DataFrame]]) -> None:
    for (file_a, a), (file_b, b) in itertools.pairwise(parts):
        if b.index[0] <= a.index[-1]:
            raise DataError(
                f"two files of site {file_a.site} overlap in time "
                f"({b.index[0]:%Y-%m-%d} to {min(a.index[-1], b.index[-1]):%Y-%m-%d})",
                where=f"{file_a.path} and {file_b.path}",
                fix="Pass only one file per period for each site (e.g. the newest version)",
            )


def _check_targets_left(frame: pd.DataFrame, files: list[SourceFile], qc_min: float) -> None:
    for name in TARGETS_REQUIRED:
        if frame[name].notna().any():
            continue
        site = files[0].site
        raise DataError(
            f"site {site} has no {name} value left after removing -9999 and masking values "
            f"with QC below qc_min={qc_min:g}",
            where=", ".join(str(f.path) for f in files),
            fix=f"Lower qc_min below {qc_min:g} (0 disables QC masking) or drop site {site} (leave it out of sites=)",
        )


def scan_sites(paths, site_list=None, sites: Sequence[str] | None = None) -> xr.Dataset:
    """The sites of flux-tower files and their coordinates, from file names, headers and the site list only.

    What :func:`read` would find, without reading the data: for checking a recipe in seconds.

    Parameters
    ----------
    paths, site_list, sites
        As for :func:`read`.

    Returns
    -------
    xarray.Dataset
        No variables; coords ``site`` (sorted ids), ``lat``, ``lon``, ``elevation``, ``igbp``.

    Raises
    ------
    upscale.errors.DataError
        For missing or unrecognised files, headers that lack required columns, and sites unknown
        to the site list.
    """
    files = select_sites([detect_format(path) for path in expand_paths(paths)], sites)
    site_ids = sorted({f.site for f in files})
    meta = site_metadata(site_list, site_ids)
    return xr.Dataset(
        coords={
            "site": ("site", np.asarray(site_ids, dtype=str)),
            "lat": ("site", meta["lat"].to_numpy(dtype="float64")),
            "lon": ("site", meta["lon"].to_numpy(dtype="float64")),
            "elevation": ("site", meta["elevation"].to_numpy(dtype="float64")),
            "igbp": ("site", np.asarray(meta["igbp"].tolist(), dtype=str)),
        }
    )
