"""``upscale run`` with ``cluster.type: slurm`` on a live Slurm: worker jobs join, the product is the local one's."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.faults import N_TILES, open_copy, product_arrays, trained_copy
from tests.slurm.conftest import ROOT, queued_jobs, slurm_cluster, wait_for_empty_queue

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def test_a_run_on_slurm_equals_the_local_run(product_run, tiled_reference, tmp_path):
    assert not queued_jobs(), "jobs were queued before the test"
    recipe = trained_copy(product_run, tmp_path / "run", slurm_cluster(tmp_path / "logs"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "upscale.cli", "run", str(recipe)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "slurm: 2 worker jobs submitted (2 workers)" in " ".join(done.stderr.split())
    run = open_copy(recipe)
    assert run.manifest.get("complete") and len(run.manifest.tiles) == N_TILES
    assert product_arrays(run.files.product) == tiled_reference  # bit for bit
    assert wait_for_empty_queue() == set()  # the worker jobs were cancelled with the cluster
    script = run.files.job_script.read_text().splitlines()
    assert "#SBATCH -J upscale-worker" in script and "#SBATCH --cpus-per-task=1" in script
    worker = next(line for line in script if "distributed.cli.dask_worker" in line)
    assert worker.split()[3].startswith("tcp://") and "SCHEDULER-ADDRESS" not in worker
    # both jobs ran a worker and wrote their logs where the recipe says
    assert len(list((tmp_path / "logs").glob("*.err"))) + len(list((tmp_path / "logs").glob("*.out"))) >= 2
