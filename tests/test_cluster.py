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
        assert scaled[0] == 3 and set(scaled) == {3}  # submitted at once; adaptive scaling keeps the 3 jobs
        assert client.dashboard_link.startswith("http")
        address = client.cluster.scheduler_address
    finally:
        cl.close_client(client)
    assert live.replace(address, cl.SCHEDULER_PLACEHOLDER) == cl.job_script(Cluster(**{**SLURM, "n_workers": 3}))


# ---- many GPUs per job: one worker pinned to each ---------------------------------------------

MULTI_GPU = dict(type="slurm", cores=32, memory="256GiB", walltime="02:00:00", gpus_per_job=4, n_workers=8)


def worker_lines(script: str) -> list[str]:
    return [line for line in lines(script) if "distributed.cli.dask_worker" in line]


@pytest.mark.parametrize("kind, request_line", [("slurm", "#SBATCH --gres=gpu:4"), ("pbs", "ngpus=4")])
def test_a_job_with_four_gpus_starts_four_workers_each_pinned_to_one(kind, request_line):
    cfg = Cluster(**{**MULTI_GPU, "type": kind})
    script = cl.job_script(cfg)
    assert any(request_line in line for line in lines(script)), request_line
    workers = worker_lines(script)
    assert [w.split()[0] for w in workers] == [f"CUDA_VISIBLE_DEVICES=${{gpu[{i}]}}" for i in range(4)]
    # dask-jobqueue's names for the job's 4 workers; each a quarter of the cores and memory, in the background
    assert [w.split()[w.split().index("--name") + 1] for w in workers] == [f"dummy-name-{i}" for i in range(4)]
    assert all("--nworkers" not in w and "--nthreads 1" in w and "--memory-limit 64.00GiB" in w for w in workers)
    assert all(w.endswith(" &") for w in workers) and lines(script)[-1] == "wait"
    assert cfg.torch_threads() == 8 and cl.worker_jobs(cfg) == (8, 2)
    assert "4 GPUs per job, one per worker" in cl.describe(cfg)


def test_the_pinning_runs_in_bash_on_the_gpus_the_batch_system_gives(tmp_path):
    """The script's GPU lines, run by bash with worker commands that print what they see."""
    import subprocess

    block = cl.pinned_workers("python -m distributed.cli.dask_worker tcp://h:1 --name job-7 --nworkers 2 --nanny", 2)
    fake = block.replace("python -m distributed.cli.dask_worker", "sh -c 'echo $CUDA_VISIBLE_DEVICES $0 $2' ")
    for visible, expected in (("5,7", ["5 tcp://h:1 job-7-0", "7 tcp://h:1 job-7-1"]), (None, ["0", "1"])):
        env = {"PATH": "/usr/bin:/bin", **({"CUDA_VISIBLE_DEVICES": visible} if visible else {})}
        out = subprocess.run(["bash", "-c", fake], env=env, capture_output=True, text=True, check=True).stdout
        assert sorted(line.split()[0] for line in out.splitlines()) == [e.split()[0] for e in expected]
        if visible:
            assert sorted(out.splitlines()) == expected
    too_few = subprocess.run(["bash", "-c", fake], env={"CUDA_VISIBLE_DEVICES": "3"}, capture_output=True, text=True)
    assert too_few.returncode == 1 and "the job sees 1 GPUs, not 2" in too_few.stderr


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"gpus": 1}, "not both"),
        ({"processes": 2}, r"processes \(2\) differs from cluster.gpus_per_job \(4\)"),
        ({"cores": 2}, r"gpus_per_job \(4\) exceeds cluster.cores \(2\)"),
        ({"type": "local", "cores": None, "memory": None, "walltime": None}, "only to type slurm or pbs"),
    ],
)
def test_gpus_per_job_refuses_what_contradicts_it(changes, message):
    with pytest.raises(ValueError, match=message):
        Cluster(**{**MULTI_GPU, **changes})


def test_one_gpu_per_job_needs_no_worker_list():
    script = cl.job_script(Cluster(**{**MULTI_GPU, "gpus_per_job": 1}))
    (worker,) = worker_lines(script)
    assert "--name dummy-name " in worker and "#SBATCH --gres=gpu:1" in lines(script)


# ---- jobs that end early are submitted again; the script is kept -------------------------------


def test_a_job_gone_from_the_cluster_is_submitted_again(monkeypatch):
    """The adaptive step asks for the planned jobs again, which re-opens those dask-jobqueue forgot."""
    import asyncio

    calls = []

    class FakeCluster:
        def __init__(self):
            self.status = types.SimpleNamespace(name="running")
            self.worker_spec = {"job-0": {}, "job-1": {}}

        def scale(self, n=None, jobs=0, **kw):
            calls.append(jobs)

    adaptive_cls = cl._replacing_adaptive()
    monkeypatch.setattr(adaptive_cls.__mro__[1], "adapt", lambda self: asyncio.sleep(0))
    adaptive = object.__new__(adaptive_cls)
    adaptive.cluster = FakeCluster()
    asyncio.run(adaptive.adapt())
    assert calls == [2]
    adaptive.cluster.status = types.SimpleNamespace(name="closing")
    asyncio.run(adaptive.adapt())
    assert calls == [2]  # a closing cluster submits nothing


def test_the_job_script_is_kept_only_for_batch_clusters(tmp_path):
    class Batch:
        cluster = types.SimpleNamespace(job_script=lambda: "#!/usr/bin/env bash\n#SBATCH -J upscale-worker\n")

    assert cl.keep_job_script(Batch(), tmp_path / "worker-job.sh")
    assert (tmp_path / "worker-job.sh").read_text().splitlines()[1] == "#SBATCH -J upscale-worker"
    assert not cl.keep_job_script(None, tmp_path / "none.sh") and not (tmp_path / "none.sh").exists()
    local = types.SimpleNamespace(cluster=types.SimpleNamespace())
    assert not cl.keep_job_script(local, tmp_path / "local.sh") and not (tmp_path / "local.sh").exists()


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


def test_a_lazy_client_starts_once_on_first_call_and_again_after_close(monkeypatch):
    started, closed = [], []
    monkeypatch.setattr(cl, "close_client", closed.append)
    with cl.LazyClient(lambda: started.append(1) or f"client-{len(started)}") as client:
        assert started == [] and closed == []  # nothing starts until work asks for it
        assert client() == client() == "client-1" and len(started) == 1
        client.close()
        assert closed == ["client-1"]
        assert client() == "client-2"  # a later stage that needs workers starts them again
    assert closed == ["client-1", "client-2"]
    with cl.LazyClient() as in_process:
        assert in_process() is None
    assert closed[-1] is None  # close_client(None) is a no-op
