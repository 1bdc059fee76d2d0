"""The ensemble: normalising in and out, combining members' means and variances, masking, chunked state."""

from __future__ import annotations

import math

import numpy as np
import torch

from upscale.encoding import Normaliser
from upscale.ensemble import Ensemble, Prediction, stitch_state
from upscale.models.base import FluxModel
from upscale.models.registry import build

TARGETS = ["gpp", "et"]


class Constant(FluxModel):
    """A member predicting the same normalised mean and variance everywhere."""

    def __init__(self, mean: float, var: float):
        super().__init__(2, 1, TARGETS)
        self.mean, self.log_var = mean, math.log(var)

    def forward(self, dynamic, static, state=None):
        shape = dynamic.shape[:2]
        return {t: (torch.full(shape, self.mean), torch.full(shape, self.log_var)) for t in self.targets}, None


class FirstInput(FluxModel):
    """A member whose normalised mean is its first (normalised) dynamic input, with unit variance."""

    def __init__(self):
        super().__init__(2, 1, TARGETS)

    def forward(self, dynamic, static, state=None):
        return {t: (dynamic[..., 0], torch.zeros_like(dynamic[..., 0])) for t in self.targets}, None


def normaliser(dm=(0.0, 0.0), ds=(1.0, 1.0), tm=(0.0, 0.0), ts=(1.0, 1.0), n_static=1) -> Normaliser:
    return Normaliser(list(dm), list(ds), [0.0] * n_static, [1.0] * n_static, list(tm), list(ts))


def test_total_sd_adds_the_two_variances():
    pred = Prediction(mean=np.zeros(2), aleatoric_var=np.array([9.0, 1.0]), epistemic_var=np.array([16.0, 0.0]))
    np.testing.assert_array_equal(pred.sd, [5.0, 1.0])


def test_members_combine_into_mean_aleatoric_and_epistemic_variance():
    ens = Ensemble([Constant(1.0, 0.5), Constant(3.0, 1.5)], normaliser(tm=(10.0, 0.0), ts=(2.0, 1.0)), TARGETS)
    out = ens.predict(np.zeros((2, 3, 2), "float32"), np.zeros((2, 1), "float32"))
    # gpp: members 1 x 2 + 10 = 12 and 3 x 2 + 10 = 16; variances 0.5 x 4 and 1.5 x 4
    np.testing.assert_allclose(out["gpp"].mean, 14.0, rtol=1e-6)
    np.testing.assert_allclose(out["gpp"].epistemic_var, 4.0, rtol=1e-6)  # population variance of 12 and 16
    np.testing.assert_allclose(out["gpp"].aleatoric_var, 4.0, rtol=1e-5)
    np.testing.assert_allclose(out["et"].mean, 2.0, rtol=1e-6)
    np.testing.assert_allclose(out["et"].epistemic_var, 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["et"].aleatoric_var, 1.0, rtol=1e-5)
    assert out["gpp"].mean.shape == (2, 3)


def test_bounded_members_combine_into_the_censored_mixture():
    # gpp latent members N(1, 1) and N(-2, 4) censored at 0; et unbounded (the plain Gaussian mixture)
    ens = Ensemble([Constant(1.0, 1.0), Constant(-2.0, 4.0)], normaliser(), TARGETS, bounds={"gpp": 0.0})
    out = ens.predict(np.zeros((2, 3, 2), "float32"), np.zeros((2, 1), "float32"))
    rng = np.random.default_rng(0)
    draws = np.maximum(0.0, np.concatenate([rng.normal(1, 1, 200_000), rng.normal(-2, 2, 200_000)]))
    np.testing.assert_allclose(out["gpp"].mean, draws.mean(), atol=0.01)
    np.testing.assert_allclose(out["gpp"].sd, draws.std(), atol=0.01)
    parts = out["gpp"].parts([0.25, 0.5, 0.9])
    np.testing.assert_array_equal(parts["q25"], 0.0)  # the point mass at 0 holds about 0.58
    np.testing.assert_allclose(parts["q90"], np.quantile(draws, 0.9), atol=0.02)
    assert parts["q50"].dtype == np.float32 and parts["q50"].shape == (2, 3)
    np.testing.assert_allclose(out["et"].mean, -0.5, rtol=1e-6)  # unbounded: the mean of the means
    assert ens.bounds == {"gpp": 0.0, "et": None}


