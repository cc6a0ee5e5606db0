"""The fast path (ssformer.models.fast) equals the plain path of the model files, forward and backward.

Every comparison runs the same module twice: as is (fast path on, the default) and under
``fast.fast_path(module, False)`` (the plain formula in ssformer/models/). No formula is repeated here.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ssformer
from ssformer.models import fast
from ssformer.models.attention import ShiftedWindowAttention
from ssformer.models.decoder import AllMLPDecoder, ConvBNReLU
from ssformer.models.swin import Mlp, PatchMerging
from ssformer.models.window_grid import shift_window_mask
from tests.conftest import FIXTURES, tiny_model_kwargs


def plain(module: nn.Module, *args):
    """``module(*args)`` on the plain path."""
    with fast.fast_path(module, False):
        return module(*args)


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and BatchNorm statistic non-trivial."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return module


@pytest.fixture
def spelled_out_cpu_attention(monkeypatch):
    """The CPU kernel of CPUs without AMX (:func:`fast.windows.cpu_prefers_fused_kernel`), on any CPU."""
    monkeypatch.setattr(fast.windows, "cpu_prefers_fused_kernel", lambda: False)


def randomised_attention(window: int, shift: int, dim: int = 12, heads: int = 3) -> ShiftedWindowAttention:
    return randomised(ShiftedWindowAttention(dim, heads, window, shift), seed=window * 10 + shift)


def assert_same_forward_and_backward(module: nn.Module, inputs: list[torch.Tensor], *args, atol: float,
                                     out=lambda y: y) -> None:
    """Outputs and the gradients of every input and parameter agree between the two paths."""
    def run():
        y = out(module(*inputs, *args))
        torch.manual_seed(1)
        g = torch.randn_like(y)
        wrt = [t for t in [*inputs, *module.parameters()] if t.requires_grad]
        return y, torch.autograd.grad(y, wrt, g)

    torch.manual_seed(2)
    ours, grads = run()
    torch.manual_seed(2)
    with fast.fast_path(module, False):
        expected, expected_grads = run()
    torch.testing.assert_close(ours, expected, rtol=0, atol=atol)
    names = [f"input {i}" for i, t in enumerate(inputs) if t.requires_grad] + [n for n, _ in module.named_parameters()]
    for name, a, e in zip(names, grads, expected_grads):
        torch.testing.assert_close(a, e, rtol=0, atol=atol * 10, msg=f"gradient of {name}")


def test_switch_selects_the_path():
    attn = randomised_attention(7, 3)
    assert fast.use_fast_path() and attn.fast_path and fast.in_effect(attn.fast_path)
    with fast.fast_path(attn, False):
        assert not attn.fast_path and not fast.in_effect(attn.fast_path)
        with fast.fast_path(attn, True):
            assert attn.fast_path
        assert not attn.fast_path
    assert attn.fast_path
    fast.set_fast_path(False)
    try:
        assert not fast.use_fast_path()
        assert not randomised_attention(7, 3).fast_path and attn.fast_path  # the default of layers built later
    finally:
        fast.set_fast_path(True)


@pytest.mark.parametrize("window,shift", [(7, 0), (7, 3), (4, 2), (5, 2)])
@pytest.mark.parametrize("h,w", [(9, 13), (7, 7), (3, 2), (16, 12)])
def test_attention_and_gradients_equal_plain(window, shift, h, w):
    """Odd sizes, padded windows, maps smaller than one window, shifted blocks, batch 2 (float64)."""
    attn = randomised_attention(window, shift).double()
    x = torch.randn(2, h * w, 12, dtype=torch.float64, requires_grad=True)
    assert_same_forward_and_backward(attn, [x], h, w, atol=1e-10)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shift", [0, 3])
def test_inference_attention_equals_plain(shift, fused, monkeypatch):
    """Both attention kernels (spelled out on CPUs without AMX; the fused one, taken on GPUs and CPUs
    with AMX), each forced here, fp32."""
    monkeypatch.setattr(fast.windows, "uses_fused_kernel", lambda device: fused)
    attn = randomised_attention(7, shift)
    x = torch.randn(2, 10 * 15, 12)
    with torch.inference_mode(), torch.profiler.profile() as prof:
        ours = attn(x, 10, 15)
    with torch.inference_mode():
        torch.testing.assert_close(ours, plain(attn, x, 10, 15), rtol=0, atol=1e-5)
    assert any("scaled_dot_product" in e.key for e in prof.key_averages()) == fused


@pytest.mark.parametrize("chunk_bytes", [1, 3 * 49 * 49 * 4 * 2])  # 1 and 2 windows (3 heads, fp32) a chunk
@pytest.mark.parametrize("shift", [0, 3])
def test_chunked_cpu_attention_equals_plain(shift, chunk_bytes, monkeypatch, spelled_out_cpu_attention):
    """Inference attends to the windows a chunk at a time: every chunk size gives the same result."""
    monkeypatch.setattr(fast.windows, "SCORES_CHUNK_BYTES", chunk_bytes)
    attn = randomised_attention(7, shift)
    x = torch.randn(2, 10 * 15, 12)  # 2 samples x 2 x 3 windows: the last chunk of two is a single window
    with torch.inference_mode():
        torch.testing.assert_close(attn(x, 10, 15), plain(attn, x, 10, 15), rtol=0, atol=1e-5)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shift", [0, 3])
def test_bf16_attention_is_closer_to_exact_than_plain_bf16(shift, fused, monkeypatch):
    """bf16 on CPU, either CPU kernel: the fast path adds float32 masks to float32 scores (as the
    official float32 bias does under autocast); the plain path stays in bf16. Both near float64."""
    monkeypatch.setattr(fast.windows, "cpu_prefers_fused_kernel", lambda: fused)
    attn = randomised_attention(7, shift)
    x = torch.randn(2, 10 * 15, 12)
    with torch.inference_mode():
        exact = plain(copy.deepcopy(attn).double(), x.double(), 10, 15)
        attn.bfloat16()
        ours, narrow = attn(x.bfloat16(), 10, 15), plain(attn, x.bfloat16(), 10, 15)
    assert ours.dtype == narrow.dtype == torch.bfloat16
    scale = exact.abs().max()
    ours_error, narrow_error = ((t.double() - exact).abs().max() / scale for t in (ours, narrow))
    assert ours_error < 0.03 and narrow_error < 0.05 and ours_error <= narrow_error


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shift", [0, 3])
def test_bf16_cpu_attention_widens_scores_to_float32(shift, fused, monkeypatch):
    """The kernel itself, either CPU kernel: float32 masks beside bf16 q/k/v are closer to exact
    than bf16 masks."""
    monkeypatch.setattr(fast.windows, "cpu_prefers_fused_kernel", lambda: fused)
    windows = fast.windows
    assert windows.mask_dtype(torch.bfloat16, torch.device("cpu")) == torch.float32
    assert windows.mask_dtype(torch.float32, torch.device("cpu")) == torch.float32
    assert windows.mask_dtype(torch.bfloat16, torch.device("meta")) == torch.bfloat16  # other devices' kernels
    torch.manual_seed(shift)
    q, k, v = torch.randn(3, 2, 3, 49, 16).bfloat16().unbind(0)  # 2 windows x 3 heads
    bias = torch.randn(1, 3, 49, 49)
    mask = shift_window_mask(2, 1, 7, shift).unsqueeze(1) if shift else None

    def attend(tokens: torch.dtype, masks: torch.dtype) -> torch.Tensor:
        return windows.window_attention(q.to(tokens), k.to(tokens), v.to(tokens), bias.to(masks),
                                        None if mask is None else mask.to(masks))

    exact = attend(torch.float64, torch.float64)
    widened, narrow = attend(torch.bfloat16, torch.float32), attend(torch.bfloat16, torch.bfloat16)
    assert widened.dtype == narrow.dtype == torch.bfloat16
    widened_error, narrow_error = (widened.double() - exact).abs(), (narrow.double() - exact).abs()
    assert widened_error.max() < 0.015 and widened_error.mean() < 0.85 * narrow_error.mean()


def test_shift_mask_has_the_official_three_bands():
    """-100 exactly between tokens of different regions of the rolled map, 0 elsewhere (rows 0-6 |
    7-10 | 11-13 and columns 0-6 | 7-10 | 11-13 of a 14x14 map, window 7, shift 3)."""
    mask = shift_window_mask(2, 2, 7, 3)
    assert mask.shape == (4, 49, 49) and set(mask.unique().tolist()) == {-100.0, 0.0}
    assert (mask[0] == 0).all()  # top-left window: one region
    band = (torch.arange(7) >= 4).long()  # within a window of the second row/column: rows 7-10 | 11-13
    region_of_slot = {1: band.repeat(7), 2: band.repeat_interleave(7), 3: band.repeat_interleave(7) * 3 + band.repeat(7)}
    for window, region in region_of_slot.items():
        expected = torch.where(region[:, None] != region[None, :], -100.0, 0.0)
        torch.testing.assert_close(mask[window], expected, rtol=0, atol=0)


@pytest.mark.parametrize("amx", [False, True])
def test_cpu_attention_kernel_follows_amx(amx, monkeypatch):
    """The fused kernel on CPUs with AMX tiles, spelled out on the others; GPUs always fused."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    fast.windows.cpu_prefers_fused_kernel.cache_clear()
    try:
        assert fast.windows.uses_fused_kernel(torch.device("cpu")) == amx
        assert fast.windows.uses_fused_kernel(torch.device("cuda"))
    finally:
        fast.windows.cpu_prefers_fused_kernel.cache_clear()


