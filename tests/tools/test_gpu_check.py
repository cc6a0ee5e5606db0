"""``tools/gpu_check.sh --cpu``: the GPU check's CPU-possible parts (CI size) pass on this machine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_cpu_mode_of_the_gpu_check(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "tools" / "gpu_check.sh"), "--cpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in ("train-bf16-kill-resume", "torchrun-2-processes", "eval-bf16", "predict", "benchmark-train-bf16"):
        assert f"PASS {step}" in summary, summary
    assert "FAIL" not in summary
    resume = (tmp_path / "logs" / "train-bf16-kill-resume.log").read_text()
    assert "killed with SIGKILL after the checkpoint of iteration 3" in resume
    assert "resumed from" in resume and "largest weight difference 0\n" in resume
    assert "2 processes: world_size 2 iterations 10" in (tmp_path / "logs" / "torchrun-2-processes.log").read_text()
