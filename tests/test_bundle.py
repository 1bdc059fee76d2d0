"""Model bundles: safetensors and JSON round trips, a hash over both, clear refusals of anything tampered with."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from upscale import bundle as bundle_module
from upscale.bundle import FORMAT_VERSION, bundle_hash, load_bundle, parameter_info, read_meta, save_bundle
from upscale.encoding import FeatureSpec, Normaliser
from upscale.ensemble import Ensemble
from upscale.errors import BundleError
from upscale.models.hybrid import Hybrid
from upscale.models.registry import build

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["tas", "vpd", "rsds", "rsds_pot", "pr", "fapar"]
TARGETS = ["gpp", "et"]
SPEC = FeatureSpec([("era5", n) for n in NAMES[:5]] + [("eo", "fapar")], [("static", "pft")], [1, 10])


def ensemble(kind: str, n_members: int = 2, seed: int = 0) -> tuple[Ensemble, dict]:
    """Seeded, untrained members of ``kind`` over the layout above, and their model config."""
    config = {"type": kind, "hidden": [8]}
    torch.manual_seed(seed)
    members = [build(config, len(NAMES), 2, TARGETS, dynamic_names=NAMES) for _ in range(n_members)]
    norm = Normaliser(
        [10.0, 8.0, 200.0, 300.0, 2.0, 0.5],
        [8.0, 5.0, 80.0, 90.0, 3.0, 0.2],
        [0.5, 0.5],
        [0.5, 0.5],
        [5.0, 2.0],
        [3.0, 1.0],
    )
    return Ensemble(members, norm, TARGETS), config


def inputs(p=4, t=12, seed=1):
    rng = np.random.default_rng(seed)
    dynamic = (np.array([10.0, 8.0, 200.0, 300.0, 2.0, 0.5]) + rng.standard_normal((p, t, 6))).astype("float32")
    static = np.tile(np.array([[1.0, 0.0]], dtype="float32"), (p, 1))
    return dynamic, static


@pytest.fixture
def saved(tmp_path):
    """A saved two-member MLP bundle and its hash."""
    ens, config = ensemble("mlp")
    return tmp_path / "b", save_bundle(ens, SPEC, config, tmp_path / "b")


@pytest.mark.parametrize("kind", ["mlp", "lstm", "ealstm", "hybrid"])
def test_a_loaded_bundle_predicts_what_was_saved(kind, tmp_path):
    ens, config = ensemble(kind)
    digest = save_bundle(ens, SPEC, config, tmp_path / "b")
    loaded, spec, meta = load_bundle(tmp_path / "b")
    assert spec == SPEC and meta["hash"] == digest == bundle_hash(tmp_path / "b")
    assert meta["format_version"] == FORMAT_VERSION and meta["model"] == config and meta["targets"] == TARGETS
    assert meta["dynamic_names"] == NAMES and meta["static_names"] == ["pft_ENF", "pft_GRA"]
    assert Normaliser(**meta["normaliser"]) == ens.normaliser
    dynamic, static = inputs()
    a, b = ens.predict(dynamic, static), loaded.predict(dynamic, static)
    for target in TARGETS:
        np.testing.assert_array_equal(a[target].mean, b[target].mean)
        np.testing.assert_array_equal(a[target].sd, b[target].sd)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "bundle.json",
        "member-0.safetensors",
        "member-1.safetensors",
    ]  # nothing to unpickle


def test_the_hash_covers_the_metadata_and_is_reproducible(tmp_path):
    ens, config = ensemble("mlp")
    first = save_bundle(ens, SPEC, config, tmp_path / "a", extra={"training_sites": ["S1", "S2"]})
    again = save_bundle(ens, SPEC, config, tmp_path / "b", extra={"training_sites": ["S1", "S2"]})
    other = save_bundle(ens, SPEC, config, tmp_path / "c", extra={"training_sites": ["S1", "S3"]})
    assert first == again != other and len(first) == 16
    assert read_meta(tmp_path / "a")["training_sites"] == ["S1", "S2"]
    renamed = FeatureSpec(SPEC.dynamic, SPEC.static, [1, 12])
    assert save_bundle(ens, renamed, config, tmp_path / "d", extra={"training_sites": ["S1", "S2"]}) != first


def test_the_hash_records_the_weights_through_their_checksums(tmp_path):
    ens, config = ensemble("mlp", seed=0)
    other, _ = ensemble("mlp", seed=1)
    assert save_bundle(ens, SPEC, config, tmp_path / "a") != save_bundle(other, SPEC, config, tmp_path / "b")


def test_a_corrupt_weight_file_is_refused(saved):
    directory, _ = saved
    weights = directory / "member-1.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(BundleError) as err:
        load_bundle(directory)
    assert err.value.what == "weight file member-1.safetensors is missing or corrupt"
    assert err.value.where == str(directory) and err.value.fix == "Retrain the bundle"
    weights.unlink()
    with pytest.raises(BundleError, match=r"member-1\.safetensors is missing or corrupt"):
        load_bundle(directory)


def test_edited_metadata_is_refused(saved):
    directory, _ = saved
    meta = json.loads((directory / "bundle.json").read_text())
    meta["targets"] = ["et", "gpp"]
    (directory / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"bundle metadata does not match its hash \(edited or corrupt\)"):
        load_bundle(directory)


def test_metadata_that_is_not_json_is_refused(saved):
    directory, _ = saved
    (directory / "bundle.json").write_text("{truncated")
    with pytest.raises(BundleError, match="bundle metadata is not valid JSON") as err:
        read_meta(directory)
    assert err.value.where == str(directory / "bundle.json")


@pytest.mark.parametrize("version", [99, None])
def test_another_format_version_is_refused_with_what_to_do(saved, version):
    directory, _ = saved
    meta = json.loads((directory / "bundle.json").read_text())
    meta["format_version"] = version
    (directory / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError) as err:
        load_bundle(directory)
    assert f"bundle format version {version} is not supported" in err.value.what
    assert f"which reads version {FORMAT_VERSION}" in err.value.what and "Retrain" in err.value.fix


def test_no_bundle_says_to_train_first(tmp_path):
    with pytest.raises(BundleError, match="no trained bundle here") as err:
        bundle_hash(tmp_path)
    assert "upscale train" in err.value.fix


def test_a_hybrid_bundle_records_its_parameters_and_an_mlp_none(tmp_path):
    hybrid, config = ensemble("hybrid")
    save_bundle(hybrid, SPEC, config, tmp_path / "h")
    meta = read_meta(tmp_path / "h")
    assert meta["parameters"] == json.loads(json.dumps(Hybrid.parameter_info))
    assert parameter_info(meta) == meta["parameters"] and set(parameter_info(meta)) == set(Hybrid.parameter_info)
    mlp, config = ensemble("mlp")
    save_bundle(mlp, SPEC, config, tmp_path / "m")
    meta = read_meta(tmp_path / "m")
    assert "parameters" not in meta and parameter_info(meta) == {}


@pytest.mark.parametrize("kind, unchanged", [("mlp", True), ("lstm", True), ("hybrid", False)])
def test_bundles_without_parameters_hash_as_before_the_record_existed(tmp_path, monkeypatch, kind, unchanged):
    ens, config = ensemble(kind)
    now = save_bundle(ens, SPEC, config, tmp_path / "now")
    monkeypatch.setattr(bundle_module, "_parameters_record", lambda model_type: {})  # as before the record
    before = save_bundle(ens, SPEC, config, tmp_path / "before")
    assert (now == before) is unchanged
