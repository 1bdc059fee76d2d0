"""The recipe's ``cluster`` section -> a Dask client (or None to run in-process)."""

from __future__ import annotations

import logging


def make_client(cfg):
    """Start or connect to the cluster the apply stage runs on.

    Parameters
    ----------
    cfg : upscale.recipe.Cluster
        ``local`` starts a LocalCluster of worker processes, ``address`` connects to a
        running scheduler, ``synchronous`` runs tiles in this process (debugging, tests).

    Returns
    -------
    distributed.Client or None
    """
    if cfg.type == "synchronous":
        return None
    from distributed import Client, LocalCluster

    for name in ("distributed", "distributed.worker", "distributed.nanny", "distributed.scheduler"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if cfg.type == "address":
        return Client(cfg.address)
    cluster = LocalCluster(n_workers=cfg.n_workers, threads_per_worker=cfg.threads_per_worker,
                           memory_limit=cfg.memory_limit, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    return Client(cluster)


def close_client(client) -> None:
    """Close a client and the local cluster it started (if any)."""
    if client is None:
        return
    cluster = client.cluster if hasattr(client, "cluster") else None
    client.close()
    if cluster is not None:
        cluster.close()
