"""Trained model bundles: safetensors weights per member plus one JSON of metadata.

Nothing is ever unpickled: weights are safetensors, boosted trees XGBoost's own UBJSON (one file
per booster), metadata JSON. The bundle hash
covers the metadata and every weight file, so workers can cache a loaded bundle by it.
A bundle is untrusted input: anything wrong with it (a truncated, edited, replaced or
missing file, weights that do not fit the recorded model) is a :class:`BundleError`
naming the file and what to do, never an exception of safetensors or torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load, save

import upscale
from upscale.encoding import FeatureSpec, Normaliser
from upscale.ensemble import Ensemble
from upscale.errors import BundleError, UpscaleError
from upscale.models.registry import build, model_class

FORMAT_VERSION = 1
META_FILE = "bundle.json"
RETRAIN = "Retrain the bundle with `upscale train RECIPE`, or restore the bundle directory as training wrote it"
READABLE = "Check that the file is readable (permissions, a mounted disk), or retrain the bundle"
#: What load_bundle reads of bundle.json (an edited file that lacks one is refused by name).
REQUIRED = ("model", "targets", "features", "dynamic_names", "static_names", "normaliser", "members")


def save_bundle(
    ensemble: Ensemble, spec: FeatureSpec, model_config: dict, directory: str | Path, extra: dict | None = None
) -> str:
    """Write ``ensemble`` to ``directory``; returns the bundle hash."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = [_save_member(directory, i, member) for i, member in enumerate(ensemble.members)]
    meta = {
        "format_version": FORMAT_VERSION,
        "upscale_version": upscale.__version__,
        "model": model_config,
        "targets": ensemble.targets,
        "features": spec.to_dict(),
        "dynamic_names": spec.dynamic_names,
        "static_names": spec.static_names,
        "normaliser": ensemble.normaliser.to_dict(),
        "members": files,
        "bounds": ensemble.bounds,
        **_parameters_record(model_config["type"]),
        **(extra or {}),
    }
    meta["hash"] = _meta_hash(meta)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta["hash"]


def _save_member(directory: Path, i: int, member) -> dict:
    """Write one member's files; returns its record in bundle.json."""
    if hasattr(member, "booster_files"):  # boosted trees: XGBoost's own UBJSON, one file per booster
        boosters = {}
        for key, raw in member.booster_files().items():
            boosters[key] = _write(directory, f"member-{i}-{key}.ubj", raw)
        return {"boosters": boosters}
    state = {k: v.detach().cpu().contiguous() for k, v in member.state_dict().items()}
    # the bytes of save_file, written like every other file (save_file makes them 0600)
    return _write(directory, f"member-{i}.safetensors", save(state))


def _write(directory: Path, name: str, raw: bytes) -> dict:
    (directory / name).write_bytes(raw)
    return {"file": name, "sha256": _sha256(directory / name)}


def read_meta(directory: str | Path) -> dict:
    """The bundle's metadata, checked for format version."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise BundleError("no trained bundle here", where=str(path), fix="Run `upscale train` first")
    try:
        meta = json.loads(path.read_text())
    except OSError as exc:
        raise BundleError(f"bundle metadata cannot be read: {exc.strerror}", where=str(path), fix=RETRAIN) from None
    except ValueError as exc:  # not JSON, or not text at all
        raise BundleError(f"bundle metadata is not valid JSON: {exc}", where=str(path), fix=RETRAIN) from None
    if not isinstance(meta, dict):
        raise BundleError("bundle metadata is not a JSON object", where=str(path), fix=RETRAIN)
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {meta.get('format_version')} is not supported by upscale "
            f"{upscale.__version__} (which reads version {FORMAT_VERSION})",
            where=str(path),
            fix="Retrain with this version of upscale, or install the version that wrote it",
        )
    return meta


def load_bundle(directory: str | Path, device: str = "cpu") -> tuple[Ensemble, FeatureSpec, dict]:
    """Load a bundle, verifying the metadata's hash and every weight file against its checksum.

    Returns
    -------
    (Ensemble, FeatureSpec, dict)
        The ensemble on ``device``, its feature layout, and the metadata.

    Raises
    ------
    BundleError
        If any file is missing, unreadable, edited or truncated, or the weights do not fit the model
        that ``bundle.json`` records (naming the file and what to do).
    """
    directory = Path(directory)
    meta = verified_meta(directory)
    try:
        spec = FeatureSpec.from_dict(meta["features"])
        normaliser = Normaliser(**meta["normaliser"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(
            f"bundle metadata is malformed: {exc!r}", where=str(directory / META_FILE), fix=RETRAIN
        ) from None
    members = [_load_member(directory, item, meta) for item in meta["members"]]
    # bundles from before the bounds were recorded were trained unbounded, and are applied so
    return Ensemble(members, normaliser, meta["targets"], device=device, bounds=meta.get("bounds")), spec, meta


def verified_meta(directory: str | Path) -> dict:
    """The metadata of a bundle, its hash and fields checked (the weight files are checked by :func:`load_bundle`)."""
    directory = Path(directory)
    meta, where = read_meta(directory), str(Path(directory) / META_FILE)
    if _meta_hash(meta) != meta.get("hash"):
        raise BundleError("bundle metadata does not match its hash (edited or corrupt)", where=where, fix=RETRAIN)
    missing = [key for key in REQUIRED if key not in meta]
    if missing:
        raise BundleError(f"bundle metadata lacks {', '.join(missing)}", where=where, fix=RETRAIN)
    for record in (record for item in meta["members"] for record in _file_records(item)):
        name = record.get("file") if isinstance(record, dict) else None
        if not isinstance(name, str) or Path(name).name != name or "sha256" not in record:
            raise BundleError(f"bundle metadata names a member file {name!r} it cannot use", where=where, fix=RETRAIN)
    return meta


def _file_records(item) -> list:
    """The {file, sha256} records of one member: its safetensors file, or its boosters' files."""
    boosters = item.get("boosters") if isinstance(item, dict) else None
    return list(boosters.values()) if isinstance(boosters, dict) and boosters else [item]


