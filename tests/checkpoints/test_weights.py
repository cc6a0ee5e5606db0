"""The checkpoint loader: every format, the patch-merging permutation, table resizing, every error path.

The Microsoft-, timm- and Hugging Face-format checkpoints are made here by inverse mappings written in
this file (from the formats' own definitions, not by calling the package's mapping in reverse):
Microsoft's and timm's from the official fixtures (undoing mmseg's swin2mmseg conversion; timm's merge
order replayed from its PatchMerging gather), Hugging Face's from a tiny random ``transformers`` Swin
whose own forward pass gives the expected outputs.
"""

from __future__ import annotations

import re

import pytest
import torch

import ssformer
from ssformer.checkpoints import CheckpointError
from ssformer.checkpoints.artifact import read_model_files
from ssformer.checkpoints.io import write_state_dict
from ssformer.checkpoints.keymaps import resize_bias_table
from tests.conftest import FIXTURES, tiny_model_kwargs

ATOL = 1e-4


def official(name: str = "w7") -> tuple[dict, dict]:
    state = torch.load(FIXTURES / f"official_{name}.pth", weights_only=True)["state_dict"]
    io = torch.load(FIXTURES / f"official_{name}_io.pt", weights_only=True)
    return state, io


def model_for(io: dict, **overrides) -> ssformer.SSformer:
    c = io["config"]
    kwargs = dict(num_classes=c["num_classes"], embed_dim=c["embed_dims"], depths=c["depths"],
                  num_heads=c["num_heads"], window_size=c["window_size"], decoder_dim=c["channels"])
    torch.manual_seed(0)
    return ssformer.SSformer(**{**kwargs, **overrides}).eval()


def assert_features_match(model: ssformer.SSformer, io: dict) -> None:
    """Encoder outputs equal the official ones; two of the fixture's inputs (batch 2 at 64x96, and
    45x37, odd and below one window at the last stages) keep it quick: the model's exactness at
    every fixture input is test_exactness.py's job, the mapping's is this file's."""
    with torch.no_grad():
        for case in (io["cases"][0], io["cases"][2]):
            for ours, theirs in zip(model.encoder(case["input"]), case["features"]):
                torch.testing.assert_close(ours, theirs, rtol=0, atol=ATOL)


# --- Microsoft Swin ---------------------------------------------------------------------------------
def to_microsoft_merge(t: torch.Tensor) -> torch.Tensor:
    """Channel-major (c, row, col) -> Microsoft's position-major [x(0,0), x(1,0), x(0,1), x(1,1)]."""
    lead = t.shape[:-1]
    c = t.shape[-1] // 4
    grid = t.reshape(*lead, c, 2, 2)  # [..., c, row, col]
    return grid.movedim(-3, -1).transpose(-3, -2).reshape(*lead, 4 * c)  # [..., col, row, c]


def make_microsoft_checkpoint(official_state: dict, classes: int = 10) -> dict:
    """A Microsoft ImageNet-style checkpoint holding the official fixture's backbone."""
    out = {}
    for key, value in official_state.items():
        if not key.startswith("backbone.") or re.match(r"backbone\.norm\d\.", key):
            continue  # the decoder and the per-stage output norms have no Microsoft counterpart
        key = key[len("backbone."):]
        key = key.replace("patch_embed.projection.", "patch_embed.proj.")
        key = key.replace("stages.", "layers.", 1).replace("attn.w_msa.", "attn.")
        key = key.replace("ffn.layers.0.0.", "mlp.fc1.").replace("ffn.layers.1.", "mlp.fc2.")
        if ".downsample." in key:
            value = to_microsoft_merge(value)
        out[key] = value
    last = max(int(k.split(".")[1]) for k in out if k.startswith("layers."))
    dim = out[f"layers.{last}.blocks.0.norm1.weight"].shape[0]
    out["norm.weight"], out["norm.bias"] = torch.rand(dim) + 0.5, torch.randn(dim)
    out["head.weight"], out["head.bias"] = torch.randn(classes, dim), torch.randn(classes)
    out["layers.0.blocks.1.attn_mask"] = torch.zeros(4, 49, 49)
    return {"model": out}


