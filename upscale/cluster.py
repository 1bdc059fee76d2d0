"""The recipe's ``cluster`` section -> a Dask client (or None to run in-process).

Every worker runs one tile at a time (one Dask thread) and gives torch the CPU threads the
recipe grants it (:meth:`upscale.recipe.Cluster.torch_threads`), so tile-level and torch
parallelism never multiply into oversubscription. ``local`` uses one worker per GPU through
dask-cuda's ``LocalCUDACluster`` when dask-cuda is installed and GPUs are visible, and CPU
workers otherwise; ``slurm`` and ``pbs`` submit worker jobs through dask-jobqueue, and a job
that ends before the run does (its walltime, a node lost, ``scancel``) is submitted again. A job
with ``gpus_per_job: N`` starts N workers, each pinned to one of its GPUs.
"""

from __future__ import annotations

import logging
import math

from upscale.errors import RecipeError, UpscaleError

log = logging.getLogger("upscale")

SCHEDULER_PLACEHOLDER = "tcp://SCHEDULER-ADDRESS:8786"
_QUIET = ("distributed", "distributed.worker", "distributed.nanny", "distributed.scheduler", "dask_jobqueue")


def gpu_count() -> int:
    """GPUs that dask-cuda would use on this machine; 0 without dask-cuda or without GPUs."""
    try:
        from dask_cuda.utils import get_n_gpus
    except ImportError:
        return 0
    try:
        return int(get_n_gpus())
    except Exception:  # noqa: BLE001 - no driver, no NVML: a CPU machine
        return 0


def local_plan(cfg) -> tuple[str, int]:
    """How a ``local`` cluster starts here: ``("cuda", n)`` GPU workers or ``("cpu", n)`` CPU workers.

    Parameters
    ----------
    cfg : upscale.recipe.Cluster
        A cluster section of type ``local``.

    Returns
    -------
    tuple of (str, int)
        The worker kind and the number of workers.

    Raises
    ------
    RecipeError
        ``gpus`` asks for more GPUs than dask-cuda sees here.
    """
    found = gpu_count() if cfg.gpus != 0 else 0
    if cfg.gpus:
        if found < cfg.gpus:
            why = "no GPU is visible" if found else "none is visible to dask-cuda (or dask-cuda is not installed)"
            raise RecipeError(
                f"cluster.gpus asks for {cfg.gpus} GPUs but {found if found else why}",
                where="cluster.gpus",
                fix="Install the GPU extra (pip install 'upscale[gpu]'), lower cluster.gpus, "
                "or remove it to fall back to CPU workers",
            )
        return "cuda", cfg.gpus
    if found:
        n = min(cfg.n_workers or found, found)
        if cfg.n_workers and cfg.n_workers > found:
            log.info("cluster.n_workers=%d capped to the %d GPUs found (one worker per GPU)", cfg.n_workers, found)
        return "cuda", n
    return "cpu", cfg.n_workers or 2


def _start_local(cfg):
    kind, n_workers = local_plan(cfg)
    common = dict(
        n_workers=n_workers,
        threads_per_worker=1,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
        local_directory=cfg.local_directory,
    )
    if kind == "cuda":
        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(memory_limit=cfg.memory_limit or "auto", **common)
    from distributed import LocalCluster

    return LocalCluster(memory_limit=cfg.memory_limit or "4GiB", processes=True, **common)


def _jobqueue_class(cfg):
    try:
        from dask_jobqueue import PBSCluster, SLURMCluster
    except ImportError:
        raise UpscaleError(
            f"cluster.type {cfg.type!r} needs dask-jobqueue, which is not installed",
            where="cluster.type",
            fix="pip install 'upscale[hpc]'",
        ) from None
    return SLURMCluster if cfg.type == "slurm" else PBSCluster