def _load_member(directory: Path, item: dict, meta: dict):
    """One member: its files checked against their checksums, read as safetensors or XGBoost UBJSON, fitted
    to the model bundle.json records."""
    if "boosters" in item:
        boosters = {key: _booster(directory, record) for key, record in item["boosters"].items()}
        first = next(iter(item["boosters"].values()))["file"]
        name = "-".join(first.split("-")[:2]) + "-*.ubj"  # member-<i>-*.ubj
        return _fitted(meta, f"booster files {name}", lambda m: m.set_boosters(boosters), directory / first)
    path, raw = directory / item["file"], _checked_bytes(directory, item)
    try:
        state = load(raw)
    except SafetensorError as exc:  # reached only by a checksum edited to match: a file that is not safetensors
        raise BundleError(
            f"weight file {item['file']} is not a safetensors file ({exc})", where=str(path), fix=RETRAIN
        ) from None
    return _fitted(meta, f"weight file {item['file']}", lambda m: m.load_state_dict(state), path)


def _booster(directory: Path, record: dict):
    """One booster file: checked against its checksum, read by XGBoost as UBJSON or JSON (never unpickled)."""
    from upscale.models.trees import parse_booster

    raw = _checked_bytes(directory, record)
    try:
        return parse_booster(raw)
    except ValueError as exc:  # reached only by a checksum edited to match
        raise BundleError(
            f"booster file {record['file']} is {exc}", where=str(directory / record["file"]), fix=RETRAIN
        ) from None


def _checked_bytes(directory: Path, record: dict) -> bytes:
    """The bytes of a member file, refused when missing, unreadable or not matching its recorded checksum."""
    path = directory / record["file"]
    if not path.is_file():
        raise BundleError(f"weight file {record['file']} is missing", where=str(path), fix=RETRAIN)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(
            f"weight file {record['file']} cannot be read: {exc.strerror}", where=str(path), fix=READABLE
        ) from None
    if hashlib.sha256(raw).hexdigest() != record["sha256"]:
        raise BundleError(
            f"weight file {record['file']} does not match its checksum in {META_FILE} (truncated, edited or replaced)",
            where=str(path),
            fix=RETRAIN,
        )
    return raw


def _fitted(meta: dict, name: str, fill, where: Path):
    """The model bundle.json records, filled by ``fill(model)``; BundleError naming ``name`` if it does not fit."""
    try:
        model = build(
            meta["model"],
            len(meta["dynamic_names"]),
            len(meta["static_names"]),
            meta["targets"],
            dynamic_names=meta["dynamic_names"],
        )
        fill(model)
    except (RuntimeError, KeyError, TypeError, ValueError, UpscaleError) as exc:  # torch: size mismatch, keys
        raise BundleError(
            f"{name} does not fit the model {META_FILE} records: {_first_lines(exc)}",
            where=str(where),
            fix=RETRAIN,
        ) from None
    return model


def _first_lines(exc: Exception, limit: int = 240) -> str:
    """The gist of an exception in one line (torch's state-dict errors run over many lines)."""
    text = exc.what if isinstance(exc, UpscaleError) else " ".join(str(exc).split())
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parameters_record(model_type: str) -> dict:
    """``{"parameters": {name: info}}`` for models with process parameters (units, valid range), else
    nothing, so bundles of other models, and their hashes, are what they were before the record existed."""
    info = model_class(model_type).parameter_info
    return {"parameters": info} if info else {}


def parameter_info(meta: dict) -> dict[str, dict]:
    """The process parameters a bundle's model can write as maps (empty for models without them)."""
    return meta.get("parameters", {})


def bundle_hash(directory: str | Path) -> str:
    """The recorded hash of a bundle (cheap: reads only the JSON)."""
    return read_meta(directory)["hash"]


def _meta_hash(meta: dict) -> str:
    body = json.dumps({k: v for k, v in meta.items() if k != "hash"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
