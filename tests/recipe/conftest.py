"""Fixtures of the recipe tests: the smallest valid recipe, cluster sections, and a recipe file writer."""

from __future__ import annotations

import pytest
import yaml

#: The smallest valid recipe: a catalog and one predictor.
BASE = {"catalog": "cat.yaml", "predictors": {"era5": ["tas"]}}
#: A full slurm and a full pbs cluster section (also the job-script tests' clusters, tests/test_cluster.py).
SLURM = dict(
    type="slurm",
    queue="gpu-a100",
    account="proj42",
    walltime="04:30:00",
    cores=16,
    memory="64GiB",
    gpus=1,
    n_workers=6,
    local_directory="$TMPDIR",
    job_extra_directives=["--constraint=a100"],
    job_script_prologue=["module load cuda/12.2", "source ~/venvs/upscale/bin/activate"],
)
PBS = dict(
    type="pbs",
    queue="workq",
    account="proj42",
    walltime="12:00:00",
    cores=32,
    processes=4,
    memory="120GB",
    n_workers=10,
    job_extra_directives=["-l place=scatter"],
    job_script_prologue=["module load conda", "conda activate upscale"],
    local_directory="/scratch/$USER",
)


@pytest.fixture
def write(tmp_path):
    """``write(data)``: the path of a recipe file holding the mapping ``data`` (in tmp_path)."""

    def write(data: dict):
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write
