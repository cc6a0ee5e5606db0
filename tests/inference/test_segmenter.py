"""Segmenter: preprocessing like evaluation, masks at the original size, input kinds, bad input."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ssformer
from ssformer.checkpoints import CheckpointError
from ssformer.data.io import ImageError
from ssformer.errors import UserError
from ssformer.inference.segmenter import Labels, PipelineOverrides, Segmenter
from tests.conftest import tiny_model_kwargs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ssformer.SSformer(**tiny_model_kwargs(num_classes=7)).eval()


@pytest.fixture(scope="module")
def segmenter(model):
    return Segmenter(model, pipeline=PipelineOverrides(img_scale=(96, 64)))


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)  # smooth-ish content so resizing matters little
    return np.asarray(Image.fromarray(base).resize((50, 30), Image.BILINEAR))


def test_mask_has_the_original_size_and_follows_the_eval_pipeline(segmenter, model, picture):
    mask = segmenter.predict(picture)
    assert mask.shape == (30, 50) and mask.dtype == np.int64
    # by hand: 50x30 with scale (96, 64): factor min(96/50, 64/30) = 1.92 -> 96x58 (w x h), resized with
    # OpenCV's bilinear filter as mmcv's test pipeline does (mmcv.imrescale -> cv2.resize INTER_LINEAR)
    resized = cv2.resize(picture, (96, 58), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    # mmseg's Normalize (mean/std as float32 arrays) -> mmcv.imnormalize_: cv2.subtract, cv2.multiply by 1 / std
    mean = np.float64(np.array([[123.675, 116.28, 103.53]], np.float32))
    std = np.float64(np.array([[58.395, 57.12, 57.375]], np.float32))
    x = cv2.multiply(cv2.subtract(resized, mean), 1 / std)
    x = torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        logits = F.interpolate(model(x), size=(30, 50), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(mask, logits.argmax(1)[0].numpy())
    proba = segmenter.predict_proba(picture)
    assert proba.shape == (7, 30, 50) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(proba, logits.softmax(1)[0].numpy(), atol=1e-6)


def test_paths_pil_images_and_arrays_give_the_same_mask(segmenter, picture, tmp_path):
    Image.fromarray(picture).save(tmp_path / "a.png")
    expected = segmenter.predict(picture)
    np.testing.assert_array_equal(segmenter.predict(tmp_path / "a.png"), expected)
    np.testing.assert_array_equal(segmenter.predict(str(tmp_path / "a.png")), expected)
    np.testing.assert_array_equal(segmenter.predict(Image.fromarray(picture)), expected)


def test_grey_rgba_palette_and_16_bit_images_are_converted(segmenter, picture, tmp_path):
    grey = picture[:, :, 1]
    as_rgb = segmenter.predict(np.stack([grey] * 3, axis=-1))
    np.testing.assert_array_equal(segmenter.predict(Image.fromarray(grey, mode="L")), as_rgb)
    np.testing.assert_array_equal(segmenter.predict(grey), as_rgb)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # 16-bit grey PNG
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_array_equal(segmenter.predict(tmp_path / "g16.png"), as_rgb)
    rgba = np.dstack([picture, np.full(grey.shape, 77, np.uint8)])
    np.testing.assert_array_equal(segmenter.predict(Image.fromarray(rgba, mode="RGBA")), segmenter.predict(picture))
    palette_image = Image.fromarray(picture).quantize(16)
    np.testing.assert_array_equal(segmenter.predict(palette_image),
                                  segmenter.predict(np.asarray(palette_image.convert("RGB"))))


def test_exif_orientation_is_respected(segmenter, picture, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored 50x30 picture is shown 30 wide, 50 high
    Image.fromarray(picture).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    mask = segmenter.predict(tmp_path / "rotated.jpg")
    assert mask.shape == (50, 30)


def test_batch_equals_single_predictions(segmenter, picture):
    """Equal masks, up to pixels where two classes tie within float rounding: batched matrix products
    block differently (a 1e-7 logit difference flipped 1 pixel of 1500 on an AVX2-only CPU)."""
    images = [picture, picture[:20, :17], picture[::-1].copy(), picture[:20, :17].copy()]
    batch = segmenter.predict_batch(images, batch_size=2)
    for image, mask in zip(images, batch):
        single = segmenter.predict(image)
        top2 = np.sort(segmenter.predict_proba(image), axis=0)[-2:]
        near_tie = (top2[1] - top2[0]) < 1e-5
        assert near_tie.mean() < 0.01
        np.testing.assert_array_equal(mask[~near_tie], single[~near_tie])


def test_slide_and_whole_agree_when_the_crop_covers_the_image(model, picture):
    whole = Segmenter(model, pipeline=PipelineOverrides(mode="whole", img_scale=(96, 64)))
    slide = Segmenter(model, pipeline=PipelineOverrides(mode="slide", crop=(64, 96), stride=(32, 32),
                                                        img_scale=(96, 64)))
    np.testing.assert_array_equal(slide.predict_proba(picture), whole.predict_proba(picture))
    smaller = Segmenter(model, pipeline=PipelineOverrides(mode="slide", crop=(32, 48), stride=(16, 24),
                                                          img_scale=(96, 64)))
    assert smaller.predict(picture).shape == (30, 50)


def test_pipeline_overrides_change_the_models_settings_and_labels_its_names(model):
    """Given settings replace the model's own; the rest (and "auto" img_scale) are kept."""
    plain = Segmenter(model)
    changed = Segmenter(model, pipeline=PipelineOverrides(mode="slide", crop=48, stride=(16, 24), tta=True,
                                                          scales=(1.0, 2.0), img_scale=None),
                        labels=Labels([f"c{i}" for i in range(7)], [[i, i, i] for i in range(7)]))
    assert changed.preprocessing.to_dict() == {**plain.preprocessing.to_dict(), "mode": "slide", "crop_size": [48, 48],
                                               "stride": [16, 24], "tta_scales": [1.0, 2.0], "img_scale": None}
    assert changed.tta and not plain.tta and changed.img_scale is None
    assert changed.class_names[3] == "c3" and tuple(changed.palette[3]) == (3, 3, 3)
    with pytest.raises(UserError, match="img_scale must be 'auto', None or \\(long, short\\), got 'big'"):
        PipelineOverrides(img_scale="big")


