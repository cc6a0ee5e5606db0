"""The fast path equals the plain formulation: windowing by gather, fused attention, BN folding,
the distributed fuse conv, caches that follow weight changes, bf16 end to end, torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ssformer
from ssformer.models import attention
from ssformer.models.attention import ShiftedWindowAttention, shift_window_mask, window_partition
from ssformer.models.decoder import AllMLPDecoder, ConvBNReLU
from tests.conftest import FIXTURES, tiny_model_kwargs


def reference_window_attention(attn: ShiftedWindowAttention, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The textbook (official) order: pad, roll, partition, attention with bias + mask, reverse, roll, crop."""
    b, _, c = x.shape
    ws, s, heads = attn.window_size, attn.shift, attn.num_heads
    x = x.view(b, h, w, c)
    pad_b, pad_r = (-h) % ws, (-w) % ws
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    hp, wp = h + pad_b, w + pad_r
    if s:
        x = torch.roll(x, (-s, -s), (1, 2))
    windows = window_partition(x, ws)
    n = ws * ws
    q, k, v = attn.qkv(windows).view(-1, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    scores = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1) + attn.relative_position_bias()[None]
    if s:
        scores = scores.view(b, -1, heads, n, n) + shift_window_mask(hp, wp, ws, s).to(x.dtype)[None, :, None]
        scores = scores.view(-1, heads, n, n)
    out = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c))
    out = out.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    if s:
        out = torch.roll(out, (s, s), (1, 2))
    return out[:, :h, :w].reshape(b, h * w, c)


def randomised_attention(window: int, shift: int, dim: int = 12, heads: int = 3) -> ShiftedWindowAttention:
    torch.manual_seed(window * 10 + shift)
    attn = ShiftedWindowAttention(dim, heads, window, shift).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return attn


@pytest.mark.parametrize("window,shift", [(7, 0), (7, 3), (4, 2), (5, 2)])
@pytest.mark.parametrize("h,w", [(9, 13), (7, 7), (3, 2), (16, 12)])
def test_attention_and_gradients_equal_reference(window, shift, h, w):
    attn = randomised_attention(window, shift)
    x = torch.randn(2, h * w, 12, dtype=torch.float64, requires_grad=True)
    ours = attn(x, h, w)
    expected = reference_window_attention(attn, x, h, w)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, [x, *attn.parameters()], g)
    expected_grads = torch.autograd.grad(expected, [x, *attn.parameters()], g)
    for name, a, e in zip(["x"] + [n for n, _ in attn.named_parameters()], grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-9, msg=f"gradient of {name}")


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shift", [0, 3])
def test_inference_path_equals_reference(shift, fused, monkeypatch):
    """Both attention kernels (spelled out on CPU; the fused one, taken on GPUs, forced here)."""
    monkeypatch.setattr(attention, "uses_fused_kernel", lambda device: fused)
    attn = randomised_attention(7, shift).float()
    x = torch.randn(2, 10 * 15, 12)
    with torch.inference_mode(), torch.profiler.profile() as prof:
        ours = attn(x, 10, 15)
    torch.testing.assert_close(ours, reference_window_attention(attn, x, 10, 15), rtol=0, atol=1e-5)
    assert any("scaled_dot_product" in e.key for e in prof.key_averages()) == fused


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 49 * 49 * 4 * 2])  # 1 and 2 windows (3 heads, fp32) a chunk
@pytest.mark.parametrize("shift", [0, 3])
def test_chunked_cpu_attention_equals_reference(shift, chunk_bytes, monkeypatch):
    """Inference attends to the windows a chunk at a time: every chunk size gives the same result."""
    monkeypatch.setattr(attention, "SCORES_CHUNK_BYTES", chunk_bytes)
    attn = randomised_attention(7, shift).float()
    x = torch.randn(2, 10 * 15, 12)  # 2 samples x 2 x 3 windows: the last chunk of two is a single window
    with torch.inference_mode():
        ours = attn(x, 10, 15)
    torch.testing.assert_close(ours, reference_window_attention(attn, x, 10, 15), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shift", [0, 3])
def test_bf16_cpu_attention_widens_scores_to_float32(shift):
    """bf16 tokens on CPU: masks and softmax in float32 (as the official float32 bias does under
    autocast), closer to the exact result than the same steps in bf16."""
    assert attention.mask_dtype(torch.bfloat16, torch.device("cpu")) == torch.float32
    assert attention.mask_dtype(torch.float32, torch.device("cpu")) == torch.float32
    assert attention.mask_dtype(torch.bfloat16, torch.device("meta")) == torch.bfloat16  # fused kernel
    torch.manual_seed(shift)
    q, k, v = torch.randn(3, 2, 3, 49, 16).bfloat16().unbind(0)  # 2 windows x 3 heads
    bias = torch.randn(1, 3, 49, 49)
    mask = shift_window_mask(14, 7, 7, shift).unsqueeze(1) if shift else None

    def attend(tokens: torch.dtype, masks: torch.dtype) -> torch.Tensor:
        return attention.window_attention(q.to(tokens), k.to(tokens), v.to(tokens), bias.to(masks),
                                          None if mask is None else mask.to(masks))

    exact = attend(torch.float64, torch.float64)
    widened, narrow = attend(torch.bfloat16, torch.float32), attend(torch.bfloat16, torch.bfloat16)
    assert widened.dtype == narrow.dtype == torch.bfloat16
    widened_error = (widened.double() - exact).abs().max()
    assert widened_error < 0.015 and widened_error < 0.75 * (narrow.double() - exact).abs().max()


def test_eval_call_on_cpu_takes_spelled_out_attention_and_folded_batchnorm(tiny_model):
    tiny_model.eval()
    with torch.inference_mode(), torch.profiler.profile() as prof:
        tiny_model(torch.randn(1, 3, 64, 64))
    names = {e.key for e in prof.key_averages()}
    assert "aten::bmm" in names and not any("scaled_dot_product" in n for n in names), sorted(names)
    assert "aten::native_batch_norm" not in names


def test_attention_mask_cache_follows_weight_changes():
    attn = randomised_attention(7, 3).float().eval()
    x = torch.randn(1, 10 * 10, 12)
    with torch.no_grad():
        before = attn(x, 10, 10)
        attn.relative_position_bias_table.mul_(-1.0)  # in place: same storage, new version
        after = attn(x, 10, 10)
        expected = reference_window_attention(attn, x, 10, 10)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-5)


