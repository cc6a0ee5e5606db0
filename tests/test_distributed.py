"""Collectives on the group's own device, and which GPU each torchrun process trains on.

An NCCL group has no CPU backend; a one-process group whose only backend is ``cuda:gloo`` has the
same property and runs on a CPU-only machine, so it stands in for NCCL here.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from ssformer.devices import resolve_device
from ssformer.distributed import (
    all_reduce_sum,
    distributed_session,
    reduction_device,
    session_device,
    torchrun_env,
)
from ssformer.engine.trainer import train
from ssformer.metrics import IoUMetric
from tests.engine.conftest import tiny_config


@pytest.fixture
def one_process_group(tmp_path):
    """``make(backend)`` joins a one-process group of that backend; it is destroyed afterwards."""
    def make(backend: str) -> None:
        store = tmp_path / f"store-{backend.replace(':', '-').replace(',', '-')}"
        dist.init_process_group(backend=backend, init_method=f"file://{store}", rank=0, world_size=1)

    yield make
    if dist.is_initialized():
        dist.destroy_process_group()


def test_a_cuda_only_group_cannot_reduce_cpu_tensors(one_process_group):
    """The failure of every NCCL run before the fix: the loss status went through the CPU."""
    one_process_group("cuda:gloo")
    with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
        dist.all_reduce(torch.zeros(2))


@pytest.mark.parametrize("backend, expected", [("cuda:gloo", "cuda:0"), ("gloo", "cpu"),
                                               ("cpu:gloo,cuda:gloo", "cpu")])
def test_reduction_device_follows_the_group_backend(one_process_group, monkeypatch, backend, expected):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    one_process_group(backend)
    assert reduction_device() == torch.device(expected)


def _sum_values(values: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(values)


def _sum_metric_counts(values: torch.Tensor) -> torch.Tensor:
    metric = IoUMetric(2)
    metric.counts = values.to(torch.int64).view(4, 2)
    metric.all_reduce()
    return metric.counts.view(-1)


@pytest.mark.parametrize("reduce", [_sum_values, _sum_metric_counts], ids=["all_reduce_sum", "IoUMetric"])
def test_cpu_tensors_are_reduced_on_the_groups_device(one_process_group, reduce):
    """Under a CUDA-only group CPU values are summed on the GPU and copied back (before: handed to
    the group as they were, the error above). Without a GPU the move itself is what fails."""
    one_process_group("cuda:gloo")
    values = torch.arange(8.0)
    if torch.cuda.is_available():
        assert reduce(values).tolist() == list(range(8))
    else:
        with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
            reduce(values)


def test_reduction_device_without_a_group_is_the_cpu():
    assert not dist.is_initialized()
    assert reduction_device() == torch.device("cpu")


# --- train.device under torchrun ----------------------------------------------------------------
@pytest.fixture
def two_gpus(monkeypatch):
    """A machine that reports two GPUs (only device selection runs: nothing touches a GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def _torchrun(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))


def test_cuda_under_torchrun_takes_the_local_rank(two_gpus, monkeypatch):
    _torchrun(monkeypatch, rank=1, world=2)
    layout = torchrun_env()
    assert resolve_device("cuda", layout.local_rank, layout.enabled) == torch.device("cuda", 1)
    assert resolve_device("auto", layout.local_rank, layout.enabled) == torch.device("cuda", 1)


def test_cuda_n_under_torchrun_is_refused_before_joining_the_group(two_gpus, monkeypatch, tmp_path):
    """Before: every rank went to GPU N (here rank 1 tried to join NCCL on a CUDA-less torch)."""
    _torchrun(monkeypatch, rank=1, world=2)
    with pytest.raises(ValueError, match=r"train.device=cuda:0 under torchrun .* CUDA_VISIBLE_DEVICES"):
        train(tiny_config(tmp_path, "train.device=cuda:0"))
    assert not dist.is_initialized()


def test_more_processes_than_gpus_is_a_clear_error(two_gpus):
    with pytest.raises(ValueError, match="LOCAL_RANK=2 but only 2 GPU"):
        resolve_device("cuda", local_rank=2, distributed=True)


def test_single_process_cuda_n_is_used_as_given(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)  # eval's group layout
    with pytest.raises(ValueError, match=r"train.device=cuda:2 but only 2 GPU"):
        resolve_device("cuda:2")


@pytest.mark.cuda
@pytest.mark.skipif(not (torch.cuda.is_available() and dist.is_nccl_available()),
                    reason="NCCL needs a GPU (tools/gpu_check.sh)")
def test_training_inside_a_one_process_nccl_group(one_process_group, tmp_path):
    """Every loss-status and metric reduction of a training goes through NCCL (one-process groups
    run their collectives too), so one GPU exercises the path that broke multi-GPU runs."""
    one_process_group("nccl")
    summary = train(tiny_config(tmp_path, "train.device=cuda", "train.iters=2", "train.eval_interval=2"))
    assert summary["iterations"] == 2 and 0.0 <= summary["last_eval"]["mIoU"] <= 1.0
    assert dist.is_initialized()  # the caller's group is left to the caller


# --- the session every command runs in -----------------------------------------------------------
@pytest.fixture
def fake_torchrun_group(monkeypatch, tmp_path):
    """torchrun's environment for rank 0 of 2, with ``init_process_group`` joining a one-process gloo group
    (file store) instead of waiting for rank 1; records the backend asked for."""
    _torchrun(monkeypatch, rank=0, world=2)
    asked = []
    real = dist.init_process_group

    def init(backend: str, **kwargs) -> None:
        asked.append(backend)
        real(backend="gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)

    monkeypatch.setattr(dist, "init_process_group", init)
    yield asked
    if dist.is_initialized():
        dist.destroy_process_group()


def test_session_destroys_its_group_when_the_body_raises(fake_torchrun_group):
    with pytest.raises(RuntimeError, match="the body failed"):
        with distributed_session(torch.device("cpu")) as info:
            assert dist.is_initialized() and info.enabled and info.created_group
            raise RuntimeError("the body failed")
    assert not dist.is_initialized()
    assert fake_torchrun_group == ["gloo"]


def test_session_destroys_its_group_when_the_body_succeeds(fake_torchrun_group):
    with distributed_session(torch.device("cpu")) as info:
        assert info.rank == 0 and info.world_size == 2
    assert not dist.is_initialized()


def test_session_leaves_a_callers_group_to_the_caller(one_process_group):
    one_process_group("gloo")
    with distributed_session(torch.device("cpu")) as info:
        assert not info.created_group
    assert dist.is_initialized()


def test_session_makes_the_gpu_current_before_joining(two_gpus, monkeypatch, fake_torchrun_group):
    """NCCL collectives run on CUDA's current device: every command's session sets it (eval did not)."""
    _torchrun(monkeypatch, rank=1, world=2)
    order = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: order.append(("set_device", device)))
    real_init = dist.init_process_group
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend, **kw: (order.append(("init", backend)), real_init(backend, **kw)))
    device = session_device("cuda", what="--device")
    assert device == torch.device("cuda", 1)
    with distributed_session(device):
        pass
    assert order == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]
    assert fake_torchrun_group == ["nccl"]


def test_session_device_names_the_setting(two_gpus, monkeypatch):
    _torchrun(monkeypatch, rank=0, world=2)
    with pytest.raises(ValueError, match=r"--device=cuda:1 under torchrun .* use --device=cuda"):
        session_device("cuda:1", what="--device")
    assert not dist.is_initialized()
