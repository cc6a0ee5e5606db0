"""The fast-path switch: chosen per model (at construction, by config, or later), its process default
(environment variable, ``set_fast_path``), and the plain path under tracing, compiling and exporting."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import ssformer
from ssformer.models import fast
from tests.conftest import tiny_model_kwargs

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
    """Names of the fast window attention and decoder kernels called, in order."""
    return _count_kernels(monkeypatch)


def _count_kernels(monkeypatch) -> list:
    """Records (kernel name, the layer it ran for) of every call of the fast window attention and decoder;
    the list of names compares equal to ``counted_kernels`` (a list subclass keeps the layers beside)."""
    calls = KernelCalls()
    for module, name in [(fast.windows, "attention"), (fast.decoder, "all_mlp_decoder")]:
        original = getattr(module, name)

        def counting(layer, *args, _original=original, _name=name, **kwargs):
            calls.record(_name, layer)
            return _original(layer, *args, **kwargs)

        monkeypatch.setattr(module, name, counting)
    return calls


class KernelCalls(list):
    """Kernel names called (the list) and the layers they ran for (``layers``), safe across threads."""

    def __init__(self):
        super().__init__()
        self.layers: list = []
        self._lock = threading.Lock()

    def record(self, name: str, layer) -> None:
        with self._lock:
            self.append(name)
            self.layers.append(layer)

    def clear(self) -> None:
        with self._lock:
            super().clear()
            self.layers.clear()


def _layers_of(model) -> set[int]:
    return {id(m) for m in model.modules()}


def test_two_models_in_one_process_take_different_paths(counted_kernels):
    """One model built with the fast path, one without: each keeps its own, whatever the other does."""
    torch.manual_seed(0)
    quick = ssformer.SSformer(**tiny_model_kwargs(), fast_path=True).eval()
    exact = ssformer.SSformer(**tiny_model_kwargs(), fast_path=False).eval()
    exact.load_state_dict(quick.state_dict())
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        a = quick(x)
        b = exact(x)
        c = quick(x)
    quick_layers = _layers_of(quick)
    assert counted_kernels.count("all_mlp_decoder") == 2 and counted_kernels.count("attention") == 16
    assert all(id(layer) in quick_layers for layer in counted_kernels.layers)  # none ran for ``exact``
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_two_models_in_two_threads_take_different_paths(monkeypatch):
    """The switch is read from each model, not from process state a second thread could flip."""
    calls = _count_kernels(monkeypatch)
    torch.manual_seed(0)
    quick = ssformer.SSformer(**tiny_model_kwargs(), fast_path=True).eval()
    exact = ssformer.SSformer(**tiny_model_kwargs(), fast_path=False).eval()
    x = torch.randn(1, 3, 36, 36)
    barrier = threading.Barrier(2)
    errors = []

    def run(model) -> None:
        try:
            barrier.wait(timeout=60)
            with torch.no_grad():
                for _ in range(5):
                    model(x)
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(m,)) for m in (quick, exact)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    quick_layers = _layers_of(quick)
    assert calls.count("all_mlp_decoder") == 5
    assert all(id(layer) in quick_layers for layer in calls.layers)


def test_set_fast_path_is_the_default_for_models_built_after(counted_kernels):
    """``set_fast_path`` (and the environment variable) choose for models built later, as timm's
    ``set_fused_attn``; a model built before keeps its path."""
    before = ssformer.SSformer(**tiny_model_kwargs()).eval()
    fast.set_fast_path(False)
    try:
        assert not fast.use_fast_path()
        after = ssformer.SSformer(**tiny_model_kwargs()).eval()
    finally:
        fast.set_fast_path(True)
    overridden = ssformer.SSformer(**tiny_model_kwargs(), fast_path=False).eval()
    x = torch.randn(1, 3, 36, 36)
    with torch.no_grad():
        after(x)
        overridden(x)
        assert counted_kernels == []
        before(x)
        assert counted_kernels.count("all_mlp_decoder") == 1


def test_config_field_and_set_fast_path_method_choose(counted_kernels, tmp_path):
    """``SSformerConfig(fast_path=...)`` builds the model on that path; ``model.set_fast_path`` switches
    a built one; ``fast.fast_path(model, ...)`` for a block. The choice is not saved with the weights."""
    config = ssformer.SSformerConfig(**tiny_model_kwargs(), fast_path=False)
    model = ssformer.SSformer.from_config(config).eval()
    x = torch.randn(1, 3, 36, 36)
    with torch.no_grad():
        model(x)
        assert counted_kernels == []
        model.set_fast_path(True)
        model(x)
        assert counted_kernels.count("all_mlp_decoder") == 1
        with fast.fast_path(model, False):
            model(x)
        assert counted_kernels.count("all_mlp_decoder") == 1
        model(x)
        assert counted_kernels.count("all_mlp_decoder") == 2
    model.save_pretrained(tmp_path / "saved")
    assert "fast_path" not in (tmp_path / "saved" / "config.json").read_text()


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


@pytest.mark.parametrize("value,expected", [("false", False), ("true", True), ("null", None)])
def test_training_config_chooses_the_path(value, expected):
    """``model.fast_path`` in a training config reaches the model the trainer builds."""
    from ssformer.engine.config import load_config

    config = load_config(overrides=[f"model.fast_path={value}", "data.type=folder", "data.root=."])
    built = ssformer.SSformer(config.model.to_model_config(num_classes=3))
    assert built.config.fast_path is expected
    assert all(layer.fast_path is (fast.use_fast_path() if expected is None else expected)
               for layer in built.modules() if "fast_path" in vars(layer))
