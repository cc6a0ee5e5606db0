"""SSformer = Swin encoder + all-MLP decoder; logits come back at the input size."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.errors import UserError
from ssformer.models import fast
from ssformer.models.budget import Sizes, check_buildable
from ssformer.models.decoder import AllMLPDecoder
from ssformer.models.pretrained import PretrainedModel
from ssformer.models.swin import SwinEncoder


@dataclass
class SSformerConfig:
    """Everything needed to rebuild an :class:`SSformer`; defaults are the official model."""

    num_classes: int = 150
    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 7
    mlp_ratio: float = 4.0
    decoder_dim: int = 256
    drop_path_rate: float = 0.3
    dropout: float = 0.1
    in_channels: int = 3
    class_names: list[str] | None = field(default=None)
    palette: list[list[int]] | None = field(default=None)
    # How to run, not what the model is: never saved (:meth:`to_dict`). None: the process default
    # (ssformer.models.fast.use_fast_path) when the model is built.
    fast_path: bool | None = field(default=None)

    def __post_init__(self) -> None:
        for name in ("num_classes", "embed_dim", "window_size", "decoder_dim", "in_channels"):
            setattr(self, name, _positive_int(getattr(self, name), name))
        self.depths = _positive_ints(self.depths, "depths")
        self.num_heads = _positive_ints(self.num_heads, "num_heads")
        if not _is_number(self.mlp_ratio) or not 0 < self.mlp_ratio < math.inf:
            raise UserError(f"mlp_ratio must be a number > 0, got {self.mlp_ratio!r}")
        for name in ("drop_path_rate", "dropout"):
            if not _is_number(getattr(self, name)) or not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{name} must be a number in [0, 1], got {getattr(self, name)!r}")
        if len(self.depths) != len(self.num_heads):
            raise UserError(f"depths {self.depths} and num_heads {self.num_heads} differ in length")
        for i, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2 ** i) % heads:
                raise UserError(f"stage {i} width {self.embed_dim * 2 ** i} is not divisible by {heads} heads")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise UserError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def sizes(self) -> Sizes:
        """The settings that decide the model's memory (:mod:`ssformer.models.budget`)."""
        return Sizes(**{f.name: getattr(self, f.name) for f in fields(Sizes)})

    def to_dict(self) -> dict[str, Any]:
        """The settings saved with a model: its architecture, class names and palette (not ``fast_path``,
        a choice of the machine that runs it)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SSformerConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown SSformer config keys: {sorted(unknown)}")
        return cls(**data)


RUNTIME_FIELDS = ("fast_path",)
def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an int if it is a whole number >= 1 (a string such as "16" is refused)."""
    if not _is_number(value) or int(value) != value or value < 1:
        raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _positive_ints(values: Any, name: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise UserError(f"{name} must be a list of integers >= 1, got {values!r}")
    return tuple(_positive_int(v, f"{name} entry") for v in values)


VARIANTS: dict[str, dict[str, Any]] = {
    "ssformer_swin_t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "ssformer_swin_s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "ssformer_swin_b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.3),
    "ssformer_swin_l": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), drop_path_rate=0.3),
}


class SSformer(PretrainedModel):
    """Semantic segmentation model: ``forward(images) -> logits`` of shape (B, K, H, W).

    Beside the weights a model carries what makes it usable as it was trained: ``config`` (the
    architecture, class names and palette), ``preprocessing`` (test pipeline and label conventions;
    None when unknown) and ``recipe`` (the training config it came from, if any). ``save_pretrained``
    writes all three; ``from_pretrained`` (:class:`PretrainedModel`) reads them back from
    every file format.
    """

    config_class = SSformerConfig
    variants = VARIANTS

    def __init__(self, num_classes: int = 150, embed_dim: int = 128, depths: Sequence[int] = (2, 2, 18, 2),
                 num_heads: Sequence[int] = (4, 8, 16, 32), window_size: int = 7, decoder_dim: int = 256,
                 drop_path_rate: float = 0.3, dropout: float = 0.1, mlp_ratio: float = 4.0,
                 in_channels: int = 3, class_names: list[str] | None = None,
                 palette: list[list[int]] | None = None, *, fast_path: bool | None = None):
        super().__init__()
        self.config = SSformerConfig(
            num_classes=num_classes, embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(num_heads),
            window_size=window_size, mlp_ratio=mlp_ratio, decoder_dim=decoder_dim,
            drop_path_rate=drop_path_rate, dropout=dropout, in_channels=in_channels,
            class_names=class_names, palette=palette, fast_path=fast_path)
        check_buildable(self.config.sizes())  # a typo such as embed_dim=1e9 fails here, not in an allocation
        self.encoder = SwinEncoder(embed_dim, depths, num_heads, window_size, mlp_ratio, drop_path_rate,
                                   in_channels)
        self.decoder = AllMLPDecoder(self.encoder.dims, num_classes, decoder_dim, dropout)
        self.fast_path = fast.use_fast_path()  # the final resize's (upsample_logits)
        self.init_weights()
        if fast_path is not None:
            self.set_fast_path(fast_path)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def init_weights(self) -> None:
        """Truncated-normal linears and bias tables, unit LayerNorms, Kaiming convolutions."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d) and name.startswith("decoder"):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith("relative_position_bias_table"):
                nn.init.trunc_normal_(p, std=0.02)
        nn.init.normal_(self.decoder.classifier.weight, std=0.01)
        nn.init.zeros_(self.decoder.classifier.bias)

    def set_fast_path(self, enabled: bool) -> None:
        """Run this model's layers on the fast kernels (``True``) or the plain formulation (``False``),
        whatever other models in the process do (:mod:`ssformer.models.fast`)."""
        fast.switch(self, enabled)
        self.config.fast_path = bool(enabled)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute encoder blocks in the backward pass to save activation memory."""
        self.encoder.set_gradient_checkpointing(enabled)

    def forward_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits at 1/4 of the (padded) input size, before the final upsampling."""
        return self.decoder(self.encoder(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"expected images of shape (B, {self.config.in_channels}, H, W), "
                             f"got {tuple(images.shape)}")
        return upsample_logits(self.forward_logits(images), images.shape[2:], self.fast_path)

    @classmethod
    def from_config(cls, config: SSformerConfig) -> SSformer:
        return cls(**asdict(config))


def upsample_logits(logits: torch.Tensor, size: Sequence[int], fast_path: bool | None = None) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``, as the official model) of logits to ``size``; into huge
    pages when ``fast_path`` (None: the process default, :func:`ssformer.models.fast.use_fast_path`)."""
    if fast.in_effect(fast.use_fast_path() if fast_path is None else fast_path):
        return fast.hugepages.upsample_logits(logits, size)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def list_models() -> list[str]:
    return sorted(VARIANTS)


def create_model(name: str, num_classes: int = 150, **overrides: Any) -> SSformer:
    """A fresh model of a named variant (:func:`list_models`); ``overrides`` replace its settings.
    Weights go in with :func:`ssformer.load_weights`; a trained model comes from ``SSformer.from_pretrained``."""
    if name not in VARIANTS:
        raise UserError(f"unknown model {name!r}; choose one of {list_models()}")
    return SSformer(num_classes=num_classes, **{**VARIANTS[name], **overrides})