def jobqueue_kwargs(cfg) -> dict:
    """The dask-jobqueue keyword arguments for a ``slurm`` or ``pbs`` cluster section.

    Each worker gets one Dask thread (one tile at a time) while the job asks the batch system
    for all ``cores``: slurm through ``--cpus-per-task``, pbs in its ``select`` statement,
    which also carries ``ngpus``; slurm asks GPUs with ``--gres=gpu:N`` or ``--gpus=N``.

    Parameters
    ----------
    cfg : upscale.recipe.Cluster
        A cluster section of type ``slurm`` or ``pbs``.

    Returns
    -------
    dict
        Keyword arguments of ``SLURMCluster`` / ``PBSCluster`` (and of their job classes).
    """
    from dask.utils import parse_bytes

    processes = cfg.workers_per_job()
    gpus = cfg.gpus_per_job or cfg.gpus
    directives = list(cfg.job_extra_directives)
    kwargs = dict(
        cores=processes,
        processes=processes,
        memory=cfg.memory,
        walltime=cfg.walltime,
        queue=cfg.queue,
        account=cfg.account,
        job_name="upscale-worker",
        job_script_prologue=list(cfg.job_script_prologue),
        job_directives_skip=list(cfg.job_directives_skip),
        local_directory=cfg.local_directory,
        interface=cfg.interface,
        log_directory=cfg.log_directory,
        python=cfg.python,
    )
    if cfg.type == "slurm":
        kwargs["job_cpu"] = cfg.cores
        if gpus:
            directives.append(f"--gpus={gpus}" if cfg.gpu_directive == "gpus" else f"--gres=gpu:{gpus}")
    else:
        from dask_jobqueue.pbs import pbs_format_bytes_ceil

        select = f"select=1:ncpus={cfg.cores}:mem={pbs_format_bytes_ceil(parse_bytes(cfg.memory))}"
        kwargs["resource_spec"] = select + (f":ngpus={gpus}" if gpus else "")
    kwargs["job_extra_directives"] = directives
    return kwargs


def _require_hpc(cfg) -> None:
    if cfg.type not in ("slurm", "pbs"):
        raise RecipeError(
            f"cluster.type is {cfg.type!r}: there is no job script to show",
            where="cluster.type",
            fix="Job scripts exist for cluster.type slurm or pbs (e.g. --set cluster.type=slurm "
            "with cluster.cores, cluster.memory and cluster.walltime)",
        )


def job_script(cfg) -> str:
    """The batch script dask-jobqueue would submit for each worker job; submits nothing.

    The scheduler address in the script is a placeholder: the real one is known only
    when the cluster starts.

    Parameters
    ----------
    cfg : upscale.recipe.Cluster
        A cluster section of type ``slurm`` or ``pbs``.

    Returns
    -------
    str
        The job script.

    Raises
    ------
    RecipeError
        The section is of another type.
    """
    _require_hpc(cfg)
    job_cls = _job_class(cfg)
    return job_cls(scheduler=SCHEDULER_PLACEHOLDER, name="dummy-name", **jobqueue_kwargs(cfg)).job_script()


def _job_class(cfg):
    """dask-jobqueue's job class for the section; with ``gpus_per_job`` one whose workers are pinned to a GPU each."""
    base = _jobqueue_class(cfg).job_cls
    if not cfg.gpus_per_job:
        return base

    class PinnedGPUJob(base):
        def job_script(self):
            script = super().job_script()
            return script.replace(self._command_template, pinned_workers(self._command_template, cfg.gpus_per_job))

    PinnedGPUJob.__name__ = PinnedGPUJob.__qualname__ = f"Pinned{base.__name__}"
    return PinnedGPUJob


def pinned_workers(command: str, gpus: int) -> str:
    """The job's one ``dask worker --nworkers N`` line -> N worker lines, each seeing one GPU.

    Each worker gets the job's GPU ``i`` (from the ``CUDA_VISIBLE_DEVICES`` the batch system sets,
    else ``i`` itself) and the name dask-jobqueue expects of the job's ``i``-th worker
    (``<job name>-<i>``); the worker's threads and memory are already the job's share.

    Parameters
    ----------
    command : str
        The worker command dask-jobqueue wrote for the whole job.
    gpus : int
        GPUs (and workers) in the job.

    Returns
    -------
    str
        Shell lines: the GPU list, the workers in the background, and ``wait``.
    """
    words = command.split()
    if "--nworkers" in words:
        at = words.index("--nworkers")
        del words[at : at + 2]
    name_at = words.index("--name") + 1
    name = words[name_at]
    lines = [
        'IFS=, read -r -a gpu <<< "${CUDA_VISIBLE_DEVICES:-' + ",".join(map(str, range(gpus))) + '}"',
        f'[ "${{#gpu[@]}}" -ge {gpus} ] || '
        f'{{ echo "upscale: the job sees ${{#gpu[@]}} GPUs, not {gpus}" >&2; exit 1; }}',
    ]
    for i in range(gpus):
        words[name_at] = f"{name}-{i}" if gpus > 1 else name
        lines.append(f"CUDA_VISIBLE_DEVICES=${{gpu[{i}]}} " + " ".join(words) + " &")
    return "\n".join([*lines, "wait"])


