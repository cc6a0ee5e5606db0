"""The fast-path switch: environment variable, and the plain path under tracing, compiling and exporting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssformer.models import fast

REPO = Path(__file__).resolve().parents[2]


def switch_in_subprocess(value: str) -> subprocess.CompletedProcess:
    env = {**os.environ, fast.ENV_VAR: value, "PYTHONPATH": str(REPO)}
    code = "from ssformer.models import fast; print(fast.use_fast_path())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value,expected", [("0", "False"), ("1", "True"), ("", "True")])
def test_environment_variable_is_read_at_import(value, expected):
    done = switch_in_subprocess(value)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_bad_environment_value_is_one_clear_error():
    done = switch_in_subprocess("yes")
    assert done.returncode != 0
    assert "SSFORMER_FAST_PATH='yes': allowed values are 0 and 1" in done.stderr


@pytest.fixture
def counted_kernels(monkeypatch):
    """Counts calls of the fast window attention and decoder."""
    calls = []
    for module, name in [(fast.windows, "attention"), (fast.decoder, "all_mlp_decoder")]:
        original = getattr(module, name)

        def counting(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)
    return calls


def test_eager_takes_fast_path_and_tracing_the_plain_one(tiny_model, counted_kernels):
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        eager = tiny_model.eval()(x)
        assert counted_kernels.count("all_mlp_decoder") == 1
        counted_kernels.clear()
        traced = torch.jit.trace(tiny_model, (x,), check_trace=False)
        assert counted_kernels == []
        torch.testing.assert_close(traced(x), eager, rtol=1e-4, atol=1e-4)
        other = torch.randn(1, 3, 33, 70)
        torch.testing.assert_close(traced(other), tiny_model(other), rtol=1e-4, atol=1e-4)  # any size


def test_export_takes_the_plain_path(tiny_model, counted_kernels):
    x = torch.randn(1, 3, 40, 52)
    program = torch.export.export(tiny_model.eval(), (x,), strict=True)
    assert counted_kernels == []
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), tiny_model(x), rtol=1e-4, atol=1e-4)


def test_compile_takes_the_plain_path_without_graph_breaks(tiny_model, counted_kernels):
    torch._dynamo.reset()  # independent of what earlier tests compiled (no automatic dynamic shapes)
    tiny_model.eval()
    x = torch.randn(1, 3, 45, 61)
    compiled = torch.compile(tiny_model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        result = compiled(x)
        assert counted_kernels == []
        torch.testing.assert_close(result, tiny_model(x), rtol=1e-5, atol=1e-5)
    tiny_model.train()
    torch.compile(tiny_model, backend="aot_eager", fullgraph=True)(x).mean().backward()
    assert all(p.grad is not None for p in tiny_model.parameters())


def test_compile_with_dynamic_shapes_serves_two_sizes(tiny_model):
    torch._dynamo.reset()
    tiny_model.eval()
    compiled = torch.compile(tiny_model, backend="aot_eager", fullgraph=True, dynamic=True)
    with torch.no_grad():
        for size in [(45, 61), (64, 64)]:
            x = torch.randn(1, 3, *size)
            torch.testing.assert_close(compiled(x), tiny_model(x), rtol=1e-5, atol=1e-5)
