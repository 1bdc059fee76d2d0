"""The recipe's ``cluster`` section: where the apply stage's Dask workers run, and its consistency checks."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from upscale.recipe.sections import _Strict

_HPC_ONLY = (
    "queue",
    "account",
    "walltime",
    "cores",
    "processes",
    "memory",
    "job_script_prologue",
    "job_extra_directives",
    "job_directives_skip",
    "interface",
    "log_directory",
    "gpu_directive",
    "python",
    "gpus_per_job",
)


class Cluster(_Strict):
    """The Dask cluster the apply stage runs on.

    ``local`` (default) starts workers on this machine: one per GPU through dask-cuda when
    it is installed and GPUs are visible, else CPU workers. ``address`` connects to a running
    scheduler, ``synchronous`` runs tiles in-process, ``slurm`` and ``pbs`` submit worker jobs
    through dask-jobqueue. Each worker runs one tile at a time and gives torch its threads.
    """

    type: Literal["local", "address", "synchronous", "slurm", "pbs"] = Field(
        "local", description="local, address (a running scheduler), synchronous (in-process), slurm or pbs."
    )
    address: str | None = Field(None, description="type address: the scheduler, e.g. tcp://host:8786.")
    n_workers: int | None = Field(
        None,
        ge=1,
        description="Workers in all. local: default one per GPU, or 2 on CPU; slurm/pbs: default "
        "`processes` (one job); jobs submitted = ceil(n_workers / processes).",
    )
    threads_per_worker: int | None = Field(
        None, ge=1, description="local/address/synchronous: CPU threads torch uses in a worker (default 1)."
    )
    memory_limit: str | None = Field(None, description="local: memory limit of each worker (default 4GiB).")
    gpus: int | None = Field(
        None,
        ge=0,
        description="local: GPUs to use, one worker each (default: all visible when dask-cuda is "
        "installed; 0 = CPU only); slurm/pbs: GPUs per job.",
    )
    local_directory: str | None = Field(
        None, description="Worker scratch (spill) directory, e.g. $TMPDIR or /scratch/$USER on HPC nodes."
    )
    queue: str | None = Field(None, description="slurm/pbs: partition (-p) or queue (-q).")
    account: str | None = Field(None, description="slurm/pbs: account or project to charge (-A).")
    walltime: str | None = Field(None, description="slurm/pbs: wall time of each worker job, HH:MM:SS.")
    cores: int | None = Field(None, ge=1, description="slurm/pbs: CPU cores per job.")
    processes: int | None = Field(
        None, ge=1, description="slurm/pbs: workers per job (default 1), sharing its cores and memory."
    )
    memory: str | None = Field(None, description="slurm/pbs: memory per job, e.g. 64GiB (split among its workers).")
    gpus_per_job: int | None = Field(
        None,
        ge=1,
        description="slurm/pbs: GPUs per job, one worker pinned to each (CUDA_VISIBLE_DEVICES) with its "
        "share of the job's cores and memory; workers per job = gpus_per_job.",
    )
    gpu_directive: Literal["gres", "gpus"] | None = Field(
        None, description="slurm: ask GPUs with --gres=gpu:N (gres, default) or --gpus=N (gpus)."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list, description="slurm/pbs: shell lines run before the worker, e.g. module load."
    )
    job_extra_directives: list[str] = Field(
        default_factory=list, description="slurm/pbs: extra scheduler directives, e.g. --constraint=a100."
    )
    job_directives_skip: list[str] = Field(
        default_factory=list, description="slurm/pbs: drop generated directives containing these, e.g. --mem."
    )
    interface: str | None = Field(None, description="slurm/pbs: network interface of scheduler and workers, e.g. ib0.")
    log_directory: str | None = Field(None, description="slurm/pbs: folder for the worker jobs' stdout/stderr.")
    python: str | None = Field(
        None, description="slurm/pbs: the python that runs workers on the nodes (default: the one running upscale)."
    )

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime_text(cls, value):
        if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 02:00:00 as 7200 (base 60)
            return f"{value // 3600:02d}:{value % 3600 // 60:02d}:{value % 60:02d}"
        return value

    @model_validator(mode="after")
    def _consistent(self):
        hpc = self.type in ("slurm", "pbs")
        if self.type == "address" and not self.address:
            raise ValueError("cluster.type 'address' needs cluster.address (e.g. tcp://host:8786)")
        if self.type != "address" and self.address:
            raise ValueError(f"cluster.address applies only to type 'address', not {self.type!r}")
        if hpc:
            _check_hpc(self)
        else:
            _not_for(
                self,
                _HPC_ONLY,
                "only to type slurm or pbs (to switch types, replace the whole "
                f"section, e.g. --set 'cluster={{type: {self.type}}}')",
            )
        if self.type != "local":
            _not_for(self, ("memory_limit",), "only to type local" + (" (see cluster.memory)" if hpc else ""))
        if hpc:
            _not_for(
                self,
                ("threads_per_worker",),
                "only to local, address and synchronous (on slurm/pbs torch gets cores / processes threads)",
            )
        if self.type in ("address", "synchronous"):
            _not_for(self, ("gpus", "n_workers", "local_directory"), f"not to type {self.type!r}")
        if self.memory_limit not in (None, "auto"):
            _size(self.memory_limit, "memory_limit")
        if self.type == "local" and self.gpus and self.n_workers and self.n_workers != self.gpus:
            raise ValueError(
                "on GPUs a local cluster runs one worker per GPU: give cluster.gpus or "
                "cluster.n_workers, not both with different values"
            )
        return self

    def workers_per_job(self) -> int:
        """slurm/pbs: Dask workers one job starts (``gpus_per_job``, else ``processes``, else 1)."""
        return self.gpus_per_job or self.processes or 1

    def torch_threads(self) -> int:
        """CPU threads torch uses inside one worker (each worker runs one tile at a time)."""
        if self.type in ("slurm", "pbs"):
            return max(1, self.cores // self.workers_per_job())
        return self.threads_per_worker or 1


def _not_for(cluster: Cluster, names, why: str) -> None:
    """Refuse keys set on a cluster type they do nothing for (never ignore them silently)."""
    for name in names:
        value = getattr(cluster, name)
        if value is not None and value != []:
            raise ValueError(f"cluster.{name} applies {why}")


def _size(value: str, key: str) -> None:
    from dask.utils import parse_bytes

    try:
        parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(f"cluster.{key} {value!r} is not a size such as 64GiB or 120GB") from None


def _check_hpc(cluster: Cluster) -> None:
    """The keys a slurm or pbs cluster needs, and their formats."""
    missing = [k for k in ("cores", "memory", "walltime") if getattr(cluster, k) is None]
    if missing:
        raise ValueError(
            f"cluster.type {cluster.type!r} needs "
            + ", ".join(f"cluster.{k}" for k in missing)
            + " (e.g. cores: 16, memory: 64GiB, walltime: '02:00:00')"
        )
    days = r"(\d+-)?" if cluster.type == "slurm" else ""
    if not re.fullmatch(days + r"\d{1,4}:\d{2}:\d{2}", cluster.walltime):
        form = "[D-]HH:MM:SS" if cluster.type == "slurm" else "HH:MM:SS"
        raise ValueError(f"cluster.walltime {cluster.walltime!r} is not {form} (quote it in YAML: '02:00:00')")
    _size(cluster.memory, "memory")
    if (cluster.processes or 1) > cluster.cores:
        raise ValueError(
            f"cluster.processes ({cluster.processes}) exceeds cluster.cores ({cluster.cores}): "
            "each worker needs at least one core"
        )
    if cluster.gpus and (cluster.gpus > 1 or (cluster.processes or 1) > 1):
        raise ValueError(
            "cluster.gpus gives a slurm/pbs job one GPU and one worker (gpus: 1, processes: 1); "
            "for N GPUs in one job set gpus_per_job: N (a worker pinned to each), or set n_workers "
            "to the number of GPUs wanted and let the scheduler pack one-GPU jobs onto the nodes"
        )
    _check_gpus_per_job(cluster)
    if cluster.gpu_directive and cluster.type != "slurm":
        raise ValueError("cluster.gpu_directive applies only to type slurm (pbs asks ngpus in its select)")


def _check_gpus_per_job(cluster: Cluster) -> None:
    """``gpus_per_job`` sets the workers per job: ``processes`` and ``gpus`` must not say otherwise."""
    n = cluster.gpus_per_job
    if not n:
        return
    if cluster.gpus:
        raise ValueError("give cluster.gpus_per_job or cluster.gpus, not both (gpus_per_job: N asks N GPUs a job)")
    if cluster.processes not in (None, n):
        raise ValueError(
            f"cluster.processes ({cluster.processes}) differs from cluster.gpus_per_job ({n}): "
            "a job runs one worker per GPU (leave processes out)"
        )
    if n > cluster.cores:
        raise ValueError(
            f"cluster.gpus_per_job ({n}) exceeds cluster.cores ({cluster.cores}): each worker needs a core"
        )
