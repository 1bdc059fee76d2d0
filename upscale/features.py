"""Predictors: opening them from the catalog, extracting them at sites, the land mask.

The same functions serve training (at site pixels) and apply (over tiles), so the
model sees identical features in both.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from upscale.encoding import FeatureSpec, encode_static
from upscale.errors import DataError
from upscale.sources.catalog import Catalog, cached_entry
from upscale.sources.grid import same_grid
from upscale.sources.sitetable import TABLE_ENTRY, read_site_table
from upscale.sources.sitetable.predictors import site_predictors, table_variables

EARTH_RADIUS_KM = 6371.0
#: A site's land pixel may lie at most this many cell diagonals away (a neighbouring cell is fine).
MAX_LAND_DISTANCE_CELLS = 1.5


def open_predictors(catalog_path: str, dynamic: list, static: list) -> tuple[xr.Dataset, xr.Dataset]:
    """Open the predictor variables lazily: a (time, lat, lon) and a (lat, lon) Dataset on one grid.

    Raises
    ------
    DataError
        If an entry lacks a variable, or the entries' grids differ.
    """
    dyn = [_variable(catalog_path, entry, var) for entry, var in dynamic]
    stat = [_variable(catalog_path, entry, var) for entry, var in static]
    reference = dyn[0] if dyn else stat[0]
    for (entry, var), da in zip(dynamic + static, dyn + stat):
        if not same_grid(reference.to_dataset(), da.to_dataset()):
            raise DataError(
                f"variable {var!r} is on a different grid ({da.sizes['lat']}x{da.sizes['lon']}) than "
                f"{reference.name!r} ({reference.sizes['lat']}x{reference.sizes['lon']})",
                where=f"catalog entry '{entry}'",
                fix="Regrid the inputs onto one grid",
            )
    for da in stat:
        if "time" in da.dims:
            raise DataError(f"static predictor {da.name!r} has a time dimension", where="predictors")
    dyn_ds = xr.merge(dyn, join="inner", compat="override") if dyn else xr.Dataset()
    if dyn and dyn_ds.sizes.get("time", 0) == 0:
        raise DataError(
            "the dynamic predictors share no common days",
            where="predictors",
            fix="Check the time ranges of the catalog entries",
        )
    stat_ds = xr.merge([s.assign_coords(lat=reference.lat, lon=reference.lon) for s in stat], compat="override")
    return dyn_ds, stat_ds


def _variable(catalog_path: str, entry: str, var: str) -> xr.DataArray:
    ds = cached_entry(catalog_path, entry)
    if var not in ds:
        raise DataError(
            f"variable {var!r} is not in the cube",
            where=f"catalog entry '{entry}'",
            fix=f"It has: {', '.join(map(str, ds.data_vars))}; change the recipe's predictors",
        )
    return ds[var]


def pft_classes(static: xr.Dataset) -> list[int]:
    """The PFT codes present in the static map (the one-hot columns)."""
    if "pft" not in static:
        return []
    values = np.asarray(static["pft"].values)
    return sorted(int(c) for c in np.unique(values[np.isfinite(values)]) if c > 0)


def land_mask(dyn: xr.Dataset, stat: xr.Dataset) -> np.ndarray:
    """Pixels with every static predictor and every dynamic predictor on the first day finite."""
    first = dyn.isel(time=0) if "time" in dyn.dims else dyn
    return land_mask_arrays([np.asarray(ds[name].values) for ds in (stat, first) for name in ds.data_vars])


def land_mask_arrays(arrays: list[np.ndarray]) -> np.ndarray:
    """Where every one of the same-shaped arrays is finite (the land rule of :func:`land_mask`)."""
    mask = None
    for values in arrays:
        finite = np.isfinite(values)
        mask = finite if mask is None else mask & finite
    return mask


def nearest_land_pixels(lat: np.ndarray, lon: np.ndarray, mask: np.ndarray, site_lat: np.ndarray, site_lon: np.ndarray):
    """Nearest land pixel (great-circle) of each site.

    Returns
    -------
    ilat, ilon : numpy.ndarray of int
        Grid indices of the chosen pixels.
    distance_km : numpy.ndarray
        Distance from the site to the pixel centre.
    """
    ii, jj = np.nonzero(mask)
    if ii.size == 0:
        raise DataError("the predictors have no land pixel (all NaN)", where="predictors")
    plat, plon = np.deg2rad(lat[ii]), np.deg2rad(lon[jj])
    slat, slon = np.deg2rad(site_lat)[:, None], np.deg2rad(site_lon)[:, None]
    hav = np.sin((plat - slat) / 2) ** 2 + np.cos(slat) * np.cos(plat) * np.sin((plon - slon) / 2) ** 2
    dist = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(hav, 0, 1)))
    best = np.argmin(dist, axis=1)
    return ii[best], jj[best], dist[np.arange(best.size), best]


def check_site_pixels(sites: xr.Dataset, lat: np.ndarray, lon: np.ndarray, distance_km: np.ndarray) -> None:
    """Refuse sites without coordinates, outside the cube, or whose nearest land pixel is far away.

    Parameters
    ----------
    sites : xarray.Dataset
        With coords ``site``, ``lat``, ``lon``.
    lat, lon : numpy.ndarray
        Ascending cell centres of the predictor grid.
    distance_km : numpy.ndarray, optional
        Distance of each site to its chosen land pixel; None to check only coordinates and extent.

    Raises
    ------
    upscale.errors.DataError
        Naming the sites and what to do.
    """
    ids = np.asarray(sites.site.values).astype(str)
    slat, slon = sites.lat.values.astype(float), sites.lon.values.astype(float)
    unknown = ~(np.isfinite(slat) & np.isfinite(slon))
    if unknown.any():
        raise DataError(
            f"sites without coordinates: {', '.join(ids[unknown])}",
            where="sites",
            fix="Give the fluxnet catalog entry a site_list with their latitude and longitude",
        )
    dlat, dlon = _cell_size(lat), _cell_size(lon)
    outside = (
        (slat < lat[0] - dlat / 2)
        | (slat > lat[-1] + dlat / 2)
        | (slon < lon[0] - dlon / 2)
        | (slon > lon[-1] + dlon / 2)
    )
    if outside.any():
        raise DataError(
            f"sites outside the predictor cubes (lat {lat[0] - dlat / 2:g}..{lat[-1] + dlat / 2:g}, "
            f"lon {lon[0] - dlon / 2:g}..{lon[-1] + dlon / 2:g}): "
            + ", ".join(f"{s} ({a:g}, {o:g})" for s, a, o in zip(ids[outside], slat[outside], slon[outside])),
            where="sites",
            fix="Leave them out (sites.exclude) or use cubes that cover them",
        )
    if distance_km is None:
        return
    km_per_deg = np.pi * EARTH_RADIUS_KM / 180.0
    diagonal = km_per_deg * np.hypot(dlat, dlon * np.cos(np.deg2rad(slat)))
    far = distance_km > MAX_LAND_DISTANCE_CELLS * diagonal
    if far.any():
        raise DataError(
            "only ocean or no-data pixels near sites: "
            + ", ".join(f"{s} (nearest land pixel {d:.0f} km away)" for s, d in zip(ids[far], distance_km[far])),
            where="sites",
            fix="Check the site coordinates and the land/sea mask of the predictors, "
            "or leave these sites out (sites.exclude)",
        )


def _cell_size(values: np.ndarray) -> float:
    return float(np.median(np.diff(values))) if values.size > 1 else 0.0


def exclude_sites(sites: xr.Dataset, exclude: list[str]) -> xr.Dataset:
    """Drop the ``exclude`` sites; unknown ids or an empty remainder are a DataError."""
    if not exclude:
        return sites
    known = set(map(str, sites.site.values))
    unknown = sorted(set(exclude) - known)
    if unknown:
        raise DataError(
            f"sites.exclude names unknown sites: {', '.join(unknown)}",
            where="sites.exclude",
            fix=f"Known sites: {', '.join(sorted(known))}",
        )
    sites = sites.drop_sel(site=list(exclude))
    if sites.sizes["site"] == 0:
        raise DataError("sites.exclude leaves no site to train on", where="sites.exclude")
    return sites


def read_sites(recipe, catalog: Catalog | None) -> xr.Dataset:
    """The recipe's site observations (its catalog entry, or its site table), less ``sites.exclude``."""
    cfg = recipe.sites
    if cfg.source == TABLE_ENTRY:
        names = table_variables(recipe.targets, recipe.predictors.get(TABLE_ENTRY, []))
        sites = read_site_table(cfg.table, cfg.site_list, names, cfg.columns, cfg.include)
    else:
        sites = catalog.open_sites(
            cfg.source, sites=cfg.include, qc_min=cfg.qc_min, gpp=cfg.gpp_partitioning, le=cfg.le_variant
        )
    return exclude_sites(sites, cfg.exclude)