def test_overlay_blends_image_and_class_colours(segmenter, picture):
    mask = segmenter.predict(picture)
    colours = np.asarray(segmenter.palette, dtype=np.uint8)[mask]
    np.testing.assert_array_equal(np.asarray(segmenter.overlay(picture, mask, alpha=0.0)), picture)
    np.testing.assert_array_equal(np.asarray(segmenter.overlay(picture, mask, alpha=1.0)), colours)
    half = np.asarray(segmenter.overlay(picture, mask, alpha=0.5)).astype(int)
    assert np.abs(half - (picture.astype(int) + colours) / 2).max() <= 0.5 + 1e-9


def test_loads_folders_and_checkpoint_files_with_inferred_settings(model, picture, tmp_path):
    expected = Segmenter(model, pipeline=PipelineOverrides(img_scale=(96, 64))).predict(picture)
    model.save_pretrained(tmp_path / "folder")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "plain.pth")
    for source in (tmp_path / "folder", tmp_path / "folder" / "model.safetensors", tmp_path / "plain.pth"):
        np.testing.assert_array_equal(
            Segmenter(source, pipeline=PipelineOverrides(img_scale=(96, 64))).predict(picture), expected)


def test_bad_inputs_give_clear_errors(segmenter, model, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        segmenter.predict(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("this is text, not an image")
    with pytest.raises(ImageError, match="notes.png"):
        segmenter.predict(tmp_path / "notes.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg"):
        segmenter.predict(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="zero size"):
        segmenter.predict(np.zeros((0, 12, 3), np.uint8))
    with pytest.raises(ImageError, match="zero size"):
        segmenter.predict(Image.new("RGB", (0, 5)))
    with pytest.raises(ImageError, match="shape"):
        segmenter.predict(np.zeros((4, 4, 2), np.uint8))
    truncated = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 9).save(truncated, format="PNG")
    (tmp_path / "cut.png").write_bytes(truncated.getvalue()[:60])
    with pytest.raises(ImageError, match="cut.png"):
        segmenter.predict(tmp_path / "cut.png")


def test_checkpoint_for_another_class_count_is_rejected(model, tmp_path):
    model.save_pretrained(tmp_path / "seven")
    config = {**tiny_model_kwargs(num_classes=19)}
    with pytest.raises(CheckpointError, match="for 7 classes, but the model config asks for 19"):
        Segmenter(tmp_path / "seven" / "model.safetensors", config=config)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Segmenter(tmp_path / "nowhere")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        Segmenter(tmp_path / "junk.pth")


def test_bf16_on_cpu_when_asked(picture):
    torch.manual_seed(0)
    fp32 = Segmenter(ssformer.SSformer(**tiny_model_kwargs(num_classes=7)),
                     pipeline=PipelineOverrides(img_scale=(96, 64)))
    assert fp32.dtype == torch.float32  # "auto" on the CPU
    torch.manual_seed(0)
    bf16 = Segmenter(ssformer.SSformer(**tiny_model_kwargs(num_classes=7)), dtype="bf16",
                     pipeline=PipelineOverrides(img_scale=(96, 64)))
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    proba = bf16.predict_proba(picture)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba, fp32.predict_proba(picture), atol=0.05)
    with pytest.raises(ValueError, match="dtype"):
        Segmenter(fp32.model, dtype="int8")
