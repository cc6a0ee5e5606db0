"""Behaviour of the SSformer model: shapes, sizes, gradients, training mode, variants, persistence."""

from __future__ import annotations

import json

import pytest
import torch

import ssformer
from ssformer.checkpoints.artifact import CONFIG_NAME
from tests.conftest import tiny_model_kwargs


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (7, 7), (31, 33), (64, 64), (203, 317), (1024, 2048)])
def test_any_input_size(tiny_model, size, device):
    tiny_model.eval().to(device)
    x = torch.randn(1, 3, *size).to(device)
    with torch.no_grad():
        logits = tiny_model(x)
        features = tiny_model.encoder(x)
    assert logits.shape == (1, 4, *size)
    assert torch.isfinite(logits).all()
    h, w = -(-size[0] // 4), -(-size[1] // 4)
    for i, f in enumerate(features):
        assert f.shape == (1, 8 * 2 ** i, h, w)
        h, w = -(-h // 2), -(-w // 2)


def test_gradients_reach_every_parameter(tiny_model, device):
    tiny_model.train().to(device)
    x = torch.randn(2, 3, 45, 61).to(device)
    tiny_model(x).square().mean().backward()
    no_grad = [n for n, p in tiny_model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_training_mode_uses_drop_path_and_dropout(tiny_model):
    tiny_model.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    a = tiny_model(x)
    torch.manual_seed(2)
    b = tiny_model(x)
    assert not torch.allclose(a, b)  # stochastic depth / Dropout2d active
    tiny_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(x), tiny_model(x), rtol=0, atol=0)


def test_drop_path_rates_are_linear():
    model = ssformer.SSformer(**{**tiny_model_kwargs(), "drop_path_rate": 0.3})
    rates = [b.drop_path.p for s in model.encoder.stages for b in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert max(steps) - min(steps) < 1e-6


def test_gradient_checkpointing_gives_same_gradients(tiny_model, device):
    x = torch.randn(1, 3, 40, 40).to(device)
    tiny_model.eval().to(device)  # deterministic; checkpointing applies whenever grad is enabled
    tiny_model(x).sum().backward()
    plain = {n: p.grad.clone() for n, p in tiny_model.named_parameters()}
    tiny_model.zero_grad()
    tiny_model.set_gradient_checkpointing(True)
    tiny_model(x).sum().backward()
    for n, p in tiny_model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,params", [("ssformer_swin_b", 87_539_790)])
def test_official_parameter_count(name, params):
    model = ssformer.create_model(name, num_classes=150)
    assert sum(p.numel() for p in model.parameters()) == params
    assert sum(p.numel() for p in model.encoder.parameters()) == 86_745_016
    assert sum(p.numel() for p in model.decoder.parameters()) == 794_774


def test_variants_build_and_differ():
    sizes = {name: sum(p.numel() for p in ssformer.create_model(name, num_classes=19).parameters())
             for name in ssformer.list_models()}
    assert sizes["ssformer_swin_t"] < sizes["ssformer_swin_s"] < sizes["ssformer_swin_b"] < sizes["ssformer_swin_l"]
    with pytest.raises(ValueError, match="unknown model"):
        ssformer.create_model("ssformer_swin_x")


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        ssformer.SSformer(embed_dim=10, num_heads=(3, 6, 12, 24))
    with pytest.raises(ValueError, match="differ in length"):
        ssformer.SSformer(depths=(2, 2), num_heads=(1, 2, 4))
    with pytest.raises(ValueError, match="num_classes"):
        ssformer.SSformer(num_classes=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ssformer.SSformer(**tiny_model_kwargs())(torch.randn(3, 32, 32))


def test_save_and_load_pretrained(tiny_model, tmp_path):
    tiny_model.eval()
    tiny_model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG_NAME).read_text())
    assert config["num_classes"] == 4 and config["depths"] == [2, 2, 2, 2]
    again = ssformer.SSformer.from_pretrained(tmp_path / "m").eval()
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        torch.testing.assert_close(again(x), tiny_model(x), rtol=0, atol=0)
    assert not list((tmp_path / "m").glob("*.tmp"))


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        ssformer.SSformer.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ssformer.SSformer.from_pretrained(tmp_path)
    ssformer.SSformer(**tiny_model_kwargs(num_classes=3)).save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**config, "colour": 1}))
    with pytest.raises(ValueError, match="unknown SSformer config keys"):
        ssformer.SSformer.from_pretrained(tmp_path)


def test_builds_under_a_meta_default_device():
    """``with torch.device("meta")``: a weightless skeleton, as loaders that materialise weights later use."""
    with torch.device("meta"):
        model = ssformer.create_model("ssformer_swin_t", num_classes=19)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) > 27_000_000