def test_microsoft_merge_order_differs_from_ours():
    # channel c of offset (row, col) sits at 4c + 2row + col in ours and (row + 2col) * C + c in Microsoft's.
    c = 3
    ours = torch.arange(4 * c)
    theirs = to_microsoft_merge(ours)
    for ch in range(c):
        for row in range(2):
            for col in range(2):
                assert theirs[(row + 2 * col) * c + ch] == ours[4 * ch + 2 * row + col]


def test_microsoft_checkpoint_reproduces_official_encoder(tmp_path):
    state, io = official("w7")
    path = tmp_path / "swin_ms.pth"
    torch.save(make_microsoft_checkpoint(state), path)
    model = model_for(io)
    report = ssformer.load_weights(model, path, strict=True)
    assert report.format == "microsoft"
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    norms = sorted(k for k in model.state_dict() if k.startswith("encoder.norms."))
    assert len(norms) == 8 and set(norms) <= set(report.initialised)
    assert any(k.startswith("decoder.") for k in report.initialised)
    assert set(report.ignored) == {"norm.weight", "norm.bias", "head.weight", "head.bias"}
    assert "left as initialised" in str(report)
    # The stage norms are not in an ImageNet checkpoint; give them the fixture's to compare outputs.
    with torch.no_grad():
        for i in range(4):
            model.encoder.norms[i].weight.copy_(state[f"backbone.norm{i}.weight"])
            model.encoder.norms[i].bias.copy_(state[f"backbone.norm{i}.bias"])
    assert_features_match(model, io)


def test_microsoft_merge_tensors_are_permuted_not_copied(tmp_path):
    state, io = official("w7")
    model = model_for(io)
    ssformer.load_weights(model, make_microsoft_checkpoint(state), strict=True)
    ms = make_microsoft_checkpoint(state)["model"]
    ours = model.encoder.stages[0].downsample.reduction.weight
    assert not torch.equal(ours, ms["layers.0.downsample.reduction.weight"])
    torch.testing.assert_close(ours, state["backbone.stages.0.downsample.reduction.weight"], rtol=0, atol=0)


# --- timm -------------------------------------------------------------------------------------------
def timm_merge_order(dim: int) -> torch.Tensor:
    """For each of timm's 4C patch-merging channels, the index (4c + 2row + col) it has in ours.

    Replays timm >= 0.9's gather on one 2x2 neighbourhood labelled with our indices: the (B, H, W, C)
    map is reshaped to (B, H/2, row, W/2, col, C), permuted to (B, H/2, W/2, col, row, C) and flattened.
    """
    labels = torch.empty(2, 2, dim, dtype=torch.long)  # (row, col, c)
    for row in range(2):
        for col in range(2):
            labels[row, col] = 4 * torch.arange(dim) + 2 * row + col
    return labels.reshape(1, 1, 2, 1, 2, dim).permute(0, 1, 3, 4, 2, 5).flatten(3).reshape(-1)


