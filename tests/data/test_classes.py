"""Class names and palettes."""

import csv
import itertools

import pytest

from ssformer.data import classes
from ssformer.data.classes import dataset_classes, default_palette, voc_color
from tests.conftest import ADE_SAMPLE, requires_dir


@pytest.mark.parametrize("name,count", [("ade20k", 150), ("cityscapes", 19), ("camvid", 11), ("voc", 21)])
def test_counts_and_colours(name, count):
    names, palette = dataset_classes(name)
    assert len(names) == count == len(palette) and len(set(names)) == count
    assert all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette)


@pytest.mark.parametrize("name", ["cityscapes", "camvid", "voc"])
def test_palettes_distinct(name):
    palette = dataset_classes(name)[1]
    assert len(set(palette)) == len(palette)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'coco'; known: ade20k, camvid, cityscapes, voc"):
        dataset_classes("coco")


@requires_dir(ADE_SAMPLE, "ADE20K sample")
def test_ade_names_are_the_first_names_in_object_info():
    """This copy of objectInfo150.csv has ';' both between names and between words of a name, so
    each shipped name, words joined by ';', must start its row's Name column at a ';' boundary."""
    with open(ADE_SAMPLE / "objectInfo150.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["Idx"]) for r in rows] == list(range(1, 151))
    for name, row in zip(classes.ADE20K_CLASSES, rows):
        words = row["Name"].split(";")
        assert words[: len(name.split())] == name.split(), (name, row["Name"])


def test_known_colours():
    assert dataset_classes("camvid")[1][0] == (128, 128, 128)   # Sky
    assert dataset_classes("camvid")[1][3] == (128, 64, 128)    # Road
    assert dataset_classes("cityscapes")[1][0] == (128, 64, 128)  # road
    assert dataset_classes("cityscapes")[1][13] == (0, 0, 142)    # car
    voc = dataset_classes("voc")[1]
    assert voc[:4] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert voc[15] == (192, 128, 128)  # person
    assert voc_color(255) == (224, 224, 192)  # VOC's border colour


def test_voc_colours_one_to_one():
    assert len({voc_color(i) for i in range(4096)}) == 4096


def test_cityscapes_label_id_table():
    table = classes.CITYSCAPES_LABEL_ID_TO_TRAIN_ID
    assert sorted(table) == list(range(34))
    assert sorted(v for v in table.values() if v != 255) == list(range(19))
    assert table[7] == 0 and table[26] == 13 and table[33] == 18 and table[0] == 255


@pytest.mark.parametrize("n", [0, 1, 5, 21, 150, 1000])
def test_default_palette_distinct_and_deterministic(n):
    palette = default_palette(n)
    assert len(palette) == n and len(set(palette)) == n and palette == default_palette(n)
    assert default_palette(n + 3)[:n] == palette  # adding classes keeps the earlier colours


def test_default_palette_small_sets_are_far_apart():
    palette = default_palette(12)
    closest = min(sum((a - b) ** 2 for a, b in zip(p, q)) ** 0.5 for p, q in itertools.combinations(palette, 2))
    assert closest > 40
    with pytest.raises(ValueError):
        default_palette(-1)
