"""Swin Transformer encoder that returns its four stage outputs, for any input height and width.

Follows the official SSformer encoder (mmseg 0.24.1 ``SwinTransformer``): a 4x4 patch embedding on
an input padded bottom/right to a multiple of 4, stages of (shifted) window attention blocks, and
patch merging between stages. Each stage's output is taken before its patch merging and passes
through its own LayerNorm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ssformer.models import fast
from ssformer.models.attention import ShiftedWindowAttention
from ssformer.models.config import Architecture


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability ``p`` in training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution + LayerNorm; pads the image bottom/right first.

    Images may come in another float dtype than the weights, typically float32 images into a bf16
    model: the embedding then runs in float32 and hands tokens in the weights' dtype to the encoder.
    Rounding the images themselves to bf16 would cost about one 8-bit intensity step per pixel,
    which measurably changes predictions (docs/benchmarks.md, bf16 argmax agreement).
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int = 4):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        p = self.patch_size
        # rounded up with non-negative floor division: exact in eager, torch.compile and ONNX alike
        pad_b = (x.shape[2] + p - 1) // p * p - x.shape[2]
        pad_r = (x.shape[3] + p - 1) // p * p - x.shape[3]
        x = F.pad(x, (0, pad_r, 0, pad_b))  # by 0 too: one traced graph for every size
        x = x.contiguous(memory_format=torch.channels_last)  # channels-last out: tokens need no copy
        if x.dtype == self.proj.weight.dtype:
            x = self.proj(x)
            h, w = x.shape[2:]
            return self.norm(x.flatten(2).transpose(1, 2)), h, w
        weight, bias, norm = self.proj.weight, self.proj.bias, self.norm
        x = F.conv2d(x.float(), weight.float(), None if bias is None else bias.float(), stride=self.patch_size)
        h, w = x.shape[2:]
        tokens = F.layer_norm(x.flatten(2).transpose(1, 2), norm.normalized_shape, norm.weight.float(),
                              norm.bias.float(), norm.eps)
        return tokens.to(weight.dtype), h, w


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.fast_path = fast.use_fast_path()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.in_effect(self.fast_path):
            return fast.linear.mlp(self, x)
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x)); odd blocks of a stage use shifted windows."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float = 4.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, num_heads, window_size, shift)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> LayerNorm(4C) -> Linear(4C, 2C); odd sizes are padded bottom/right.

    The 4C channels are ordered channel-major, ``4 * c + k`` over the kernel positions
    (0,0), (0,1), (1,0), (1,1), the order of the official checkpoints.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.fast_path = fast.use_fast_path()

    def forward(self, x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, int, int]:
        if fast.in_effect(self.fast_path):
            return fast.merging.patch_merging(self, x, h, w)
        b, _, c = x.shape
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        x = F.pad(x.reshape(b, h, w, c), (0, 0, 0, 2 * w2 - w, 0, 2 * h2 - h))  # by 0 too: any size traced
        # (B, h2, kh, w2, kw, C) -> (B, h2, w2, C, kh, kw) -> channel-major 4C
        x = x.reshape(b, h2, 2, w2, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h2 * w2, 4 * c)
        return self.reduction(self.norm(x)), h2, w2


class SwinStage(nn.Module):
    """``depth`` Swin blocks, then (except in the last stage) patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 drop_paths: Sequence[float], downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, shift=window_size // 2 if j % 2 else 0,
                      mlp_ratio=mlp_ratio, drop_path=drop_paths[j])
            for j in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, h, w, use_reentrant=False)
            else:
                x = block(x, h, w)
        return x


class SwinEncoder(nn.Module):
    """Swin Transformer returning the four stage outputs as NCHW tensors (strides 4, 8, 16, 32), built
    from a model config (its ``embed_dim``, ``depths``, ``num_heads``, ``window_size``, ``mlp_ratio``,
    ``drop_path_rate`` and ``in_channels``; checked when the config was made)."""

    def __init__(self, config: Architecture, patch_size: int = 4):
        super().__init__()
        embed_dim, depths, num_heads = config.embed_dim, list(config.depths), list(config.num_heads)
        window_size, mlp_ratio = config.window_size, config.mlp_ratio
        self.dims = [embed_dim * 2 ** i for i in range(len(depths))]
        self.patch_embed = PatchEmbed(config.in_channels, embed_dim, patch_size)
        rates = torch.linspace(0, config.drop_path_rate, sum(depths), device="cpu").tolist()  # also under a meta default device
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.stages = nn.ModuleList(
            SwinStage(self.dims[i], depths[i], num_heads[i], window_size, mlp_ratio,
                      rates[starts[i]:starts[i] + depths[i]], downsample=i < len(depths) - 1)
            for i in range(len(depths)))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in self.dims)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        for stage in self.stages:
            stage.gradient_checkpointing = enabled

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x, h, w = self.patch_embed(images)
        features = []
        for stage, norm in zip(self.stages, self.norms):
            x = stage(x, h, w)
            # (B, H*W, C) viewed as NCHW without a copy: the feature is channels-last in memory.
            features.append(norm(x).view(x.shape[0], h, w, -1).permute(0, 3, 1, 2))
            if stage.downsample is not None:
                x, h, w = stage.downsample(x, h, w)
        return features
