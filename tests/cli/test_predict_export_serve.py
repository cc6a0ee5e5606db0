"""End to end: ``ssformer predict``, ``ssformer export`` and ``ssformer serve`` as users run them."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ssformer
from ssformer.cli.main import main
from tests.conftest import ADE_SAMPLE, requires_dir, save_tiny_model, tiny_model_kwargs

ADE_IMAGES = ADE_SAMPLE / "sampleData" / "images"


@pytest.fixture(scope="module")
def tiny150(tmp_path_factory):
    """A random 150-class model written with save_pretrained (ADE20K's class count)."""
    return save_tiny_model(tmp_path_factory, 150, "tiny150")


@requires_dir(ADE_SAMPLE, "ADE20K sample")
def test_predict_on_the_ade20k_sample(tiny150, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(tiny150), str(ADE_IMAGES), "--out", str(out)]) == 0
    sources = sorted(ADE_IMAGES.glob("*.jpg"))
    assert len(sources) == 3
    segmenter = ssformer.Segmenter(tiny150)
    for source in sources:
        original = Image.open(source)
        mask = Image.open(out / f"{source.stem}.png")
        assert mask.mode == "P" and mask.size == original.size
        values = np.asarray(mask)
        assert values.max() < 150
        np.testing.assert_array_equal(values, segmenter.predict(source))  # lossless class indices
        palette = np.asarray(mask.getpalette()[:450]).reshape(150, 3)
        np.testing.assert_array_equal(palette, np.asarray(segmenter.palette))
        overlay = Image.open(out / f"{source.stem}_overlay.jpg")
        assert overlay.mode == "RGB" and overlay.size == original.size
    legend = Image.open(out / "legend.png")
    assert legend.mode == "RGB" and legend.width > 100 and legend.height > 100
    summary = json.loads((out / "predictions.json").read_text())
    assert sorted(summary["images"]) == [s.stem for s in sources] and summary["failed"] == {}
    for entry in summary["images"].values():
        assert sum(entry["classes"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_keeps_going_past_a_corrupt_file(tiny150, tmp_path):
    inputs = tmp_path / "in"
    (inputs / "nested").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(inputs / "a.png")
    Image.fromarray(rng.integers(0, 256, (17, 9), dtype=np.uint8)).save(inputs / "nested" / "b.jpg")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", str(tiny150), str(inputs), "--out", str(out), "--save-proba",
                 "--img-scale", "64", "32", "--batch-size", "2"])
    assert code == 1
    assert Image.open(out / "a.png").size == (30, 20)
    assert Image.open(out / "nested" / "b.png").size == (9, 17)  # relative path under the folder kept
    proba = np.load(out / "nested" / "b_proba.npy")
    assert proba.shape == (150, 17, 9) and proba.dtype == np.float16
    np.testing.assert_array_equal(proba.astype(np.float32).argmax(0), np.asarray(Image.open(out / "nested" / "b.png")))
    assert not (out / "broken.png").exists()
    failed = json.loads((out / "predictions.json").read_text())["failed"]
    assert list(failed) == [str(inputs / "broken.jpg")] and "broken.jpg" in failed[str(inputs / "broken.jpg")]


def test_predict_rejects_missing_inputs_and_wrong_checkpoints(tiny150, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(tiny150), str(tmp_path / "nope.jpg"), "--out", str(tmp_path)]) == 2
    assert "nope.jpg does not exist" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["predict", "--checkpoint", str(tmp_path / "nomodel"), str(tmp_path / "x.png"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "nomodel does not exist" in capsys.readouterr().err
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(tiny_model_kwargs(num_classes=19)))
    assert main(["predict", "--checkpoint", str(tiny150 / "model.safetensors"), "--config", str(config),
                 str(tmp_path / "x.png"), "--out", str(tmp_path / "o")]) == 2
    assert "150 classes, but the model config asks for 19" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(tiny150), str(tmp_path / "*.nothing"), "--out", str(tmp_path)]) == 2
    assert "matches no files" in capsys.readouterr().err


@pytest.mark.slow
def test_export_cli_prints_the_onnx_check(tiny150, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra")
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(tiny150), "--format", "onnx", "--size", "40", "60",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnx at 40x60: max |logit difference| to PyTorch = " in printed and out.is_file()
    diff = float(printed.split("to PyTorch = ")[1].split()[0])
    assert diff < 1e-3
    assert main(["export", "--checkpoint", str(tmp_path / "absent"), "--format", "onnx", "--size", "40", "60",
                 "--out", str(out)]) == 2
    assert "absent does not exist" in capsys.readouterr().err


@pytest.mark.slow
@requires_dir(ADE_SAMPLE, "ADE20K sample")
def test_int8_export_cli_calibrates_on_a_folder_and_prints_the_check(tiny150, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extra")
    out = tmp_path / "model.int8.onnx"
    argv = ["export", "--checkpoint", str(tiny150), "--format", "onnx", "--size", "40", "60", "--int8",
            "--calib", str(ADE_IMAGES), "--calib-images", "2", "--out", str(out)]
    # a random 150-class model has small logit margins: int8 changes some of its argmaxes
    assert main(argv + ["--min-agreement", "1"]) == 1
    printed = capsys.readouterr().out
    assert "below the minimum agreement 100.00%" in printed and not out.exists()
    assert main(argv + ["--min-agreement", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "float onnx at 40x60: max |logit difference| to PyTorch = " in printed
    assert "int8 against float onnx: argmax agreement " in printed and "(2 images, 4800 pixels)" in printed
    assert f"wrote {out}" in printed and out.is_file()


@pytest.mark.parametrize("extra,message", [
    (["--int8"], "--int8 needs --calib DIR"),
    (["--int8", "--calib", "x", "--format", "torchscript"], "--int8 applies to --format onnx"),
    (["--calib", "x"], "--calib, --check and --check-labels only apply with --int8"),
    (["--int8", "--calib", "{tmp}", "--check-labels", "{tmp}"], "--check-labels apply to --format openvino"),
    (["--int8", "--calib", "{tmp}/absent"], "absent does not exist"),
    (["--int8", "--calib", "{tmp}", "--min-agreement", "2"], "--min-agreement must be in [0, 1]"),
])
def test_int8_export_refuses_bad_settings_before_exporting(tiny150, tmp_path, capsys, extra, message):
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    argv = ["export", "--checkpoint", str(tiny150), "--size", "40", "60", "--out", str(tmp_path / "m.onnx")]
    if "--format" not in extra:
        argv += ["--format", "onnx"]
    (tmp_path / "a.png").write_bytes(b"")  # an (empty) image for the folder cases to find
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert "ssformer export: error: " in err and message in err.split("error: ", 1)[1]
    assert not (tmp_path / "m.onnx").exists()


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"headless browser test needs {CHROMIUM} (Debian package chromium)")
def test_demo_page_in_a_headless_browser(tiny150, tmp_path):
    """``ssformer serve`` in a subprocess; Chromium opens the page, which uploads an image through the
    same code path as the file box (``#upload=<data URL>``), and the DOM and a screenshot are checked."""
    server = subprocess.Popen([sys.executable, "-m", "ssformer.cli.main", "serve", "--checkpoint", str(tiny150),
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("ssformer serve: http://127.0.0.1:"), line + server.stderr.read()
        base = line.split()[2]
        image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        url = base + "#upload=" + urllib.parse.quote(data_url)
        browser = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=60000"]
        dom = subprocess.run(browser + ["--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
        status = re.search(r'<p id="status"[^>]*>([^<]*)</p>', dom)
        assert status is not None, dom[-2000:]
        expected_classes = len(np.unique(ssformer.Segmenter(tiny150).predict(image)))
        assert status.group(1) == f"Done: 64x48, {expected_classes} classes."
        assert dom.count('class="class-row"') == expected_classes
        assert 'id="overlay" alt="segmentation overlay" src="data:image/png;base64,' in dom
        screenshot = tmp_path / "demo_page.png"
        subprocess.run(browser + ["--window-size=900,700", f"--screenshot={screenshot}", url],
                       capture_output=True, text=True, timeout=180)
        shot = np.asarray(Image.open(screenshot).convert("RGB"))
        assert shot.shape == (700, 900, 3)
        assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 50  # the overlay and swatches were drawn
        artifacts = os.environ.get("SSFORMER_TEST_ARTIFACTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(screenshot, Path(artifacts) / "demo_page.png")
    finally:
        server.terminate()
        server.wait(timeout=30)
