"""``ssformer info`` and ``ssformer convert``: outputs, round trips, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import ssformer
from ssformer.checkpoints.artifact import read_model_files
from ssformer.cli.main import main
from tests.checkpoints.test_weights import make_microsoft_checkpoint, official
from tests.conftest import FIXTURES

W7 = FIXTURES / "official_w7.pth"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- info -------------------------------------------------------------------------------------------
def test_info_swin_b_reference_numbers(capsys):
    code, out, _ = run_cli(capsys, "info", "ssformer_swin_b", "--no-flops", "--json")
    assert code == 0
    info = json.loads(out)
    # The official code's measurement (docs/model.md): 87,539,790 parameters, 91.01 G by mmcv's counter at 512x512.
    assert info["params"] == 87_539_790
    assert round(info["macs"] / 1e9, 2) == 91.01
    assert info["flops"] is None


def test_info_checkpoint_with_size_and_classes(capsys):
    code, out, _ = run_cli(capsys, "info", "--checkpoint", W7, "--size", 45, 37, "--json")
    info = json.loads(out)
    assert code == 0 and info["format"] == "mmseg"
    assert (info["embed_dim"], info["depths"], info["num_heads"], info["window_size"]) == (16, [2, 2, 2, 2],
                                                                                        [1, 2, 2, 4], 7)
    assert info["macs"] == 12_529_912  # mmcv's counter on the official w7 model at 45x37 (see test_size.py)
    assert info["flops"] > 0
    code, out, _ = run_cli(capsys, "info", "--checkpoint", W7, "--classes", 19, "--no-flops")
    assert code == 0 and "19 classes" in out and "parameters:" in out and "official convention" in out


def test_info_errors(capsys, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("hello")
    code, _, err = run_cli(capsys, "info", "--checkpoint", bad)
    assert code == 2 and str(bad) in err and "not a readable" in err
    code, _, err = run_cli(capsys, "info", "ssformer_swin_t", "--size", 0, 4)
    assert code == 2 and "--size" in err
    code, _, err = run_cli(capsys, "info", "no_such_model")
    assert code == 2 and "unknown model 'no_such_model'" in err and "ssformer_swin_t" in err
    code, _, err = run_cli(capsys, "info")  # no argument: one readable line, not a usage dump
    assert code == 2 and "give a model variant" in err and len(err.strip().splitlines()) == 1


# --- convert ----------------------------------------------------------------------------------------
def test_convert_official_to_folder_gives_same_logits(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "convert", W7, tmp_path / "model")
    assert code == 0 and "format: mmseg" in out
    model = ssformer.SSformer.from_pretrained(tmp_path / "model").eval()
    _, io = official("w7")
    c = io["config"]
    assert (model.config.num_classes, model.config.embed_dim, model.config.depths, model.config.num_heads,
            model.config.window_size, model.config.decoder_dim) == (
        c["num_classes"], c["embed_dims"], tuple(c["depths"]), tuple(c["num_heads"]), c["window_size"],
        c["channels"])
    with torch.no_grad():
        for case in (io["cases"][0], io["cases"][2]):  # batch 2 at 64x96; 45x37
            torch.testing.assert_close(model(case["input"]), case["logits"], rtol=0, atol=1e-4)


def test_convert_keeps_mmseg_class_names_and_palette(capsys, tmp_path):
    checkpoint = torch.load(W7, weights_only=True)
    names = ["sky", "road", "car", "tree", "person"]
    palette = [[10 * i, 20 * i, 30 * i] for i in range(5)]
    checkpoint["meta"].update(CLASSES=tuple(names), PALETTE=palette)
    torch.save(checkpoint, tmp_path / "named.pth")
    assert run_cli(capsys, "convert", tmp_path / "named.pth", tmp_path / "a")[0] == 0
    model = ssformer.SSformer.from_pretrained(tmp_path / "a")
    assert model.config.class_names == names and model.config.palette == palette
    assert run_cli(capsys, "convert", tmp_path / "a", tmp_path / "b")[0] == 0  # folder -> folder keeps them
    assert ssformer.SSformer.from_pretrained(tmp_path / "b").config.class_names == names
    assert run_cli(capsys, "convert", tmp_path / "named.pth", tmp_path / "c", "--num-classes", 3)[0] == 0
    assert ssformer.SSformer.from_pretrained(tmp_path / "c").config.class_names is None  # 3 classes: unnamed


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_convert_to_file(capsys, tmp_path, suffix):
    dst = tmp_path / f"w7{suffix}"
    assert run_cli(capsys, "convert", W7, dst)[0] == 0
    state = read_model_files(dst).state
    assert all(k.startswith(("encoder.", "decoder.")) for k in state)
    if suffix == ".safetensors":
        assert dst.read_bytes()[8:9] == b"{"  # safetensors header, not a zip
    _, io = official("w7")
    c = io["config"]
    model = ssformer.SSformer(num_classes=c["num_classes"], embed_dim=c["embed_dims"], depths=c["depths"],
                              num_heads=c["num_heads"], window_size=c["window_size"],
                              decoder_dim=c["channels"]).eval()
    assert ssformer.load_weights(model, dst, strict=True).format == "ssformer"
    case = io["cases"][0]
    with torch.no_grad():
        torch.testing.assert_close(model(case["input"]), case["logits"], rtol=0, atol=1e-4)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary


def test_convert_microsoft_backbone(capsys, tmp_path):
    state, io = official("w7")
    src = tmp_path / "swin_ms.pth"
    torch.save(make_microsoft_checkpoint(state), src)
    code, _, err = run_cli(capsys, "convert", src, tmp_path / "folder")
    assert code == 2 and "--num-classes" in err and not (tmp_path / "folder").exists()
    code, out, _ = run_cli(capsys, "convert", src, tmp_path / "folder", "--num-classes", 4, "--decoder-dim", 16)
    assert code == 0 and "format: microsoft" in out and "left as initialised" in out
    model = ssformer.SSformer.from_pretrained(tmp_path / "folder")
    assert (model.config.num_classes, model.config.decoder_dim) == (4, 16)
    torch.testing.assert_close(model.encoder.stages[1].downsample.reduction.weight,
                               state["backbone.stages.1.downsample.reduction.weight"], rtol=0, atol=0)
    # As a file, a backbone stays a backbone: no decoder is written.
    assert run_cli(capsys, "convert", src, tmp_path / "enc.safetensors")[0] == 0
    keys = set(read_model_files(tmp_path / "enc.safetensors").state)
    assert keys and all(k.startswith("encoder.") for k in keys)


def test_convert_overrides_window_and_classes(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "convert", W7, tmp_path / "m", "--window-size", 12, "--num-classes", 9)
    assert code == 0 and "resized relative position tables (8)" in out
    assert "decoder.classifier.weight" in out  # re-initialised: reported
    model = ssformer.SSformer.from_pretrained(tmp_path / "m")
    assert (model.config.window_size, model.config.num_classes) == (12, 9)
    state, _ = official("w7")
    torch.testing.assert_close(model.decoder.fuse.conv.weight, state["decode_head.fusion_conv.conv.weight"],
                               rtol=0, atol=0)


def test_convert_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, "convert", tmp_path / "missing.pth", tmp_path / "out")
    assert code == 2 and "missing.pth" in err and "does not exist" in err
    junk = tmp_path / "junk.pth"
    torch.save({"fc.weight": torch.zeros(2)}, junk)
    code, _, err = run_cli(capsys, "convert", junk, tmp_path / "out")
    assert code == 2 and "unrecognised checkpoint format" in err
    code, _, err = run_cli(capsys, "convert", W7, tmp_path / "out", "--window-size", 0)
    assert code == 2 and "--window-size" in err
    assert not (tmp_path / "out").exists()
