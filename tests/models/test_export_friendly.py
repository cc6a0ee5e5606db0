"""The export-friendly window attention gives the fast path's numbers, and the model uses it while exporting."""

from __future__ import annotations

import pytest
import torch

from ssformer.models import export_friendly
from ssformer.models.attention import ShiftedWindowAttention, shift_window_mask


@pytest.mark.parametrize("window_size,shift", [(7, 0), (7, 3), (5, 2), (4, 2)])
def test_matches_fast_path(window_size, shift):
    """Sizes below, at and above one window, multiples and not, batch 2, a non-trivial bias table."""
    torch.manual_seed(0)
    attn = ShiftedWindowAttention(16, 2, window_size, shift).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table)
    for h, w in [(1, 1), (3, 5), (window_size, window_size), (9, 14), (12, 23), (21, 8)]:
        x = torch.randn(2, h * w, 16)
        with torch.no_grad():
            fast = attn(x, h, w)
            friendly = export_friendly.window_attention(
                x, h, w, qkv=attn.qkv, proj=attn.proj, bias=attn.relative_position_bias(), num_heads=2,
                window_size=window_size, shift=shift)
        torch.testing.assert_close(friendly, fast, rtol=1e-5, atol=1e-5)


def test_shift_mask_matches_slicing_construction():
    """The arange-comparison mask equals the one built by slicing the padded map into three bands."""
    for rows, cols, ws, shift in [(1, 1, 7, 3), (2, 3, 7, 3), (3, 2, 4, 2), (2, 2, 5, 2)]:
        expected = shift_window_mask(rows * ws, cols * ws, ws, shift)
        got = export_friendly.shift_mask(rows, cols, ws, shift, torch.device("cpu"), torch.float32)
        torch.testing.assert_close(got.squeeze(1), expected, rtol=0, atol=0)


def test_used_while_tracing_only(tiny_model):
    """Eager inference keeps the fast path; the tracer takes the export-friendly one."""
    calls = []
    original = export_friendly.window_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    export_friendly.window_attention = counting
    try:
        x = torch.randn(1, 3, 40, 52)
        with torch.no_grad():
            eager = tiny_model.eval()(x)
            assert not calls
            traced = torch.jit.trace(tiny_model, (x,), check_trace=False)
        assert len(calls) == sum(len(stage.blocks) for stage in tiny_model.encoder.stages)
    finally:
        export_friendly.window_attention = original
    with torch.no_grad():
        torch.testing.assert_close(traced(x), eager, rtol=1e-4, atol=1e-4)
