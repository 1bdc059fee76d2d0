"""Model bundles: safetensors and JSON round trips, a hash over both, clear refusals of anything tampered with."""

from __future__ import annotations

import json
import os
import pickle
import stat

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
    assert err.value.what == (
        "weight file member-1.safetensors does not match its checksum in bundle.json (truncated, edited or replaced)"
    )
    assert err.value.where == str(weights) and "upscale train" in err.value.fix
    weights.unlink()
    with pytest.raises(BundleError, match=r"weight file member-1\.safetensors is missing") as err:
        load_bundle(directory)
    assert err.value.where == str(weights)


def test_edited_metadata_is_refused(saved):
    directory, _ = saved
    meta = json.loads((directory / "bundle.json").read_text())
    meta["targets"] = ["et", "gpp"]
    (directory / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"bundle metadata does not match its hash \(edited or corrupt\)") as err:
        load_bundle(directory)
    assert err.value.where == str(directory / "bundle.json") and "upscale train" in err.value.fix


def rewrite_meta(directory, change) -> None:
    """Edit bundle.json with ``change(meta)`` and record a matching hash: tampering the hash does not catch."""
    meta = json.loads((directory / "bundle.json").read_text())
    change(meta)
    meta["hash"] = bundle_module._meta_hash(meta)
    (directory / "bundle.json").write_text(json.dumps(meta))


def checksum_of(directory, member: int):
    """A change of bundle.json recording member ``member``'s file as it now is."""

    def change(meta):
        meta["members"][member]["sha256"] = bundle_module._sha256(directory / meta["members"][member]["file"])

    return change


def truncate(directory):
    path = directory / "member-0.safetensors"
    path.write_bytes(path.read_bytes()[:100])


def pickled(directory):
    with open(directory / "member-0.safetensors", "wb") as fh:
        pickle.dump({"weight": [1.0, 2.0]}, fh)


# every way a bundle is found broken: the BundleError's start, and whether bundle.json is re-hashed to match
BROKEN = {
    "truncated weights": (truncate, False, "weight file member-0.safetensors does not match its checksum"),
    "truncated weights, checksum updated": (truncate, True, "weight file member-0.safetensors is not a safetensors"),
    "a pickle renamed .safetensors": (pickled, False, "weight file member-0.safetensors does not match its checksum"),
    "a pickle, checksum updated": (pickled, True, "weight file member-0.safetensors is not a safetensors file"),
    "empty weights, checksum updated": (
        lambda d: (d / "member-0.safetensors").write_bytes(b""),
        True,
        "weight file member-0.safetensors is not a safetensors file",
    ),
    "a deleted member": (lambda d: (d / "member-1.safetensors").unlink(), False, "weight file member-1.safetensors is"),
    "a member directory": (
        lambda d: ((d / "member-1.safetensors").unlink(), (d / "member-1.safetensors").mkdir()),
        False,
        "weight file member-1.safetensors is missing",
    ),
    "bundle.json truncated": (
        lambda d: (d / "bundle.json").write_text((d / "bundle.json").read_text()[:50]),
        False,
        "bundle metadata is not valid JSON",
    ),
    "bundle.json binary": (lambda d: (d / "bundle.json").write_bytes(b"\xff\xfe\x00"), False, "bundle metadata is"),
    "bundle.json a list": (lambda d: (d / "bundle.json").write_text("[]"), False, "bundle metadata is not a JSON"),
    "bundle.json deleted": (lambda d: (d / "bundle.json").unlink(), False, "no trained bundle here"),
}
EDITS = {
    "a wider model recorded": (lambda m: m["model"].update(hidden=[16]), "does not fit the model bundle.json records"),
    "another model type recorded": (lambda m: m["model"].update(type="lstm"), "does not fit the model"),
    "an unknown model type": (lambda m: m["model"].update(type="transformer"), "does not fit the model"),
    "a target more": (lambda m: m["targets"].append("le"), "does not fit the model"),
    "a member path outside": (lambda m: m["members"][0].update(file="../member-0.safetensors"), "names a member"),
    "no members key": (lambda m: m.pop("members"), "bundle metadata lacks members"),
    "no normaliser key": (lambda m: m.pop("normaliser"), "bundle metadata lacks normaliser"),
    "a broken normaliser": (lambda m: m.update(normaliser={"x": 1}), "bundle metadata is malformed"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_every_broken_file_is_one_bundle_error(saved, case):
    directory, _ = saved
    breakage, rehash, expected = BROKEN[case]
    breakage(directory)
    if rehash:
        rewrite_meta(directory, checksum_of(directory, 0))
    with pytest.raises(BundleError) as err:
        load_bundle(directory)
    assert err.value.what.startswith(expected), err.value.what
    assert str(directory) in err.value.where and err.value.fix


@pytest.mark.parametrize("case", list(EDITS))
def test_edited_metadata_with_a_matching_hash_is_one_bundle_error(saved, case):
    directory, _ = saved
    change, expected = EDITS[case]
    rewrite_meta(directory, change)
    with pytest.raises(BundleError, match=expected) as err:
        load_bundle(directory)
    assert str(directory) in err.value.where and "upscale train" in err.value.fix


def test_weights_of_another_shape_name_the_tensor(saved, tmp_path):
    """A member file of a differently sized model, its checksum recorded: torch's size mismatch, in one line."""
    directory, _ = saved
    wide, config = ensemble("mlp")
    config["hidden"] = [16]
    wide = Ensemble([build(config, len(NAMES), 2, TARGETS, dynamic_names=NAMES)], wide.normaliser, TARGETS)
    save_bundle(wide, SPEC, config, tmp_path / "wide")
    (directory / "member-0.safetensors").write_bytes((tmp_path / "wide" / "member-0.safetensors").read_bytes())
    rewrite_meta(directory, checksum_of(directory, 0))
    with pytest.raises(BundleError) as err:
        load_bundle(directory)
    assert "size mismatch" in err.value.what and "\n" not in err.value.what and len(err.value.what) < 400
    assert err.value.where == str(directory / "member-0.safetensors")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_bundle_files_respect_the_umask(tmp_path, umask, mode):
    """Weights are written like every other file (safetensors' save_file made them 0600 whatever the umask)."""
    ens, config = ensemble("mlp")
    old = os.umask(umask)
    try:
        save_bundle(ens, SPEC, config, tmp_path / "b")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "b").iterdir()}
    assert modes == dict.fromkeys(["bundle.json", "member-0.safetensors", "member-1.safetensors"], mode)


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