@pytest.mark.parametrize("fused", [False, True])
def test_eval_call_on_cpu_takes_the_cpus_attention_kernel_and_folded_batchnorm(tiny_model, fused, monkeypatch):
    monkeypatch.setattr(fast.windows, "cpu_prefers_fused_kernel", lambda: fused)
    tiny_model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode(), torch.profiler.profile() as prof:
        logits = tiny_model(x)
    names = {e.key for e in prof.key_averages()}
    assert any("scaled_dot_product" in n for n in names) == fused, sorted(names)
    assert ("aten::bmm" in names) != fused
    assert "aten::native_batch_norm" not in names
    with torch.inference_mode():
        torch.testing.assert_close(logits, plain(tiny_model, x), rtol=0, atol=1e-4)


def test_attention_bias_cache_follows_weight_changes():
    attn = randomised_attention(7, 3).eval()
    x = torch.randn(1, 10 * 10, 12)
    with torch.no_grad():
        before = attn(x, 10, 10)
        attn.relative_position_bias_table.mul_(-1.0)  # in place: same storage, new version
        after = attn(x, 10, 10)
        expected = plain(attn, x, 10, 10)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-5)


def test_model_cache_follows_load_state_dict(tiny_model):
    other = randomised(ssformer.SSformer(**tiny_model_kwargs()), seed=3)
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
    other = randomised(ssformer.SSformer(**tiny_model_kwargs()), seed=4).eval()
    x = torch.randn(1, 3, 40, 56)
    tiny_model.eval()
    with torch.inference_mode():
        converted = copy.deepcopy(tiny_model).to(torch.float64).to(torch.float32)
        assert converted.decoder.fuse.bn.weight.is_inference()
        torch.testing.assert_close(converted(x), tiny_model(x), rtol=0, atol=1e-6)
        converted.load_state_dict(other.state_dict())  # in place, no version bump
        torch.testing.assert_close(converted(x), other(x), rtol=0, atol=1e-6)


