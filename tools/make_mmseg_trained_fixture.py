"""Make a checkpoint exactly as the official tools make one, and what mmseg predicts with it.

The committed fixtures in tests/fixtures/official_*.pth were saved by hand. A checkpoint written
by mmseg 0.24.1's own training loop differs: mmcv's runner puts numpy scalars in
``meta['hook_msgs']`` (the EvalHook's ``best_score``), the class names, the palette and the whole
config text in ``meta``, and the optimizer state beside the weights. This script makes such a
checkpoint for a tiny SSformer (mmseg ``SwinTransformer`` + ``SegformerHead``, the official
configs/SSformer structure, shrunk) trained for a few iterations on a few CamVid frames, and
records mmseg's own predictions with it.

Run it with the interpreter made by ../shared/reference/setup_official.sh (mmseg 0.24.1, mmcv
1.7.2, torch 2.13) from the repository root:

    bash ../shared/reference/setup_official.sh /tmp/ssformer-official
    /tmp/ssformer-official/bin/python tools/make_mmseg_trained_fixture.py \
        --camvid ../shared/data/CamVid --out tests/fixtures/mmseg_trained

Steps, each with mmseg's own code:

1. copy TRAIN_NAMES / VAL_NAMES from CamVid, downscaled to 240x180 (cv2 INTER_AREA for images,
   INTER_NEAREST for labels; labels stay CamVid's 0..10 with 11 = void);
2. write the config ``tiny_camvid.py`` (CustomDataset with CLASSES/PALETTE/ignore_index 11;
   test pipeline ``MultiScaleFlipAug(img_scale=(1024, 128))`` + ``Resize(keep_ratio=True)``,
   which shrinks a 240x180 image to 171x128 by the non-integer factor 128/180);
3. run mmseg's ``tools/train.py`` (shipped as ``mmseg/.mim/tools/train.py``) with ``--seed 0
   --deterministic``: IterBasedRunner, 80 iterations of batch 2 on CPU, AdamW, an EvalHook every
   20 iterations with ``save_best='mIoU'``;
4. run mmseg's ``tools/publish_model.py`` (``process_checkpoint``) on the best checkpoint;
5. with ``init_segmentor(config, published, device='cpu')``, record for every val image the mask of
   ``inference_segmentor`` (original size), the test pipeline's resized image and the decode
   head's logits (1/4 of the resized size) in ``expected.npz``, and the settings and the EvalHook's
   val metrics (from the runner's ``*.log.json``) in ``info.json``.

Under torch 2.13, mmcv's ``load_checkpoint`` and ``publish_model.py`` call ``torch.load`` without
``weights_only``, which now defaults to True and refuses the numpy scalar; as the issue says,
they need ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (set here). mmseg's data loader needs
``persistent_workers=False`` with ``workers_per_gpu=0``. mmcv 1.7.2 here is the pure-Python build,
so ``mmcv.ops`` is stubbed as ../shared/reference/official.py does.

The weights, masks and metrics are deterministic (seed 0, one thread); the checkpoint files are
not byte-identical between runs, since mmcv stores ``time.asctime()`` in ``meta['time']`` and
``env_info`` describes the machine, so the published file name's sha256 prefix changes.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import runpy
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # mmcv's own torch.load calls need it (torch >= 2.6)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str((HERE.parent.parent / "shared" / "reference").resolve()))
import official  # noqa: F401  (installs the mmcv.ops / torchvision stubs)

sys.modules["mmcv.ops"].get_compiler_version = lambda: "n/a"  # what mmcv's collect_env reports without ops
sys.modules["mmcv.ops"].get_compiling_cuda_version = lambda: "n/a"

import cv2
import mmcv
import mmseg
import numpy as np
import torch

TRAIN_NAMES = [  # CamVid train frames from three different sequences
    "0001TP_006690", "0001TP_006900", "0001TP_007200", "0006R0_f00930", "0006R0_f01560",
    "0016E5_00390", "0016E5_01290", "0016E5_05460",
]
VAL_NAMES = ["0016E5_07959", "0016E5_08085", "0016E5_08145"]
SIZE = (240, 180)  # (width, height) of the copied frames
TEST_SCALE = (1024, 128)
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
           "Pedestrian", "Bicyclist")
PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
           [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
IGNORE = 11
ITERS = 160
EVAL_INTERVAL = 40
EMBED = 6

CONFIG = f"""# Tiny SSformer (official configs/SSformer structure: mmseg SwinTransformer + SegformerHead)
# on 8 CamVid frames downscaled to 240x180. Written by tools/make_mmseg_trained_fixture.py.
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    pretrained=None,
    backbone=dict(
        type='SwinTransformer', pretrain_img_size=224, embed_dims={EMBED}, patch_size=4,
        window_size=7, mlp_ratio=4, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
        strides=(4, 2, 2, 2), out_indices=(0, 1, 2, 3), qkv_bias=True, qk_scale=None,
        patch_norm=True, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.1,
        use_abs_pos_embed=False, act_cfg=dict(type='GELU'),
        norm_cfg=dict(type='LN', requires_grad=True)),
    decode_head=dict(
        type='SegformerHead', in_channels=[{EMBED}, {2 * EMBED}, {4 * EMBED}, {8 * EMBED}],
        in_index=[0, 1, 2, 3], channels=32, dropout_ratio=0.1, num_classes={len(CLASSES)},
        norm_cfg=norm_cfg, align_corners=False, ignore_index={IGNORE},
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
dataset_type = 'CustomDataset'
data_root = 'data/tiny_camvid'
classes = {CLASSES!r}
palette = {PALETTE!r}
img_norm_cfg = dict(mean={MEAN!r}, std={STD!r}, to_rgb=True)
crop_size = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', img_scale={SIZE!r}, ratio_range=(0.5, 2.0)),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75, ignore_index={IGNORE}),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size=crop_size, pad_val=0, seg_pad_val={IGNORE}),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_semantic_seg']),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='MultiScaleFlipAug',
        img_scale={TEST_SCALE!r},
        flip=False,
        transforms=[
            dict(type='Resize', keep_ratio=True),
            dict(type='RandomFlip'),
            dict(type='Normalize', **img_norm_cfg),
            dict(type='ImageToTensor', keys=['img']),
            dict(type='Collect', keys=['img']),
        ])
]
_split = dict(type=dataset_type, data_root=data_root, classes=classes, palette=palette,
              img_suffix='.png', seg_map_suffix='.png', ignore_index={IGNORE})
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=0,
    persistent_workers=False,
    train=dict(**_split, img_dir='train', ann_dir='trainannot', pipeline=train_pipeline),
    val=dict(**_split, img_dir='val', ann_dir='valannot', pipeline=test_pipeline),
    test=dict(**_split, img_dir='val', ann_dir='valannot', pipeline=test_pipeline))
