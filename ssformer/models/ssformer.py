"""SSformer = Swin encoder + all-MLP decoder; logits come back at the input size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.models import fast
from ssformer.models.config import VARIANTS, SSformerConfig
from ssformer.models.decoder import AllMLPDecoder
from ssformer.models.pretrained import PretrainedModel
from ssformer.models.swin import SwinEncoder


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

    def __init__(self, config: SSformerConfig | None = None, **settings: Any):
        """``SSformer(config)``; ``SSformer(num_classes=19, ...)`` is short for
        ``SSformer(SSformerConfig(num_classes=19, ...))``."""
        super().__init__()
        if config is None:
            config = SSformerConfig(**settings)
        elif not isinstance(config, SSformerConfig) or settings:
            raise TypeError("SSformer takes an SSformerConfig or its fields as keywords, not both")
        self.config = replace(config)  # a copy, checked again: the model owns its config
        self.encoder = SwinEncoder(self.config)
        self.decoder = AllMLPDecoder(self.encoder.dims, self.config.num_classes, self.config.decoder_dim,
                                     self.config.dropout)
        self.fast_path = fast.use_fast_path()  # the final resize's (upsample_logits)
        self.init_weights()
        if self.config.fast_path is not None:
            self.set_fast_path(self.config.fast_path)

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
        return cls(config)


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
    return SSformer(SSformerConfig.variant(name, num_classes=num_classes, **overrides))
