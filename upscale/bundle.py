"""Trained model bundles: safetensors weights per member plus one JSON of metadata.

Nothing is ever unpickled: weights are safetensors, metadata JSON. The bundle hash
covers the metadata and every weight file, so workers can cache a loaded bundle by it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

import upscale
from upscale.encoding import FeatureSpec, Normaliser
from upscale.ensemble import Ensemble
from upscale.errors import BundleError
from upscale.models.registry import build, model_class

FORMAT_VERSION = 1
META_FILE = "bundle.json"


def save_bundle(
    ensemble: Ensemble, spec: FeatureSpec, model_config: dict, directory: str | Path, extra: dict | None = None
) -> str:
    """Write ``ensemble`` to ``directory``; returns the bundle hash."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, member in enumerate(ensemble.members):
        name = f"member-{i}.safetensors"
        state = {k: v.detach().cpu().contiguous() for k, v in member.state_dict().items()}
        save_file(state, directory / name)
        files.append({"file": name, "sha256": _sha256(directory / name)})
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
        **_parameters_record(model_config["type"]),
        **(extra or {}),
    }
    meta["hash"] = _meta_hash(meta)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta["hash"]


def read_meta(directory: str | Path) -> dict:
    """The bundle's metadata, checked for format version."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise BundleError("no trained bundle here", where=str(path), fix="Run `upscale train` first")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"bundle metadata is not valid JSON: {exc}", where=str(path)) from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {meta.get('format_version')} is not supported by upscale "
            f"{upscale.__version__} (which reads version {FORMAT_VERSION})",
            where=str(path),
            fix="Retrain with this version of upscale, or install the version that wrote it",
        )
    return meta


def load_bundle(directory: str | Path, device: str = "cpu") -> tuple[Ensemble, FeatureSpec, dict]:
    """Load a bundle, verifying every weight file against its recorded hash.

    Returns
    -------
    (Ensemble, FeatureSpec, dict)
        The ensemble on ``device``, its feature layout, and the metadata.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    if _meta_hash(meta) != meta.get("hash"):
        raise BundleError("bundle metadata does not match its hash (edited or corrupt)", where=str(directory))
    spec = FeatureSpec.from_dict(meta["features"])
    members = []
    for item in meta["members"]:
        path = directory / item["file"]
        if not path.is_file() or _sha256(path) != item["sha256"]:
            raise BundleError(
                f"weight file {item['file']} is missing or corrupt", where=str(directory), fix="Retrain the bundle"
            )
        model = build(
            meta["model"],
            len(meta["dynamic_names"]),
            len(meta["static_names"]),
            meta["targets"],
            dynamic_names=meta["dynamic_names"],
        )
        model.load_state_dict(load_file(path))
        members.append(model)
    normaliser = Normaliser(**meta["normaliser"])
    return Ensemble(members, normaliser, meta["targets"], device=device), spec, meta


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
