"""What a model configuration costs before it is built: a typo such as ``embed_dim=1000000000``
must be refused in one line naming the key, not found out by a failed 64 GB allocation.

The count is exact for this implementation's parameters (``tests/models/test_budget.py`` compares
it with built models); the buffers counted are the relative-position indices, the only ones that
grow fast (``window_size ** 4`` int64 per block).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ssformer.errors import UserError

# The official SSformer (Swin-B) sizes: what each key is compared with to find the one that makes
# a configuration too big.
OFFICIAL = {"embed_dim": 128, "depths": (2, 2, 18, 2), "window_size": 7, "decoder_dim": 256, "num_classes": 150,
            "mlp_ratio": 4.0}


# Swin blocks in all: the official models have 12 to 24; building a million (depths [1000000, 1, 1, 1])
# would take 15 GB and many minutes before failing or training at a crawl.
MAX_BLOCKS = 1024


@dataclass(frozen=True)
class Sizes:
    """The settings that decide how much memory a model takes."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    decoder_dim: int
    num_classes: int
    mlp_ratio: float = 4.0
    in_channels: int = 3


def parameter_count(s: Sizes) -> int:
    """Parameters of the SSformer these settings build (encoder, then the all-MLP decoder)."""
    c = s.embed_dim
    count = s.in_channels * c * 16 + c + 2 * c  # patch embedding: 4x4 convolution with bias, LayerNorm
    dims = [c * 2 ** i for i in range(len(s.depths))]
    for i, (depth, heads, d) in enumerate(zip(s.depths, s.num_heads, dims)):
        hidden = int(d * s.mlp_ratio)
        block = (2 * d + 3 * d * d + 3 * d + (2 * s.window_size - 1) ** 2 * heads + d * d + d  # norm1, attention
                 + 2 * d + d * hidden + hidden + hidden * d + d)  # norm2, MLP
        count += depth * block + 2 * d  # the blocks, the stage's output LayerNorm
        if i < len(s.depths) - 1:
            count += 2 * 4 * d + 4 * d * 2 * d  # patch merging: LayerNorm(4d), Linear(4d, 2d) without bias
    e = s.decoder_dim
    count += sum(d * e + 2 * e for d in dims)  # 1x1 convolutions without bias + BatchNorm
    count += len(dims) * e * e + 2 * e  # the fuse convolution + BatchNorm
    return count + e * s.num_classes + s.num_classes  # the classifier


def build_bytes(s: Sizes) -> int:
    """Bytes the built float32 model holds: parameters plus the relative-position index buffers."""
    return 4 * parameter_count(s) + 8 * s.window_size ** 4 * sum(s.depths)


def available_memory() -> int | None:
    """Bytes of memory the system can give now (Linux ``MemAvailable``; else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _culprit(s: Sizes) -> str:
    """The key whose official value would shrink the model the most."""
    def official(key: str) -> Sizes:
        value = OFFICIAL[key]
        if key == "depths":
            value = value if len(value) == len(s.depths) else (2,) * len(s.depths)
        return replace(s, **{key: value})

    return min(OFFICIAL, key=lambda key: build_bytes(official(key)))


def check_buildable(s: Sizes, prefix: str = "", limit: int | None = None) -> None:
    """Refuse, naming the key (``prefix`` + name), settings whose model would not fit in memory
    (``limit`` bytes; default: the memory available now)."""
    if sum(s.depths) > MAX_BLOCKS:
        raise UserError(f"{prefix}depths={list(s.depths)} asks for {sum(s.depths):,} Swin blocks; at most "
                        f"{MAX_BLOCKS} are allowed (the official model has {prefix}depths={_official_text('depths')})")
    limit = available_memory() if limit is None else limit
    needed = build_bytes(s)
    if limit is None or needed <= limit:
        return
    key = _culprit(s)
    value = list(getattr(s, key)) if key == "depths" else getattr(s, key)
    raise UserError(f"{prefix}{key}={value} would make a model of about {_gib(needed)} "
                    f"({parameter_count(s):,} parameters), more than the {_gib(limit)} of memory available; "
                    f"the official model has {prefix}{key}={_official_text(key)}")


def _official_text(key: str) -> str:
    value = OFFICIAL[key]
    return str(list(value)) if isinstance(value, Sequence) else str(value)


def _gib(count: int) -> str:
    return f"{count / 2 ** 30:,.1f} GiB" if count < 2 ** 50 else f"{count / 2 ** 50:,.0f} PiB"