def to_timm_merge(t: torch.Tensor) -> torch.Tensor:
    return t[..., timm_merge_order(t.shape[-1] // 4)]


def make_timm_checkpoint(official_state: dict, variant: str = "classifier", classes: int = 10) -> dict:
    """A timm >= 0.9 SwinTransformer state dict holding the official fixture's backbone.

    timm merges patches at the start of the next stage (``layers.{i+1}.downsample``), names the
    classifier ``head.fc`` and keeps no ``relative_position_index`` / ``attn_mask`` buffers.
    ``variant``: ``classifier``; ``headless`` (``num_classes=0``: no ``head.fc``); ``features_only``
    (timm's feature extractor: ``layers_{i}.``, no final norm or head).
    """
    out = {}
    for key, value in official_state.items():
        if not key.startswith("backbone.") or re.match(r"backbone\.norm\d\.", key) or key.endswith("_index"):
            continue
        key = key[len("backbone."):].replace("patch_embed.projection.", "patch_embed.proj.")
        key = key.replace("attn.w_msa.", "attn.")
        key = key.replace("ffn.layers.0.0.", "mlp.fc1.").replace("ffn.layers.1.", "mlp.fc2.")
        stage = re.match(r"^stages\.(\d+)\.(.*)$", key)
        if stage and stage[2].startswith("downsample."):
            key, value = f"layers.{int(stage[1]) + 1}.{stage[2]}", to_timm_merge(value)
        elif stage:
            key = f"layers.{stage[1]}.{stage[2]}"
        out[key] = value
    dim = out["layers.3.blocks.0.norm1.weight"].shape[0]
    if variant == "features_only":
        return {re.sub(r"^layers\.(\d+)\.", r"layers_\1.", k): v for k, v in out.items()}
    out["norm.weight"], out["norm.bias"] = torch.rand(dim) + 0.5, torch.randn(dim)
    if variant == "classifier":
        out["head.fc.weight"], out["head.fc.bias"] = torch.randn(classes, dim), torch.randn(classes)
    return out


def test_timm_merge_order_is_microsofts():
    # timm's checkpoint filter moves Microsoft's merge tensors to the next stage without permuting them.
    c = 5
    ours = torch.arange(4 * c)
    assert torch.equal(to_timm_merge(ours), to_microsoft_merge(ours))
    assert not torch.equal(to_timm_merge(ours), ours)


def test_timm_checkpoint_reproduces_official_encoder(tmp_path):
    state, io = official("w7")
    timm_state = make_timm_checkpoint(state)
    assert "layers.0.downsample.reduction.weight" not in timm_state and "layers.3.downsample.norm.weight" in timm_state
    path = write_state_dict(timm_state, tmp_path / "model.safetensors")  # the layout of timm's Hub files
    model = model_for(io)
    report = ssformer.load_weights(model, path, strict=True)
    assert report.format == "timm"
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert set(report.ignored) == {"norm.weight", "norm.bias", "head.fc.weight", "head.fc.bias"}
    norms = sorted(k for k in model.state_dict() if k.startswith("encoder.norms."))
    assert len(norms) == 8 and set(norms) <= set(report.initialised)
    assert any(k.startswith("decoder.") for k in report.initialised)
    for i in range(3):  # stage i's merging comes from timm's layers.{i+1}, back in channel-major order
        for name in ("reduction.weight", "norm.weight", "norm.bias"):
            ours = model.state_dict()[f"encoder.stages.{i}.downsample.{name}"]
            torch.testing.assert_close(ours, state[f"backbone.stages.{i}.downsample.{name}"], rtol=0, atol=0)
    with torch.no_grad():
        for i in range(4):
            model.encoder.norms[i].weight.copy_(state[f"backbone.norm{i}.weight"])
            model.encoder.norms[i].bias.copy_(state[f"backbone.norm{i}.bias"])
    assert_features_match(model, io)


@pytest.mark.parametrize("variant", ["headless", "features_only"])
def test_timm_without_classifier_loads_the_same_encoder(variant):
    """No ``head.fc`` to recognise timm by: patch merging absent from stage 0 (or ``layers_{i}``) tells."""
    state, io = official("w7")
    model = model_for(io)
    report = ssformer.load_weights(model, make_timm_checkpoint(state, variant), strict=True)
    assert report.format == "timm" and report.ok
    expected = model_for(io)
    ssformer.load_weights(expected, FIXTURES / "official_w7.pth", strict=True)
    for key, value in expected.state_dict().items():
        if key.startswith("encoder.") and not key.startswith("encoder.norms."):
            assert torch.equal(model.state_dict()[key], value), key


def test_timm_layout_with_merging_in_stage_0_names_the_key():
    state, io = official("w7")
    timm_state = make_timm_checkpoint(state)
    timm_state["layers.0.downsample.norm.weight"] = torch.ones(4 * 128)  # no timm model has this
    with pytest.raises(CheckpointError, match=r"unexpected \(1\): layers\.0\.downsample\.norm\.weight"):
        ssformer.load_weights(model_for(io), timm_state, strict=True)


def test_swin_v2_checkpoint_is_refused_clearly():
    """Swin V2 (cosine attention, continuous position bias) in timm's layout is not this model."""
    state, io = official("w7")
    v2 = make_timm_checkpoint(state)
    for key in [k for k in v2 if k.endswith("attn.relative_position_bias_table")]:
        prefix = key[: -len("relative_position_bias_table")]
        heads = v2.pop(key).shape[1]
        v2[prefix + "logit_scale"] = torch.zeros(heads, 1, 1)
        v2[prefix + "cpb_mlp.0.weight"] = torch.zeros(512, 2)
    with pytest.raises(CheckpointError, match="Swin Transformer V2 checkpoints are not supported.*logit_scale"):
        ssformer.load_weights(model_for(io), v2, strict=True)


# --- mmseg backbones --------------------------------------------------------------------------------
def test_swin2mmseg_style_backbone_ignores_the_classifier_norm():
    """mmseg's swin2mmseg converter keeps the classifier's ``norm`` and has no ``norm0..3``."""
    state, io = official("w7")
    backbone = {k[len("backbone."):]: v for k, v in state.items()
                if k.startswith("backbone.") and not re.match(r"backbone\.norm\d\.", k)}
    backbone["norm.weight"], backbone["norm.bias"] = torch.ones(128), torch.zeros(128)
    model = model_for(io)
    report = ssformer.load_weights(model, backbone, strict=True)
    assert report.format == "mmseg-backbone" and report.missing == []
    assert report.ignored == ["norm.bias", "norm.weight"]
    assert {f"encoder.norms.{i}.weight" for i in range(4)} <= set(report.initialised)


@pytest.mark.parametrize("prefix", ["", "backbone."])
def test_mmseg_backbone_only(prefix):
    state, io = official("w7")
    backbone = {prefix + k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    model = model_for(io)
    report = ssformer.load_weights(model, backbone, strict=True)
    assert report.format == "mmseg-backbone"
    assert report.missing == []
    assert report.initialised and all(k.startswith("decoder.") for k in report.initialised)
    assert_features_match(model, io)


# --- Hugging Face -----------------------------------------------------------------------------------
# Every stage map must be a multiple of the window and larger than it, or Hugging Face's Swin drops the
# shift / shrinks the window / pads differently: window 2 with a 128x128 input gives stage maps
# 32, 16, 8, 4, where both implementations do exactly the same thing.
HF_WINDOW, HF_SIZE = 2, 128
HF_KW = dict(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])


def hf_backbone():
    """A tiny random Hugging Face SwinBackbone (transformers is a dev dependency; nothing downloaded)."""
    import transformers

    config = transformers.SwinConfig(image_size=HF_SIZE, window_size=HF_WINDOW, **HF_KW,
                                     out_features=["stage1", "stage2", "stage3", "stage4"])
    model = transformers.SwinBackbone(config).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name) and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1 or name.endswith("relative_position_bias_table"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
    return model


HUB_NAMES = [  # transformers >= 5 in-memory name -> the name in checkpoints on the Hub
    ("attention.q_proj.", "attention.self.query."),
    ("attention.k_proj.", "attention.self.key."),
    ("attention.v_proj.", "attention.self.value."),
    ("attention.relative_position_bias.relative_position_bias_table", "attention.self.relative_position_bias_table"),
    ("attention.o_proj.", "attention.output.dense."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
]


def hub_names(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for new, old in HUB_NAMES:
            key = key.replace(new, old)
        out[key] = value
    return out


def ours_for_hf(num_classes: int = 3) -> ssformer.SSformer:
    torch.manual_seed(0)
    return ssformer.SSformer(num_classes=num_classes, window_size=HF_WINDOW, decoder_dim=8,
                             embed_dim=HF_KW["embed_dim"], depths=HF_KW["depths"],
                             num_heads=HF_KW["num_heads"]).eval()


def test_hf_layer_norm_eps_matches_ours():
    hf = hf_backbone()
    hf_eps = {m.eps for m in hf.modules() if isinstance(m, torch.nn.LayerNorm)}
    ours_eps = {m.eps for m in ours_for_hf().encoder.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert hf_eps == ours_eps == {1e-5}


@pytest.mark.parametrize("naming", ["transformers5", "hub", "hub-upernet"])
def test_hf_swin_backbone_matches_hf_feature_maps(naming):
    hf = hf_backbone()
    state = hf.state_dict()
    if naming != "transformers5":
        state = {k.removeprefix("swin."): v for k, v in hub_names(state).items()}  # transformers 4 layout
    if naming == "hub-upernet":
        state = {"backbone." + k: v for k, v in state.items()}
        state["decode_head.classifier.weight"] = torch.zeros(3, 8, 1, 1)
    ours = ours_for_hf()
    report = ssformer.load_weights(ours, state, strict=True)
    assert report.format == "huggingface"
    assert report.missing == [] and report.unexpected == []
    assert all(k.startswith("decoder.") for k in report.initialised)
    x = torch.randn(2, 3, HF_SIZE, HF_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = hf(pixel_values=x).feature_maps
        mine = ours.encoder(x)
    assert [tuple(f.shape[2:]) for f in mine] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=ATOL)


def test_hf_save_pretrained_folder_loads(tmp_path):
    """A folder written by transformers' save_pretrained (model.safetensors, its own key names)."""
    hf = hf_backbone()
    hf.save_pretrained(tmp_path / "hf")
    ours = ours_for_hf()
    report = ssformer.load_weights(ours, tmp_path / "hf", strict=True)
    assert report.format == "huggingface" and report.ok
    x = torch.randn(1, 3, HF_SIZE, HF_SIZE)
    with torch.no_grad():
        for mine, theirs in zip(ours.encoder(x), hf(pixel_values=x).feature_maps):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=ATOL)


def test_hf_swin_model_without_stage_norms():
    hf = hf_backbone()
    # A SwinModel state dict: the backbone's tensors without its stage norms, plus the final norm.
    swin_model_state = {k.removeprefix("swin."): v for k, v in hf.state_dict().items()
                        if not k.startswith("hidden_states_norms.")}
    swin_model_state["layernorm.weight"] = torch.ones(64)
    swin_model_state["layernorm.bias"] = torch.zeros(64)
    ours = ours_for_hf()
    report = ssformer.load_weights(ours, hub_names(swin_model_state), strict=True)
    assert report.format == "huggingface"
    assert sorted(report.ignored) == ["layernorm.bias", "layernorm.weight"]
    assert {k for k in report.initialised if k.startswith("encoder.")} == {
        f"encoder.norms.{i}.{p}" for i in range(4) for p in ("weight", "bias")}
    # Everything else was loaded: with the backbone's stage norms added, the outputs agree.
    with torch.no_grad():
        for i, norm in enumerate(ours.encoder.norms):
            norm.weight.copy_(hf.hidden_states_norms[f"stage{i + 1}"].weight)
            norm.bias.copy_(hf.hidden_states_norms[f"stage{i + 1}"].bias)
        x = torch.randn(1, 3, HF_SIZE, HF_SIZE)
        for mine, theirs in zip(ours.encoder(x), hf(pixel_values=x).feature_maps):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=ATOL)


def test_hf_partial_qkv_is_reported():
    state = hub_names(hf_backbone().state_dict())
    prefix = next(k for k in state if k.endswith("embeddings.norm.weight"))[: -len("embeddings.norm.weight")]
    del state[prefix + "encoder.layers.0.blocks.0.attention.self.key.weight"]
    report = ssformer.load_weights(ours_for_hf(), state, strict=False)
    assert prefix + "encoder.layers.0.blocks.0.attention.self.query.weight" in report.unexpected
    assert "encoder.stages.0.blocks.0.attn.qkv.weight" in report.missing


# --- relative position tables -----------------------------------------------------------------------
def test_bias_tables_resized_from_window_7_to_12():
    state, io = official("w7")
    model = model_for(io, window_size=12)
    report = ssformer.load_weights(model, FIXTURES / "official_w7.pth", strict=True)
    tables = [k for k in model.state_dict() if k.endswith("relative_position_bias_table")]
    assert sorted(report.resized) == sorted(tables) and len(tables) == 8
    for key in tables:
        new = model.state_dict()[key]
        old = state["backbone." + key[len("encoder."):].replace(".attn.", ".attn.w_msa.")]
        assert new.shape == (23 * 23, old.shape[1])
        # Bicubic resampling with align_corners=False maps the centre (offset 0, 0) onto the old centre.
        torch.testing.assert_close(new[11 * 23 + 11], old[6 * 13 + 6], rtol=0, atol=1e-5)
        assert new.min() >= old.min() - 0.5 * old.abs().max() and new.max() <= old.max() + 0.5 * old.abs().max()
    with torch.no_grad():
        assert torch.isfinite(model(io["cases"][0]["input"])).all()


def test_resizing_keeps_a_constant_table_constant():
    table = torch.full((13 * 13, 3), 0.7)
    resized = resize_bias_table(table, 12)
    assert resized.shape == (23 * 23, 3)
    torch.testing.assert_close(resized, torch.full((23 * 23, 3), 0.7))
    assert resize_bias_table(table, 7) is table


# --- own format, safetensors ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_own_format_round_trip(tmp_path, suffix):
    _, io = official("w7")
    source = model_for(io)
    ssformer.load_weights(source, FIXTURES / "official_w7.pth")
    path = write_state_dict(source.state_dict(), tmp_path / f"model{suffix}")
    assert set(read_model_files(path).state) == set(source.state_dict())
    target = model_for(io)
    report = ssformer.load_weights(target, path, strict=True)
    assert report.format == "ssformer" and report.ok and report.initialised == []
    case = io["cases"][2]
    with torch.no_grad():
        torch.testing.assert_close(target(case["input"]), case["logits"], rtol=0, atol=ATOL)


def test_save_pretrained_folder_loads(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    torch.manual_seed(5)
    other = ssformer.SSformer(**tiny_model_kwargs())
    report = ssformer.load_weights(other, tmp_path / "m")
    assert report.format == "ssformer" and report.ok
    for (k, a), b in zip(tiny_model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k


# --- errors -----------------------------------------------------------------------------------------
def test_missing_file(tmp_path, tiny_model):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ssformer.load_weights(tiny_model, tmp_path / "nope.pth")


@pytest.mark.parametrize("name, content", [("notes.pth", b"not a checkpoint\n"), ("weights.safetensors", b"xyz")])
def test_file_that_is_not_a_checkpoint(tmp_path, tiny_model, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        ssformer.load_weights(tiny_model, path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(tmp_path, tiny_model, suffix):
    path = write_state_dict(tiny_model.state_dict(), tmp_path / f"full{suffix}")
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        ssformer.load_weights(tiny_model, cut)


@pytest.mark.parametrize("obj, message", [([1, 2, 3], "no state dict"), ({"epoch": 3}, "no tensors")])
def test_torch_file_without_tensors(tmp_path, tiny_model, obj, message):
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=message):
        ssformer.load_weights(tiny_model, path)


def test_pickled_code_is_refused(tmp_path, tiny_model):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny_model.state_dict(), "obj": CheckpointError("x")}, path)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        ssformer.load_weights(tiny_model, path)


def test_checkpoint_error_is_exported():
    assert ssformer.CheckpointError is CheckpointError and issubclass(CheckpointError, ValueError)
    assert "CheckpointError" in ssformer.__all__


def test_unknown_keys_are_an_unrecognised_format(tiny_model):
    with pytest.raises(CheckpointError, match="unrecognised checkpoint format.*fc.weight"):
        ssformer.load_weights(tiny_model, {"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)})


def test_strict_lists_unexpected_missing_and_mismatched(tiny_model):
    state = dict(tiny_model.state_dict())
    state["encoder.extra.weight"] = torch.zeros(3)
    del state["encoder.stages.1.blocks.0.norm1.bias"]
    state["decoder.classifier.weight"] = torch.zeros(7, 8, 1, 1)
    with pytest.raises(CheckpointError) as err:
        ssformer.load_weights(tiny_model, state, strict=True)
    text = str(err.value)
    assert "unexpected (1): encoder.extra.weight" in text
    assert "missing (1): encoder.stages.1.blocks.0.norm1.bias" in text
    assert "shape mismatch: decoder.classifier.weight: model (4, 8, 1, 1), checkpoint (7, 8, 1, 1)" in text


def test_strict_failure_changes_nothing_and_non_strict_loads_the_rest(tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    torch.manual_seed(9)
    donor = ssformer.SSformer(**tiny_model_kwargs(num_classes=6))
    with pytest.raises(CheckpointError):
        ssformer.load_weights(tiny_model, donor.state_dict(), strict=True)
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in before.items())
    report = ssformer.load_weights(tiny_model, donor.state_dict(), strict=False)
    assert [k for k, _, _ in report.mismatched] == ["decoder.classifier.weight", "decoder.classifier.bias"]
    assert torch.equal(tiny_model.encoder.patch_embed.proj.weight, donor.encoder.patch_embed.proj.weight)
    assert torch.equal(tiny_model.decoder.classifier.bias, before["decoder.classifier.bias"])


def test_encoder_only_own_checkpoint_reports_the_decoder(tiny_model):
    encoder_only = {k: v for k, v in tiny_model.state_dict().items() if k.startswith("encoder.")}
    torch.manual_seed(4)
    other = ssformer.SSformer(**tiny_model_kwargs())
    report = ssformer.load_weights(other, encoder_only, strict=True)
    assert report.missing == []
    assert sorted(report.initialised) == sorted(k for k in other.state_dict() if k.startswith("decoder."))
    assert torch.equal(other.encoder.norms[2].weight, tiny_model.encoder.norms[2].weight)
