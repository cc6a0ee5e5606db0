"""An mmseg checkpoint's config text is read as data, never executed."""

from __future__ import annotations

from ssformer.checkpoints.mmseg_config import parse_config_text, preprocessing_from_config

# The shape of mmcv's Config.pretty_text as mmseg 0.24.1's tools/train.py stores it in meta['config'].
TEXT = """norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    decode_head=dict(type='SegformerHead', num_classes=150, ignore_index=255, norm_cfg=dict(type='SyncBN')),
    train_cfg=dict(),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
dataset_type = 'ADE20KDataset'
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='MultiScaleFlipAug', img_scale=(2048, 512), flip=False,
         transforms=[dict(type='Resize', keep_ratio=True), dict(type='RandomFlip'),
                     dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
                     dict(type='ImageToTensor', keys=['img']), dict(type='Collect', keys=['img'])])
]
data = dict(samples_per_gpu=2, test=dict(type='ADE20KDataset', data_root='data/ade', reduce_zero_label=True,
                                         pipeline=test_pipeline))
lr = -1.5e-4
evil = __import__('os').system('touch /tmp/ssformer-should-not-exist')
"""


def test_assignments_are_read_as_literals():
    config = parse_config_text(TEXT)
    assert config["norm_cfg"] == {"type": "SyncBN", "requires_grad": True}
    assert config["lr"] == -1.5e-4
    assert config["data"]["test"]["pipeline"][1]["img_scale"] == (2048, 512)  # a name of an earlier assignment
    assert "evil" not in config  # calls other than dict(...) are skipped, not run


def test_code_in_the_text_never_runs(tmp_path):
    marker = tmp_path / "ran"
    parse_config_text(f"x = __import__('pathlib').Path({str(marker)!r}).touch()\ny = dict(a=1)")
    assert not marker.exists()


def test_test_pipeline_becomes_preprocessing():
    p, notes = preprocessing_from_config(parse_config_text(TEXT))
    assert notes == []
    assert (p.img_scale, p.keep_ratio, p.mode, p.crop_size, p.stride) == ((2048, 512), True, "slide", (512, 512),
                                                                          (341, 341))
    assert p.mean == (123.675, 116.28, 103.53) and p.reduce_zero_label and p.ignore_index == 255


def test_config_without_pipeline_says_so():
    p, notes = preprocessing_from_config(parse_config_text("model = dict(type='EncoderDecoder')"))
    assert p is None and notes == ["the checkpoint's config has no test pipeline"]
