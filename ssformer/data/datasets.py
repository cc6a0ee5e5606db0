"""Segmentation datasets in their published folder layouts.

Every dataset is a list of (image file, label file) pairs plus a table that turns the values stored
in a label file into training ids (``0..K-1``, or ``ignore_index`` for pixels that do not count).
Stored values that the table does not allow are errors that name the file and the values, so a
wrong ``num_classes`` or a mislabelled file fails loudly instead of training on garbage.

``dataset[i]`` gives the transformed sample; ``dataset[(i, seed)]`` gives it with the transform's
randomness drawn from ``numpy.random.default_rng(seed)`` only, which lets a sampler make every
sample reproducible (bit-exact resume). ``dataset.load(i)`` gives the untouched image and label
at their original size, for evaluation.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ssformer.data.classes import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_ID_TO_TRAIN_ID,
    CITYSCAPES_PALETTE,
    VOC_CLASSES,
    VOC_PALETTE,
    Color,
    default_palette,
)
from ssformer.data.io import DataError, colors_to_indices, read_image, read_label
from ssformer.data.transforms import Normalize
from ssformer.errors import UserError
from ssformer.settings import BOOL, STRING, check_fields, setting

# (image, label, rng) -> (image tensor, label tensor)
Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[torch.Tensor, torch.Tensor]]

_MAX_LISTED = 10


def label_table(num_classes: int, ignore_index: int = 255, mapping: dict[int, int] | None = None,
                size: int = 256) -> np.ndarray:
    """A lookup table from stored label values to training ids; -1 marks values that are errors.

    Without ``mapping`` the ids ``0..num_classes-1`` and ``ignore_index`` map to themselves.
    """
    size = max(size, num_classes, ignore_index + 1)
    table = np.full(size, -1, dtype=np.int64)
    if mapping is None:
        table[:num_classes] = np.arange(num_classes)
    else:
        for stored, train_id in mapping.items():
            table[stored] = train_id
    if 0 <= ignore_index < size:
        table[ignore_index] = ignore_index
    return table


def apply_label_table(stored: np.ndarray, table: np.ndarray, path: str, rule: str) -> np.ndarray:
    """Map stored values through ``table``; raise naming ``path`` and every disallowed value."""
    if stored.dtype.kind not in "iu":
        raise DataError(f"label {path}: expected integer values, got dtype {stored.dtype}")
    flat = stored.reshape(-1)
    if flat.size == 0:
        raise DataError(f"label {path}: empty label map")
    if flat.min() < 0 or flat.max() >= len(table):
        values = np.unique(flat)
        bad = [int(v) for v in values if v < 0 or v >= len(table) or table[v] < 0]
    else:
        counts = np.bincount(flat, minlength=len(table))
        bad = [int(v) for v in np.flatnonzero((counts > 0) & (table < 0))]
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise InvalidLabelValues(f"label {path}: invalid values {shown}; {rule}", path, stored, table, bad, rule)
    return table[stored]


class InvalidLabelValues(DataError):
    """A label holding values its dataset does not declare; carries what a whole-dataset check
    needs to summarise them per value instead of per file."""

    def __init__(self, message: str, path: str = "", stored: np.ndarray | None = None,
                 table: np.ndarray | None = None, values: Sequence[int] = (), rule: str = "") -> None:
        # the message alone must do: a DataLoader worker re-raises the error as type(message)
        super().__init__(message)
        self.path, self.values, self.rule = path, list(values), rule
        self.decoded, self.pixels = None, {}
        if stored is None or table is None:
            return
        flat = stored.reshape(-1).astype(np.int64)
        inside = (flat >= 0) & (flat < len(table))
        decoded = np.where(inside, table[np.clip(flat, 0, len(table) - 1)], -1)  # -1: an invalid pixel
        self.decoded = decoded.reshape(stored.shape)
        self.pixels = {v: int(np.count_nonzero(flat == v)) for v in values}


def _listing(items: Sequence[str]) -> str:
    more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return "; ".join(items[:_MAX_LISTED]) + more


@dataclass
class Listing:
    """What a layout found: the (image, label) pairs, the pairs it could not complete, and where it
    looked (for the errors)."""

    pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike]]
    missing: Sequence[str] = ()
    where: str = ""


@dataclass
class LabelCoding:
    """How stored label values map to class ids: a table (None: ids stored as they are, the ignore
    index kept) and the rule an error quotes (None: "class ids 0..K-1 or the ignore index")."""

    values: np.ndarray | None = None
    rule: str | None = None


class SegmentationDataset(Dataset):
    """(image, label) pairs with class names, a palette and a label-value table.

    Subclasses find the pairs in a layout; this class reads, checks and transforms them.
    ``missing`` lists pairs that could not be formed (with ``allow_missing=True``; otherwise
    they raise at construction).
    """

    options_type: ClassVar[type | None] = None  # a dataclass of the config options grouped into ``options``

    def __init__(self, found: Listing, class_names: Sequence[str], palette: Sequence[Color] | None = None,
                 transform: Transform | None = None, ignore_index: int = 255, labels: LabelCoding | None = None,
                 allow_missing: bool = False, seed: int = 0) -> None:
        pairs, missing, where = found.pairs, found.missing, found.where
        labels = labels or LabelCoding()
        self.class_names = tuple(class_names)
        if not self.class_names:
            raise UserError("class_names is empty")
        self.num_classes = len(self.class_names)
        self.palette = (tuple(tuple(int(v) for v in c) for c in palette) if palette
                        else default_palette(self.num_classes))
        if len(self.palette) < self.num_classes:
            raise UserError(f"palette has {len(self.palette)} colours for {self.num_classes} classes")
        if not 0 <= ignore_index <= 65535:
            raise UserError(f"ignore_index must be in 0..65535 (a value a label PNG can hold), got {ignore_index}")
        if ignore_index < self.num_classes:
            raise UserError(f"ignore_index {ignore_index} is a class id (num_classes={self.num_classes})")
        self.ignore_index = ignore_index
        transform_ignore = getattr(transform, "ignore_index", ignore_index)
        if transform_ignore != ignore_index:
            raise UserError(f"the transform pads labels with {transform_ignore} but this dataset's ignore index is "
                            f"{ignore_index}; pass ignore_index={ignore_index} to the transform")
        self.transform: Transform = transform if transform is not None else Normalize()
        self.label_values = labels.values if labels.values is not None else label_table(self.num_classes, ignore_index)
        self.label_rule = labels.rule or (f"expected class ids 0..{self.num_classes - 1} or the ignore "
                                         f"index {ignore_index}")
        self.missing = list(missing)
        self.unused: list[str] = []  # files the layout leaves out (reported by check-data, see _unused_files)
        if self.missing and not allow_missing:
            raise DataError(f"{len(self.missing)} incomplete pairs in {where}: {_listing(self.missing)}")
        if not pairs:
            raise DataError(f"no image/label pairs found in {where}")
        self.pairs = [(str(i), str(l)) for i, l in pairs]
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Changes the randomness of plain integer indexing (``dataset[i]``) from epoch to epoch."""
        self.epoch = epoch

    def label_values_for(self, label_path: str) -> tuple[np.ndarray, str]:
        """The stored-value table and its description for one label file."""
        return self.label_values, self.label_rule

    def decode_label(self, stored: np.ndarray, label_path: str) -> np.ndarray:
        """Stored label values -> int64 training ids, validated."""
        if stored.ndim == 3:
            if not (np.array_equal(stored[..., 0], stored[..., 1]) and np.array_equal(stored[..., 0], stored[..., 2])):
                raise DataError(f"label {label_path}: colour label map, but this dataset expects class ids "
                                f"in a single-channel PNG")
            stored = stored[..., 0]
        table, rule = self.label_values_for(label_path)
        return apply_label_table(stored, table, label_path, rule)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The original image (uint8 H x W x 3, RGB) and label (int64 H x W, training ids)."""
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        label = self.decode_label(read_label(label_path), label_path)
        if image.shape[:2] != label.shape[:2]:
            raise DataError(f"size mismatch: image {image_path} is {image.shape[0]}x{image.shape[1]} but "
                            f"label {label_path} is {label.shape[0]}x{label.shape[1]} (HxW)")
        return image, label

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(index, (tuple, list)):
            index, seed = int(index[0]), int(index[1])
            rng = np.random.default_rng(seed)
        else:
            index = int(index)
            rng = np.random.default_rng((self.seed, self.epoch, index))
        image, label = self.load(index)
        image_t, label_t = self.transform(image, label, rng)
        return {"image": image_t, "label": label_t, "path": self.pairs[index][0], "index": index}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} pairs, {self.num_classes} classes)"


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{what} folder not found: {path}")
    return path


def _walk(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) under ``folder``, in sorted order, following symbolic links to folders (a
    Cityscapes split often links its city folders, and the official scripts follow them); a link
    back up the tree is entered once."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        yield dirpath, sorted(filenames)


def _files(folder: Path, suffix: str) -> dict[str, Path]:
    """Files under ``folder`` (recursively) ending in ``suffix``, keyed by relative path minus suffix."""
    found = {}
    for dirpath, filenames in _walk(folder):
        for name in filenames:
            if name.endswith(suffix) and not name.startswith("."):
                path = Path(dirpath) / name
                found[str(path.relative_to(folder))[: -len(suffix)]] = path
    return found


def _looked_for(image_dir: Path, img_suffix: str, label_dir: Path, seg_suffix: str, options: bool = False) -> str:
    """Where and what a layout looked for, for the "no pairs found" error."""
    text = f"{image_dir} (images *{img_suffix} paired with labels *{seg_suffix} in {label_dir}"
    return text + ("; set data.options.img_suffix / seg_suffix if yours end otherwise)" if options else ")")


def _match(images: dict[str, Path], labels: dict[str, Path], label_dir: Path) -> tuple[list, list[str]]:
    pairs, missing = [], []
    for key, image in images.items():
        if key in labels:
            pairs.append((image, labels[key]))
        else:
            missing.append(f"no label for {image} in {label_dir}")
    return pairs, missing


def _unused_files(image_dir: Path, img_suffix: str, label_dir: Path, seg_suffix: str, pairs: Sequence[tuple],
                  orphan_labels: bool = True) -> list[str]:
    """Files a layout leaves out but was probably meant to take: endings that differ from the
    expected suffix only in case (``x.JPG`` for ``.jpg``) and, with ``orphan_labels``, labels
    without an image. Training ignores them; ``check-data`` reports them."""
    notes = []
    for folder, suffix in ((image_dir, img_suffix), (label_dir, seg_suffix)):
        for dirpath, filenames in _walk(folder):
            for name in filenames:
                if not name.endswith(suffix) and name.lower().endswith(suffix.lower()) and not name.startswith("."):
                    notes.append(f"{Path(dirpath) / name} is not used: its ending {name[-len(suffix):]!r} differs "
                                 f"in case from {suffix!r}")
    if orphan_labels:
        used = {str(label) for _, label in pairs}
        notes += [f"label {path} has no image in {image_dir} (not used)"
                  for path in _files(label_dir, seg_suffix).values() if str(path) not in used]
    return notes


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"split list not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text (byte {data[e.start:e.start + 1]!r} on line {line}); save it as "
                        f"UTF-8, one name a line") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


class CamVid(SegmentationDataset):
    """CamVid, 11 classes, SegNet layout: ``{split}/`` + ``{split}annot/`` (+ optional ``{split}.txt``).

    Label 11 (void) becomes the ignore index. With a ``{split}.txt`` list (SegNet's, whose paths start
    ``/SegNet/CamVid/``) its order and membership are used; otherwise the folder is listed.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None,
                 allow_missing: bool = False, seed: int = 0) -> None:
        root = _require_dir(Path(root), "CamVid root")
        image_dir, label_dir = root / split, root / f"{split}annot"
        list_file = root / f"{split}.txt"
        missing: list[str] = []
        if list_file.is_file():
            pairs = []
            for n, line in enumerate(_read_list(list_file), 1):
                parts = line.split()
                if len(parts) != 2:
                    raise DataError(f"{list_file} line {n}: expected 'image label', got {line!r}")
                image, label = (root / Path(p).parent.name / Path(p).name for p in parts)
                absent = [str(p) for p in (image, label) if not p.is_file()]
                if absent:
                    missing.append(f"{list_file} line {n}: missing {' and '.join(absent)}")
                else:
                    pairs.append((image, label))
            where = str(list_file)
        else:
            _require_dir(image_dir, f"CamVid {split} image")
            _require_dir(label_dir, f"CamVid {split} label")
            pairs, missing = _match(_files(image_dir, ".png"), _files(label_dir, ".png"), label_dir)
            where = _looked_for(image_dir, ".png", label_dir, ".png")
        table = label_table(len(CAMVID_CLASSES), 255, {**{i: i for i in range(11)}, 11: 255})
        super().__init__(Listing(pairs, missing, where), CAMVID_CLASSES, CAMVID_PALETTE, transform, 255,
                         LabelCoding(table, "CamVid labels are 0..10 (classes) or 11 (void)"), allow_missing, seed)
        if not list_file.is_file():
            self.unused = _unused_files(image_dir, ".png", label_dir, ".png", self.pairs)


