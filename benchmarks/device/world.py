"""Device-only helper: write the demo world with its PFT map as a Zarr cube instead of a GeoTIFF.

The GPU machine has no registry, and rasterio's wheel (36 MB, with pyproj 10 MB) does not fit in
the 64 MiB a device call carries beside the other wheels. The static map is read once per apply,
so its format does not change what the GPU benchmark measures.

    python benchmarks/device/world.py OUT_DIR RESOLUTION
"""

import sys
from pathlib import Path

import numpy as np
import yaml

from upscale.sources.demo import writers


def write_static_zarr(world, path: Path) -> None:
    pft = world["pft"].astype("float32")
    pft = pft.where(pft > 0)  # water: missing, as the GeoTIFF's nodata 0 reads
    pft.attrs = {"long_name": "plant functional type (IGBP)", "units": "1"}
    pft.to_dataset(name="pft").to_zarr(path.with_suffix(".zarr"), mode="w")


def write_catalog_zarr(spec, path: Path) -> None:
    write_catalog(spec, path)
    catalog = yaml.safe_load(path.read_text())
    catalog["entries"]["static"] = {"driver": "cube", "path": "static/pft.zarr", "categorical": True}
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))


write_catalog = writers.write_catalog
writers.write_static, writers.write_catalog = write_static_zarr, write_catalog_zarr

if __name__ == "__main__":
    from upscale.sources.demo import DemoSpec

    out, resolution = sys.argv[1:3]
    np.seterr(all="ignore")
    print(writers.write_world(DemoSpec(resolution=float(resolution)), out))
