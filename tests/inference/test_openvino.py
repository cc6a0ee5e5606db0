"""OpenVINO export: an IR that predicts like the PyTorch model and carries its preprocessing and labels."""

from __future__ import annotations

import json

import pytest
import torch

import ssformer
from ssformer.cli.main import main
from ssformer.data.preprocessing import Preprocessing
from tests.conftest import tiny_model_kwargs

ov = pytest.importorskip("openvino", reason="openvino is in the dev extra")

NAMES = ["sky", "road", "tree", "car", "person"]
PALETTE = [[10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120], [130, 140, 150]]


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory):
    """A tiny 5-class model folder with class names, palette and non-default preprocessing."""
    torch.manual_seed(0)
    model = ssformer.SSformer(**tiny_model_kwargs(num_classes=5), class_names=NAMES, palette=PALETTE)
    model.preprocessing = Preprocessing(img_scale=(96, 64), mode="whole")
    folder = tmp_path_factory.mktemp("ov") / "model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dynamic_ir(labelled_folder, tmp_path_factory):
    from ssformer.inference.openvino import export_openvino

    out = tmp_path_factory.mktemp("ir") / "model.xml"
    model = ssformer.SSformer.from_pretrained(labelled_folder)
    return export_openvino(model, (48, 64), out, dynamic=True), model