class ADE20K(SegmentationDataset):
    """ADE20K (ADEChallengeData2016): ``images/{training,validation}/*.jpg`` + ``annotations/.../*.png``.

    ``root`` is the ADEChallengeData2016 folder or its parent. With ``reduce_zero_label`` (the
    official setting) stored 0 ("other") is ignored and 1..150 become 0..149.
    """

    SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}

    def __init__(self, root: str | os.PathLike, split: str = "training", transform: Transform | None = None,
                 reduce_zero_label: bool = True, allow_missing: bool = False, seed: int = 0) -> None:
        root = _require_dir(Path(root), "ADE20K root")
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        if split not in self.SPLITS:
            raise UserError(f"ADE20K split must be one of {sorted(self.SPLITS)}, got {split!r}")
        folder = self.SPLITS[split]
        image_dir = _require_dir(root / "images" / folder, "ADE20K image")
        label_dir = _require_dir(root / "annotations" / folder, "ADE20K annotation")
        pairs, missing = _match(_files(image_dir, ".jpg"), _files(label_dir, ".png"), label_dir)
        num = len(ADE20K_CLASSES)
        if reduce_zero_label:
            table = label_table(num, 255, {0: 255, **{v: v - 1 for v in range(1, num + 1)}})
            rule = "ADE20K labels are 0 (other, ignored) or 1..150"
        else:
            table = label_table(num, 255)
            rule = "without reduce_zero_label ADE20K labels must be 0..149 or 255"
        super().__init__(Listing(pairs, missing, _looked_for(image_dir, ".jpg", label_dir, ".png")), ADE20K_CLASSES,
                         ADE20K_PALETTE, transform, 255, LabelCoding(table, rule), allow_missing, seed)
        self.unused = _unused_files(image_dir, ".jpg", label_dir, ".png", self.pairs)


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` with
    ``gtFine/{split}/{city}/*_gtFine_labelTrainIds.png``, or, where those were not generated,
    ``*_gtFine_labelIds.png`` converted with the official labelId -> trainId table.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None,
                 allow_missing: bool = False, seed: int = 0) -> None:
        root = _require_dir(Path(root), "Cityscapes root")
        image_dir = _require_dir(root / "leftImg8bit" / split, "Cityscapes image")
        label_dir = _require_dir(root / "gtFine" / split, "Cityscapes gtFine")
        pairs, missing = [], []
        for key, image in _files(image_dir, "_leftImg8bit.png").items():
            train_ids = label_dir / f"{key}_gtFine_labelTrainIds.png"
            label_ids = label_dir / f"{key}_gtFine_labelIds.png"
            if train_ids.is_file():
                pairs.append((image, train_ids))
            elif label_ids.is_file():
                pairs.append((image, label_ids))
            else:
                missing.append(f"no label for {image}: neither {train_ids.name} nor {label_ids.name} "
                               f"in {train_ids.parent}")
        num = len(CITYSCAPES_CLASSES)
        self._label_id_table = label_table(num, 255, CITYSCAPES_LABEL_ID_TO_TRAIN_ID)
        where = _looked_for(image_dir, "_leftImg8bit.png", label_dir, "_gtFine_labelTrainIds.png or *_gtFine_labelIds.png")
        super().__init__(Listing(pairs, missing, where), CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, transform, 255,
                         LabelCoding(rule="Cityscapes labelTrainIds are 0..18 or 255"), allow_missing, seed)

    def label_values_for(self, label_path: str) -> tuple[np.ndarray, str]:
        if label_path.endswith("_labelIds.png"):
            return self._label_id_table, "Cityscapes labelIds are 0..33 (or 255)"
        return self.label_values, self.label_rule


class PascalVOC(SegmentationDataset):
    """Pascal VOC 2012: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (palette PNGs, 255 = border,
    ignored) and ``ImageSets/Segmentation/{split}.txt``.

    ``root`` is VOC2012 (or a folder holding VOCdevkit/VOC2012). For the SBD-augmented set use
    ``label_dir="SegmentationClassAug"`` and the augmented list, e.g. ``split="trainaug"`` or a path
    to the list file relative to ``root``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None,
                 label_dir: str = "SegmentationClass", allow_missing: bool = False, seed: int = 0) -> None:
        root = _require_dir(Path(root), "Pascal VOC root")
        if (root / "VOCdevkit" / "VOC2012").is_dir():
            root = root / "VOCdevkit" / "VOC2012"
        list_file = root / split if split.endswith(".txt") else root / "ImageSets" / "Segmentation" / f"{split}.txt"
        image_dir = _require_dir(root / "JPEGImages", "Pascal VOC image")
        labels = _require_dir(root / label_dir, "Pascal VOC label")
        pairs, missing = [], []
        for name in _read_list(list_file):
            name = name.split()[0]
            image, label = image_dir / f"{name}.jpg", labels / f"{name}.png"
            absent = [str(p) for p in (image, label) if not p.is_file()]
            if absent:
                missing.append(f"{list_file}: {name}: missing {' and '.join(absent)}")
            else:
                pairs.append((image, label))
        super().__init__(Listing(pairs, missing, str(list_file)), VOC_CLASSES, VOC_PALETTE, transform, 255,
                         LabelCoding(rule="VOC labels are 0..20 or 255 (border)"), allow_missing, seed)


@dataclass(frozen=True)
class FolderOptions:
    """``data.options`` of a ``type: folder`` recipe: where a custom dataset's files are and what its
    labels hold (docs/datasets.md has the table)."""

    where: ClassVar[str] = "data.options."

    class_names: Sequence[str] | None = setting(None, None, "one name per class; null: ROOT/classes.txt")
    img_dir: str = setting("images", STRING, "the image folder under ROOT")
    ann_dir: str = setting("labels", STRING, "the label folder under ROOT")
    img_suffix: str = setting(".jpg", STRING, "image file ending (may include a name part)")
    seg_suffix: str = setting(".png", STRING, "label file ending (may include a name part, e.g. _mask.png)")
    palette: Sequence[Sequence[int]] | None = setting(None, None, "one [R, G, B] per class; null: generated")
    color_labels: bool = setting(False, BOOL, "labels are RGB images in the palette colours, not class ids")
    ignore_colors: Sequence[Sequence[int]] = setting((), None, "with color_labels: colours that mean ignore")
    ignore_index: int = setting(255, None, "the label value that is ignored (not a class id)")

    def __post_init__(self) -> None:
        check_fields(self, self.where)
        if self.color_labels and not self.palette:
            raise UserError("color_labels needs a palette (one RGB colour per class)")
        if self.palette is not None and any(len(c) != 3 for c in self.palette):
            raise UserError("palette entries must be [R, G, B]")


class FolderDataset(SegmentationDataset):
    """A custom dataset: ``root/img_dir`` and ``root/ann_dir`` with files paired by relative name
    (:class:`FolderOptions`).

    Image ``a/b.jpg`` pairs with label ``a/b.png`` (suffixes configurable; a suffix may include a
    name part, e.g. ``_mask.png``). ``split`` is optional: a list file (relative to ``root``) of
    names without suffix, or a sub-folder present in both ``img_dir`` and ``ann_dir`` (e.g.
    ``images/train`` + ``labels/train``); without it every image is used. Labels hold class ids ``0..K-1`` (and
    ``ignore_index``), or, with ``color_labels``, RGB colours from ``palette`` (``ignore_colors``
    map to the ignore index).
    """

    options_type = FolderOptions

    def __init__(self, root: str | os.PathLike, options: FolderOptions | None = None, split: str | None = None,
                 transform: Transform | None = None, allow_missing: bool = False, seed: int = 0) -> None:
        o = options or FolderOptions()
        root = _require_dir(Path(root), "dataset root")
        class_names = _folder_class_names(root) if o.class_names is None else o.class_names
        image_dir = _require_dir(root / o.img_dir, "image")
        label_dir = _require_dir(root / o.ann_dir, "label")
        unknown: list[str] = []
        if split is not None and not (root / split).is_file():
            if not (image_dir / split).is_dir():
                raise DataError(f"split {split!r}: neither a list file {root / split} nor a folder {image_dir / split}")
            image_dir = image_dir / split
            label_dir = _require_dir(label_dir / split, "label")
            split = None
        images, labels = _files(image_dir, o.img_suffix), _files(label_dir, o.seg_suffix)
        if split is not None:
            list_file = root / split
            names = [line.split()[0] for line in _read_list(list_file)]
            unknown = [f"{list_file}: no image {image_dir / (n + o.img_suffix)}" for n in names if n not in images]
            images = {n: images[n] for n in names if n in images}
        pairs, missing = _match(images, labels, label_dir)
        self.color_labels = o.color_labels
        self.ignore_colors = tuple(tuple(int(v) for v in c) for c in o.ignore_colors)
        where = _looked_for(image_dir, o.img_suffix, label_dir, o.seg_suffix, options=True)
        super().__init__(Listing(pairs, unknown + missing, where), class_names,
                         [tuple(c) for c in o.palette] if o.palette else None, transform, o.ignore_index,
                         allow_missing=allow_missing, seed=seed)
        self.unused = _unused_files(image_dir, o.img_suffix, label_dir, o.seg_suffix, self.pairs,
                                    orphan_labels=split is None)

    def decode_label(self, stored: np.ndarray, label_path: str) -> np.ndarray:
        if self.color_labels:
            if stored.ndim != 3:
                raise DataError(f"label {label_path}: color_labels is set but the file is single-channel")
            return colors_to_indices(stored, self.palette[: self.num_classes], label_path, self.ignore_index,
                                     self.ignore_colors)
        return super().decode_label(stored, label_path)


CLASSES_FILE = "classes.txt"


def _folder_class_names(root: Path) -> list[str]:
    """A folder dataset's class names from ``root/classes.txt`` (one a line), when the config gives none."""
    file = root / CLASSES_FILE
    if not file.is_file():
        raise UserError(f"folder dataset {root} has no class names: set data.options.class_names (e.g. "
                        f"[background, road, car]; check-data: --class-names background,road,car) or write "
                        f"{file} with one name per line")
    names = [line.strip() for line in _read_list(file) if line.strip()]
    if not names:
        raise UserError(f"{file} lists no class names (one a line)")
    return names


DATASETS: dict[str, type[SegmentationDataset]] = {
    "camvid": CamVid,
    "ade20k": ADE20K,
    "cityscapes": Cityscapes,
    "voc": PascalVOC,
    "folder": FolderDataset,
}


def dataset_options(cls: type[SegmentationDataset]) -> list[str]:
    """The options a dataset class takes from a config: its keyword parameters, the fields of its
    ``options_type`` in place of ``options``."""
    names: list[str] = []
    for name in inspect.signature(cls.__init__).parameters:
        if name == "options" and cls.options_type is not None:
            names += [f.name for f in fields(cls.options_type)]
        elif name not in ("self", "transform"):
            names.append(name)
    return names


def build_dataset(config: dict[str, Any], transform: Transform | None = None, **overrides: Any) -> SegmentationDataset:
    """A dataset from a config's ``data`` section: ``{type: camvid, root: DIR, split: train, ...options}``.

    ``overrides`` (e.g. ``split="val"``) replace config entries. Unknown options are an error that
    lists the allowed ones.
    """
    options = {**config, **overrides}
    kind = options.pop("type", None)
    if kind not in DATASETS:
        raise UserError(f"data type must be one of {', '.join(DATASETS)}, got {kind!r}")
    cls = DATASETS[kind]
    allowed = dataset_options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(f"unknown option(s) for data type {kind!r}: {', '.join(unknown)}; "
                        f"allowed: {', '.join(allowed)}")
    if "root" not in options:
        raise UserError(f"data type {kind!r} needs 'root'")
    needed = [name for name, p in inspect.signature(cls.__init__).parameters.items()
              if p.default is inspect.Parameter.empty and name not in ("self", "transform") and name not in options]
    if needed:
        raise UserError(f"data type {kind!r} needs {', '.join(needed)} (data.options.{needed[0]} in a config)")
    if cls.options_type is not None:
        grouped = {f.name for f in fields(cls.options_type)}
        options["options"] = cls.options_type(**{k: options.pop(k) for k in list(options) if k in grouped})
    return cls(transform=transform, **options)