def test_model_cache_follows_load_state_dict(tiny_model):
    other = ssformer.SSformer(**tiny_model_kwargs())
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for name, buffer in other.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_()
    x = torch.randn(1, 3, 40, 56)
    tiny_model.eval()
    other.eval()
    with torch.inference_mode():
        tiny_model(x)  # fills the caches with the old weights
        tiny_model.load_state_dict(other.state_dict())
        torch.testing.assert_close(tiny_model(x), other(x), rtol=0, atol=0)


def test_model_converted_inside_inference_mode(tiny_model):
    """``.to()`` under inference mode makes inference-tensor parameters (no version counter): the
    folded BatchNorm and the attention bias must then be recomputed, never served stale."""
    other = ssformer.SSformer(**tiny_model_kwargs()).eval()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(1, 3, 40, 56)
    tiny_model.eval()
    with torch.inference_mode():
        converted = copy.deepcopy(tiny_model).to(torch.float64).to(torch.float32)
        assert converted.decoder.fuse.bn.weight.is_inference()
        torch.testing.assert_close(converted(x), tiny_model(x), rtol=0, atol=1e-6)
        converted.load_state_dict(other.state_dict())  # in place, no version bump
        torch.testing.assert_close(converted(x), other(x), rtol=0, atol=1e-6)


