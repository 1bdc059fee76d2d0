"""Which torch device a step runs on."""

from __future__ import annotations


def resolve_device(requested: str) -> str:
    """The device for ``requested``: 'auto' is this process's GPU when it sees one, else 'cpu'.

    Training resolves it once in the driver; each apply worker resolves it for itself
    (dask-cuda pins one GPU per worker), so the same recipe runs on laptops and GPU nodes.

    Parameters
    ----------
    requested : str
        'auto', 'cpu', 'cuda' or 'cuda:<n>' (from the recipe's ``training.device``/``apply.device``).
    """
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested
