"""int8 quantization: the agreement measure, calibration inputs, torchao linears, int8 ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import ssformer
from ssformer.data.preprocessing import Preprocessing
from ssformer.errors import UserError
from ssformer.inference import quantize
from tests.conftest import tiny_model_kwargs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ssformer.SSformer(**tiny_model_kwargs(num_classes=5)).eval()


@pytest.fixture
def images(tmp_path):
    """Four random RGB photos of different sizes, two with one stem (plus a text file the folder scan skips)."""
    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(50, 70), (64, 64), (40, 90)]):
        coarse = rng.integers(0, 256, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((w, h), Image.BILINEAR).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / "2.jpg")  # same stem: fine here
    return folder


def test_agreement_counts_pixels_and_uses_the_float_masks_as_labels():
    # reference masks: class 0 left half, class 1 right half of a 2x4 image; the candidate moves one
    # pixel of class 1 to class 0: 7 of 8 pixels agree; IoU class 0 = 4/5, class 1 = 3/4
    reference = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    candidate = torch.tensor([[[0, 0, 0, 1], [0, 0, 1, 1]]])
    as_logits = lambda masks: lambda _: torch.nn.functional.one_hot(masks, 3).permute(0, 3, 1, 2).float()
    result = quantize.compare_predictions(as_logits(reference), as_logits(candidate), [torch.zeros(1)], 3)
    assert result.pixels == 8 and result.images == 1
    assert result.argmax_agreement == pytest.approx(7 / 8)
    assert result.miou == pytest.approx((4 / 5 + 3 / 4) / 2)  # class 2 appears in neither: not counted


def test_calibration_inputs_are_the_models_preprocessing_at_the_export_size(images):
    preprocessing = Preprocessing(img_scale=(80, 60))
    inputs = quantize.calibration_inputs(images, preprocessing, size=(32, 48), limit=2)
    assert len(inputs) == 2 and all(t.shape == (1, 3, 32, 48) for t in inputs)
    unresized = quantize.calibration_inputs(images, preprocessing, size=None, limit=1)[0]
    expected = preprocessing(np.asarray(Image.open(images / "0.png").convert("RGB")))[None]
    assert torch.equal(unresized, expected)


def test_calibration_folder_without_images_names_it(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path} holds no image files"):
        quantize.calibration_inputs(tmp_path, Preprocessing())
    with pytest.raises(UserError, match="absent does not exist"):
        quantize.calibration_inputs(tmp_path / "absent", Preprocessing())
    with pytest.raises(ValueError, match=">= 1"):
        quantize.calibration_inputs(tmp_path, Preprocessing(), limit=0)


def test_int8_onnx_export_writes_a_qdq_model_that_agrees(model, images, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev and onnx extras")
    import onnx

    out = tmp_path / "model.int8.onnx"
    # 0.95: ONNX Runtime's AVX2 int8 kernels (no VNNI) gave this random model 98.7% (99%+ with VNNI)
    settings = quantize.Int8Settings(images, min_agreement=0.95)
    result = quantize.export_int8_onnx(model, Preprocessing(img_scale=None), (48, 64), out, settings)
    graph = onnx.load(str(out)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 4 * 2 * 2  # at least the qkv/proj/fc1/fc2 of every block... of 8 blocks
    # the agreement is recomputed here straight from the two runtimes' outputs
    float_session = ort.InferenceSession(str(_float_export(model, tmp_path)), providers=["CPUExecutionProvider"])
    int8_session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inputs = quantize.calibration_inputs(images, Preprocessing(img_scale=None), size=(48, 64))
    same = total = 0
    for x in inputs:
        a = float_session.run(None, {"images": x.numpy()})[0].argmax(1)
        b = int8_session.run(None, {"images": x.numpy()})[0].argmax(1)
        same, total = same + int((a == b).sum()), total + a.size
    assert result.agreement.argmax_agreement == pytest.approx(same / total)
    assert result.agreement.images == 4 and result.agreement.argmax_agreement >= 0.95
    assert result.float_checks[0][1] < 1e-3
    assert list(tmp_path.glob(".ssformer-int8-*")) == []  # the work folder is gone
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}  # an artifact, as the float export
    assert props["ssformer.precision"] == '"int8"' and props["ssformer.input_size"] == "[48, 64]"
    assert ssformer.Segmenter(out, pipeline=ssformer.PipelineOverrides(img_scale=None)).num_classes == model.config.num_classes


def _float_export(model, tmp_path):
    from ssformer.inference.export import export_model

    path = tmp_path / "float.onnx"
    export_model(model, "onnx", (48, 64), path)
    return path


def test_int8_onnx_below_the_agreement_writes_nothing(model, images, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev and onnx extras")
    low = quantize.Agreement(images=3, pixels=100, argmax_agreement=0.5, miou=0.3)
    monkeypatch.setattr(quantize, "compare_predictions", lambda *args: low)
    out = tmp_path / "model.int8.onnx"
    with pytest.raises(quantize.AccuracyError, match="50.00%.*below the minimum agreement 99.00%"):
        quantize.export_int8_onnx(model, Preprocessing(img_scale=None), (48, 64), out, quantize.Int8Settings(images))
    assert not out.exists() and list(tmp_path.glob(".ssformer-int8-*")) == []


def test_label_miou_resizes_the_logits_to_each_label_and_ignores_values_outside_the_classes():
    """Logits say class 0 on the left half, 1 on the right; resized to the 8x8 label, columns 0-3
    predict 0 and 4-7 predict 1. The label's columns: 1 0 255 1 | 1 0 1 1 (255: ignored)."""
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0, :, :2] = 1.0
    logits[:, 1, :, 2:] = 1.0
    label = torch.tensor([[1, 0, 255, 1, 1, 0, 1, 1]] * 8)
    got = quantize.label_miou(lambda x: logits, [torch.zeros(1, 3, 4, 4)], [label], num_classes=2)
    # per row, class 0: predicted in columns 0,1,3, labelled in 1,5 -> IoU 1/4;
    # class 1: predicted in 4-7, labelled in 0,3,4,6,7 -> intersection 3, union 6 -> IoU 1/2
    assert got == pytest.approx((1 / 4 + 1 / 2) / 2)


def test_paired_labels_take_each_images_relative_name_and_name_a_missing_one(images, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    for i, (h, w) in enumerate([(50, 70), (64, 64)]):
        Image.fromarray(np.full((h, w), i, dtype=np.uint8)).save(labels / f"{i}.png")
    got = quantize.paired_labels(images, labels, limit=2)  # images 0.png, 1.png come first
    assert [tuple(t.shape) for t in got] == [(50, 70), (64, 64)] and [int(t.max()) for t in got] == [0, 1]
    with pytest.raises(UserError, match=r"image .*2\.jpg has no label in .*labels"):
        quantize.paired_labels(images, labels, limit=3)