def test_inputs_are_normalised_and_outputs_returned_to_physical_units():
    norm = normaliser(dm=(5.0, 0.0), ds=(2.0, 1.0), tm=(1.0, 0.0), ts=(3.0, 1.0))
    ens = Ensemble([FirstInput()], norm, TARGETS)
    dynamic = np.array([[[9.0, 0.0], [5.0, 0.0]]], "float32")
    out = ens.predict(dynamic, np.zeros((1, 1), "float32"))
    # (9 - 5) / 2 = 2 -> 2 x 3 + 1 = 7; (5 - 5) / 2 = 0 -> 1; variance exp(0) x 3^2 = 9
    np.testing.assert_allclose(out["gpp"].mean, [[7.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(out["gpp"].aleatoric_var, 9.0, rtol=1e-6)
    np.testing.assert_array_equal(out["gpp"].epistemic_var, 0.0)


def test_missing_predictors_give_nan_only_where_they_are_missing():
    ens = Ensemble([Constant(1.0, 1.0), Constant(2.0, 1.0)], normaliser(), TARGETS)
    dynamic = np.zeros((3, 4, 2), "float32")
    static = np.zeros((3, 1), "float32")
    dynamic[0, 2, 1] = np.nan  # one pixel-day
    static[1, 0] = np.nan  # a whole pixel
    out = ens.predict(dynamic, static)
    expected = np.ones((3, 4), bool)
    expected[0, 2] = False
    expected[1] = False
    for pred in out.values():
        for arr in (pred.mean, pred.aleatoric_var, pred.epistemic_var):
            np.testing.assert_array_equal(np.isfinite(arr), expected)


def lstm_members(n=2):
    members = []
    for seed in range(n):
        torch.manual_seed(seed)
        members.append(build({"type": "lstm", "hidden": [6]}, 2, 1, TARGETS))
    return members


def test_chunks_handed_on_and_small_pixel_batches_equal_one_pass():
    rng = np.random.default_rng(0)
    dynamic = rng.standard_normal((5, 12, 2)).astype("float32")
    static = rng.standard_normal((5, 1)).astype("float32")
    ens = Ensemble(lstm_members(), normaliser(), TARGETS)
    whole = ens.predict(dynamic, static)
    first, state = ens.predict_chunk(dynamic[:, :5], static, None, batch_size=12)  # 2 pixels a batch
    assert len(state) == 2 and all(s[0].shape[0] == 5 for s in state)  # per member, pixels first
    second, _ = ens.predict_chunk(dynamic[:, 5:], static, state, batch_size=7)  # 1 pixel a batch
    for target in TARGETS:
        for field in ("mean", "aleatoric_var", "epistemic_var"):
            joined = np.concatenate([getattr(first[target], field), getattr(second[target], field)], axis=1)
            np.testing.assert_allclose(joined, getattr(whole[target], field), rtol=1e-5, atol=1e-6)


def test_process_parameters_of_hybrid_members_are_averaged_over_members():
    names = ["tas", "vpd", "rsds"]
    members = []
    for seed in range(2):
        torch.manual_seed(seed)
        members.append(build({"type": "hybrid", "hidden": [4]}, 3, 1, ["et"], dynamic_names=names))
    rng = np.random.default_rng(1)
    dynamic = rng.standard_normal((2, 6, 3)).astype("float32")
    static = rng.standard_normal((2, 1)).astype("float32")
    dynamic[1, 4, 0] = np.nan
    ens = Ensemble(members, Normaliser([0.0] * 3, [1.0] * 3, [0.0], [1.0], [0.0], [1.0]), ["et"])
    out, _ = ens.predict_chunk(dynamic, static, None, parameters=("pt_alpha",))
    with torch.no_grad():
        x = torch.from_numpy(np.nan_to_num(dynamic))
        alphas = np.stack(
            [m.process_parameters(x, torch.from_numpy(static))[0]["pt_alpha"].numpy() for m in ens.members]
        )
    expected = alphas.mean(axis=0)
    expected[1, 4] = np.nan
    np.testing.assert_allclose(out["pt_alpha"].mean, expected, rtol=1e-5)
    np.testing.assert_allclose(out["pt_alpha"].epistemic_var[0], alphas.var(axis=0)[0], rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(out["pt_alpha"].aleatoric_var, 0.0)
    assert set(out) == {"et", "pt_alpha"}


def test_stitch_state_writes_each_batch_into_its_rows():
    assert stitch_state(None, None, 4, slice(0, 2)) is None  # memoryless members have no state
    buffers = stitch_state(None, (torch.ones(2, 1, 3), torch.full((2, 1, 3), 2.0)), 4, slice(0, 2))
    buffers = stitch_state(buffers, (torch.full((2, 1, 3), 5.0), torch.zeros(2, 1, 3)), 4, slice(2, 4))
    assert [b.shape for b in buffers] == [(4, 1, 3), (4, 1, 3)]
    assert buffers[0][:, 0, 0].tolist() == [1.0, 1.0, 5.0, 5.0]
    assert buffers[1][:, 0, 0].tolist() == [2.0, 2.0, 0.0, 0.0]
