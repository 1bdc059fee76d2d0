"""Slurm faults: a worker job cancelled mid-apply, a worker job at its walltime (slow). Each job is replaced by a
new one, and the product is identical to an uninterrupted apply."""

from __future__ import annotations

import functools
import subprocess
import time

import dask
import pytest

import upscale.apply
from tests.faults import N_TILES, apply_with_a_kill, assert_whole, open_copy, slow_tile, trained_copy
from tests.slurm.conftest import queued_jobs, slurm_cluster, wait_for_empty_queue
from upscale.cluster import close_client, make_client

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def wait_for_new_job(known: set[str], timeout: float = 60) -> set[str]:
    """Job ids in the queue that are not in ``known`` (waiting up to ``timeout`` s for one)."""
    deadline = time.monotonic() + timeout
    while not (new := queued_jobs() - known) and time.monotonic() < deadline:
        time.sleep(0.5)
    return new


def apply_on_slurm(run, workers: int, kill=lambda: None) -> tuple[dict, int, set[str], set[str]]:
    """Apply ``run`` on its slurm cluster, ``kill()`` once 3 tiles are recorded; returns the stage's summary,
    the tiles at the kill, the jobs at the start and those submitted since (waiting up to a minute for one)."""
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}):  # forget a lost job at once
        client = make_client(run.recipe.cluster)
        try:
            client.wait_for_workers(workers, timeout=180)
            first = queued_jobs()
            info, at_kill = apply_with_a_kill(run, client, lambda: kill(first))
            return info, at_kill, first, wait_for_new_job(first)
        finally:
            close_client(client)


def test_a_cancelled_worker_job_is_replaced(product_run, tiled_reference, tmp_path, monkeypatch):
    monkeypatch.setattr(upscale.apply, "run_tile", slow_tile)
    run = open_copy(trained_copy(product_run, tmp_path / "run", slurm_cluster(tmp_path / "logs")))
    cancel = lambda jobs: subprocess.run(["scancel", min(jobs)], check=True, timeout=15)  # noqa: E731
    info, at_kill, first, new = apply_on_slurm(run, 2, cancel)
    assert len(first) == 2 and 3 <= at_kill < N_TILES and info == {"tiles": N_TILES, "resumed_tiles": 0}
    assert new, "no job was submitted in place of the cancelled one"
    assert_whole(run, tiled_reference)
    assert wait_for_empty_queue() == set()


@pytest.mark.slow  # a job must outlive Slurm's shortest walltime (1 minute) and be killed: ~3 minutes
def test_a_worker_job_at_its_walltime_is_replaced(product_run, tiled_reference, tmp_path, monkeypatch):
    monkeypatch.setattr(upscale.apply, "run_tile", functools.partial(slow_tile, delay=12.0))  # 12 tiles: > 2 min
    cluster = slurm_cluster(tmp_path / "logs", walltime="00:01:00", n_workers=1)
    run = open_copy(trained_copy(product_run, tmp_path / "run", cluster))
    info, _, first, _ = apply_on_slurm(run, 1)
    assert len(first) == 1 and info == {"tiles": N_TILES, "resumed_tiles": 0}
    assert len(list((tmp_path / "logs").glob("*.err"))) >= 2, "one job ran every tile: none reached its walltime"
    assert_whole(run, tiled_reference)
    assert wait_for_empty_queue() == set()
