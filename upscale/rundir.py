"""The run directory: the one place that names its files, its manifest, and the open/resume checks.

A run directory is the unit of reproducibility (as in neuralhydrology): the resolved recipe, the
extracted sites, the cross-validation, the bundle, the product, the report and the manifest that
records what has finished. Every module finds a run's files through :class:`RunDir`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from upscale.errors import RunDirError
from upscale.outputs import COMPLETE_ATTR


class RunDir:
    """The files of one run directory.

    Parameters
    ----------
    root : str or Path
        The run directory.
    """

    #: Where ``--overwrite`` keeps the old run until the new one has finished its first stage.
    REPLACED = ".replaced"
    #: Every name upscale writes at the top of a run directory (anything else makes it foreign).
    ENTRIES = frozenset(
        {
            "recipe.yaml",
            "manifest.json",
            "manifest.json.tmp",
            "manifest.tiles",
            "manifest.sensitivity-tiles",
            "log.txt",
            "worker-job.sh",
            "sites.zarr",
            "cv",
            "bundle",
            "bundle.tmp",
            "product.zarr",
            "report",
            "aggregates",
            "product.nc",
            "product.nc.part",
            "export.zarr",
            "export.zarr.part",
            "explain",
            REPLACED,
        }
    )

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, *parts: str) -> Path:
        """A path inside the run directory."""
        return self.root.joinpath(*parts)

    recipe = property(lambda self: self.root / "recipe.yaml", doc="The resolved recipe.")
    manifest_file = property(lambda self: self.root / "manifest.json", doc="Finished stages.")
    tiles_file = property(lambda self: self.root / "manifest.tiles", doc="Finished apply tiles, one id a line.")
    log = property(lambda self: self.root / "log.txt", doc="The full log.")
    job_script = property(
        lambda self: self.root / "worker-job.sh", doc="The batch script the slurm/pbs worker jobs of the apply ran."
    )
    sites = property(lambda self: self.root / "sites.zarr", doc="Site predictors and targets.")
    cv = property(lambda self: self.root / "cv", doc="The cross-validation folder.")
    oof = property(lambda self: self.root / "cv" / "oof.zarr", doc="Out-of-fold predictions.")
    metrics = property(lambda self: self.root / "cv" / "metrics.csv", doc="Per-site held-out skill.")
    baselines = property(lambda self: self.root / "cv" / "baselines.csv", doc="Per-site skill of the baselines.")
    cv_summary = property(lambda self: self.root / "cv" / "summary.csv", doc="Median skill, model and baselines.")
    folds = property(lambda self: self.root / "cv" / "folds", doc="Each fold's ensemble (explanations).")
    bundle = property(lambda self: self.root / "bundle", doc="The final trained bundle.")
    bundle_tmp = property(lambda self: self.root / "bundle.tmp", doc="A bundle being written.")
    product = property(lambda self: self.root / "product.zarr", doc="The CF product.")
    report = property(lambda self: self.root / "report", doc="Report figures and report.md.")
    report_md = property(lambda self: self.root / "report" / "report.md", doc="The report.")
    explain = property(lambda self: self.root / "explain", doc="Explanations.")
    aggregates = property(lambda self: self.root / "aggregates", doc="Monthly and annual means.")
    replaced = property(
        lambda self: self.root / RunDir.REPLACED, doc="The run an overwrite replaces, until its first stage is done."
    )

    def fold(self, k: int) -> Path:
        """The bundle of fold ``k``'s ensemble."""
        return self.folds / f"fold-{k}"

    def aggregate(self, freq: str) -> Path:
        """The ``freq`` (month, year) means of the product."""
        return self.aggregates / f"product_{freq}.zarr"

    def export(self, fmt: str) -> Path:
        """The default path of an export in ``fmt`` (netcdf, zarr)."""
        return self.root / ("product.nc" if fmt == "netcdf" else "export.zarr")

    def is_run_dir(self) -> bool:
        """Only a manifest that upscale wrote marks a run directory (``manifest.json`` is a common name)."""
        data = _json_object(self.manifest_file)
        return data is not None and "upscale_run" in data

    def has_corrupt_manifest(self) -> bool:
        """Whether the directory looks like a run whose ``manifest.json`` is not JSON.

        Every entry is one upscale writes and there is one besides the manifest (a lone file
        named ``manifest.json`` may be anyone's).
        """
        if not self.manifest_file.is_file() or self.foreign_entries():
            return False
        try:
            json.loads(self.manifest_file.read_bytes())
            return False
        except ValueError:  # includes a UnicodeDecodeError
            return any(p.name not in ("manifest.json", "manifest.json.tmp") for p in self.root.iterdir())

    def foreign_entries(self) -> list[str]:
        """Names at the top of the directory that upscale did not write."""
        return sorted(p.name for p in self.root.iterdir() if p.name not in self.ENTRIES)

    def manifest(self) -> Manifest:
        """The run's manifest (empty when there is none yet)."""
        return Manifest(self.manifest_file)

    def set_aside(self) -> None:
        """Move the run into :attr:`replaced` (``--overwrite``): it comes back if the new run fails early.

        The manifest moves first, so that a run killed half-way through is restored by :meth:`settle`.
        """
        self.replaced.mkdir()
        entries = sorted(self.root.iterdir(), key=lambda p: p.name != "manifest.json")
        for entry in entries:
            if entry.name != self.REPLACED:
                os.replace(entry, self.replaced / entry.name)

    def settle(self) -> str | None:
        """Finish a pending overwrite: drop the old run once the new one has finished a stage, else restore it.

        Returns ``"dropped"``, ``"restored"``, or None when no overwrite was pending. Safe to repeat
        after being killed at any point (the state on disk says which step comes next).
        """
        if not self.replaced.is_dir():
            return None
        if _stages_done(self.manifest_file):
            shutil.rmtree(self.replaced)
            return "dropped"
        old_manifest = self.replaced / "manifest.json"
        if old_manifest.exists():
            if self.manifest_file.exists():  # the new run's entries go, its manifest last
                for entry in self.root.iterdir():
                    if entry.name in self.ENTRIES and entry.name not in (self.REPLACED, "manifest.json"):
                        _remove(entry)
                self.manifest_file.unlink()
            # a save of the new manifest that never got renamed (a temporary file never matters)
            self.path("manifest.json.tmp").unlink(missing_ok=True)
            for entry in sorted(self.replaced.iterdir(), key=lambda p: p.name == "manifest.json"):
                os.replace(entry, self.root / entry.name)
        self.replaced.rmdir()
        return "restored"

    def finished_product(self) -> Path:
        """The product, refusing a missing or unfinished one (RunDirError).

        Finished means the manifest records the apply stage and the store's own ``upscale_complete``
        attribute is ``"true"`` (products written before that attribute existed have none).
        """
        if not self.product.exists():
            raise RunDirError("no product in the run directory", where=str(self.root), fix="Run `upscale run` first")
        if not self.manifest().stage_done("apply") or _store_attr(self.product, COMPLETE_ATTR, "true") != "true":
            raise RunDirError(
                "the product is unfinished (its apply stage has not completed)",
                where=str(self.product),
                fix="Finish it with `upscale run` (it resumes) before using it",
            )
        return self.product


