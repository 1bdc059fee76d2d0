"""The slurm tests: a live Slurm (ci/slurm/start.sh) or a skip that says why there is none."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
START = "start one with `ci/slurm/start.sh` (as root, after apt-get install slurm-wlm) and export SLURM_CONF"


def slurm_missing() -> str | None:
    """Why no Slurm is reachable here (None: one answers and has a node to run on)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return f"no Slurm here: sinfo/sbatch not found; {START}"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return f"no Slurm answers: sinfo timed out; {START}"
    if out.returncode:
        return f"no Slurm answers: sinfo says {out.stderr.strip()[:200]!r}; {START}"
    states = out.stdout.split()
    if not {"idle", "mixed"} & set(states):
        return f"Slurm answers but has no idle node (states: {', '.join(states) or 'none'})"
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    """Skip the test where no Slurm is reachable."""
    reason = slurm_missing()
    if reason:
        pytest.skip(reason)


def queued_jobs() -> set[str]:
    """Ids of this user's jobs in the queue (pending, running or completing)."""
    out = subprocess.run(["squeue", "-h", "--me", "-o", "%i"], capture_output=True, text=True, timeout=15, check=True)
    return set(out.stdout.split())


def wait_for_empty_queue(timeout: float = 60) -> set[str]:
    """Wait until this user's jobs have left the queue; returns those still there at the timeout."""
    deadline = time.monotonic() + timeout
    while (jobs := queued_jobs()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return jobs


def slurm_cluster(logs: Path, **changes) -> dict:
    """A recipe's cluster section for the one-node CI Slurm: two one-core worker jobs from this checkout."""
    return {
        "type": "slurm",
        "cores": 1,
        "memory": "1GiB",
        "walltime": "00:10:00",
        "n_workers": 2,
        "log_directory": str(logs),
        "job_script_prologue": [f"cd {ROOT}", f"export PYTHONPATH={ROOT}"],
        **changes,
    }
