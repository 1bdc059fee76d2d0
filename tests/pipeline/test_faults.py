"""Faults during the apply stage: a worker killed, a scheduler given by address losing a worker, the client
killed and run again. Each ends in a product identical to the same tiles applied without a fault
(``tiled_reference``); the Slurm faults are in tests/slurm/test_faults.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import upscale.apply
from tests.faults import (
    N_TILES,
    apply_with_a_kill,
    assert_whole,
    open_copy,
    slow_tile,
    tiles_done,
    trained_copy,
    wait_for_tiles,
)
from upscale.cluster import close_client, make_client
from upscale.pipeline import stage_apply

ROOT = Path(__file__).parents[2]


def worker_env() -> dict:
    """The environment of worker and client processes: this checkout first on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_a_tile_run_twice_writes_the_same_bytes(product_run, tmp_path):
    """Tile tasks are idempotent: a tile re-run after a fault rewrites its chunks with identical bytes."""
    run = open_copy(trained_copy(product_run, tmp_path / "run", {"type": "synchronous"}))
    stage_apply(run)
    from upscale.pipeline import apply_domain

    domain = apply_domain(run)
    assert len(domain.tiles()) == N_TILES
    tile = domain.tiles()[5]
    chunks = sorted(p for p in run.files.product.rglob("*") if p.is_file() and "zarr.json" not in p.name)
    before = {p: p.read_bytes() for p in chunks}
    assert upscale.apply.run_tile(domain.job(str(run.files.product)), tile) == tile.id
    assert {p: p.read_bytes() for p in chunks} == before and len(before) > N_TILES


def test_a_local_worker_killed_mid_apply(product_run, tiled_reference, tmp_path, monkeypatch):
    monkeypatch.setattr(upscale.apply, "run_tile", slow_tile)
    run = open_copy(trained_copy(product_run, tmp_path / "run", {"type": "local", "n_workers": 2}))
    client = make_client(run.recipe.cluster)
    try:
        victim = next(iter(client.run(os.getpid).values()))
        info, at_kill = apply_with_a_kill(run, client, lambda: os.kill(victim, signal.SIGKILL))
    finally:
        close_client(client)
    assert info == {"tiles": N_TILES, "resumed_tiles": 0} and 3 <= at_kill < N_TILES
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    assert_whole(run, tiled_reference)


def start(args: list[str], **kwargs) -> subprocess.Popen:
    """A process in its own session (so that it is killed with its children), quiet, from this checkout."""
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=worker_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **kwargs,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_scheduler_by_address_loses_a_worker(product_run, tiled_reference, tmp_path, monkeypatch):
    """Real ``dask scheduler`` and ``dask worker`` processes; one worker (nanny and all) is killed mid-apply."""
    monkeypatch.setattr(upscale.apply, "run_tile", slow_tile)
    file = tmp_path / "scheduler.json"
    py = [sys.executable, "-m"]
    scheduler = start([*py, "distributed.cli.dask_scheduler", "--scheduler-file", str(file), "--port", "0"])
    workers = []
    try:
        for _ in range(60 * 10):
            if file.exists() and file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        for i in range(2):
            workers.append(start([*py, "distributed.cli.dask_worker", address, "--nthreads", "1", "--name", f"w{i}"]))
        run = open_copy(trained_copy(product_run, tmp_path / "run", {"type": "address", "address": address}))
        client = make_client(run.recipe.cluster)
        try:
            client.wait_for_workers(2, timeout=120)
            info, at_kill = apply_with_a_kill(run, client, lambda: os.killpg(workers[0].pid, signal.SIGKILL))
        finally:
            close_client(client)
    finally:
        for proc in [*workers, scheduler]:
            stop(proc)
    assert info == {"tiles": N_TILES, "resumed_tiles": 0} and 3 <= at_kill < N_TILES
    assert workers[0].returncode == -signal.SIGKILL and workers[1].returncode == -signal.SIGKILL  # w1 only by stop
    assert_whole(run, tiled_reference)


#: `upscale apply` with the slowed tile task (the workers import it from tests.faults)
SLOW_APPLY = (
    "import sys, upscale.apply, tests.faults; upscale.apply.run_tile = tests.faults.slow_tile; "
    "from upscale.cli import main; sys.argv = ['upscale', *sys.argv[1:]]; main()"
)


@pytest.mark.slow  # two CLI processes and a local cluster: ~60 s; the in-process kill test runs in CI (test_domain)
def test_the_client_killed_mid_apply_then_run_again(product_run, tiled_reference, tmp_path):
    """``kill -9`` of the client on a local cluster: its workers go with it, and ``upscale apply`` resumes."""
    recipe = trained_copy(product_run, tmp_path / "run", {"type": "local", "n_workers": 2})
    client = start([sys.executable, "-c", SLOW_APPLY, "apply", str(recipe)])
    try:
        at_kill = wait_for_tiles(tmp_path / "run", 3, timeout=180, alive=lambda: client.poll() is None)
        children = psutil.Process(client.pid).children(recursive=True)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=30)
    finally:
        stop(client)
    assert client.returncode == -signal.SIGKILL and 3 <= at_kill < N_TILES, "the apply ended before the kill"
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], f"workers outlived their client: {alive}"
    done_before = tiles_done(tmp_path / "run")
    resumed = subprocess.run(
        [sys.executable, "-m", "upscale.cli", "apply", str(recipe)], cwd=ROOT, env=worker_env(), capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    run = open_copy(recipe)
    assert run.manifest.stage_done("apply") and done_before < N_TILES
    assert_whole(run, tiled_reference)