# ---- boosted trees: XGBoost's own UBJSON per booster, never a pickle ------------------------------


def trees_ensemble(rolling=None) -> tuple[Ensemble, dict]:
    """Two tiny trained xgboost members over the layout above (5 rounds each), and their config."""
    from upscale.batching import SiteData
    from upscale.train import train_member

    config = {"type": "xgboost", "rolling": rolling or {}, "trees": {"rounds": 5, "max_depth": 3}}
    ens, _ = ensemble("mlp")
    dynamic, static = inputs(p=6, t=40, seed=2)
    targets = np.stack([dynamic[..., 2] / 100, dynamic[..., 0] / 10], axis=-1)
    data = SiteData(np.array([f"S{i}" for i in range(6)]), dynamic, static, targets, TARGETS, NAMES)
    members = [
        train_member(config, data.subset(np.arange(5)), data.subset([5]), ens.normaliser, None, s) for s in (1, 2)
    ]
    return Ensemble(members, ens.normaliser, TARGETS), config


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """A saved two-member xgboost bundle with trailing means, and the ensemble it came from."""
    ens, config = trees_ensemble({"pr": [3, 7]})
    directory = tmp_path_factory.mktemp("trees") / "b"
    save_bundle(ens, SPEC, config, directory)
    return directory, ens


@pytest.fixture
def trees_copy(trees, tmp_path):
    import shutil

    return shutil.copytree(trees[0], tmp_path / "b")


BOOSTERS = [f"member-{i}-{t}-{part}.ubj" for i in range(2) for t in TARGETS for part in ("mean", "log_var")]


