"""How big an SSformer is: parameters, FLOPs as executed, and MACs as the official numbers count them.

Two conventions, because they answer different questions:

* ``flops``: what this implementation executes, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` on one forward pass (eval mode, batch 1):
  2 per multiply-accumulate of every matrix product, convolution and attention product;
  elementwise work is not counted. It depends on how the model is computed (for example, this
  implementation runs ``qkv`` on real tokens only and folds BatchNorm), so it is lower than the
  official model's work for the same weights.
* ``macs``: the convention of the official SSformer / mmseg numbers (SSformer-B, 150 classes, 512x512:
  91.01 G by the official code; docs/model.md), mmcv 1.7's
  ``get_model_complexity_info`` run on mmseg 0.24.1's ``SwinTransformer`` + ``SegformerHead``
  (it calls them "GFLOPs"). Its hooks count, per module call: convolutions (multiply-accumulates,
  plus one per output element when there is a bias), linear layers (input elements x output
  features, no bias term), LayerNorm / BatchNorm (2 per input element, affine) and ReLU (1 per
  element); the window-attention products ``q @ k^T`` and ``attn @ v`` (not modules), GELU,
  softmax, padding and the bilinear resizes are not counted. The official ``qkv`` and ``proj``
  run on the zero-padded windows, so they are counted on the padded map. Because it describes
  the official computation, it is computed from the configuration (:func:`official_macs`),
  not by hooking this implementation. ``attention_macs`` gives the uncounted attention products.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ssformer.data.transforms import MAX_IMAGE_SIDE
from ssformer.errors import UserError
from ssformer.models.ssformer import SSformer, SSformerConfig


@dataclass
class ModelSize:
    """Size of a model at one input size (batch 1). ``flops`` is None when not counted."""

    height: int
    width: int
    params: int
    encoder_params: int
    decoder_params: int
    macs: int
    attention_macs: int
    flops: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        return asdict(self)


def official_macs(config: SSformerConfig, height: int, width: int) -> tuple[int, int]:
    """(MACs in the official convention, window-attention MACs) for one ``height`` x ``width`` image.

    Mirrors the official forward pass (see the module docstring for what is counted): the image is
    padded to a multiple of 4; each block counts norm1 and norm2 on the real tokens, ``qkv`` and
    ``proj`` on the map padded to a multiple of the window, and the MLP on the real tokens; each
    stage output passes its LayerNorm; patch merging pads to even sizes and counts LayerNorm(4C)
    and Linear(4C, 2C); the decoder counts its 1x1 convolutions, BatchNorms and ReLUs at each
    stage's size and the fuse and classifier convolutions at 1/4 size.
    """
    if height < 1 or width < 1:
        raise UserError(f"input size must be positive, got {height}x{width}")
    c, ws, e, k = config.embed_dim, config.window_size, config.decoder_dim, config.num_classes
    h, w = math.ceil(height / 4), math.ceil(width / 4)
    patch_tokens = h * w
    macs = 16 * config.in_channels * c * patch_tokens + c * patch_tokens  # conv with bias
    macs += 2 * c * patch_tokens  # patch-embedding LayerNorm
    attention = 0
    stage_tokens = []
    for i, depth in enumerate(config.depths):
        d = c * 2 ** i
        hidden = int(d * config.mlp_ratio)
        tokens = h * w
        padded = math.ceil(h / ws) * ws * math.ceil(w / ws) * ws
        block = (2 * d * tokens  # norm1
                 + padded * d * 3 * d + padded * d * d  # qkv, proj on padded windows
                 + 2 * d * tokens  # norm2
                 + tokens * d * hidden + tokens * hidden * d)  # fc1, fc2
        macs += depth * block + 2 * d * tokens  # blocks + stage output norm
        attention += depth * 2 * padded * ws * ws * d  # q @ k^T and attn @ v
        stage_tokens.append((d, tokens))
        if i < len(config.depths) - 1:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
            merged = h * w
            macs += 2 * 4 * d * merged + merged * 4 * d * 2 * d  # LayerNorm(4C), Linear(4C, 2C)
    for d, tokens in stage_tokens:  # per-stage 1x1 conv (no bias) + BN + ReLU
        macs += tokens * d * e + 2 * e * tokens + e * tokens
    n = len(stage_tokens)
    macs += patch_tokens * n * e * e + 2 * e * patch_tokens + e * patch_tokens  # fuse
    macs += patch_tokens * e * k + k * patch_tokens  # classifier conv with bias
    return macs, attention


class _AllocateOnMeta(TorchFunctionMode):
    """Create the tensors that hold parameters and buffers on the meta device.

    ``torch.device("meta")`` cannot be used as a whole: the encoder reads the values of a
    ``torch.linspace`` (its drop-path rates) while it is built, so that one stays on the CPU.
    """

    _ALLOCATORS = {torch.empty, torch.zeros, torch.ones, torch.full, torch.arange, torch.rand, torch.randn}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = dict(kwargs or {})
        if func in self._ALLOCATORS and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def meta_model(config: SSformerConfig) -> SSformer:
    """An SSformer whose weights have shapes but no storage: no memory, no initialisation time."""
    with _AllocateOnMeta():
        model = SSformer.from_config(config)
    return model


def _zero_model(config: SSformerConfig) -> SSformer:
    """A CPU model with all-zero weights, for counting executed operations without the init cost."""
    model = meta_model(config).to_empty(device="cpu")
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            tensor.zero_()  # any value works for counting; zero keeps index buffers in range
    return model.eval()


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
    return sdpa_flop_count(query, key, value)


def _onednn_linear_flops(x, *args, out_shape, **kwargs) -> int:  # type: ignore[no-untyped-def]
    return 2 * x.numel() * out_shape[-1]  # (tokens x in) @ (in x out)


# Kernels FlopCounterMode's table lacks (torch 2.13): PyTorch's CPU fused attention (counted as SDPA;
# ssformer.models.fast.windows takes it on CPUs with AMX) and the oneDNN linear that
# ssformer.models.fast.linear uses in CPU inference.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
                   torch.ops.mkldnn._linear_pointwise: _onednn_linear_flops}


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs of ``module(*inputs)`` counted by FlopCounterMode (inference mode, run for real).

    Adds the kernels FlopCounterMode's table lacks: CPU fused attention (at the SDPA rate), oneDNN linear.
    """
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    with torch.inference_mode(), counter:
        module(*inputs)
    return counter.get_total_flops()


