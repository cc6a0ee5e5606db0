"""Exports of a small SSformer reproduce PyTorch: ONNX (onnxruntime), torch.export, TorchScript, compile."""

from __future__ import annotations

import copy
import time

import pytest
import torch

import ssformer
from ssformer.inference.export import ExportError, export_model
from tests.conftest import tiny_model_kwargs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ssformer.SSformer(**tiny_model_kwargs(num_classes=5)).eval()


@pytest.mark.slow
def test_onnx_export_matches_pytorch(model, device, tmp_path):
    """At 45x70 here; tests/cli exports at 40x60 (two sizes, neither a multiple of 32). A GPU model
    is traced from a CPU copy (ONNX files are device-neutral)."""
    size = (45, 70)
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra")
    result = export_model(copy.deepcopy(model).to(device), "onnx", size, tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").stat().st_size > 10_000
    assert [s for s, _ in result.checks] == [size]
    assert result.max_abs_diff < 1e-3


@pytest.mark.slow
def test_exported_program_round_trip(model, device, tmp_path):
    """``torch.export.export`` on the model (on ``device``: example inputs follow it), saved, loaded and run."""
    on_device = copy.deepcopy(model).to(device)
    result = export_model(on_device, "exported-program", (40, 56), tmp_path / "model.pt2")
    assert result.max_abs_diff < 1e-4
    loaded = torch.export.load(tmp_path / "model.pt2").module()
    x = torch.randn(1, 3, 40, 56)
    tol = 1e-4 if device.type == "cpu" else 5e-3  # the GPU's convolutions may use TF32
    with torch.no_grad():
        torch.testing.assert_close(loaded(x.to(device)).cpu(), model(x), rtol=tol, atol=tol)


def test_torch_export_export_default_mode(model):
    """``torch.export.export(model, args)`` as users call it (non-strict tracing)."""
    x = torch.randn(1, 3, 33, 47)
    program = torch.export.export(model, (x,))
    y = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(y), model(y), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_torchscript_export(model, tmp_path):
    result = export_model(model, "torchscript", (32, 48), tmp_path / "model.ts")
    assert result.max_abs_diff < 1e-4
    with pytest.raises(ExportError, match="fixed to the export size"):
        export_model(model, "torchscript", (32, 48), tmp_path / "dyn.ts", dynamic=True)


@pytest.fixture(scope="module")
def dynamic_onnx(model, tmp_path_factory):
    """One dynamic ONNX export at 64x96 shared by the tests below (export + checks take seconds)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra")
    path = tmp_path_factory.mktemp("dynamic") / "model.onnx"
    return export_model(model, "onnx", (64, 96), path, dynamic=True)


def test_dynamic_onnx_export_checks_other_sizes(dynamic_onnx):
    """export_model itself ran the file at the export size and at two sizes that are no multiple of 32."""
    assert [s for s, _ in dynamic_onnx.checks] == [(64, 96), (45, 70), (203, 317)]
    assert dynamic_onnx.max_abs_diff < 1e-3


@pytest.mark.parametrize("size", [(45, 70), (203, 317), (33, 129), (7, 9), (1, 1)])
def test_dynamic_onnx_runs_at_other_sizes(dynamic_onnx, model, size):
    """The 64x96 graph in onnxruntime vs PyTorch at sizes it was not traced at, odd ones, one with
    several windows per stage, and sizes smaller than one window and than one patch."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(dynamic_onnx.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(sum(size)))
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        expected = model(x)
    assert got.shape == (1, 5, *size)
    assert (got - expected).abs().max().item() < 1e-3


def test_dynamic_export_refusals(model, tmp_path):
    with pytest.raises(ExportError, match="onnx only"):
        export_model(model, "exported-program", (64, 96), tmp_path / "dyn.pt2", dynamic=True)
    with pytest.raises(ValueError, match="at least 32x32"):
        export_model(model, "onnx", (16, 96), tmp_path / "dyn.onnx", dynamic=True)
    assert not (tmp_path / "dyn.pt2").exists() and not (tmp_path / "dyn.onnx").exists()


@pytest.mark.slow
def test_torch_compile_matches_eager():
    """Inductor on a one-stage model (a plain and a shifted-window block + the decoder): the same
    code paths as the full model at a fraction of the compile time (about 30 s on 2 busy cores)."""
    torch.manual_seed(0)
    model = ssformer.SSformer(num_classes=3, embed_dim=8, depths=(2,), num_heads=(1,), window_size=7,
                              decoder_dim=8).eval()
    x = torch.randn(1, 3, 36, 52)
    start = time.perf_counter()
    compiled = torch.compile(model)
    with torch.no_grad():
        got = compiled(x)
        expected = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    print(f"torch.compile + first call: {time.perf_counter() - start:.1f} s")


def test_bad_export_arguments(model, tmp_path):
    with pytest.raises(ValueError, match="format"):
        export_model(model, "tflite", (32, 32), tmp_path / "m")
    with pytest.raises(ValueError, match="size"):
        export_model(model, "onnx", (0, 32), tmp_path / "m")


def test_example_inputs_follow_the_model_device():
    """A GPU model got CPU example inputs before; "meta" stands in for the GPU here."""
    from ssformer.inference.export import _example, model_device

    meta = ssformer.SSformer(**tiny_model_kwargs(num_classes=5)).to("meta")
    assert model_device(meta) == torch.device("meta")
    assert _example((8, 8), 0, model_device(meta)).device == torch.device("meta")