def test_a_trees_bundle_is_ubjson_and_predicts_what_was_saved(trees):
    import xgboost

    directory, ens = trees
    assert sorted(p.name for p in directory.iterdir()) == sorted(["bundle.json", *BOOSTERS])
    for name in BOOSTERS:
        raw = (directory / name).read_bytes()
        assert raw[:2] == b"{L" and xgboost.Booster(model_file=bytearray(raw)).num_features() == 6 + 2 + 2
    loaded, _, meta = load_bundle(directory)
    assert meta["members"][1]["boosters"]["et-log_var"]["file"] == "member-1-et-log_var.ubj"
    dynamic, static = inputs(p=5, t=30)
    a, b = ens.predict(dynamic, static), loaded.predict(dynamic, static)
    first, carry = loaded.predict_chunk(dynamic[:, :11], static, None)  # sequential: the trailing days go on
    rest = loaded.predict_chunk(dynamic[:, 11:], static, carry)[0]
    for target in TARGETS:
        np.testing.assert_array_equal(a[target].mean, b[target].mean)
        np.testing.assert_array_equal(a[target].sd, b[target].sd)
        np.testing.assert_array_equal(np.concatenate([first[target].sd, rest[target].sd], axis=1), a[target].sd)
    assert all(m.sequential for m in loaded.members)


def test_a_json_booster_is_read_too(trees_copy):
    """XGBoost's JSON format is accepted as well as UBJSON (both are its own, text-like formats)."""
    import xgboost

    path = trees_copy / "member-0-gpp-mean.ubj"
    path.write_bytes(bytes(xgboost.Booster(model_file=bytearray(path.read_bytes())).save_raw("json")))
    rewrite_meta(trees_copy, booster_checksum(trees_copy, 0, "gpp-mean"))
    load_bundle(trees_copy)


def booster_checksum(directory, member: int, key: str):
    def change(meta):
        record = meta["members"][member]["boosters"][key]
        record["sha256"] = bundle_module._sha256(directory / record["file"])

    return change


def pickled_booster(directory):
    import xgboost

    path = directory / "member-0-gpp-mean.ubj"
    path.write_bytes(pickle.dumps(xgboost.Booster(model_file=bytearray(path.read_bytes()))))


BROKEN_BOOSTERS = {
    "a pickled booster": (pickled_booster, False, "weight file member-0-gpp-mean.ubj does not match its checksum"),
    "a pickled booster, checksum updated": (
        pickled_booster,
        True,
        "booster file member-0-gpp-mean.ubj is a pickle, not an XGBoost model saved as UBJSON or JSON",
    ),
    "truncated UBJSON, checksum updated": (
        lambda d: (d / "member-0-gpp-mean.ubj").write_bytes((d / "member-0-gpp-mean.ubj").read_bytes()[:300]),
        True,
        "booster file member-0-gpp-mean.ubj is ",
    ),
    "a booster of another layout, checksum updated": (
        lambda d: (d / "member-0-gpp-mean.ubj").write_bytes(_booster_of_other_layout()),
        True,
        "booster files member-0-*.ubj does not fit the model bundle.json records: booster gpp-mean takes 8 features",
    ),
    "a deleted booster": (lambda d: (d / "member-0-gpp-mean.ubj").unlink(), False, "weight file member-0-gpp-mean.ubj"),
}


def _booster_of_other_layout() -> bytes:
    import xgboost

    x = np.random.default_rng(0).random((50, 8)).astype("float32")
    booster = xgboost.train({"tree_method": "hist", "nthread": 1}, xgboost.DMatrix(x, x.sum(1)), 2)
    return bytes(booster.save_raw("ubj"))


@pytest.mark.parametrize("case", list(BROKEN_BOOSTERS))
def test_every_broken_booster_is_one_bundle_error(trees_copy, case):
    breakage, rehash, expected = BROKEN_BOOSTERS[case]
    breakage(trees_copy)
    if rehash:
        rewrite_meta(trees_copy, booster_checksum(trees_copy, 0, "gpp-mean"))
    with pytest.raises(BundleError) as err:
        load_bundle(trees_copy)
    assert err.value.what.startswith(expected), err.value.what
    assert "\n" not in err.value.what and len(err.value.what) < 400
    assert err.value.where == str(trees_copy / "member-0-gpp-mean.ubj") and "upscale train" in err.value.fix


def test_a_booster_path_outside_the_bundle_is_refused(trees_copy):
    rewrite_meta(trees_copy, lambda m: m["members"][0]["boosters"]["et-mean"].update(file="../x.ubj"))
    with pytest.raises(BundleError, match=r"names a member file '\.\./x\.ubj'"):
        load_bundle(trees_copy)
