"""The torch device of a step: explicit devices pass through, 'auto' takes a GPU only when torch sees one."""

from __future__ import annotations

import pytest
import torch

from upscale.devices import resolve_device


@pytest.mark.parametrize("requested", ["cpu", "cuda", "cuda:1"])
@pytest.mark.parametrize("available", [True, False])
def test_explicit_devices_pass_through(monkeypatch, requested, available):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert resolve_device(requested) == requested


@pytest.mark.parametrize("available, expected", [(True, "cuda"), (False, "cpu")])
def test_auto_is_cuda_exactly_when_torch_sees_a_gpu(monkeypatch, available, expected):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: calls.append(1) or available)
    assert resolve_device("auto") == expected
    assert calls == [1]  # asked in this process, at resolve time