def model_flops(config: SSformerConfig, height: int, width: int) -> int:
    """FLOPs of one forward pass of this implementation (eval mode, batch 1, CPU).

    Runs the forward for real on zero weights, so it takes about as long as inference.
    """
    return count_flops(_zero_model(config), torch.zeros(1, config.in_channels, height, width))


def measure(model_or_config: SSformer | SSformerConfig, height: int = 512, width: int = 512,
            flops: bool = True) -> ModelSize:
    """Parameters (total, encoder, decoder), official-convention MACs and, if ``flops``, executed FLOPs.

    Everything is computed from the configuration (a model's own weights, device and dtype play no
    part), on a meta-device copy for the parameters and a zero-weight CPU copy for the FLOPs.
    """
    config = model_or_config.config if isinstance(model_or_config, SSformer) else model_or_config
    if flops and max(height, width) > MAX_IMAGE_SIDE:  # the FLOP count runs a forward pass at this size
        raise UserError(f"size {height}x{width}: counting FLOPs runs the model, which needs each side at most "
                        f"{MAX_IMAGE_SIDE}; --no-flops gives the other numbers at any size")
    shapes = meta_model(config)
    macs, attention = official_macs(config, height, width)
    return ModelSize(
        height=height, width=width,
        params=sum(p.numel() for p in shapes.parameters()),
        encoder_params=sum(p.numel() for p in shapes.encoder.parameters()),
        decoder_params=sum(p.numel() for p in shapes.decoder.parameters()),
        macs=macs, attention_macs=attention,
        flops=model_flops(config, height, width) if flops else None)


def format_size(size: ModelSize) -> str:
    """Human-readable summary, one quantity per line."""
    lines = [
        f"input: {size.height} x {size.width} (batch 1)",
        f"parameters: {size.params:,} (encoder {size.encoder_params:,}, decoder {size.decoder_params:,})",
        f"MACs, official convention (mmcv counter on the official model): {size.macs / 1e9:.2f} G",
        f"window-attention MACs (not in the official count): {size.attention_macs / 1e9:.2f} G",
    ]
    if size.flops is not None:
        lines.append(f"FLOPs executed by this implementation (FlopCounterMode): {size.flops / 1e9:.2f} G")
    return "\n".join(lines)
