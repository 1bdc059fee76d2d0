"""Catalogs: YAML files naming data entries, each opened lazily as a canonical Dataset.

A catalog is either a list of entries::

    entries:
      era5: {driver: era5, path: "era5/era5_daily_*.nc"}
      eo: {driver: cube, path: eo/eo_daily.zarr}
      static: {driver: geotiff, path: static/pft.tif, variable: pft, categorical: true}
      fluxnet: {driver: fluxnet, path: "fluxnet/FLX_*_DD_*.csv", site_list: fluxnet/sites.csv}

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
_ENTRY_KEYS = {"driver", "path", "variable", "categorical", "site_list", "description"}


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
            raise CatalogError(f"no entry '{name}' in the catalog", where=str(self.path),
                               fix=f"{hint}Entries: {', '.join(self.entries)}")
        return self.entries[name]

    def open(self, name: str) -> xr.Dataset:
        """Open a gridded entry lazily as a canonical Dataset (dims time, lat, lon or lat, lon)."""
        return open_entry(self.entry(name))

    def open_sites(self, name: str, **kwargs) -> xr.Dataset:
        """Read a site entry (driver ``fluxnet``) as the canonical (site, time) Dataset."""
        from upscale.sources import fluxnet

        entry = self.entry(name)
        if entry.driver != "fluxnet":
            raise CatalogError(f"entry '{name}' has driver '{entry.driver}', sites need driver 'fluxnet'",
                               where=str(self.path))
        return fluxnet.read(entry.path, site_list=entry.options.get("site_list"), **kwargs)


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
    values = {k: str(v) if isinstance(v, datetime.date) else tuple(v) if isinstance(v, list) else v
              for k, v in params.items()}
    try:
        spec = DemoSpec(**values)
    except TypeError as exc:
        raise CatalogError(f"bad demo parameters: {exc}", where=f"{path}: demo") from None
    return load_catalog(cached_world(spec))


def open_entry(entry: Entry) -> xr.Dataset:
    """Open a gridded entry with its driver (no caching)."""
    from upscale.sources.eo import open_cube, open_geotiff
    from upscale.sources.era5 import open_era5

    if entry.driver == "era5":
        return open_era5(entry.path, source=entry.where)
    if entry.driver == "cube":
        return open_cube(entry.path, source=entry.where)
    if entry.driver == "geotiff":
        return open_geotiff(entry.path, entry.options.get("variable", entry.name), source=entry.where)
    raise CatalogError(f"entry '{entry.name}' (driver '{entry.driver}') is not a gridded cube",
                       where=entry.where, fix="Use an era5, cube or geotiff entry for predictors")


@functools.lru_cache(maxsize=16)
def cached_entry(catalog_path: str, name: str) -> xr.Dataset:
    """Open an entry once per process (workers reuse the lazily opened Dataset across tiles)."""
    return load_catalog(catalog_path).open(name)
