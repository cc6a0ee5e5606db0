"""Exported files are artifacts too: predict, eval, serve and benchmark run ONNX and OpenVINO files
through their engine with the model's own test pipeline, and give the PyTorch model's masks."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import ssformer
from ssformer.cli.main import main
from ssformer.data.preprocessing import Preprocessing
from ssformer.errors import UserError
from tests.conftest import CAMVID, requires_dir, tiny_model_kwargs

pytest.importorskip("openvino", reason="openvino is in the dev extra")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra")
pytestmark = requires_dir(CAMVID, "CamVid")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """11 classes, CamVid-like; images resized to at most 120x90 and slid over in 48x48 windows."""
    torch.manual_seed(0)
    model = ssformer.SSformer(**tiny_model_kwargs(num_classes=11))
    model.preprocessing = Preprocessing(img_scale=(120, 90), mode="slide", crop_size=(48, 48), stride=(32, 32))
    folder = tmp_path_factory.mktemp("exported") / "model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exports(model_folder):
    """The model as dynamic ONNX, dynamic OpenVINO and fixed 48x48 OpenVINO, written by the command."""
    out = model_folder.parent
    files = {"onnx": out / "dynamic.onnx", "openvino": out / "dynamic.xml", "openvino-48": out / "fixed48.xml"}
    for name, path in files.items():
        fmt = "onnx" if name == "onnx" else "openvino"
        extra = ["--size", "48", "48"] if name == "openvino-48" else ["--size", "64", "64", "--dynamic"]
        assert main(["export", "--checkpoint", str(model_folder), "--format", fmt, "--out", str(path), *extra]) == 0
    return files


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("camvid")
    for path in sorted((CAMVID / "test").glob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    return folder


def _masks(folder) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png")) if "overlay" not in p.name
            and p.name != "legend.png"}


def _predict(checkpoint, images, out, *extra) -> dict[str, np.ndarray]:
    assert main(["predict", str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--num-workers", "0",
                 "--no-overlay", *extra]) == 0
    return _masks(out)


@pytest.mark.parametrize("name,mode", [("onnx", "whole"), ("onnx", "slide"), ("openvino", "whole"),
                                       ("openvino", "slide"), ("openvino-48", "slide")])
def test_predict_gives_the_pytorch_masks(model_folder, exports, images, tmp_path, name, mode):
    expected = _predict(model_folder, images, tmp_path / "torch", "--mode", mode)
    got = _predict(exports[name], images, tmp_path / name, "--mode", mode)
    assert sorted(got) == sorted(expected) and len(got) == 3
    for key, mask in expected.items():
        assert got[key].shape == mask.shape == (360, 480)
        assert (got[key] == mask).mean() >= 0.999, key


def test_exported_files_carry_the_labels_and_pipeline(model_folder, exports):
    from ssformer.inference.segmenter import Segmenter

    reference = Segmenter(model_folder)
    for path in exports.values():
        segmenter = Segmenter(path)
        assert segmenter.num_classes == 11 and segmenter.model is None
        assert segmenter.palette == reference.palette and segmenter.class_names == reference.class_names
        assert segmenter.preprocessing == reference.preprocessing
        assert segmenter.describe()["engine"] in ("onnxruntime", "openvino")


def test_a_fixed_size_export_refuses_other_sizes_in_one_line(exports, images):
    from ssformer.inference.segmenter import PipelineOverrides, Segmenter

    segmenter = Segmenter(exports["openvino-48"], pipeline=PipelineOverrides(mode="whole"))
    with pytest.raises(UserError, match=r"fixed-size export \(48x48 inputs only\).*--dynamic"):
        segmenter.predict(sorted(images.glob("*.png"))[0])


def test_benchmark_times_an_exported_model(exports, capsys):
    assert main(["benchmark", "--checkpoint", str(exports["openvino"]), "--size", "64", "96", "--runs", "2",
                 "--warmup", "1", "--threads", "1", "--dtype", "bf16"]) == 0
    printed = capsys.readouterr().out
    assert "bf16 (openvino)" in printed and "latency median" in printed
    assert main(["benchmark", "--checkpoint", str(exports["onnx"]), "--size", "64", "96", "--runs", "2",
                 "--warmup", "1", "--threads", "1"]) == 0
    assert "fp32 (onnxruntime)" in capsys.readouterr().out


def test_eval_scores_an_exported_model_as_pytorch(tmp_path):
    from ssformer.engine.config import sample_root

    torch.manual_seed(0)
    folder = tmp_path / "model"
    ssformer.SSformer(**tiny_model_kwargs(num_classes=4)).save_pretrained(folder)
    scores = {}
    for name, fmt in (("model.onnx", "onnx"), ("model.xml", "openvino"), (None, None)):
        checkpoint = folder if name is None else tmp_path / name
        if name is not None:
            assert main(["export", "--checkpoint", str(folder), "--format", fmt, "--size", "48", "64", "--dynamic",
                         "--out", str(checkpoint)]) == 0
        out = tmp_path / f"{fmt}.json"
        assert main(["eval", "sample", "--data-root", str(sample_root()), "--checkpoint", str(checkpoint),
                     "--out", str(out), "--set", "data.test_transform.img_scale=[64,48]",
                     "--set", "eval.num_workers=0"]) == 0
        scores[fmt] = __import__("json").loads(out.read_text())
    for fmt in ("onnx", "openvino"):
        assert scores[fmt]["images"] == scores[None]["images"] > 0
        assert abs(scores[fmt]["aAcc"] - scores[None]["aAcc"]) < 1e-3


def _write_bad_files(tmp_path, exports) -> dict[str, tuple]:
    """name -> (file, words the one-line error must hold)."""
    ov = pytest.importorskip("openvino")
    corrupt_xml = tmp_path / "corrupt.xml"
    corrupt_xml.write_text("<net><layers>")
    shutil.copy(exports["openvino"].with_suffix(".bin"), corrupt_xml.with_suffix(".bin"))
    html = tmp_path / "page.xml"
    html.write_text('<?xml version="1.0"?><html><body/></html>')
    shutil.copy(exports["openvino"].with_suffix(".bin"), html.with_suffix(".bin"))
    mismatched = tmp_path / "mismatched.xml"  # one export's .xml beside another's .bin
    shutil.copy(exports["openvino"], mismatched)
    shutil.copy(exports["openvino-48"].with_suffix(".bin"), mismatched.with_suffix(".bin"))
    mismatched.with_suffix(".bin").write_bytes(mismatched.with_suffix(".bin").read_bytes()[:1000])
    lonely = tmp_path / "lonely.xml"
    shutil.copy(exports["openvino"], lonely)
    corrupt_onnx = tmp_path / "corrupt.onnx"
    corrupt_onnx.write_bytes(exports["onnx"].read_bytes()[:3000])
    other = tmp_path / "other.xml"
    conv = ov.convert_model(torch.nn.Conv2d(3, 2, 1).eval(), example_input=torch.randn(1, 3, 8, 8))
    ov.save_model(conv, str(other))
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 2, 1)), str(scripted))
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Conv2d(3, 2, 1), whole)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {}\n")
    return {"corrupt xml": (corrupt_xml, "is not an OpenVINO model: not an XML file"),
            "xml of something else": (html, "its XML root is <html>, not an IR's <net>"),
            "another export's bin": (mismatched, "mismatched.bin does not fit it"),
            "missing bin": (lonely, "lonely.bin is missing"),
            "corrupt onnx": (corrupt_onnx, "not a readable ONNX model"),
            "another model's IR": (other, "carries no ssformer metadata"),
            "torchscript": (scripted, "is a TorchScript file: ssformer runs"),
            "whole pickled model": (whole, "torch.save(model)"),
            "yaml": (recipe, "is a YAML config, not a model")}


def test_files_a_command_cannot_use_are_named_in_one_line(exports, images, tmp_path, capsys):
    for name, (path, words) in _write_bad_files(tmp_path, exports).items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        assert main(["predict", str(images), "--checkpoint", str(path), "--out", str(out)]) == 2, name
        err = capsys.readouterr().err
        assert words in err and str(path) in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert "weights_only" not in err and "Traceback" not in err, (name, err)
        assert not out.exists(), name


def test_serve_answers_with_the_pytorch_mask_from_an_openvino_file(model_folder, exports, images):
    import io
    import urllib.request

    pytest.importorskip("uvicorn", reason="the serve extra is in dev")
    from ssformer.inference.segmenter import Segmenter
    from ssformer.inference.serve import make_server

    image = sorted(images.glob("*.png"))[0]
    expected = Segmenter(model_folder).predict(image)
    server = make_server(Segmenter(exports["openvino"]), "127.0.0.1", 0, max_bytes=2_000_000).start()
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{server.address[1]}/api/mask", data=image.read_bytes(),
                                         method="POST", headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=60) as response:
            got = np.asarray(Image.open(io.BytesIO(response.read())))
    finally:
        server.stop()
    assert got.shape == expected.shape and (got == expected).mean() >= 0.999


def _int8(model_folder, calib, out, *extra) -> int:
    return main(["export", "--checkpoint", str(model_folder), "--format", "openvino", "--int8", "--calib", str(calib),
                 "--calib-images", "2", "--size", "64", "64", "--dynamic", "--out", str(out), *extra])


def test_int8_openvino_export_prints_its_agreement_and_runs_in_predict(model_folder, images, tmp_path, capsys):
    ov = pytest.importorskip("openvino")
    out = tmp_path / "int8" / "model.xml"
    assert _int8(model_folder, images, out, "--min-agreement", "0.5") == 0
    printed = capsys.readouterr().out
    assert "int8 (NNCF), f32 elsewhere, against the float model: argmax agreement" in printed
    assert "(2 images, 21600 pixels)" in printed  # two CamVid images at the model's 120x90
    assert f"wrote {out}" in printed
    read = ov.Core().read_model(str(out))
    assert read.get_rt_info(["ssformer", "precision"]).astype(str) == '"int8"'
    assert any("FakeQuantize" in op.get_type_name() or "FakeConvert" in op.get_type_name() for op in read.get_ops())
    from ssformer.inference.segmenter import Segmenter

    segmenter = Segmenter(out)
    assert str(segmenter.describe()["dtype"]).startswith("int8")
    float_mask = Segmenter(model_folder).predict(sorted(images.glob("*.png"))[0])
    assert (segmenter.predict(sorted(images.glob("*.png"))[0]) == float_mask).mean() >= 0.5


def test_int8_openvino_check_labels_prints_both_models_miou(model_folder, images, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    for path in sorted(images.glob("*.png"))[:2]:
        shutil.copy(CAMVID / "testannot" / path.name, labels / path.name)
    out = tmp_path / "int8" / "model.xml"
    assert _int8(model_folder, images, out, "--check", str(images), "--check-labels", str(labels),
                 "--min-agreement", "0.5") == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "mIoU against --check-labels" in x]
    found = re.search(r"float (\d+\.\d\d)%, int8 (\d+\.\d\d)% \(2 images\)$", line[0]) if len(line) == 1 else None
    assert found and all(0 < float(v) <= 100 for v in found.groups())


def test_int8_openvino_check_labels_needs_check_and_a_label_per_image(model_folder, images, tmp_path, capsys):
    out = tmp_path / "int8" / "model.xml"
    assert _int8(model_folder, images, out, "--check-labels", str(images)) == 2
    assert "--check-labels needs --check" in capsys.readouterr().err
    empty = tmp_path / "nolabels"
    empty.mkdir()
    assert _int8(model_folder, images, out, "--check", str(images), "--check-labels", str(empty)) == 2
    err = capsys.readouterr().err
    assert "has no label in" in err and len(err.strip().splitlines()) == 1
    assert not out.parent.exists()


def test_int8_openvino_below_the_minimum_writes_nothing(model_folder, images, tmp_path, capsys):
    out = tmp_path / "int8" / "model.xml"
    assert _int8(model_folder, images, out, "--min-agreement", "1.0") == 1
    printed = capsys.readouterr().out
    assert "below the minimum agreement 100.00%" in printed and "--accuracy-control" in printed
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_int8_openvino_refuses_an_empty_calibration_folder_in_one_line(model_folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "int8" / "model.xml"
    assert _int8(model_folder, empty, out) == 2
    err = capsys.readouterr().err
    assert f"{empty} holds no image files" in err and len(err.strip().splitlines()) == 1
    assert not out.parent.exists()

