"""RNG capture/restore: the process's own GPU stream only, so a resume may see fewer GPUs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.cuda.random

from ssformer.engine.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


class FakeGPUs:
    """``count`` visible GPUs with one RNG state each (a byte tensor holding the GPU's index)."""

    def __init__(self, monkeypatch, count: int, current: int = 0):
        self.count, self.current, self.set_calls = count, current, []
        for module in (torch.cuda, torch.cuda.random):
            monkeypatch.setattr(module, "device_count", lambda: self.count, raising=False)
            monkeypatch.setattr(module, "get_rng_state", self.get, raising=False)
            monkeypatch.setattr(module, "set_rng_state", self.set, raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)

    def _index(self, device) -> int:
        index = device if isinstance(device, int) else torch.device(device).index
        index = self.current if index is None or index == -1 else index
        if index >= self.count:
            raise RuntimeError(f"invalid device ordinal {index} ({self.count} visible)")
        return index

    def get(self, device="cuda"):
        return torch.full((8,), self._index(device), dtype=torch.uint8)

    def set(self, state, device="cuda"):
        self.set_calls.append((self._index(device), int(state[0])))


def test_saves_the_current_gpu_only_and_resumes_with_fewer_gpus(monkeypatch, tmp_path):
    gpus = FakeGPUs(monkeypatch, count=4, current=2)
    state = capture_rng(torch.device("cuda", 2))
    assert torch.equal(state["cuda"], torch.full((8,), 2, dtype=torch.uint8))  # GPU 2's stream, one tensor
    save_checkpoint({"rng": state}, tmp_path / "c.pt")

    gpus.count, gpus.current = 1, 0  # the resume sees one GPU: this process's stream goes to it
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"], torch.device("cuda", 0))
    assert gpus.set_calls == [(0, 2)]


def test_default_device_is_the_current_gpu(monkeypatch):
    gpus = FakeGPUs(monkeypatch, count=2, current=1)
    state = capture_rng()
    assert int(state["cuda"][0]) == 1
    restore_rng(state)
    assert gpus.set_calls == [(1, 1)]


def test_cpu_training_saves_no_gpu_state(monkeypatch):
    FakeGPUs(monkeypatch, count=2)
    assert "cuda" not in capture_rng(torch.device("cpu"))


def test_old_per_gpu_lists_restore_the_own_index(monkeypatch):
    gpus = FakeGPUs(monkeypatch, count=1, current=0)
    state = capture_rng(torch.device("cpu"))
    state["cuda"] = [torch.full((8,), i, dtype=torch.uint8) for i in (5, 6, 7)]  # get_rng_state_all() of 3 GPUs
    restore_rng(state, torch.device("cuda", 0))
    assert gpus.set_calls == [(0, 5)]


def test_host_streams_round_trip():
    state = capture_rng(torch.device("cpu"))
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state, torch.device("cpu"))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real GPU stream (tools/gpu_check.sh)")
def test_real_gpu_stream_round_trip():
    device = torch.device("cuda", torch.cuda.current_device())
    torch.rand(1, device=device)
    state = capture_rng(device)
    expected = torch.rand(4, device=device)
    restore_rng(state, device)
    torch.testing.assert_close(torch.rand(4, device=device), expected, rtol=0, atol=0)
