"""Logits and encoder outputs equal the official mmseg 0.24.1 model (fixtures: tools/make_fixtures.py)."""

from __future__ import annotations

import pytest
import torch

import ssformer
from ssformer.models import fast
from tests.conftest import FIXTURES

CONFIGS = ["w7", "w5", "w4"]


def build_from_fixture(name: str) -> tuple[ssformer.SSformer, dict]:
    io = torch.load(FIXTURES / f"official_{name}_io.pt", weights_only=True)
    c = io["config"]
    model = ssformer.SSformer(num_classes=c["num_classes"], embed_dim=c["embed_dims"], depths=c["depths"],
                              num_heads=c["num_heads"], window_size=c["window_size"], decoder_dim=c["channels"])
    report = ssformer.load_weights(model, FIXTURES / f"official_{name}.pth", strict=True)
    assert report.format == "mmseg" and not report.missing and not report.unexpected
    return model.eval(), io


@pytest.mark.parametrize("name", CONFIGS)
def test_fixture_is_non_trivial(name):
    state = torch.load(FIXTURES / f"official_{name}.pth", weights_only=True)["state_dict"]
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    variances = [v for k, v in state.items() if k.endswith("running_var")]
    tables = [v for k, v in state.items() if k.endswith("relative_position_bias_table")]
    assert means and all(m.abs().max() > 0.1 for m in means)
    assert variances and all((v - 1).abs().max() > 0.1 for v in variances)
    assert tables and all(t.std() > 0.1 for t in tables)


@pytest.fixture
def exact_device(device, monkeypatch):
    """``device`` with full-precision float32 (no TF32 convolutions / matmuls on GPUs)."""
    if device.type == "cuda":
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    return device


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_official(name, exact_device):
    """On every device: the CPU's spelled-out attention and folded BatchNorm, the GPU's fused kernels."""
    model, io = build_from_fixture(name)
    model.to(exact_device)
    with torch.no_grad():
        for case in io["cases"]:
            logits = model(case["input"].to(exact_device)).cpu()
            assert logits.shape == case["logits"].shape
            torch.testing.assert_close(logits, case["logits"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", CONFIGS)
def test_encoder_outputs_match_official(name):
    model, io = build_from_fixture(name)
    with torch.no_grad():
        for case in io["cases"]:
            for ours, theirs in zip(model.encoder(case["input"]), case["features"]):
                torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_fixtures_cover_required_shapes():
    shapes = set()
    for name in CONFIGS:
        io = torch.load(FIXTURES / f"official_{name}_io.pt", weights_only=True)
        shapes |= {tuple(c["input"].shape) for c in io["cases"]}
    assert {b for b, _, _, _ in shapes} == {1, 2}
    assert (1, 3, 203, 317) in shapes  # odd size
    assert any(h % 32 == 0 and w % 32 == 0 for _, _, h, w in shapes)
    assert any(max(h, w) < 32 * 7 for _, _, h, w in shapes)  # last stage smaller than one window


@pytest.mark.parametrize("name", CONFIGS)
def test_plain_path_logits_match_official(name):
    """The plain formulation of the model files (``fast.fast_path(model, False)``) is exact on its own."""
    model, io = build_from_fixture(name)
    with torch.no_grad(), fast.fast_path(model, False):
        for case in io["cases"]:
            torch.testing.assert_close(model(case["input"]), case["logits"], rtol=0, atol=1e-4)
