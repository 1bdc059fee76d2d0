"""The demo world: an embedded, deterministic synthetic Earth that knows the truth.

:func:`simulate` builds, in memory and on the canonical grid, a daily climate (temperature,
radiation, precipitation, humidity, 10 m wind), a plant-functional-type map, vegetation
phenology, a soil-water bucket and the true GPP and ET, their true sensitivities to the
meteorological drivers, plus a table of flux-tower sites.
:func:`write_world` writes it in the formats of the real data (ERA5 NetCDF, an EO Zarr cube, a
GeoTIFF, FLUXNET2015 DD CSV files with noise, gaps and QC, a site list, the truth and the true
sensitivities as Zarr and a catalog pointing at all of it). :func:`cached_world` keeps one world
per spec in a cache folder.

Everything is seeded: the same :class:`DemoSpec` gives bit-identical arrays and file contents.
Each component draws from its own random stream (:mod:`.noise`), so for example the climate of a
world does not change when only the number of sites changes.

The modules, in the order :func:`simulate` uses them:

* :mod:`.spec`: :class:`DemoSpec`, what world to build, and :data:`WORLD_VERSION`;
* :mod:`.geography`: grid, land mask, continentality, the PFT map (:mod:`.pft`: the PFT tables);
* :mod:`.climate`: the daily climate (model in its docstring);
* :mod:`.land`: the land model, a pure daily step, and its true sensitivities (:mod:`.sensitivity`);
* :mod:`.sites`: where the flux towers are and what they observe;
* :mod:`.world`: :func:`simulate`, the composition into an xarray Dataset;
* :mod:`.writers`: the file formats and :func:`write_world`; :mod:`.cache`: :func:`cached_world`.
"""

from upscale.sources.demo.cache import cached_world
from upscale.sources.demo.sensitivity import (
    SENSITIVITY_DEFINITION,
    SENSITIVITY_DRIVERS,
    SENSITIVITY_TARGETS,
)
from upscale.sources.demo.spec import WORLD_VERSION, DemoSpec
from upscale.sources.demo.world import simulate
from upscale.sources.demo.writers import write_world

__all__ = [
    "SENSITIVITY_DEFINITION",
    "SENSITIVITY_DRIVERS",
    "SENSITIVITY_TARGETS",
    "WORLD_VERSION",
    "DemoSpec",
    "cached_world",
    "simulate",
    "write_world",
]