log_config = dict(interval=5, hooks=[dict(type='TextLoggerHook', by_epoch=False)])
dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
cudnn_benchmark = False
optimizer = dict(
    type='AdamW', lr=0.004, betas=(0.9, 0.999), weight_decay=0.01,
    paramwise_cfg=dict(custom_keys=dict(
        absolute_pos_embed=dict(decay_mult=0.0),
        relative_position_bias_table=dict(decay_mult=0.0),
        norm=dict(decay_mult=0.0))))
optimizer_config = dict()
lr_config = dict(policy='poly', warmup='linear', warmup_iters=5, warmup_ratio=1e-6, power=1.0,
                 min_lr=0.0, by_epoch=False)
runner = dict(type='IterBasedRunner', max_iters={ITERS})
checkpoint_config = dict(by_epoch=False, interval={ITERS})
evaluation = dict(interval={EVAL_INTERVAL}, metric='mIoU', pre_eval=True, save_best='mIoU')
"""


def copy_frames(camvid: Path, root: Path) -> None:
    """The chosen frames at SIZE in CamVid's SegNet layout ({split}/, {split}annot/)."""
    for split, names in (("train", TRAIN_NAMES), ("val", VAL_NAMES)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir(parents=True)
        for name in names:
            img = cv2.imread(str(camvid / split / f"{name}.png"), cv2.IMREAD_COLOR)
            lab = cv2.imread(str(camvid / f"{split}annot" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
            if img is None or lab is None:
                raise SystemExit(f"CamVid frame {split}/{name}.png or its label is missing under {camvid}")
            cv2.imwrite(str(root / split / f"{name}.png"), cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA))
            cv2.imwrite(str(root / f"{split}annot" / f"{name}.png"),
                        cv2.resize(lab, SIZE, interpolation=cv2.INTER_NEAREST))


def run_tool(name: str, argv: list[str]) -> dict:
    """Run one of mmseg's own tools/*.py (as shipped in the package) in this process."""
    path = Path(mmseg.__file__).parent / ".mim" / "tools" / name
    old = sys.argv
    sys.argv = [str(path), *argv]
    try:
        return runpy.run_path(str(path), run_name="__main__" if name == "train.py" else "tool")
    finally:
        sys.argv = old


def publish(best: Path, out_dir: Path) -> Path:
    """mmseg's tools/publish_model.py on ``best``; it renames the file with a background ``mv``."""
    tool = run_tool("publish_model.py", [])
    target = out_dir / "tiny_camvid.pth"
    tool["process_checkpoint"](str(best), str(target))
    for _ in range(100):
        found = glob.glob(str(out_dir / "tiny_camvid-*.pth"))
        if found and not target.exists():
            return Path(found[0])
        time.sleep(0.1)
    raise SystemExit("publish_model.py did not produce tiny_camvid-<sha>.pth")


def predictions(config: Path, checkpoint: Path, val_dir: Path) -> dict[str, np.ndarray]:
    """mmseg's inference_segmentor masks, its test pipeline's resized input and head logits."""
    from mmseg.apis import inference_segmentor, init_segmentor
    from mmseg.apis.inference import LoadImage
    from mmseg.datasets.pipelines import Compose

    model = init_segmentor(str(config), str(checkpoint), device="cpu")
    pipeline = Compose([LoadImage()] + model.cfg.data.test.pipeline[1:])
    out: dict[str, np.ndarray] = {}
    mean = np.array(MEAN, np.float32)[:, None, None]
    std = np.array(STD, np.float32)[:, None, None]
    for name in VAL_NAMES:
        path = str(val_dir / f"{name}.png")
        mask = inference_segmentor(model, path)[0]
        data = pipeline({"img": path})
        x = data["img"][0][None]  # 1x3xhxw, normalised RGB, exactly what the model sees
        meta = data["img_metas"][0].data
        with torch.no_grad():
            head = model.decode_head(model.extract_feat(x))
        resized = np.rint(x[0].numpy() * std + mean)
        if np.abs(x[0].numpy() * std + mean - resized).max() > 1e-3:
            raise SystemExit("the normalised input does not invert to whole numbers")
        out[f"{name}/mask"] = mask.astype(np.uint8)
        out[f"{name}/resized_rgb"] = resized.astype(np.uint8).transpose(1, 2, 0)
        out[f"{name}/head_logits"] = head[0].numpy().astype(np.float32)
        out[f"{name}/ori_shape"] = np.array(meta["ori_shape"][:2])
        out[f"{name}/img_shape"] = np.array(meta["img_shape"][:2])
        out[f"{name}/scale_factor"] = np.asarray(meta["scale_factor"], np.float32)
    return out


def val_records(work_dir: Path) -> list[dict]:
    """The EvalHook's records from mmcv's TextLoggerHook json log, with the training iteration.

    mmcv logs a val record's ``iter`` as the number of val images, so the training iteration
    is taken from the record's position (one evaluation every EVAL_INTERVAL iterations).
    """
    (log,) = glob.glob(str(work_dir / "*.log.json"))
    lines = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    records = [r for r in lines if r.get("mode") == "val"]
    if len(records) != ITERS // EVAL_INTERVAL:
        raise SystemExit(f"expected {ITERS // EVAL_INTERVAL} val records in {log}, found {len(records)}")
    return [{"train_iter": EVAL_INTERVAL * (k + 1), **r} for k, r in enumerate(records)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--camvid", type=Path, default=HERE.parent.parent / "shared" / "data" / "CamVid")
    p.add_argument("--out", type=Path, default=HERE.parent / "tests" / "fixtures" / "mmseg_trained")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = a.out.resolve()
    camvid = a.camvid.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.chdir(tmp)  # the config's relative data_root, and no git hash in mmseg_version
        copy_frames(camvid, tmp / "data" / "tiny_camvid")
        config = tmp / "tiny_camvid.py"
        config.write_text(CONFIG)
        work = tmp / "work_dir"
        run_tool("train.py", [str(config), "--work-dir", str(work), "--seed", "0", "--deterministic"])
        (best,) = glob.glob(str(work / "best_mIoU_iter_*.pth"))
        best = Path(best)
        pub_dir = tmp / "published"
        pub_dir.mkdir()
        published = publish(best, pub_dir)
        expected = predictions(config, published, tmp / "data" / "tiny_camvid" / "val")
        records = val_records(work)

        for old in out.glob("*"):  # everything but the hand-written README.md
            if old.is_dir():
                shutil.rmtree(old)
            elif old.name != "README.md":
                old.unlink()
        (out / "camvid").mkdir(parents=True)
        for sub in ("val", "valannot"):
            shutil.copytree(tmp / "data" / "tiny_camvid" / sub, out / "camvid" / sub)
        shutil.copy(config, out / "tiny_camvid.py")
        shutil.copy(published, out / published.name)
        shutil.copy(best, out / best.name)
        np.savez_compressed(out / "expected.npz", **expected)
        best_iter = int(best.stem.rsplit("_", 1)[1])
        best_record = next(r for r in records if r["train_iter"] == best_iter)
        best_score = torch.load(best, map_location="cpu", weights_only=False)["meta"]["hook_msgs"]["best_score"]
        if abs(float(best_score) - best_record["mIoU"]) > 1e-6:
            raise SystemExit(f"log mIoU {best_record['mIoU']} != checkpoint best_score {best_score}")
        info = {
            "generator": "tools/make_mmseg_trained_fixture.py",
            "versions": {"mmseg": mmseg.__version__, "mmcv": mmcv.__version__, "torch": torch.__version__,
                         "numpy": np.__version__, "opencv": cv2.__version__},
            "published": published.name,
            "published_sha256": hashlib.sha256(published.read_bytes()).hexdigest(),
            "raw": best.name,
            "config": "tiny_camvid.py",
            "images": [f"camvid/val/{n}.png" for n in VAL_NAMES],
            "labels": [f"camvid/valannot/{n}.png" for n in VAL_NAMES],
            "image_size_wh": list(SIZE),
            "test_img_scale": list(TEST_SCALE),
            "keep_ratio": True,
            "test_mode": "whole",
            "mean": MEAN,
            "std": STD,
            "to_rgb": True,
            "classes": list(CLASSES),
            "palette": PALETTE,
            "num_classes": len(CLASSES),
            "ignore_index": IGNORE,
            "reduce_zero_label": False,
            "train_images": [f"train/{n}.png" for n in TRAIN_NAMES],
            "iters": ITERS,
            "seed": 0,
            "best_iter": best_iter,
            "val_mIoU": best_record["mIoU"],
            "val_aAcc": best_record["aAcc"],
            "val_mAcc": best_record["mAcc"],
            "val_log": records,
        }
        (out / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    print("wrote", out, sorted(p.name for p in out.iterdir()))


if __name__ == "__main__":
    main()
