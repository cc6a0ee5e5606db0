"""Key maps from every supported checkpoint format onto this project's names: state dict in, state dict out.

Formats are recognised by their keys, never by file name:

* this project's own (``encoder.*`` / ``decoder.*``), from ``save_pretrained`` or ``convert``;
* official SSformer / mmseg checkpoints (``backbone.*`` + ``decode_head.*``) and mmseg-converted
  Swin backbones (bare ``stages.*`` or with a ``backbone.`` prefix only);
* Microsoft Swin ImageNet checkpoints (``layers.{i}.blocks.{j}.attn.qkv``), and timm < 0.9, which
  used the same keys;
* timm >= 0.9 ``SwinTransformer`` state dicts (patch merging at the start of the next stage,
  ``head.fc``), also from ``features_only`` models (``layers_{i}.``);
* Hugging Face ``SwinModel`` / ``SwinBackbone`` state dicts, with the Hub's key names
  (``attention.self.query``) or those of transformers 5 (``attention.q_proj``), optionally
  prefixed ``swin.`` (image classification) or ``backbone.`` (UperNet).

Classifier heads and the final norm of ImageNet classifiers are ignored; encoder-only formats
have no decoder and formats without per-stage output norms no ``encoder.norms`` (the
:class:`Mapped` flags say so). Nothing here knows the model class: it maps names and shapes only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ssformer.checkpoints.io import CheckpointError, StateDict


@dataclass
class Mapped:
    """A checkpoint in this project's naming, plus what its format cannot hold or did not use."""

    state: StateDict
    unmapped: list[str] = field(default_factory=list)  # keys the format should not contain: errors
    ignored: list[str] = field(default_factory=list)  # heads and final norms of other tasks
    has_decoder: bool = True
    has_stage_norms: bool = True


_BUFFERS = re.compile(r"(relative_position_index|attn_mask)$")
_MMSEG_BACKBONE_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.", r"stages.\1.blocks.\2.attn."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.", r"stages.\1.blocks.\2.mlp.fc1."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.", r"stages.\1.blocks.\2.mlp.fc2."),
    (r"^norm(\d)\.", r"norms.\1."),
]
_MMSEG_HEAD_RULES: list[tuple[str, str]] = [
    (r"^convs\.(\d+)\.", r"projections.\1."),
    (r"^fusion_conv\.", "fuse."),
    (r"^conv_seg\.", "classifier."),
]
# Microsoft and timm Swin classifiers name everything alike except where patch merging sits.
_SWIN_CLASSIFIER_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.proj\.", "patch_embed.proj."),
    (r"^patch_embed\.norm\.", "patch_embed.norm."),
    (r"^layers\.(\d+)\.blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|attn\.relative_position_bias_table"
     r"|mlp\.fc1|mlp\.fc2)(\.|$)", r"stages.\1.blocks.\2.\3\4"),
]
_SWIN_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.(norm|reduction)\.(weight|bias)$")
_TIMM_FEATURES_LAYER = re.compile(r"^layers_(\d+)\.")  # timm features_only flattens ``layers.{i}``
_SWIN_V2 = re.compile(r"(logit_scale|cpb_mlp\.|continuous_position_bias_mlp\.)")
# Hugging Face block keys: the Hub's names and those of transformers >= 5 map to the same place.
_HF_BLOCK_RULES: list[tuple[str, str]] = [
    (r"^layernorm_before\.", "norm1."),
    (r"^layernorm_after\.", "norm2."),
    (r"^attention\.(self\.|relative_position_bias\.)relative_position_bias_table$",
     "attn.relative_position_bias_table"),
    (r"^attention\.(output\.dense|o_proj)\.", "attn.proj."),
    (r"^(intermediate\.dense|mlp\.fc1)\.", "mlp.fc1."),
    (r"^(output\.dense|mlp\.fc2)\.", "mlp.fc2."),
]
_HF_QKV = re.compile(r"^attention\.(?:self\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)$")


def _apply_rules(key: str, rules: list[tuple[str, str]]) -> tuple[str, bool]:
    for pattern, replacement in rules:
        new, n = re.subn(pattern, replacement, key)
        if n:
            return new, True
    return key, False


