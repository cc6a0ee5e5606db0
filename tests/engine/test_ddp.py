"""Two gloo processes on the CPU train exactly like one process with the whole global batch.

BatchNorm statistics are per process in plain DDP (torch's SyncBatchNorm runs only on GPUs), so
this test keeps BatchNorm in eval mode (``train.bn_eval``) and turns dropout and drop-path off;
everything else (data split, gradient all-reduce, loss averaging, distributed evaluation) is the
real distributed path. Each process also reports that ``train`` destroyed its process group and
that DDP did not warn about gradient strides (channels-last 1x1-convolution gradients).
"""

from __future__ import annotations

import json
import os
import socket
import warnings

import pytest
import torch
import torch.multiprocessing as mp

from ssformer.engine.checkpoint import load_checkpoint
from ssformer.engine.trainer import train
from tests.engine.conftest import tiny_config

COMMON = ("model.drop_path_rate=0.0", "model.dropout=0.0", "train.bn_eval=true", "train.iters=3",
          "train.eval_interval=3", "train.checkpoint_interval=3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, config: dict, report_dir) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(config)
    report = {"group_destroyed": not torch.distributed.is_initialized(),
              "warnings": [str(w.message).splitlines()[0] for w in caught]}
    (report_dir / f"rank{rank}.json").write_text(json.dumps(report))


@pytest.mark.slow
def test_two_process_ddp_equals_single_process(tmp_path):
    single = train(tiny_config(tmp_path / "single", *COMMON, "train.batch_size=4"))
    config = tiny_config(tmp_path / "ddp", *COMMON, "train.batch_size=2")
    mp.spawn(_worker, args=(2, _free_port(), config, tmp_path), nprocs=2, join=True)
    for rank in range(2):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["group_destroyed"], rank  # train() leaves no process group behind
        assert not [w for w in report["warnings"] if "strides" in w], report["warnings"]  # DDP's bucket check

    a, b = load_checkpoint(tmp_path / "single" / "latest.pt"), load_checkpoint(tmp_path / "ddp" / "latest.pt")
    assert b["world_size"] == 2 and len(b["rng"]) == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=1e-4, atol=1e-7)  # first moment ~ gradients
    # the distributed evaluation (counts summed over the two processes) sees every validation image
    ev = lambda p: [json.loads(line) for line in p.read_text().splitlines() if '"eval"' in line][-1]
    ea, eb = ev(tmp_path / "single" / "log.jsonl"), ev(tmp_path / "ddp" / "log.jsonl")
    assert eb["mIoU"] == pytest.approx(ea["mIoU"], abs=1e-3) and eb["aAcc"] == pytest.approx(ea["aAcc"], abs=1e-3)
    assert single["iterations"] == 3
