"""The model's settings, each default and check written once: :class:`Architecture` is what the
network is made of, shared by the saved model's :class:`SSformerConfig` and a training recipe's
``model`` section (``ssformer.engine.config.ModelSettings``); the encoder and the decoder are built
from it whole. ``VARIANTS`` are the named sizes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from ssformer.errors import UserError
from ssformer.models.budget import Sizes, check_buildable
from ssformer.settings import BOOL, check_fields, int_at_least, list_of, number_in, optional, setting

VARIANTS: dict[str, dict[str, Any]] = {
    "ssformer_swin_t": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "ssformer_swin_s": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "ssformer_swin_b": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.3),
    "ssformer_swin_l": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), drop_path_rate=0.3),
}
_POSITIVE = int_at_least(1)


@dataclass
class Architecture:
    """The network's shape and regularisation; defaults are the official model (Swin-B, ADE20K).

    Checked on construction (``where`` prefixes the setting named in an error: ``model.`` in a
    training recipe), including whether a model this size could be built at all.
    """

    where: ClassVar[str] = ""

    num_classes: int | None = setting(150, _POSITIVE, "classes the decoder predicts")
    embed_dim: int = setting(128, _POSITIVE, "channels of the first Swin stage (C)")
    depths: Sequence[int] = setting((2, 2, 18, 2), list_of(_POSITIVE), "Swin blocks per stage")
    num_heads: Sequence[int] = setting((4, 8, 16, 32), list_of(_POSITIVE),
                                       "attention heads per stage (one per entry of depths)")
    window_size: int = setting(7, _POSITIVE, "attention window side, in tokens")
    mlp_ratio: float = setting(4.0, number_in(0, low_open=True), "hidden width of the Swin MLPs / channels")
    decoder_dim: int = setting(256, _POSITIVE, "channels of the all-MLP decoder")
    drop_path_rate: float = setting(0.3, number_in(0, 1), "stochastic depth, rising linearly to this over the blocks")
    dropout: float = setting(0.1, number_in(0, 1), "dropout before the classifier")
    in_channels: int = setting(3, _POSITIVE, "channels of the input images")
    # How to run, not what the model is: never saved with a model (SSformerConfig.to_dict).
    fast_path: bool | None = setting(None, optional(BOOL), "the fast CPU kernels (true) or the plain formulation "
                                     "(false; same numbers, slower); null: SSFORMER_FAST_PATH, default on")

    def __post_init__(self) -> None:
        check_fields(self, self.where)
        w = self.where
        if len(self.depths) != len(self.num_heads):
            raise UserError(f"{w}depths {list(self.depths)} and {w}num_heads {list(self.num_heads)} differ in length")
        for i, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2 ** i) % heads:
                raise UserError(f"{w}num_heads: stage {i} width {self.embed_dim * 2 ** i} ({w}embed_dim * 2^{i}) "
                                f"is not divisible by {heads} heads")
        check_buildable(self.sizes(), prefix=w)  # embed_dim=1e9 fails here, naming it, not in an allocation

    def sizes(self) -> Sizes:
        """The settings that decide the model's memory (:mod:`ssformer.models.budget`)."""
        values = {f.name: getattr(self, f.name) for f in fields(Sizes)}
        return Sizes(**{**values, "depths": tuple(self.depths), "num_heads": tuple(self.num_heads),
                        "num_classes": self.num_classes or 1})


@dataclass
class SSformerConfig(Architecture):
    """Everything needed to rebuild an :class:`~ssformer.models.ssformer.SSformer`: its architecture,
    class names and palette; ``config.json`` of a saved model."""

    class_names: list[str] | None = setting(None, None, "a name per class")
    palette: list[list[int]] | None = setting(None, None, "an RGB colour per class")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.depths, self.num_heads = tuple(self.depths), tuple(self.num_heads)
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise UserError(f"{len(self.class_names)} class names for {self.num_classes} classes")

    def to_dict(self) -> dict[str, Any]:
        """The settings saved with a model: its architecture, class names and palette (not ``fast_path``,
        a choice of the machine that runs it)."""
        return {k: v for k, v in asdict(self).items() if k not in RUNTIME_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SSformerConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"unknown SSformer config keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def variant(cls, name: str, **overrides: Any) -> SSformerConfig:
        """The config of a named size (``ssformer_swin_b``...), with ``overrides``."""
        if name not in VARIANTS:
            raise UserError(f"unknown model {name!r}; choose one of {sorted(VARIANTS)}")
        return cls(**{**VARIANTS[name], **overrides})


RUNTIME_FIELDS = ("fast_path",)
