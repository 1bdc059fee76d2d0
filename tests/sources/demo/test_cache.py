"""Tests of upscale.sources.demo.cache: cached_world's location, reuse and races."""

from __future__ import annotations

import os
import time

from tests.sources.demo.common import SMALL
from upscale.sources.demo import cache, cached_world, writers


def test_cached_world_honours_env_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSCALE_CACHE", str(tmp_path / "cache"))
    catalog = cached_world(SMALL)
    assert catalog == (tmp_path / "cache" / f"demo-{SMALL.key()}" / "catalog.yaml").absolute()
    assert catalog.is_file()
    stamp = catalog.stat().st_mtime_ns
    time.sleep(0.01)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached world was regenerated")

    monkeypatch.setattr(cache, "write_world", must_not_run)
    assert cached_world(SMALL) == catalog
    assert catalog.stat().st_mtime_ns == stamp
    # An explicit cache_dir wins over the environment.
    monkeypatch.undo()
    monkeypatch.setenv("UPSCALE_CACHE", str(tmp_path / "cache"))
    other = cached_world(SMALL, cache_dir=tmp_path / "elsewhere")
    assert other.parent.parent == (tmp_path / "elsewhere").absolute()


def test_cached_world_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv("UPSCALE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    catalog = cached_world(SMALL)
    assert catalog == tmp_path / ".cache" / "upscale" / f"demo-{SMALL.key()}" / "catalog.yaml"


def test_cached_world_loses_a_race_gracefully(tmp_path, monkeypatch):
    target = tmp_path / f"demo-{SMALL.key()}"
    real_simulate = writers.simulate

    def simulate_while_another_process_finishes(spec):
        result = real_simulate(spec)
        target.mkdir()
        (target / "catalog.yaml").write_text("description: the other process's world\n")
        return result

    monkeypatch.setattr(writers, "simulate", simulate_while_another_process_finishes)
    catalog = cached_world(SMALL, cache_dir=tmp_path)
    assert catalog == target / "catalog.yaml"
    assert "other process" in catalog.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # temp folder cleaned up


def test_a_cache_that_is_a_file_is_refused(tmp_path, monkeypatch):
    import pytest

    from upscale.errors import DataError

    (tmp_path / "cache").write_text("a file")
    monkeypatch.setenv("UPSCALE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="the cache folder is a file") as info:
        cached_world(SMALL)
    assert str(tmp_path / "cache") in info.value.message and "UPSCALE_CACHE" in info.value.message


def test_a_world_folder_abandoned_by_a_killed_writer_is_removed(tmp_path):
    """SIGKILL during generation leaves a hidden temporary folder; the next caller removes it, a live one stays."""
    import subprocess

    from upscale.sources.demo.cache import remove_abandoned
    from upscale.sources.demo.writers import OWNER_FILE, temp_prefix

    folder = tmp_path / "demo-abc"
    dead = subprocess.Popen(["true"])
    dead.wait()
    abandoned = tmp_path / (temp_prefix(folder) + "x1")
    abandoned.mkdir()
    (abandoned / OWNER_FILE).write_text(str(dead.pid))
    (abandoned / "era5").mkdir()
    alive = tmp_path / (temp_prefix(folder) + "x2")
    alive.mkdir()
    (alive / OWNER_FILE).write_text(str(os.getpid()))
    other = tmp_path / ".demo-other.tmp-x3"
    other.mkdir()
    assert remove_abandoned(folder) == [abandoned]
    assert not abandoned.exists() and alive.exists() and other.exists()
