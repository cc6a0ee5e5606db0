"""The oneDNN inference path of fast.linear equals F.linear (+ GELU) and is taken only when it may be."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssformer.models.fast.linear import linear, linear_gelu, uses_onednn

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                  reason="this torch build has no oneDNN (mkldnn)")


@needs_onednn
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("bias", [True, False])
def test_inference_path_equals_f_linear(dtype: torch.dtype, atol: float, bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(48, 80, bias=bias).to(dtype)
    x = torch.randn(3, 37, 48).to(dtype)
    with torch.no_grad():
        bf16_on_onednn = torch.ops.mkldnn._is_mkldnn_bf16_supported()
        assert uses_onednn(x, layer.weight, layer.bias) == (dtype == torch.float32 or bf16_on_onednn)
        expected = F.linear(x.float(), layer.weight.float(), None if layer.bias is None else layer.bias.float())
        torch.testing.assert_close(linear(layer, x).float(), expected, atol=atol, rtol=atol)
        torch.testing.assert_close(linear_gelu(layer, x).float(), F.gelu(expected), atol=atol, rtol=atol)
        assert linear(layer, x).dtype == dtype and linear(layer, x).shape == (3, 37, 80)
        strided = x.transpose(0, 1)  # not contiguous
        torch.testing.assert_close(linear(layer, strided).float(), expected.transpose(0, 1), atol=atol, rtol=atol)


@needs_onednn
@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # printed by torch.backends.mkldnn.flags on CPU builds
def test_fallbacks_when_onednn_must_not_be_used() -> None:
    layer = nn.Linear(8, 4)
    x = torch.randn(5, 8)
    assert not uses_onednn(x, layer.weight, layer.bias)  # grad mode and trainable weight: autograd needed
    with torch.no_grad():
        assert uses_onednn(x, layer.weight, layer.bias)
        assert not uses_onednn(x.double(), layer.weight.double(), layer.bias.double())
        assert not uses_onednn(x.bfloat16(), layer.weight, layer.bias)  # mixed dtypes: F.linear's error
        assert not uses_onednn(torch.randn(8), layer.weight, layer.bias)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not uses_onednn(x, layer.weight, layer.bias)
            assert linear(layer, x).dtype == torch.bfloat16  # autocast still picks the dtype
        with torch.backends.mkldnn.flags(enabled=False):
            assert not uses_onednn(x, layer.weight, layer.bias)


def test_gradients_flow_through_the_plain_path() -> None:
    torch.manual_seed(0)
    layer, gelu_layer = nn.Linear(6, 5), nn.Linear(6, 5)
    x = torch.randn(4, 6, requires_grad=True)
    (linear(layer, x).sum() + linear_gelu(gelu_layer, x).sum()).backward()
    assert layer.weight.grad is not None and gelu_layer.weight.grad is not None
    expected = torch.autograd.grad(F.linear(x, layer.weight, layer.bias).sum()
                                   + F.gelu(F.linear(x, gelu_layer.weight, gelu_layer.bias)).sum(), x)[0]
    torch.testing.assert_close(x.grad, expected)


def test_tensor_subclass_weights_go_through_f_linear():
    """Quantized weights (e.g. torchao's) are tensor subclasses that dispatch their own kernels via F.linear."""

    class Marked(torch.Tensor):
        pass

    layer, x = torch.nn.Linear(8, 3, bias=False), torch.randn(4, 8)
    expected = x @ layer.weight.detach().T
    layer.weight = torch.nn.Parameter(layer.weight.detach().as_subclass(Marked), requires_grad=False)
    with torch.inference_mode():
        assert not uses_onednn(x, layer.weight, None)
        got = linear(layer, x)
    assert isinstance(got, Marked)  # F.linear ran, so the subclass saw the call
    torch.testing.assert_close(got.as_subclass(torch.Tensor), expected)