def extract_sites(recipe, catalog: Catalog | None) -> xr.Dataset:
    """Site observations joined with the predictors at each site's nearest land pixel (or from the site table).

    Returns
    -------
    xarray.Dataset
        dims (site, time[, static_feature]): each dynamic predictor, ``static`` (site, static_feature)
        and each target, with coords lat, lon, igbp, pixel_lat, pixel_lon, distance_km.
        Attribute ``feature_spec`` (JSON) records the encoding, ``time_sampling`` (site tables) whether
        the time stamps are daily or irregular.
    """
    sites = read_sites(recipe, catalog)
    if TABLE_ENTRY in recipe.predictors:  # every predictor from the table: no cubes, no pixels
        dynamic, static = recipe.dynamic_predictors(), recipe.static_predictors()
        dyn_values, static_values, classes = site_predictors(sites, [v for _, v in dynamic], [v for _, v in static])
        spec = FeatureSpec(dynamic, static, classes)
        pixels = (sites.lat.values, sites.lon.values, np.zeros(sites.sizes["site"]))
        return _site_dataset(sites, spec, dyn_values, static_values, sites.time.values, pixels, recipe.targets)
    dyn, stat = open_predictors(str(catalog.path), recipe.dynamic_predictors(), recipe.static_predictors())
    spec = FeatureSpec(recipe.dynamic_predictors(), recipe.static_predictors(), pft_classes(stat))
    mask = land_mask(dyn, stat)
    check_site_pixels(sites, dyn.lat.values, dyn.lon.values, None)
    ilat, ilon, dist = nearest_land_pixels(dyn.lat.values, dyn.lon.values, mask, sites.lat.values, sites.lon.values)
    check_site_pixels(sites, dyn.lat.values, dyn.lon.values, dist)
    times = np.intersect1d(sites.time.values, dyn.time.values)
    if times.size == 0:
        raise DataError(
            "the site observations and the predictor cubes share no days",
            where="sites",
            fix="Choose cubes that cover the sites' years",
        )
    at = dict(lat=xr.DataArray(ilat, dims="site"), lon=xr.DataArray(ilon, dims="site"))
    point = dyn.sel(time=times).isel(**at).load().transpose("site", "time")
    dyn_values = {v: point[v].values for v in spec.dynamic_names}
    static_values = {v: stat[v].isel(**at).values for _, v in spec.static}
    pixels = (dyn.lat.values[ilat], dyn.lon.values[ilon], dist)
    return _site_dataset(sites, spec, dyn_values, static_values, times, pixels, recipe.targets)