def test_folded_batchnorm_equals_plain_and_follows_statistics():
    block = randomised(ConvBNReLU(6, 5)).eval()
    x = torch.randn(2, 6, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(block(x), plain(block, x), rtol=1e-5, atol=1e-5)
        block.bn.running_var.mul_(4.0)  # statistics changed in place: the folded cache must follow
        torch.testing.assert_close(block(x), plain(block, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_conv_bn_relu_gradients_equal_plain(train):
    """Eval: folded BatchNorm (fine-tuning with frozen statistics still trains conv and BN affine)."""
    block = randomised(ConvBNReLU(4, 3)).double().train(train)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert_same_forward_and_backward(block, [x], atol=1e-10)


class ListInput(nn.Module):
    """``module(list(inputs))``: the decoder takes its features as one list."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.module(list(inputs))


@pytest.mark.parametrize("train", [False, True])
def test_decoder_equals_plain(train):
    """Fuse-before-resize (and in eval folded BatchNorm) against concat-then-fuse; dropout in training."""
    decoder = randomised(AllMLPDecoder([4, 8, 16, 32], num_classes=5, dim=6, dropout=0.3)).double().train(train)
    features = [torch.randn(2, c, 20 // 2 ** i + 1, 28 // 2 ** i + 1, dtype=torch.float64, requires_grad=True)
                for i, c in enumerate([4, 8, 16, 32])]
    assert_same_forward_and_backward(ListInput(decoder), features, atol=1e-9)
    with torch.inference_mode():
        decoder.float().eval()
        features = [f.detach().float() for f in features]
        torch.testing.assert_close(decoder(features), plain(decoder, features), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h,w", [(6, 8), (7, 9), (1, 1), (5, 2)])
def test_patch_merging_equals_plain(h, w):
    merge = randomised(PatchMerging(6)).double()
    x = torch.randn(2, h * w, 6, dtype=torch.float64, requires_grad=True)
    assert_same_forward_and_backward(merge, [x], h, w, atol=1e-10, out=lambda y: y[0])
    assert merge(x, h, w)[1:] == plain(merge, x, h, w)[1:] == ((h + 1) // 2, (w + 1) // 2)


def test_mlp_equals_plain():
    """The oneDNN linears with fused GELU in inference; F.linear when gradients are needed."""
    mlp = randomised(Mlp(12, 48))
    x = torch.randn(2, 37, 12, requires_grad=True)
    assert_same_forward_and_backward(mlp, [x], atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(mlp(x), plain(mlp, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(45, 61), (64, 64)])
def test_model_inference_equals_plain(tiny_model, size):
    model = randomised(tiny_model).eval()
    x = torch.randn(2, 3, *size)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), plain(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("train", [False, True])
def test_model_gradients_equal_plain(tiny_model, train):
    """The whole model in float64, in training (drop path, dropout) and eval mode, batch 2, odd size."""
    model = randomised(tiny_model).double().train(train)
    x = torch.randn(2, 3, 37, 51, dtype=torch.float64, requires_grad=True)
    assert_same_forward_and_backward(model, [x], atol=1e-9)


def test_bf16_model_is_close_to_plain_fp32(tiny_model):
    model = randomised(tiny_model).eval()
    x = torch.randn(1, 3, 45, 61)
    with torch.inference_mode():
        exact = plain(model, x)
        model.bfloat16()
        ours, narrow = model(x.bfloat16()), plain(model, x.bfloat16())
    assert ours.dtype == narrow.dtype == torch.bfloat16
    scale = exact.abs().max()
    assert (ours.float() - exact).abs().max() < 0.05 * scale
    assert (narrow.float() - exact).abs().max() < 0.05 * scale


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