def test_batchnorm_folding_equals_conv_bn_relu():
    torch.manual_seed(0)
    block = ConvBNReLU(6, 5)
    with torch.no_grad():
        block.bn.weight.uniform_(0.5, 1.5)
        block.bn.bias.normal_()
        block.bn.running_mean.normal_()
        block.bn.running_var.uniform_(0.5, 2.0)
    block.eval()
    x = torch.randn(2, 6, 7, 9)
    expected = F.relu(F.batch_norm(F.conv2d(x, block.conv.weight), block.bn.running_mean, block.bn.running_var,
                                   block.bn.weight, block.bn.bias, False, 0.0, block.bn.eps))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
        block.bn.running_var.mul_(4.0)  # statistics changed in place: the folded cache must follow
        expected = F.relu(F.batch_norm(F.conv2d(x, block.conv.weight), block.bn.running_mean,
                                       block.bn.running_var, block.bn.weight, block.bn.bias, False, 0.0, block.bn.eps))
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_folded_batchnorm_passes_gradients_in_eval():
    """Fine-tuning with frozen BatchNorm statistics (eval mode) still trains the conv and BN affine."""
    torch.manual_seed(0)
    block = ConvBNReLU(4, 3).eval()
    x = torch.randn(1, 4, 5, 5)
    block(x).sum().backward()
    plain = copy.deepcopy(block)
    plain.zero_grad()
    plain.act(plain.bn(plain.conv(x))).sum().backward()
    for (name, p), q in zip(block.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_decoder_equals_concat_then_fuse():
    torch.manual_seed(0)
    decoder = AllMLPDecoder([4, 8, 16, 32], num_classes=5, dim=6)
    for m in decoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    decoder.eval()
    features = [torch.randn(2, c, 20 // 2 ** i + 1, 28 // 2 ** i + 1) for i, c in enumerate([4, 8, 16, 32])]

    def plain(block: ConvBNReLU, x: torch.Tensor) -> torch.Tensor:
        return block.act(block.bn(block.conv(x)))

    size = features[0].shape[2:]
    unified = [F.interpolate(plain(p, f), size=size, mode="bilinear", align_corners=False)
               for p, f in zip(decoder.projections, features)]
    expected = decoder.classifier(plain(decoder.fuse, torch.cat(unified, 1)))
    with torch.no_grad():
        torch.testing.assert_close(decoder(features), expected, rtol=1e-5, atol=1e-5)


def test_training_after_inference_mode(tiny_model):
    """Cached indices and masks made under inference_mode must not break a later training step."""
    x = torch.randn(2, 3, 48, 48)
    tiny_model.eval()
    with torch.inference_mode():
        tiny_model(x)
    tiny_model.train()
    tiny_model(x).square().mean().backward()
    assert all(p.grad is not None for p in tiny_model.parameters())


def fixture_model(name: str = "w7") -> tuple[ssformer.SSformer, dict]:
    io = torch.load(FIXTURES / f"official_{name}_io.pt", weights_only=True)
    c = io["config"]
    model = ssformer.SSformer(num_classes=c["num_classes"], embed_dim=c["embed_dims"], depths=c["depths"],
                              num_heads=c["num_heads"], window_size=c["window_size"], decoder_dim=c["channels"])
    ssformer.load_weights(model, FIXTURES / f"official_{name}.pth")
    return model.eval(), io


def test_bf16_end_to_end_agrees_with_official_fp32():
    """``model.to(torch.bfloat16)``, ``model(x.bfloat16())``: bf16 logits, argmax like the official fp32.

    Official-format fixture weights (random but non-trivial); the threshold is for this tiny model on
    random inputs, where many pixels are near ties. Real-image agreement of SSformer-B is measured by
    benchmarks/compare.py (docs/benchmarks.md).
    """
    model, io = fixture_model("w7")
    model.to(torch.bfloat16)
    agree, total = 0, 0
    with torch.inference_mode():
        for case in io["cases"]:
            logits = model(case["input"].bfloat16())
            assert logits.dtype == torch.bfloat16 and logits.shape == case["logits"].shape
            assert torch.isfinite(logits).all()
            assert (logits.float() - case["logits"]).abs().max() < 0.1 * case["logits"].abs().max()
            agree += (logits.float().argmax(1) == case["logits"].argmax(1)).sum().item()
            total += case["logits"][:, 0].numel()
    assert agree / total > 0.95


def test_compile_traces_without_graph_breaks(tiny_model):
    torch._dynamo.reset()  # independent of what earlier tests compiled (no automatic dynamic shapes)
    tiny_model.eval()
    x = torch.randn(1, 3, 45, 61)
    compiled = torch.compile(tiny_model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), tiny_model(x), rtol=1e-5, atol=1e-5)
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


def test_float32_images_into_a_bf16_model_are_embedded_in_float32(tiny_model):
    """A bf16 model takes float32 images: the patch embedding runs in float32, the rest in bf16."""
    model = tiny_model.eval().to(torch.bfloat16)
    x = torch.randn(1, 3, 30, 41)
    embed = model.encoder.patch_embed
    with torch.inference_mode():
        tokens, h, w = embed(x)
        y = F.conv2d(F.pad(x, (0, 3, 0, 2)), embed.proj.weight.float(), embed.proj.bias.float(), stride=4)
        expected = F.layer_norm(y.flatten(2).transpose(1, 2), (8,), embed.norm.weight.float(), embed.norm.bias.float())
        assert tokens.dtype == torch.bfloat16 and (h, w) == (8, 11)
        torch.testing.assert_close(tokens, expected.bfloat16(), rtol=0, atol=0)
        logits = model(x)
        assert logits.dtype == torch.bfloat16 and logits.shape == (1, 4, 30, 41)
        fp32_model_on_bf16_images = copy.deepcopy(tiny_model).float()(x.bfloat16())
        assert fp32_model_on_bf16_images.dtype == torch.float32