def test_openvino_export_writes_an_ir_that_matches_pytorch(dynamic_ir):
    result, model = dynamic_ir
    assert result.path.is_file() and result.path.with_suffix(".bin").stat().st_size > 10_000
    assert [s for s, _ in result.checks] == [(48, 64), (45, 70), (203, 317)]
    assert result.max_abs_diff < 1e-3
    compiled = ov.Core().compile_model(str(result.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(1, 3, 77, 101)
    with torch.no_grad():
        expected = model(x)
    got = torch.from_numpy(compiled(x.numpy())[0])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_openvino_ir_carries_preprocessing_and_labels_in_its_runtime_info(dynamic_ir):
    result, _ = dynamic_ir
    read = ov.Core().read_model(str(result.path))
    config = json.loads(read.get_rt_info(["ssformer", "model_config"]).astype(str))
    assert config["class_names"] == NAMES and config["palette"] == PALETTE and config["num_classes"] == 5
    preprocessing = json.loads(read.get_rt_info(["ssformer", "preprocessing"]).astype(str))
    assert preprocessing["img_scale"] == [96, 64]
    assert json.loads(read.get_rt_info(["ssformer", "input_size"]).astype(str)) is None  # dynamic


def test_export_cli_writes_openvino(labelled_folder, tmp_path, capsys):
    out = tmp_path / "fixed.xml"
    assert main(["export", "--checkpoint", str(labelled_folder), "--format", "openvino", "--size", "40", "60",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "openvino at 40x60: max |logit difference| to PyTorch" in printed
    assert "run this file on 40x60 inputs only" in printed  # a fixed-size file says what it can run
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.bin", "fixed.xml"]  # no staging left behind
    read = ov.Core().read_model(str(out))
    assert json.loads(read.get_rt_info(["ssformer", "input_size"]).astype(str)) == [40, 60]


def test_export_cli_refuses_an_openvino_name_without_xml(labelled_folder, tmp_path, capsys):
    assert main(["export", "--checkpoint", str(labelled_folder), "--format", "openvino", "--size", "40", "60",
                 "--out", str(tmp_path / "model.onnx")]) == 2
    err = capsys.readouterr().err
    assert "NAME.xml" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_onnx_export_carries_preprocessing_and_labels_and_no_exporter_noise(labelled_folder, tmp_path, capfd):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(labelled_folder), "--format", "onnx", "--size", "40", "60",
                 "--out", str(out)]) == 0
    captured = capfd.readouterr()
    assert "torchvision is not installed" not in captured.err + captured.out
    assert "FutureWarning" not in captured.err + captured.out
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["ssformer.model_config"])["class_names"] == NAMES
    assert json.loads(props["ssformer.preprocessing"])["img_scale"] == [96, 64]
    assert json.loads(props["ssformer.input_size"]) == [40, 60]


def test_files_exported_before_the_model_config_key_still_load(labelled_folder, tmp_path):
    """Exports written before the rename hold the architecture as ``ssformer.config``."""
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "old.onnx"
    assert main(["export", "--checkpoint", str(labelled_folder), "--format", "onnx", "--size", "40", "60",
                 "--out", str(out)]) == 0
    proto = onnx.load(str(out))
    for prop in proto.metadata_props:
        if prop.key == "ssformer.model_config":
            prop.key = "ssformer.config"
    onnx.save(proto, str(out))
    segmenter = ssformer.Segmenter(out)
    assert segmenter.class_names == NAMES and segmenter.num_classes == 5


def test_the_accuracy_control_metric_is_nncfs_pair_of_total_and_per_image_agreement():
    """NNCF's validation functions return (metric, per-item values); the metric is the argmax agreement."""
    pytest.importorskip("nncf", reason="nncf is in the dev extra")
    from ssformer.inference.openvino_int8 import agreement_metric

    conv = torch.nn.Conv2d(3, 2, 1).eval()
    compiled = ov.Core().compile_model(ov.convert_model(conv, example_input=torch.randn(1, 3, 4, 4)), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(1, 3, 4, 4)
    with torch.no_grad():
        mask = conv(x).argmax(dim=1)
    flipped = mask.clone()
    flipped[..., :2] = 1 - flipped[..., :2]  # half the pixels of the second image disagree
    metric, per_item = agreement_metric([mask, flipped])(compiled, [(0, x.numpy()), (1, x.numpy())])
    assert per_item == [1.0, 0.5] and metric == 0.75


def test_int8_quantizes_the_swin_matmuls_and_keeps_the_convolutions_in_float(dynamic_ir):
    """The patch embedding, the decoder's 1x1 convolutions and the classifier stay float: quantizing them
    cost most of the int8 error (argmax agreement 95.6% -> 99.3% on a camvid_cpu model after 700 iterations)."""
    from ssformer.inference.openvino import compile_ir, read_ir
    from ssformer.inference.openvino_int8 import Int8Settings, quantize_ir

    exported, _ = dynamic_ir
    float_ir = read_ir(exported.path)
    torch.manual_seed(1)
    inputs = [torch.randn(1, 3, 48, 64) for _ in range(3)]
    int8_ir, _ = quantize_ir(float_ir, inputs, inputs, Int8Settings(calibration="unused"), compile_ir(float_ir, "f32"))

    def quantized_inputs(op_type: str) -> list[bool]:
        """For each op of ``op_type``: whether a FakeQuantize feeds one of its inputs."""
        return [any(port.get_source_output().get_node().get_type_name() == "FakeQuantize"
                    for port in op.inputs()) for op in int8_ir.get_ops() if op.get_type_name() == op_type]

    convolutions, matmuls = quantized_inputs("Convolution"), quantized_inputs("MatMul")
    assert convolutions and not any(convolutions)
    assert matmuls and sum(matmuls) >= len(matmuls) // 2  # the block linears (attention's own products may stay float)


def test_compiling_leaves_the_callers_signal_stack_in_place(dynamic_ir):
    """OpenVINO's compilation swaps in an alternate signal stack it frees later; a process that then
    started image-decoding workers died with SIGSEGV when one ended (the SIGCHLD handler ran on it)."""
    import ctypes
    import gc
    import sys

    from ssformer.inference.openvino import compile_ir, read_ir
    from ssformer.utils import _SignalStack

    if not sys.platform.startswith("linux"):
        pytest.skip("sigaltstack is read through Linux's libc here")
    libc = ctypes.CDLL(None, use_errno=True)

    def current() -> tuple:
        stack = _SignalStack()
        assert libc.sigaltstack(None, ctypes.byref(stack)) == 0
        return stack.ss_sp, stack.ss_size, stack.ss_flags

    before = current()
    compiled = [compile_ir(read_ir(dynamic_ir[0].path), precision) for precision in ("f32", "f32")]
    assert current() == before
    del compiled
    gc.collect()
    assert current() == before
