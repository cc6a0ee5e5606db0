"""Datasets in their real layouts (tiny generated folders) and every bad-input error."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssformer.data import (
    ADE20K,
    CamVid,
    Cityscapes,
    DataError,
    FolderDataset,
    FolderOptions,
    PascalVOC,
    TrainTransform,
    TrainTransformSettings,
    build_dataset,
)
from tests.conftest import ADE_SAMPLE, requires_dir
from tests.data.layouts import label_values, make_ade, make_camvid, make_cityscapes, make_voc, write_image, write_label


def stored(path) -> np.ndarray:
    return np.asarray(Image.open(path))


# --- CamVid -------------------------------------------------------------------------------------

@pytest.mark.parametrize("list_files", [True, False])
def test_camvid_layout_and_void(tmp_path, list_files):
    make_camvid(tmp_path, list_files=list_files)
    dataset = CamVid(tmp_path, "train")
    assert len(dataset) == 3 and len(CamVid(tmp_path, "val")) == 2
    image, label = dataset.load(1)
    raw = stored(dataset.pairs[1][1])
    assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
    assert label.dtype == np.int64
    assert np.array_equal(label, np.where(raw == 11, 255, raw))  # void 11 -> ignore, others unchanged


def test_camvid_bad_value_names_file_and_values(tmp_path):
    make_camvid(tmp_path)
    bad = tmp_path / "trainannot" / "0001TP_000001.png"
    values = label_values(values=(0, 3))
    values[0, 0], values[1, 1] = 12, 200
    write_label(bad, values)
    dataset = CamVid(tmp_path, "train")
    with pytest.raises(DataError, match=rf"{bad}.*invalid values 12, 200"):
        dataset.load(1)
    dataset.load(0)  # the others are fine


def test_camvid_list_entry_missing_file(tmp_path):
    make_camvid(tmp_path)
    (tmp_path / "trainannot" / "0001TP_000002.png").unlink()
    with pytest.raises(DataError, match=r"train\.txt line 3: missing .*trainannot/0001TP_000002\.png"):
        CamVid(tmp_path, "train")
    dataset = CamVid(tmp_path, "train", allow_missing=True)
    assert len(dataset) == 2 and len(dataset.missing) == 1


def test_empty_split_names_folder(tmp_path):
    make_camvid(tmp_path, list_files=False)
    (tmp_path / "test").mkdir()
    (tmp_path / "testannot").mkdir()
    with pytest.raises(DataError, match=rf"no image/label pairs found in {tmp_path / 'test'}"):
        CamVid(tmp_path, "test")


def test_missing_split_folder(tmp_path):
    make_camvid(tmp_path, list_files=False)
    with pytest.raises(DataError, match=rf"folder not found: {tmp_path / 'test'}"):
        CamVid(tmp_path, "test")
    with pytest.raises(DataError, match="root folder not found"):
        CamVid(tmp_path / "nowhere", "train")


# --- ADE20K -------------------------------------------------------------------------------------

@pytest.mark.parametrize("parent", [True, False])
def test_ade20k_reduce_zero_label(tmp_path, parent):
    make_ade(tmp_path)
    root = tmp_path if parent else tmp_path / "ADEChallengeData2016"
    train, val = ADE20K(root, "training"), ADE20K(root, "val")
    assert len(train) == 3 and len(val) == 3 and "validation" in val.pairs[0][0]
    _, label = train.load(0)
    raw = stored(train.pairs[0][1]).astype(np.int64)
    assert np.array_equal(label, np.where(raw == 0, 255, raw - 1))
    assert set(np.unique(label)) <= {255, 0, 74, 149}
    assert train.num_classes == 150


def test_ade20k_without_reduce_and_out_of_range(tmp_path):
    make_ade(tmp_path)
    dataset = ADE20K(tmp_path, "training", reduce_zero_label=False)
    with pytest.raises(DataError, match="invalid values 150"):  # 150 is not a class id without the reduction
        dataset.load(0)
    bad = tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000000.png"
    write_label(bad, label_values(values=(0, 151)))
    with pytest.raises(DataError, match=rf"{bad}: invalid values 151; ADE20K labels are 0"):
        ADE20K(tmp_path, "training").load(0)


def test_ade20k_missing_annotation_and_bad_split(tmp_path):
    make_ade(tmp_path)
    (tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png").unlink()
    with pytest.raises(DataError, match=r"1 incomplete pairs.*no label for .*ADE_train_00000001\.jpg"):
        ADE20K(tmp_path, "training")
    with pytest.raises(ValueError, match="split must be one of"):
        ADE20K(tmp_path, "testing")


@requires_dir(ADE_SAMPLE, "ADE20K sample")
def test_ade20k_real_sample(tmp_path):
    """The three real ADE20K validation images, linked into the ADEChallengeData2016 layout."""
    base = tmp_path / "ADEChallengeData2016"
    for kind in ("images", "annotations"):
        (base / kind / "validation").mkdir(parents=True)
        for file in sorted((ADE_SAMPLE / "sampleData" / kind).iterdir()):
            (base / kind / "validation" / file.name).symlink_to(file)
    dataset = ADE20K(tmp_path, "validation")
    assert len(dataset) == 3
    for i in range(3):
        image, label = dataset.load(i)
        raw = stored(dataset.pairs[i][1])
        assert image.shape[:2] == label.shape and raw.max() <= 150
        assert np.array_equal(label == 255, raw == 0)
        assert set(np.unique(label)) <= set(range(150)) | {255}


# --- Cityscapes ---------------------------------------------------------------------------------

def test_cityscapes_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    dataset = Cityscapes(tmp_path, "train")
    assert len(dataset) == 4 and all(l.endswith("_gtFine_labelTrainIds.png") for _, l in dataset.pairs)
    _, label = dataset.load(0)
    assert set(np.unique(label)) <= {0, 13, 18, 255}


def test_cityscapes_converts_label_ids(tmp_path):
    make_cityscapes(tmp_path, train_ids=False)
    dataset = Cityscapes(tmp_path, "val")
    assert all(l.endswith("_gtFine_labelIds.png") for _, l in dataset.pairs)
    _, label = dataset.load(0)
    ids = stored(dataset.pairs[0][1])
    expected = np.select([ids == 7, ids == 26, ids == 33], [0, 13, 18], 255)  # road, car, bicycle; rest ignored
    assert np.array_equal(label, expected)
    write_label(Path(dataset.pairs[1][1]), label_values(values=(7, 34)))
    with pytest.raises(DataError, match="invalid values 34; Cityscapes labelIds"):
        dataset.load(1)


def test_cityscapes_missing_labels(tmp_path):
    make_cityscapes(tmp_path)
    for path in (tmp_path / "gtFine" / "train" / "bremen").glob("bremen_000001_000019_*"):
        path.unlink()
    with pytest.raises(DataError, match="no label for .*bremen_000001_000019_leftImg8bit.png"):
        Cityscapes(tmp_path, "train")


# --- Pascal VOC ---------------------------------------------------------------------------------

def test_voc_palette_pngs(tmp_path):
    make_voc(tmp_path)
    train = PascalVOC(tmp_path, "train")  # root above VOCdevkit/VOC2012 is accepted
    assert len(train) == 2 and len(PascalVOC(tmp_path / "VOCdevkit" / "VOC2012", "val")) == 1
    _, label = train.load(0)
    assert Image.open(train.pairs[0][1]).mode == "P"
    assert set(np.unique(label)) <= {0, 15, 20, 255}  # the indices, not the colours
    assert np.array_equal(label, label_values(values=(0, 15, 20, 255), seed=0))


def test_voc_augmented_list(tmp_path):
    make_voc(tmp_path)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    write_image(base / "JPEGImages" / "2008_000002.jpg", suffix_format="JPEG")
    for name in ("2007_000032", "2008_000002"):
        write_label(base / "SegmentationClassAug" / f"{name}.png", label_values(values=(0, 7)))
    (base / "ImageSets" / "Segmentation" / "trainaug.txt").write_text("2007_000032\n2008_000002\n")
    dataset = PascalVOC(tmp_path, "trainaug", label_dir="SegmentationClassAug")
    assert [Path(p).stem for p, _ in dataset.pairs] == ["2007_000032", "2008_000002"]
    assert all("SegmentationClassAug" in l for _, l in dataset.pairs)
    write_label(base / "SegmentationClassAug" / "2008_000002.png", label_values(values=(0, 21)))
    with pytest.raises(DataError, match="2008_000002.png: invalid values 21"):
        dataset.load(1)


def test_voc_missing_list(tmp_path):
    make_voc(tmp_path)
    with pytest.raises(DataError, match=r"split list not found: .*trainval\.txt"):
        PascalVOC(tmp_path, "trainval")


# --- folder -------------------------------------------------------------------------------------

def test_folder_index_labels_nested_and_suffixes(tmp_path):
    for i, name in enumerate(["a/x", "a/y", "b/z"]):
        write_image(tmp_path / "img" / f"{name}.png", seed=i)
        write_label(tmp_path / "ann" / f"{name}_mask.png", label_values(values=(0, 1, 2, 255), seed=i))
    options = FolderOptions(["bg", "cat", "dog"], img_dir="img", ann_dir="ann", img_suffix=".png",
                            seg_suffix="_mask.png")
    dataset = FolderDataset(tmp_path, options)
    assert len(dataset) == 3 and dataset.palette and len(dataset.palette) == 3
    assert np.array_equal(dataset.load(2)[1], label_values(values=(0, 1, 2, 255), seed=2))
    (tmp_path / "list.txt").write_text("b/z\na/x\n")
    subset = FolderDataset(tmp_path, options, split="list.txt")
    assert [Path(p).stem for p, _ in subset.pairs] == ["z", "x"]
    two = FolderDataset(tmp_path, dataclasses.replace(options, class_names=["bg", "cat"]))
    with pytest.raises(DataError, match=r"invalid values 2; expected class ids 0\.\.1 or the ignore index 255"):
        two.load(0)


def test_folder_split_subfolders(tmp_path):
    for split, count in (("train", 2), ("val", 1)):
        for i in range(count):
            write_image(tmp_path / "images" / split / f"{i}.jpg", seed=i, suffix_format="JPEG")
            write_label(tmp_path / "labels" / split / f"{i}.png", label_values(values=(0, 1), seed=i))
    assert len(FolderDataset(tmp_path, FolderOptions(["a", "b"]), split="train")) == 2
    assert len(FolderDataset(tmp_path, FolderOptions(["a", "b"]), split="val")) == 1
    assert len(FolderDataset(tmp_path, FolderOptions(["a", "b"]))) == 3  # everything, recursively
    with pytest.raises(DataError, match=r"split 'test': neither a list file .*test nor a folder .*images/test"):
        FolderDataset(tmp_path, FolderOptions(["a", "b"]), split="test")


def test_ignore_index_checks(tmp_path):
    write_image(tmp_path / "images" / "0.jpg", suffix_format="JPEG")
    write_label(tmp_path / "labels" / "0.png", label_values(values=(0, 1, 3)))
    dataset = FolderDataset(tmp_path, FolderOptions(["a", "b"], ignore_index=3))
    assert set(np.unique(dataset.load(0)[1])) == {0, 1, 3}
    with pytest.raises(ValueError, match="ignore_index 1 is a class id"):
        FolderDataset(tmp_path, FolderOptions(["a", "b"], ignore_index=1))
    with pytest.raises(ValueError, match="ignore_index must be in 0..65535"):
        FolderDataset(tmp_path, FolderOptions(["a", "b"], ignore_index=-1))


def test_many_classes_in_16_bit_labels(tmp_path):
    names = [f"c{i}" for i in range(300)]
    write_image(tmp_path / "images" / "0.jpg", height=12, width=16, suffix_format="JPEG")
    values = np.random.default_rng(0).choice([0, 255, 299, 65535], size=(12, 16)).astype(np.uint16)
    (tmp_path / "labels").mkdir()
    Image.fromarray(values).save(tmp_path / "labels" / "0.png")  # mode I;16
    with pytest.raises(ValueError, match="ignore_index 255 is a class id"):
        FolderDataset(tmp_path, FolderOptions(names))
    with pytest.raises(ValueError, match="transform pads labels with 255 but this dataset's ignore index is 65535"):
        FolderDataset(tmp_path, FolderOptions(names, ignore_index=65535),
                      transform=TrainTransform(TrainTransformSettings(crop_size=(8, 8))))
    dataset = FolderDataset(tmp_path, FolderOptions(names, ignore_index=65535),
                            transform=TrainTransform(TrainTransformSettings(img_scale=(16, 12), ratio_range=None, crop_size=(16, 16)), ignore_index=65535))
    assert np.array_equal(dataset.load(0)[1], values.astype(np.int64))
    label = dataset[0]["label"]
    assert set(label.unique().tolist()) <= {0, 255, 299, 65535} and (label[12:] == 65535).all()


def test_folder_colour_labels(tmp_path):
    palette = [(0, 0, 0), (200, 10, 10), (10, 200, 10)]
    indices = label_values(values=(0, 1, 2, 3))
    colours = np.array(palette + [(255, 255, 255)], dtype=np.uint8)[indices]
    write_image(tmp_path / "images" / "p.jpg", suffix_format="JPEG")
    (tmp_path / "labels").mkdir()
    Image.fromarray(colours).save(tmp_path / "labels" / "p.png")
    dataset = FolderDataset(tmp_path, FolderOptions(["a", "b", "c"], palette=palette, color_labels=True,
                                                    ignore_colors=[(255, 255, 255)]))
    assert np.array_equal(dataset.load(0)[1], np.where(indices == 3, 255, indices))
    strict = FolderDataset(tmp_path, FolderOptions(["a", "b", "c"], palette=palette, color_labels=True))
    with pytest.raises(DataError, match=r"p\.png: colours not in the palette: \(255, 255, 255\)"):
        strict.load(0)
    plain = FolderDataset(tmp_path, FolderOptions(["a", "b", "c"]))
    with pytest.raises(DataError, match=r"p\.png: colour label map"):
        plain.load(0)
    with pytest.raises(ValueError, match="color_labels needs a palette"):
        FolderDataset(tmp_path, FolderOptions(["a", "b", "c"], color_labels=True))


# --- errors common to all layouts ---------------------------------------------------------------

def test_size_mismatch_names_both_files(tmp_path):
    make_camvid(tmp_path)
    image = write_image(tmp_path / "train" / "0001TP_000000.png", height=10, width=16)
    with pytest.raises(DataError, match=rf"size mismatch: image {image} is 10x16 but label .*0001TP_000000\.png "
                                        r"is 12x16"):
        CamVid(tmp_path, "train").load(0)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_files_name_the_file(tmp_path, damage):
    make_camvid(tmp_path)
    target = tmp_path / "train" / "0001TP_000001.png"
    data = target.read_bytes()
    target.write_bytes({"garbage": b"not a png at all", "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(DataError, match=rf"cannot read image {target}"):
        CamVid(tmp_path, "train").load(1)


def test_deleted_file_after_listing(tmp_path):
    make_camvid(tmp_path)
    dataset = CamVid(tmp_path, "train")
    Path(dataset.pairs[0][1]).unlink()
    with pytest.raises(DataError, match=rf"label file not found: {dataset.pairs[0][1]}"):
        dataset.load(0)


def test_grey_image_becomes_rgb(tmp_path):
    make_camvid(tmp_path)
    Image.fromarray(np.full((12, 16), 77, np.uint8)).save(tmp_path / "train" / "0001TP_000000.png")
    image, _ = CamVid(tmp_path, "train").load(0)
    assert image.shape == (12, 16, 3) and (image == 77).all()


# --- samples and config -------------------------------------------------------------------------

def test_getitem_and_seeding(tmp_path):
    make_camvid(tmp_path)
    dataset = CamVid(tmp_path, "train", transform=TrainTransform(TrainTransformSettings(img_scale=(32, 24), crop_size=(16, 16))))
    sample = dataset[0]
    assert set(sample) >= {"image", "label", "path"}
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 16, 16)
    assert sample["label"].dtype == torch.int64 and sample["label"].shape == (16, 16)
    assert sample["path"] == dataset.pairs[0][0]
    a, b = dataset[(0, 7)], dataset[(0, 7)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    others = [dataset[(0, s)]["image"] for s in range(8, 12)]
    assert any(not torch.equal(a["image"], o) for o in others)
    epoch0 = [dataset[i]["image"] for i in range(3)]
    assert all(torch.equal(x, dataset[i]["image"]) for i, x in enumerate(epoch0))  # same epoch, same draws
    dataset.set_epoch(1)
    assert any(not torch.equal(x, dataset[i]["image"]) for i, x in enumerate(epoch0))


def test_default_transform_only_normalises(tmp_path):
    make_camvid(tmp_path)
    dataset = CamVid(tmp_path, "train")
    image, label = dataset.load(0)
    sample = dataset[0]
    expected = (image[..., 0].astype(np.float32) - 123.675) / 58.395
    np.testing.assert_allclose(sample["image"][0].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert np.array_equal(sample["label"].numpy(), label)


def test_build_dataset_from_config(tmp_path):
    make_camvid(tmp_path)
    dataset = build_dataset({"type": "camvid", "root": str(tmp_path), "split": "train"}, split="val")
    assert isinstance(dataset, CamVid) and len(dataset) == 2
    folder = build_dataset({"type": "folder", "root": str(tmp_path), "img_dir": "train", "ann_dir": "trainannot",
                            "img_suffix": ".png", "class_names": [str(i) for i in range(12)]})
    assert len(folder) == 3 and folder.num_classes == 12
    with pytest.raises(ValueError, match="unknown option.*crop_size.*allowed: root, split"):
        build_dataset({"type": "camvid", "root": str(tmp_path), "crop_size": 512})
    with pytest.raises(ValueError, match="unknown option.*'folder': img_sufix; allowed: root, class_names, img_dir, "
                                         "ann_dir, img_suffix, seg_suffix, palette, color_labels, ignore_colors, "
                                         "ignore_index, split, allow_missing, seed$"):
        build_dataset({"type": "folder", "root": str(tmp_path), "img_sufix": ".png"})
    with pytest.raises(ValueError, match="data.options.img_suffix must be a non-empty string, got 3"):
        build_dataset({"type": "folder", "root": str(tmp_path), "img_suffix": 3})
    with pytest.raises(ValueError, match="data type must be one of camvid, ade20k, cityscapes, voc, folder"):
        build_dataset({"type": "coco", "root": str(tmp_path)})
    with pytest.raises(ValueError, match="needs 'root'"):
        build_dataset({"type": "camvid"})