def worker_jobs(cfg) -> tuple[int, int]:
    """``(workers, jobs)`` a ``slurm`` or ``pbs`` cluster scales to."""
    processes = cfg.workers_per_job()
    workers = cfg.n_workers or processes
    return workers, math.ceil(workers / processes)


def _replacing_adaptive():
    """An ``Adaptive`` that also submits again every job that has ended (walltime, node lost, ``scancel``).

    dask-jobqueue forgets a job whose workers have left the scheduler (after
    ``distributed.deploy.lost-worker-timeout``) but keeps it in the cluster's plan, so plain
    adaptive scaling sees nothing to do; asking for the planned jobs again submits the missing ones.
    """
    from distributed.deploy import Adaptive

    class ReplacingAdaptive(Adaptive):
        async def adapt(self) -> None:
            await super().adapt()
            if self.cluster.status.name == "running":
                self.cluster.scale(jobs=len(self.cluster.worker_spec))

    return ReplacingAdaptive


def _start_jobqueue(cfg):
    cluster = _jobqueue_class(cfg)(
        scheduler_options={"dashboard_address": ":0"},
        silence_logs="error",
        job_cls=_job_class(cfg),
        **jobqueue_kwargs(cfg),
    )
    workers, jobs = worker_jobs(cfg)
    cluster.scale(jobs=jobs)
    cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs, Adaptive=_replacing_adaptive())
    log.info("submitted %d %s worker jobs for %d workers", jobs, cfg.type, workers)
    return cluster


def keep_job_script(client, path) -> bool:
    """Write the job script a ``slurm``/``pbs`` client's cluster submits (real scheduler address) to ``path``.

    Returns whether there was one (a local, address or synchronous client has none).
    """
    cluster = getattr(client, "cluster", None)
    if cluster is None or not hasattr(cluster, "job_script"):
        return False
    from pathlib import Path

    Path(path).write_text(cluster.job_script())
    return True


def describe(cfg) -> str:
    """One line saying what :func:`make_client` starts for this cluster section."""
    if cfg.type in ("slurm", "pbs"):
        workers, jobs = worker_jobs(cfg)
        gpu = f", {cfg.gpus} GPU each" if cfg.gpus else ""
        if cfg.gpus_per_job:
            gpu = f", {cfg.gpus_per_job} GPUs per job, one per worker"
        return f"{cfg.type}: {jobs} worker jobs submitted ({workers} workers{gpu}); they start when the queue allows"
    if cfg.type == "address":
        return f"connected to the scheduler at {cfg.address}"
    if cfg.type == "synchronous":
        return "synchronous: tiles run in this process"
    kind, n = local_plan(cfg)
    return f"local: {n} {'GPU' if kind == 'cuda' else 'CPU'} workers"


def make_client(cfg):
    """Start or connect to the cluster the apply stage runs on.

    Parameters
    ----------
    cfg : upscale.recipe.Cluster
        ``local`` starts worker processes here (one per GPU when dask-cuda sees GPUs),
        ``address`` connects to a running scheduler, ``slurm``/``pbs`` start a scheduler here
        and submit worker jobs, ``synchronous`` runs tiles in this process (debugging, tests).

    Returns
    -------
    distributed.Client or None
        None for ``synchronous``.
    """
    if cfg.type == "synchronous":
        return None
    from distributed import Client

    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.ERROR)
    if cfg.type == "address":
        return Client(cfg.address)
    cluster = _start_jobqueue(cfg) if cfg.type in ("slurm", "pbs") else _start_local(cfg)
    return Client(cluster)


class LazyClient:
    """A Dask client started on the first call, by ``start()``, and closed by :meth:`close` or on exit.

    Stages and commands take it as their ``client_factory``, so workers start only when work
    needs them (None when ``start`` is None or returns None: the work runs in this process).
    """

    def __init__(self, start=None):
        self._start, self._clients = start, []

    def __call__(self):
        if not self._clients:
            self._clients.append(self._start() if self._start else None)
        return self._clients[0]

    def close(self) -> None:
        """Close the client and its cluster, if one was started; a later call starts another."""
        if self._clients:
            close_client(self._clients.pop())

    def __enter__(self) -> LazyClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def close_client(client) -> None:
    """Close a client and the cluster it started (if any); worker jobs are cancelled."""
    if client is None:
        return
    cluster = client.cluster if hasattr(client, "cluster") else None
    client.close()
    if cluster is not None:
        cluster.close()