def merge_permutation(dim: int) -> torch.Tensor:
    """Index that reorders Microsoft's patch-merging channels into ours.

    Microsoft (and Hugging Face) concatenate the 2x2 neighbourhood position-major,
    ``[x(0,0), x(1,0), x(0,1), x(1,1)]`` with (row, col) offsets, so channel ``c`` of offset
    (r, s) sits at ``(r + 2 s) * dim + c``. timm >= 0.9 gathers by reshaping to
    (row, col) pairs and permuting them to (col, row, C) before flattening, which is the same
    order (its checkpoint filter moves Microsoft's merge tensors to the next stage unchanged).
    Ours is channel-major, ``4 c + 2 r + s``. ``ours = theirs[..., merge_permutation(dim)]``.
    """
    c = torch.arange(dim).view(dim, 1, 1)
    r = torch.arange(2).view(1, 2, 1)
    s = torch.arange(2).view(1, 1, 2)
    return ((r + 2 * s) * dim + c).reshape(-1)


def _permute_merge(value: torch.Tensor) -> torch.Tensor:
    """Reorder a position-major patch-merging tensor (``reduction.weight`` columns, ``norm`` entries)."""
    perm = merge_permutation(value.shape[-1] // 4)
    return value[..., perm].contiguous()


def from_ssformer(sd: StateDict) -> Mapped:
    return Mapped({k: v for k, v in sd.items() if not _BUFFERS.search(k)},
                  has_decoder=any(k.startswith("decoder.") for k in sd))


def from_mmseg(sd: StateDict) -> Mapped:
    """Official SSformer / mmseg keys (``backbone.*``, ``decode_head.*`` or a bare backbone)."""
    out = Mapped({})
    for key, value in sd.items():
        if _BUFFERS.search(key):
            continue
        if key.startswith("decode_head."):
            new, _ = _apply_rules(key[len("decode_head."):], _MMSEG_HEAD_RULES)
            out.state["decoder." + new] = value
        elif key.startswith("auxiliary_head.") or re.match(r"^(backbone\.)?(norm|head)\.", key):
            out.ignored.append(key)  # swin2mmseg keeps the ImageNet classifier's final norm
        else:
            new, _ = _apply_rules(key.removeprefix("backbone."), _MMSEG_BACKBONE_RULES)
            out.state["encoder." + new] = value
    out.has_decoder = any(k.startswith("decoder.") for k in out.state)
    out.has_stage_norms = any(k.startswith("encoder.norms.") for k in out.state)
    return out


def _from_swin_classifier(sd: StateDict, merge_offset: int) -> Mapped:
    """Microsoft / timm Swin (ImageNet classifier) keys; the head and final norm are ignored.

    ``layers.{i}.downsample`` merges the output of stage ``i - merge_offset``: 0 for Microsoft
    (merging ends a stage), 1 for timm >= 0.9 (merging starts the next one). timm's
    ``features_only`` names (``layers_{i}.``) are read as ``layers.{i}.``.
    """
    out = Mapped({}, has_decoder=False, has_stage_norms=False)
    for key, value in sd.items():
        if _BUFFERS.search(key):
            continue
        if key.startswith(("head.", "norm.")):
            out.ignored.append(key)
            continue
        name = _TIMM_FEATURES_LAYER.sub(r"layers.\1.", key)
        down = _SWIN_DOWNSAMPLE.match(name)
        if down and int(down[1]) >= merge_offset:
            stage = int(down[1]) - merge_offset
            out.state[f"encoder.stages.{stage}.downsample.{down[2]}.{down[3]}"] = _permute_merge(value)
            continue
        new, ok = _apply_rules(name, _SWIN_CLASSIFIER_RULES)
        if ok:
            out.state["encoder." + new] = value
        else:
            out.unmapped.append(key)
    return out


def from_microsoft(sd: StateDict) -> Mapped:
    """Microsoft Swin keys (and timm < 0.9's): ``layers.{i}.downsample`` ends stage ``i``."""
    return _from_swin_classifier(sd, merge_offset=0)


def from_timm(sd: StateDict) -> Mapped:
    """timm >= 0.9 Swin keys: ``layers.{i}.downsample`` starts stage ``i`` (merges stage ``i - 1``)."""
    return _from_swin_classifier(sd, merge_offset=1)


def _strip_hf_prefix(key: str) -> str:
    for prefix in ("backbone.", "swin."):
        key = key.removeprefix(prefix)
    return key


def from_huggingface(sd: StateDict) -> Mapped:
    """Hugging Face ``SwinModel`` / ``SwinBackbone`` keys; separate q/k/v are concatenated."""
    out = Mapped({}, has_decoder=False)
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}  # (block prefix, weight|bias) -> {q,k,v}
    qkv_sources: dict[tuple[str, str], list[str]] = {}
    for key, value in sd.items():
        if _BUFFERS.search(key):
            continue
        name = _strip_hf_prefix(key)
        block = re.match(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.*)$", name)
        if block:
            prefix = f"encoder.stages.{block[1]}.blocks.{block[2]}."
            rest = block[3]
            part = _HF_QKV.match(rest)
            if part:
                which = (part[1] or part[2])[0]  # q / k / v
                qkv.setdefault((prefix, part[3]), {})[which] = value
                qkv_sources.setdefault((prefix, part[3]), []).append(key)
                continue
            new, ok = _apply_rules(rest, _HF_BLOCK_RULES)
            if ok:
                out.state[prefix + new] = value
            else:
                out.unmapped.append(key)
            continue
        down = re.match(r"^encoder\.layers\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)$", name)
        stage_norm = re.match(r"^hidden_states_norms\.stage(\d+)\.(weight|bias)$", name)
        if down:
            out.state[f"encoder.stages.{down[1]}.downsample.{down[2]}.{down[3]}"] = _permute_merge(value)
        elif stage_norm:
            out.state[f"encoder.norms.{int(stage_norm[1]) - 1}.{stage_norm[2]}"] = value
        elif name.startswith("embeddings.patch_embeddings.projection."):
            out.state["encoder.patch_embed.proj." + name.rsplit(".", 1)[1]] = value
        elif name.startswith("embeddings.norm."):
            out.state["encoder.patch_embed.norm." + name.rsplit(".", 1)[1]] = value
        elif name.startswith(("embeddings.", "encoder.")):
            out.unmapped.append(key)  # e.g. absolute position embeddings, which this model has not
        else:
            out.ignored.append(key)  # final layernorm, classifier, UperNet heads
    for (prefix, kind), parts in qkv.items():
        if set(parts) == {"q", "k", "v"}:
            out.state[f"{prefix}attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        else:
            out.unmapped.extend(qkv_sources[(prefix, kind)])
    out.has_stage_norms = any(k.startswith("encoder.norms.") for k in out.state)
    return out


def _is_timm(keys: list[str]) -> bool:
    """timm >= 0.9: a ``head.fc`` classifier, ``features_only`` names, or patch merging never in stage 0."""
    if "head.fc.weight" in keys or any(_TIMM_FEATURES_LAYER.match(k) for k in keys):
        return True
    merging = {int(m[1]) for m in map(_SWIN_DOWNSAMPLE.match, keys) if m}
    return bool(merging) and 0 not in merging


def detect_format(sd: Mapping[str, torch.Tensor]) -> str:
    """Name the checkpoint format from its keys."""
    keys = list(sd)
    v2 = next((k for k in keys if _SWIN_V2.search(k)), None)
    if v2 is not None:
        raise CheckpointError(f"Swin Transformer V2 checkpoints are not supported (this model is Swin V1); "
                              f"found {v2}")
    if any(_strip_hf_prefix(k).startswith("embeddings.patch_embeddings.") for k in keys):
        return "huggingface"
    if any(k.startswith(("encoder.patch_embed.", "encoder.stages.", "decoder.")) for k in keys):
        return "ssformer"
    if any(k.startswith("decode_head.") for k in keys):
        return "mmseg"
    if any(re.match(r"^layers[._]\d+\.blocks\.", k) for k in keys) or "patch_embed.proj.weight" in sd:
        return "timm" if _is_timm(keys) else "microsoft"
    if any(k.removeprefix("backbone.").startswith(("stages.", "patch_embed.projection.")) for k in keys):
        return "mmseg-backbone"
    raise CheckpointError("unrecognised checkpoint format (not SSformer, mmseg, Microsoft, timm or Hugging Face "
                          "Swin); first keys: " + ", ".join(keys[:5]))


CONVERTERS: dict[str, Callable[[StateDict], Mapped]] = {
    "ssformer": from_ssformer,
    "mmseg": from_mmseg,
    "mmseg-backbone": from_mmseg,
    "microsoft": from_microsoft,
    "timm": from_timm,
    "huggingface": from_huggingface,
}


def to_ssformer_state_dict(sd: StateDict) -> tuple[str, Mapped]:
    """Detect the format of ``sd`` and return it with keys in this project's naming."""
    fmt = detect_format(sd)
    return fmt, CONVERTERS[fmt](sd)


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """Model settings read off the shapes of a state dict in this project's naming.

    Returns ``embed_dim``, ``depths``, ``num_heads`` (from the bias tables' columns),
    ``window_size`` (from their rows), ``mlp_ratio``, ``in_channels`` and, when the decoder is
    present, ``num_classes`` and ``decoder_dim``.
    """
    try:
        proj = state["encoder.patch_embed.proj.weight"]
    except KeyError:
        raise CheckpointError("cannot infer the model: no patch embedding (encoder.patch_embed.proj.weight)") from None
    if proj.shape[2:] != (4, 4):
        raise CheckpointError(f"patch size {tuple(proj.shape[2:])} is not supported (4x4 only)")
    blocks: dict[int, set[int]] = {}
    for key in state:
        m = re.match(r"^encoder\.stages\.(\d+)\.blocks\.(\d+)\.", key)
        if m:
            blocks.setdefault(int(m[1]), set()).add(int(m[2]))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise CheckpointError(f"cannot infer the model: stages found {sorted(blocks)}")
    depths = tuple(max(blocks[i]) + 1 for i in range(len(blocks)))
    try:
        tables = [state[f"encoder.stages.{i}.blocks.0.attn.relative_position_bias_table"]
                  for i in range(len(depths))]
        hidden = state["encoder.stages.0.blocks.0.mlp.fc1.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"cannot infer the model: {e.args[0]} is absent") from None
    side = math.isqrt(tables[0].shape[0])
    if side * side != tables[0].shape[0] or side % 2 == 0:
        raise CheckpointError(f"relative position table with {tables[0].shape[0]} rows is not (2w-1)^2")
    embed_dim = proj.shape[0]
    config: dict[str, object] = dict(
        embed_dim=embed_dim, depths=depths, num_heads=tuple(t.shape[1] for t in tables),
        window_size=(side + 1) // 2, in_channels=proj.shape[1],
        mlp_ratio=hidden / embed_dim)
    if "decoder.classifier.weight" in state:
        classifier = state["decoder.classifier.weight"]
        config.update(num_classes=classifier.shape[0], decoder_dim=classifier.shape[1])
    return config


# --- relative position tables -------------------------------------------------------------------
def resize_bias_table(table: torch.Tensor, window_size: int) -> torch.Tensor:
    """Bicubically resample a ((2w'-1)^2, heads) relative position table to window ``window_size``."""
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
        raise CheckpointError(f"relative position table of {table.shape[0]} rows is not square")
    new_side = 2 * window_size - 1
    if side == new_side:
        return table
    heads = table.shape[1]
    grid = table.float().T.reshape(1, heads, side, side)
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    return grid.reshape(heads, new_side * new_side).T.contiguous().to(table.dtype)


def is_resizable_bias_table(key: str, want: torch.Size, got: torch.Size) -> bool:
    if not key.endswith("relative_position_bias_table") or len(want) != 2 or len(got) != 2:
        return False
    return want[1] == got[1] and math.isqrt(got[0]) ** 2 == got[0] and math.isqrt(want[0]) % 2 == 1

