"""The recipe's cluster section: its consistency checks, YAML walltimes, torch threads.

The Dask cluster it starts and the job scripts it submits are tested in tests/test_cluster.py.
"""

from __future__ import annotations

import pytest
import yaml

from tests.recipe.conftest import BASE, PBS, SLURM
from upscale.errors import RecipeError
from upscale.recipe import Cluster, dump_recipe, load_recipe


@pytest.mark.parametrize(
    "cluster, expected",
    [
        ({"type": "slurm"}, "needs cluster.cores, cluster.memory, cluster.walltime"),
        ({**SLURM, "walltime": "4h"}, "cluster.walltime '4h' is not [D-]HH:MM:SS"),
        ({**PBS, "walltime": "1-00:00:00"}, "is not HH:MM:SS"),
        ({**SLURM, "memory": "lots"}, "cluster.memory 'lots' is not a size"),
        ({**PBS, "processes": 64}, "cluster.processes (64) exceeds cluster.cores (32)"),
        ({**SLURM, "gpus": 2}, "one GPU and one worker"),
        ({**PBS, "gpus": 1}, "one GPU and one worker"),  # processes: 4
        ({**PBS, "gpu_directive": "gres"}, "gpu_directive applies only to type slurm"),
        ({"type": "local", "queue": "gpu"}, "cluster.queue applies only to type slurm or pbs"),
        ({"type": "local", "job_script_prologue": ["module load x"]}, "cluster.job_script_prologue applies only"),
        ({**SLURM, "threads_per_worker": 4}, "cluster.threads_per_worker applies only to local"),
        ({**SLURM, "memory_limit": "4GiB"}, "see cluster.memory"),
        ({"type": "local", "memory_limit": "four"}, "cluster.memory_limit 'four' is not a size"),
        ({"type": "synchronous", "n_workers": 3}, "cluster.n_workers applies not to type 'synchronous'"),
        ({"type": "local", "gpus": 2, "n_workers": 3}, "one worker per GPU"),
        ({"type": "local", "address": "tcp://h:1"}, "cluster.address applies only to type 'address'"),
        ({"type": "sge"}, "'cluster.type'"),
        ({**SLURM, "walltme": "01:00:00"}, "unknown key 'cluster.walltme'; did you mean 'walltime'?"),
        ({**SLURM, "partition": "gpu"}, "unknown key 'cluster.partition'"),
    ],
)
def test_bad_cluster_sections_are_recipe_errors(write, cluster, expected):
    with pytest.raises(RecipeError) as err:
        load_recipe(write({**BASE, "cluster": cluster}))
    assert expected in err.value.message


def test_unquoted_yaml_walltime_is_read_as_time(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(BASE) + "cluster: {type: pbs, cores: 4, memory: 8GB, walltime: 02:30:00}\n")
    assert load_recipe(path).cluster.walltime == "02:30:00"
    assert load_recipe(path, ["cluster.walltime=10:00:00"]).cluster.walltime == "10:00:00"


def test_resolved_recipe_round_trips(write, tmp_path):
    """A run directory's recipe.yaml (every key written out) loads again."""
    recipe = load_recipe(write({**BASE, "cluster": SLURM}))
    again = tmp_path / "again.yaml"
    again.write_text(dump_recipe(recipe))
    assert load_recipe(again).cluster == recipe.cluster


@pytest.mark.parametrize(
    "cfg, threads",
    [
        ({"type": "slurm", "cores": 16, "processes": 4, "memory": "8GB", "walltime": "01:00:00"}, 4),
        ({"type": "pbs", "cores": 7, "processes": 2, "memory": "8GB", "walltime": "01:00:00"}, 3),
        ({"type": "local", "threads_per_worker": 3}, 3),
        ({"type": "local"}, 1),
        ({"type": "synchronous"}, 1),
    ],
)
def test_torch_threads_follow_the_cluster(cfg, threads):
    assert Cluster(**cfg).torch_threads() == threads


@pytest.mark.parametrize(
    "cfg",
    [
        {"type": "address", "address": "tcp://h:8786"},
        {"type": "local", "gpus": 2, "n_workers": 2, "memory_limit": "auto"},
        {"type": "slurm", "cores": 4, "memory": "8GB", "walltime": "2-00:00:00", "gpu_directive": "gpus"},
        SLURM,
        PBS,
    ],
)
def test_consistent_sections_are_accepted(cfg):
    assert Cluster(**cfg).type == cfg["type"]