def _remove(entry: Path) -> None:
    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _stages_done(manifest_file: Path) -> bool:
    """Whether a manifest (possibly missing or corrupt) records a finished stage."""
    return bool((_json_object(manifest_file) or {}).get("stages"))


def _json_object(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _store_attr(store: Path, name: str, default: str) -> str:
    """A global attribute of a Zarr store (``default`` where it has none); an unreadable store is a RunDirError."""
    import zarr

    try:
        return str(zarr.open_group(str(store), mode="r").attrs.get(name, default))
    except (OSError, ValueError) as exc:
        raise RunDirError(
            f"the product store cannot be opened ({exc})",
            where=str(store),
            fix="Remove it and run `upscale apply RECIPE` to write it again",
        ) from None


class TileLog:
    """An append-only log of finished tiles, one id and a newline each.

    Recording a tile costs the same at the 20,000th tile as at the first (rewriting a JSON list after
    every tile grew with the tiles done). A tile is appended only after its task has returned, i.e.
    its blocks are written; a line cut short by a kill has no newline and is not a record, so that
    tile runs again (tiles are idempotent: a re-run writes the same bytes).
    """

    def __init__(self, path: Path):
        self.path = path
        self._tail_checked = False

    @property
    def ids(self) -> set[str]:
        """The finished tiles (read from disk: take it once, not once per tile)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return set()
        return set(text.split("\n")[:-1])  # the last piece is "" or a line a kill cut short

    def add(self, tile_id: str) -> None:
        """Record a finished tile: one appended line (a single write, so never interleaved)."""
        if "\n" in tile_id:
            raise ValueError(f"a tile id holds no newline: {tile_id!r}")
        if not self._tail_checked:
            self._drop_torn_tail()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (tile_id + "\n").encode())
        finally:
            os.close(fd)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._tail_checked = False

    def _drop_torn_tail(self) -> None:
        """Cut a line a kill left without its newline, so the next record does not run into it."""
        self._tail_checked = True
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return
        if text and not text.endswith(b"\n"):
            os.truncate(self.path, text.rfind(b"\n") + 1)


class Manifest:
    """``manifest.json`` (finished stages, with timings) and the :class:`TileLog` of each tiled stage:
    ``manifest.tiles`` (apply) and ``manifest.sensitivity-tiles`` (the explain stage's maps).

    ``manifest.json`` is written atomically (temporary file + rename), so a killed run leaves either
    the old or the new one, never a torn one. Manifests written before the logs existed keep their
    ``tiles`` lists, which are still read.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tile_log = TileLog(self.path.with_suffix(".tiles"))
        self.sensitivity_log = TileLog(self.path.with_suffix(".sensitivity-tiles"))
        self.data = {"stages": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError:
                raise RunDirError(
                    "the run's manifest.json is corrupt (not JSON)",
                    where=str(self.path),
                    fix="Start the run over with `upscale run --overwrite`, or use another --run-dir",
                ) from None

    tiles_path = property(lambda self: self.tile_log.path, doc="The apply stage's tile log.")

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)

    def stage_done(self, name: str) -> bool:
        return name in self.data["stages"]

    def finish_stage(self, name: str, seconds: float, **info) -> None:
        self.data["stages"][name] = {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(seconds, 2),
            **info,
        }
        self.save()

    def reset_stages(self, *names: str) -> None:
        for name in names:
            self.data["stages"].pop(name, None)
        if "apply" in names:
            self.data.pop("tiles", None)
            self.tile_log.clear()
        if "explain" in names:  # its methods and sensitivity tiles
            self.data.pop("explain", None)
            self.sensitivity_log.clear()
        self.save()

    @property
    def tiles(self) -> set[str]:
        """The finished apply tiles (read from disk: take it once, not once per tile)."""
        return set(self.data.get("tiles", ())) | self.tile_log.ids

    def add_tile(self, tile_id: str) -> None:
        """Record a finished apply tile (see :class:`TileLog`)."""
        self.tile_log.add(tile_id)

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def get(self, key: str, default=None):
        return self.data.get(key, default)


def prepare(
    root: str | Path, recipe_yaml: str, same_results, overwrite: bool = False, new_run: bool = True
) -> tuple[RunDir, Manifest]:
    """Create, resume or refuse a run directory for a recipe.

    Parameters
    ----------
    root : str or Path
        The run directory.
    recipe_yaml : str
        The resolved recipe (written to ``recipe.yaml`` and the manifest of a new run).
    same_results : callable
        ``same_results(old_yaml, new_yaml)``: whether a run of ``old_yaml`` may be resumed by ``new_yaml``.
    overwrite : bool
        Start over on a run directory (only ever one upscale made): its old run is moved into
        :attr:`RunDir.replaced` and deleted by :meth:`RunDir.settle` once the new run has finished
        its first stage, or put back if the new run fails before that.
    new_run : bool
        A finished run is refused (``upscale run``); single stages may re-run on one.

    Raises
    ------
    RunDirError
        A directory upscale did not make (never touched), a finished run without ``overwrite``, a
        run of a different recipe, a corrupt manifest without ``overwrite``, a path that is a file,
        or a folder that cannot be written.
    """
    rundir = RunDir(root)
    if rundir.root.exists() and not rundir.root.is_dir():
        raise RunDirError(
            "the run directory is a file, not a folder",
            where=str(rundir.root),
            fix="Give --run-dir (or output.run_dir) a new or empty folder",
        )
    try:
        rundir.settle()  # an overwrite that was killed before its first stage finished
        if rundir.root.exists() and any(rundir.root.iterdir()):
            _check_ours(rundir, overwrite)
            if overwrite:
                rundir.set_aside()
            else:
                _check_resumable(rundir, recipe_yaml, same_results, finished_ok=not new_run)
        try:
            return rundir, _start(rundir, recipe_yaml, overwrite)
        except BaseException:
            rundir.settle()  # puts an old run back
            raise
    except OSError as exc:
        raise RunDirError(
            f"cannot write the run directory: {exc.strerror or exc}",
            where=str(exc.filename or rundir.root),
            fix="Choose a --run-dir in a folder you can write to, or fix its permissions",
        ) from None


def _start(rundir: RunDir, recipe_yaml: str, overwrite: bool) -> Manifest:
    """Create the directory and record the upscale version and the recipe of a new run."""
    rundir.root.mkdir(parents=True, exist_ok=True)
    manifest = rundir.manifest()
    if manifest.get("upscale_run") is None:
        import upscale

        manifest.set("upscale_run", upscale.__version__)
    if manifest.get("recipe") is None or overwrite:
        manifest.set("recipe", recipe_yaml)
        rundir.recipe.write_text(recipe_yaml)
    return manifest


def _check_ours(rundir: RunDir, overwrite: bool) -> None:
    if rundir.has_corrupt_manifest():
        if overwrite:
            return
        raise RunDirError(
            "the run directory's manifest.json is corrupt (not JSON), so the run cannot be resumed",
            where=str(rundir.manifest_file),
            fix="Pass --overwrite to start the run over, or --run-dir for a new directory",
        )
    foreign = rundir.foreign_entries()
    if not rundir.is_run_dir() or foreign:
        extra = f" (it holds {', '.join(foreign[:3])})" if foreign and rundir.is_run_dir() else ""
        raise RunDirError(
            f"the directory exists and is not an upscale run directory{extra}",
            where=str(rundir.root),
            fix="Choose another --run-dir (upscale never deletes what it did not make)",
        )


def _check_resumable(rundir: RunDir, recipe_yaml: str, same_results, finished_ok: bool) -> None:
    manifest = rundir.manifest()
    if manifest.get("complete") and not finished_ok:
        raise RunDirError(
            "the run directory already holds a finished run",
            where=str(rundir.root),
            fix="Pass --overwrite to start over, or --run-dir for a new directory",
        )
    if not same_results(manifest.get("recipe"), recipe_yaml):
        raise RunDirError(
            "the run directory holds a run of a different recipe (compare its recipe.yaml)",
            where=str(rundir.root),
            fix="Pass --overwrite to start over, or --run-dir for a new directory",
        )
