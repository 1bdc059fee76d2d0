"""The cache of demo worlds: one folder per spec, named by :meth:`DemoSpec.key`."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from upscale.errors import DataError
from upscale.sources.demo.spec import DemoSpec
from upscale.sources.demo.writers import OWNER_FILE, temp_prefix, write_world

#: A temporary world folder without a writer's pid (older upscale) counts as abandoned after this long.
ABANDONED_AFTER_S = 6 * 3600


def cached_world(spec: DemoSpec | None = None, cache_dir: str | Path | None = None) -> Path:
    """The catalog.yaml of the demo world of ``spec``, generated into the cache on first use.

    The world lives in ``<cache_dir>/demo-<spec.key()>/``; ``cache_dir`` defaults to
    ``$UPSCALE_CACHE`` or ``~/.cache/upscale``. Safe against concurrent callers: if another
    process finishes the same world first, its copy is used.
    """
    spec = DemoSpec() if spec is None else spec
    if cache_dir is None:
        cache_dir = os.environ.get("UPSCALE_CACHE") or Path.home() / ".cache" / "upscale"
    root = Path(cache_dir).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise DataError(
            "the cache folder is a file",
            str(root),
            "Point UPSCALE_CACHE at a folder (or unset it to use ~/.cache/upscale)",
        )
    folder = root / f"demo-{spec.key()}"
    catalog = folder / "catalog.yaml"
    if catalog.is_file():
        return catalog
    if folder.exists() and any(folder.iterdir()):
        raise DataError(
            "the cached demo world has no catalog.yaml (it was changed by hand?)",
            str(folder),
            "delete the folder; it is regenerated on the next call",
        )
    remove_abandoned(folder)
    try:
        return write_world(spec, folder)
    except DataError:
        if catalog.is_file():  # another process won the race
            return catalog
        raise


def remove_abandoned(folder: Path) -> list[Path]:
    """Delete the hidden temporary folders of ``folder`` whose writer was killed (its pid is gone).

    A SIGKILL during generation cannot clean up after itself; the next caller does. Returns what it removed.
    """
    removed = []
    for tmp in folder.parent.glob(temp_prefix(folder) + "*"):
        if tmp.is_dir() and not _writer_alive(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _writer_alive(tmp: Path) -> bool:
    try:
        pid = int((tmp / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return time.time() - tmp.stat().st_mtime < ABANDONED_AFTER_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
