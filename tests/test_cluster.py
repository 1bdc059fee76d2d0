"""Clusters: slurm/pbs job scripts, GPU worker selection, dashboard link (the recipe section: tests/recipe)."""

from __future__ import annotations

import sys
import types

import pytest
import yaml
from typer.testing import CliRunner

from tests.recipe.conftest import BASE, PBS, SLURM
from upscale import cluster as cl
from upscale.cli import app
from upscale.errors import RecipeError
from upscale.recipe import Cluster, load_recipe

runner = CliRunner()


def write(tmp_path, cluster: dict):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**BASE, "cluster": cluster}))
    return path


def lines(script: str) -> list[str]:
    return script.splitlines()


# ---- job scripts -------------------------------------------------------------------------------


def test_slurm_script_has_the_directives():
    script = cl.job_script(Cluster(**SLURM))
    for directive in (
        "#SBATCH -p gpu-a100",
        "#SBATCH -A proj42",
        "#SBATCH -t 04:30:00",
        "#SBATCH --mem=64G",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --constraint=a100",
        "#SBATCH -J upscale-worker",
    ):
        assert directive in lines(script), directive
    # prologue lines come after the directives and before the worker command, in order
    body = lines(script)
    worker = next(i for i, line in enumerate(body) if "distributed.cli.dask_worker" in line)
    load, activate = body.index("module load cuda/12.2"), body.index("source ~/venvs/upscale/bin/activate")
    assert max(i for i, line in enumerate(body) if line.startswith("#SBATCH")) < load < activate < worker
    command = body[worker]
    assert "--nthreads 1" in command and "--local-directory $TMPDIR" in command
    assert "--memory-limit 64.00GiB" in command and "--nworkers" not in command


def test_slurm_gpus_flag_and_skipped_directives():
    script = cl.job_script(Cluster(**{**SLURM, "gpu_directive": "gpus", "job_directives_skip": ["--mem"]}))
    assert "#SBATCH --gpus=1" in lines(script)
    directives = [line for line in lines(script) if line.startswith("#SBATCH")]
    assert not any("gres" in line or "--mem" in line for line in directives) and len(directives) == 8


def test_pbs_script_has_the_directives():
    script = cl.job_script(Cluster(**PBS))
    for directive in (
        "#PBS -q workq",
        "#PBS -A proj42",
        "#PBS -l walltime=12:00:00",
        "#PBS -l select=1:ncpus=32:mem=112GB",
        "#PBS -l place=scatter",
        "#PBS -N upscale-worker",
    ):
        assert directive in lines(script), directive
    assert "module load conda" in lines(script) and "conda activate upscale" in lines(script)
    command = next(line for line in lines(script) if "dask_worker" in line)
    # 4 workers per job, one tile (thread) each, sharing the job's memory
    assert "--nworkers 4" in command and "--nthreads 1" in command and "--memory-limit 27.94GiB" in command
    assert "--local-directory /scratch/$USER" in command


def test_pbs_gpu_job_asks_ngpus_in_select():
    script = cl.job_script(Cluster(**{**PBS, "processes": 1, "gpus": 1, "memory": "64GiB"}))
    assert "#PBS -l select=1:ncpus=32:mem=64GB:ngpus=1" in lines(script)


def test_script_of_a_running_cluster_matches(monkeypatch):
    """What `cluster-script` prints is what the live cluster submits, but for the scheduler address."""
    import dask_jobqueue

    scaled = []
    monkeypatch.setattr(dask_jobqueue.SLURMCluster, "scale", lambda self, n=None, jobs=0, **kw: scaled.append(jobs))
    client = cl.make_client(Cluster(**{**SLURM, "n_workers": 3}))
    try:
        live = client.cluster.job_script()
        assert scaled == [3]
        assert client.dashboard_link.startswith("http")
        address = client.cluster.scheduler_address
    finally:
        cl.close_client(client)
    assert live.replace(address, cl.SCHEDULER_PLACEHOLDER) == cl.job_script(Cluster(**{**SLURM, "n_workers": 3}))


@pytest.mark.parametrize(
    "cfg, expected",
    [
        ({**PBS, "n_workers": 10}, (10, 3)),
        ({**PBS, "n_workers": None}, (4, 1)),
        ({**SLURM, "n_workers": 6}, (6, 6)),
    ],
)
def test_workers_and_jobs(cfg, expected):
    assert cl.worker_jobs(Cluster(**cfg)) == expected


def test_cluster_script_command_for_slurm_and_pbs(tmp_path):
    result = runner.invoke(app, ["cluster-script", str(write(tmp_path, SLURM)), "--set", "cluster.cores=8"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --cpus-per-task=8" in result.stdout and "#SBATCH -p gpu-a100" in result.stdout
    assert result.stdout.startswith("#!/usr/bin/env bash")
    result = runner.invoke(app, ["cluster-script", str(write(tmp_path, PBS))])
    assert result.exit_code == 0, result.output
    assert "#PBS -l walltime=12:00:00" in result.stdout


@pytest.mark.parametrize(
    "cluster", [{"type": "local"}, {"type": "synchronous"}, {"type": "address", "address": "tcp://h:8786"}]
)
def test_cluster_script_refuses_other_types(tmp_path, cluster):
    result = runner.invoke(app, ["cluster-script", str(write(tmp_path, cluster))])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"cluster.type is '{cluster['type']}'" in text and "slurm or pbs" in text
    assert "Traceback" not in result.output


# ---- local: GPU workers when dask-cuda sees GPUs, else CPU ---------------------------------------


@pytest.mark.parametrize(
    "gpus_found, cfg, plan",
    [
        (0, {}, ("cpu", 2)),
        (0, {"n_workers": 5}, ("cpu", 5)),
        (4, {}, ("cuda", 4)),
        (2, {"n_workers": 8}, ("cuda", 2)),
        (4, {"n_workers": 1}, ("cuda", 1)),
        (4, {"gpus": 0, "n_workers": 3}, ("cpu", 3)),
        (4, {"gpus": 2}, ("cuda", 2)),
    ],
)
def test_local_plan(monkeypatch, gpus_found, cfg, plan):
    monkeypatch.setattr(cl, "gpu_count", lambda: gpus_found)
    assert cl.local_plan(Cluster(type="local", **cfg)) == plan


@pytest.mark.parametrize("found", [0, 1])
def test_asking_for_missing_gpus_is_a_recipe_error(monkeypatch, found):
    monkeypatch.setattr(cl, "gpu_count", lambda: found)
    with pytest.raises(RecipeError, match=r"cluster\.gpus asks for 2 GPUs") as err:
        cl.local_plan(Cluster(type="local", gpus=2))
    assert "upscale[gpu]" in err.value.message


def test_gpu_count_is_zero_without_dask_cuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # import fails
    monkeypatch.setitem(sys.modules, "dask_cuda.utils", None)
    assert cl.gpu_count() == 0


def test_local_cuda_cluster_is_used_when_gpus_are_found(monkeypatch):
    made = {}

    class FakeCUDACluster:
        def __init__(self, **kwargs):
            made.update(kwargs)

    fake = types.ModuleType("dask_cuda")
    fake.LocalCUDACluster = FakeCUDACluster
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    monkeypatch.setattr(cl, "gpu_count", lambda: 2)
    assert isinstance(cl._start_local(Cluster(type="local", threads_per_worker=4)), FakeCUDACluster)
    assert made["n_workers"] == 2 and made["threads_per_worker"] == 1 and made["memory_limit"] == "auto"
    assert cl.describe(Cluster(type="local")) == "local: 2 GPU workers"


def test_cpu_machine_starts_a_cpu_cluster_and_prints_the_dashboard(monkeypatch, capsys):
    from upscale import cli

    monkeypatch.setattr(cl, "gpu_count", lambda: 0)
    client = cli._start_cluster(Cluster(type="local", n_workers=1, threads_per_worker=2))
    try:
        assert type(client.cluster).__name__ == "LocalCluster"
        info = client.scheduler_info()["workers"]
        assert [w["nthreads"] for w in info.values()] == [1]  # one tile at a time; torch gets the 2 threads
        link = client.dashboard_link
    finally:
        cl.close_client(client)
    err = " ".join(capsys.readouterr().err.split())
    assert "dask cluster: local: 1 CPU workers" in err
    assert f"dask dashboard: {link}" in err and link.startswith("http")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("hpc-slurm.yaml", ["#SBATCH -p gpu", "#SBATCH --gres=gpu:1", "module load cuda/12.2"]),
        ("hpc-pbs.yaml", ["#PBS -q workq", "#PBS -l select=1:ncpus=32:mem=112GB", "conda activate upscale"]),
    ],
)
def test_recipe_templates_are_valid_and_give_their_scripts(monkeypatch, tmp_path, name, expected):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)  # dask-jobqueue creates the log directory
    template = Path(__file__).parents[1] / "recipes" / name
    cfg = load_recipe(template, ["cluster.python=/opt/upscale/bin/python"]).cluster
    script = cl.job_script(cfg)
    for line in expected:
        assert line in lines(script), line
    assert any(line.startswith("/opt/upscale/bin/python -m distributed.cli.dask_worker") for line in lines(script))
