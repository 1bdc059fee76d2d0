"""Catalogs: YAML files naming data entries, each opened lazily as a canonical Dataset.

A catalog is either a list of entries::

    entries:
      era5: {driver: era5, path: "era5/era5_daily_*.nc"}
      eo: {driver: cube, path: eo/eo_daily.zarr}
      static: {driver: geotiff, path: static/pft.tif, variable: pft, categorical: true}
      fluxnet: {driver: fluxnet, path: "fluxnet/FLX_*_DD_*.csv", site_list: fluxnet/sites.csv}

Entries for real archives take more keys (see ``docs/data.md`` and the templates in
``catalogs/``)::

      era5: {driver: era5, path: "gs://gcp-public-data-arco-era5/ar/full_37-1h-0p25deg-chunk-1.zarr-v3",
             period: [2009-01-01, 2012-12-31], bbox: [-105, 30, -95, 40], storage_options: {token: anon}}
      ndvi: {driver: geotiff, path: "modis/MOD13A2_NDVI_A*.tif", variable: ndvi, grid: era5,
             scale_factor: 0.0001, fill_value: -3000, composite_days: 16}

or a pointer to the embedded demo world, generated into the cache on first use::

    demo: {seed: 0, resolution: 2.0, start: 2018-01-01, end: 2019-12-31, n_sites: 80}

Relative paths are relative to the catalog file; ``~`` and environment variables expand.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from upscale.errors import CatalogError
from upscale.recipe import read_yaml

DRIVERS = ("era5", "cube", "geotiff", "fluxnet")
_COMMON_KEYS = {"driver", "path", "description"}
_GRID_KEYS = {"period", "bbox", "storage_options"}
_EO_KEYS = _GRID_KEYS | {
    "scale_factor",
    "add_offset",
    "fill_value",
    "valid_range",
    "composite_days",
    "max_gap_days",
    "grid",
    "categorical",
}
#: driver -> the keys its entries may have
DRIVER_KEYS = {
    "era5": _COMMON_KEYS | _GRID_KEYS | {"daily_statistic"},
    "cube": _COMMON_KEYS | _EO_KEYS | {"variables"},
    "geotiff": _COMMON_KEYS | _EO_KEYS | {"variable"},
    "fluxnet": _COMMON_KEYS | {"site_list", "min_coverage"},
}
_ENTRY_KEYS = set().union(*DRIVER_KEYS.values())


@dataclass(frozen=True)
class Entry:
    """One catalog entry: a driver and where its files are."""

    name: str
    driver: str
    path: str
    options: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"catalog entry '{self.name}'"


@dataclass
class Catalog:
    """A loaded catalog (entries with absolute paths)."""

    path: Path
    entries: dict[str, Entry]
    description: str = ""

    def entry(self, name: str) -> Entry:
        """The entry called ``name``; a CatalogError naming the nearest entry otherwise."""
        if name not in self.entries:
            match = difflib.get_close_matches(name, list(self.entries), n=1)
            hint = f"Did you mean '{match[0]}'? " if match else ""
            raise CatalogError(
                f"no entry '{name}' in the catalog",
                where=str(self.path),
                fix=f"{hint}Entries: {', '.join(self.entries)}",
            )
        return self.entries[name]

    def open(self, name: str) -> xr.Dataset:
        """Open a gridded entry lazily as a canonical Dataset (dims time, lat, lon or lat, lon)."""
        return open_entry(self.entry(name), self)

    def open_sites(self, name: str, **kwargs) -> xr.Dataset:
        """Read a site entry (driver ``fluxnet``) as the canonical (site, time) Dataset."""
        from upscale.sources import fluxnet

        entry = self.site_entry(name)
        if "min_coverage" in entry.options:
            kwargs.setdefault("min_coverage", entry.options["min_coverage"])
        return fluxnet.read(entry.path, site_list=entry.options.get("site_list"), **kwargs)

    def scan_sites(self, name: str, sites=None) -> xr.Dataset:
        """The sites of a site entry and their coordinates, from file names, headers and the site list only."""
        from upscale.sources import fluxnet

        entry = self.site_entry(name)
        return fluxnet.scan_sites(entry.path, site_list=entry.options.get("site_list"), sites=sites)

    def site_entry(self, name: str) -> Entry:
        """The entry ``name``, refused unless it holds sites (driver ``fluxnet``)."""
        entry = self.entry(name)
        if entry.driver != "fluxnet":
            raise CatalogError(
                f"entry '{name}' has driver '{entry.driver}', sites need driver 'fluxnet'", where=str(self.path)
            )
        return entry


def load_catalog(path: str | Path) -> Catalog:
    """Load a catalog file (generating the demo world first if the catalog points at it)."""
    path = Path(path).expanduser().resolve()
    data = read_yaml(path, "catalog", error=CatalogError)
    if "demo" in data:
        return _demo_catalog(data["demo"] or {}, path)
    raw_entries = data.get("entries")
    if not isinstance(raw_entries, dict) or not raw_entries:
        raise CatalogError("a catalog needs an 'entries' mapping (or a 'demo' section)", where=str(path))
    entries = {name: _parse_entry(name, raw, path) for name, raw in raw_entries.items()}
    return Catalog(path=path, entries=entries, description=str(data.get("description", "")))


def _parse_entry(name: str, raw, catalog_path: Path) -> Entry:
    where = f"{catalog_path}: entries.{name}"
    if not isinstance(raw, dict):
        raise CatalogError("an entry must be a mapping with 'driver' and 'path'", where=where)
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        key = sorted(unknown)[0]
        match = difflib.get_close_matches(key, sorted(_ENTRY_KEYS), n=1)
        raise CatalogError(f"unknown key '{key}'" + (f"; did you mean '{match[0]}'?" if match else ""), where=where)
    driver = raw.get("driver")
    if driver not in DRIVERS:
        raise CatalogError(f"unknown driver {driver!r}; choose from {', '.join(DRIVERS)}", where=where)
    foreign = sorted(set(raw) - DRIVER_KEYS[driver])
    if foreign:
        raise CatalogError(
            f"key '{foreign[0]}' does not apply to driver '{driver}'",
            where=where,
            fix=f"Keys of {driver} entries: {', '.join(sorted(DRIVER_KEYS[driver]))}",
        )
    if not raw.get("path"):
        raise CatalogError("missing 'path'", where=where)
    options = {k: v for k, v in raw.items() if k not in ("driver", "path")}
    if "site_list" in options:
        options["site_list"] = _resolve(options["site_list"], catalog_path)
    return Entry(name=name, driver=driver, path=_resolve(raw["path"], catalog_path), options=options)


def _resolve(path: str, catalog_path: Path) -> str:
    expanded = os.path.expandvars(os.path.expanduser(str(path)))
    if "://" in expanded or os.path.isabs(expanded):
        return expanded
    return str(catalog_path.parent / expanded)


def _demo_catalog(params: dict, path: Path) -> Catalog:
    from upscale.sources.demo import DemoSpec, cached_world

    if not isinstance(params, dict):
        raise CatalogError("'demo' must be a mapping of DemoSpec fields", where=str(path))
    # YAML reads 2018-01-01 as a date and lists as lists: give DemoSpec strings and tuples
    values = {
        k: str(v) if isinstance(v, datetime.date) else tuple(v) if isinstance(v, list) else v for k, v in params.items()
    }
    try:
        spec = DemoSpec(**values)
    except TypeError as exc:
        raise CatalogError(f"bad demo parameters: {exc}", where=f"{path}: demo") from None
    return load_catalog(cached_world(spec))


def open_entry(entry: Entry, catalog: Catalog | None = None) -> xr.Dataset:
    """Open a gridded entry with its driver (no caching).

    Parameters
    ----------
    entry : Entry
        The entry.
    catalog : Catalog, optional
        Its catalog, needed when the entry regrids onto another entry (``grid: <name>``).
    """
    from upscale.sources.eo import open_cube, open_geotiff
    from upscale.sources.era5 import open_era5

    options = {k: v for k, v in entry.options.items() if k not in ("description", "variable")}
    if entry.driver == "era5":
        return open_era5(entry.path, source=entry.where, **options)
    if "grid" in options:
        options["grid"] = _grid_of(entry, catalog)
    if entry.driver == "cube":
        return open_cube(entry.path, source=entry.where, **options)
    if entry.driver == "geotiff":
        return open_geotiff(entry.path, entry.options.get("variable", entry.name), source=entry.where, **options)
    raise CatalogError(
        f"entry '{entry.name}' (driver '{entry.driver}') is not a gridded cube",
        where=entry.where,
        fix="Use an era5, cube or geotiff entry for predictors",
    )


def _grid_of(entry: Entry, catalog: Catalog | None) -> xr.Dataset:
    """The lat/lon grid of the entry named by ``entry``'s ``grid`` key."""
    name = entry.options["grid"]
    if catalog is None or name == entry.name:
        raise CatalogError(f"'grid: {name}' must name another entry of the same catalog", where=entry.where)
    other = catalog.entry(name)
    if "grid" in other.options:
        raise CatalogError(
            f"'grid: {name}' names an entry that is regridded itself",
            where=entry.where,
            fix="Name the meteorological entry (e.g. era5) whose grid the others follow",
        )
    target = catalog.open(name)
    return xr.Dataset(coords={"lat": target["lat"], "lon": target["lon"]})


@functools.lru_cache(maxsize=8)
def cached_catalog(catalog_path: str) -> Catalog:
    """The catalog at ``catalog_path``, parsed once per process."""
    return load_catalog(catalog_path)


@functools.lru_cache(maxsize=16)
def cached_entry(catalog_path: str, name: str) -> xr.Dataset:
    """Open an entry once per process (workers reuse the lazily opened Dataset across tiles)."""
    return cached_catalog(str(catalog_path)).open(name)