def _site_dataset(sites, spec: FeatureSpec, dyn_values: dict, static_values: dict, times, pixels, targets):
    """The extracted-sites Dataset (``sites.zarr``) of predictor arrays [S, T] and the observations at ``times``."""
    import json

    out = xr.Dataset({v: (("site", "time"), np.asarray(dyn_values[v], dtype="float32")) for v in spec.dynamic_names})
    out = out.assign_coords(site=sites.site.values, time=times)
    n_sites = sites.sizes["site"]
    out["static"] = (("site", "static_feature"), encode_static(static_values, spec, n_sites))
    for target in targets:
        out[target] = sites[target].sel(time=times).astype("float32")
        out[target].attrs = dict(sites[target].attrs)
    out = out.assign_coords(site=text_array(sites.site.values), static_feature=text_array(spec.static_names))
    pixel_lat, pixel_lon, dist = pixels
    out = out.assign_coords(
        lat=("site", sites.lat.values),
        lon=("site", sites.lon.values),
        igbp=("site", text_array(sites.igbp.values)),
        elevation=("site", np.asarray(sites.elevation.values, dtype="float64")),
        pixel_lat=("site", np.asarray(pixel_lat, dtype="float64")),
        pixel_lon=("site", np.asarray(pixel_lon, dtype="float64")),
        distance_km=("site", np.asarray(dist, dtype="float32")),
    )
    out.attrs["feature_spec"] = json.dumps(spec.to_dict())
    if "time_sampling" in sites.attrs:
        out.attrs["time_sampling"] = sites.attrs["time_sampling"]
    return _drop_empty_sites(out, targets)


def text_array(values) -> np.ndarray:
    """Strings as an object array, which Zarr v3 stores as (specified) variable-length UTF-8."""
    return np.array([str(v) for v in values], dtype=object)


def _drop_empty_sites(ds: xr.Dataset, targets: list[str]) -> xr.Dataset:
    has_obs = np.zeros(ds.sizes["site"], dtype=bool)
    for target in targets:
        has_obs |= np.isfinite(ds[target].values).any(axis=1)
    if not has_obs.any():
        raise DataError("no site has observations of the targets inside the predictors' period", where="sites")
    return ds.isel(site=np.nonzero(has_obs)[0])
