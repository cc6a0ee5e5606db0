"""Scan a whole dataset before training: every problem in every pair, and class pixel frequencies."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ssformer.data.datasets import InvalidLabelValues, SegmentationDataset, dataset_options
from ssformer.data.io import DataError, read_image, read_label


@dataclass
class UndeclaredValue:
    """A label value no class or ignore index declares, over the whole split."""

    files: int = 0
    pixels: int = 0
    example: str = ""
    rule: str = ""


@dataclass
class CheckReport:
    """What a scan found. ``class_pixels[k]`` counts pixels of class k over all readable pairs."""

    pairs: int
    problems: list[str]
    class_pixels: np.ndarray
    ignored_pixels: int = 0
    sizes: Counter = field(default_factory=Counter)
    undeclared: dict[int, UndeclaredValue] = field(default_factory=dict)  # per value, over all files
    value_problems: list[str] = field(default_factory=list)  # their per-file lines (also in ``problems``)
    ignore_hint: str = ""  # how this dataset type sets its ignore index, if it can

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(dataset: SegmentationDataset, progress: bool = False) -> CheckReport:
    """Read every image and label of ``dataset`` and collect all problems instead of stopping at the first.

    Pairs that could not be formed (``dataset.missing``, with ``allow_missing=True``) and files the
    layout leaves out (``dataset.unused``: a suffix differing in case, labels without an image) are
    problems too. Image and label of a pair are checked separately, so a corrupt image does not hide a
    bad label.
    """
    problems = list(dataset.missing) + list(dataset.unused)
    class_pixels = np.zeros(dataset.num_classes, dtype=np.int64)
    ignored = 0
    sizes: Counter = Counter()
    undeclared: dict[int, UndeclaredValue] = {}
    value_problems: list[str] = []
    for image_path, label_path in tqdm(dataset.pairs, desc="checking", disable=None if progress else True, leave=False):
        image = label = None
        try:
            image = read_image(image_path)
        except DataError as e:
            problems.append(str(e))
        try:
            label = dataset.decode_label(read_label(label_path), label_path)
        except InvalidLabelValues as e:  # summarised per value by format_report; the declared pixels still count
            _note_undeclared(undeclared, e)
            problems.append(str(e))
            value_problems.append(str(e))
            label = e.decoded
        except DataError as e:
            problems.append(str(e))
        if image is None or label is None:
            continue
        if image.shape[:2] != label.shape[:2]:
            problems.append(f"size mismatch: image {image_path} is {image.shape[0]}x{image.shape[1]} but label "
                            f"{label_path} is {label.shape[0]}x{label.shape[1]} (HxW)")
            continue
        sizes[image.shape[:2]] += 1
        flat = label.reshape(-1)
        counts = np.bincount(flat[flat >= 0], minlength=max(dataset.num_classes, dataset.ignore_index + 1))
        class_pixels += counts[: dataset.num_classes]
        ignored += int(counts[dataset.ignore_index]) if dataset.ignore_index < len(counts) else 0
    hint = "data.options.ignore_index" if "ignore_index" in dataset_options(type(dataset)) else ""
    return CheckReport(len(dataset.pairs), problems, class_pixels, ignored, sizes, undeclared, value_problems, hint)


def _note_undeclared(undeclared: dict[int, UndeclaredValue], error: InvalidLabelValues) -> None:
    for value in error.values:
        seen = undeclared.setdefault(value, UndeclaredValue(example=error.path, rule=error.rule))
        seen.files += 1
        seen.pixels += error.pixels[value]


def _undeclared_lines(report: CheckReport) -> list[str]:
    """One line per undeclared value (not one per file: 701 for a value in every CamVid label)."""
    lines = []
    for value, seen in sorted(report.undeclared.items()):
        hint = (f"; if {value} marks unlabelled pixels, set {report.ignore_hint}: {value}" if report.ignore_hint
                and 0 <= value <= 65535 else "")
        lines.append(f"  PROBLEM: label value {value} is no class of this dataset ({seen.rule}): {seen.pixels} "
                     f"pixels in {seen.files} of {report.pairs} labels, e.g. {seen.example}{hint}")
    return lines


def format_report(report: CheckReport, class_names: tuple[str, ...]) -> str:
    """Problems (all of them), image sizes, then a per-class pixel table."""
    summarised = set(report.value_problems)
    others = [p for p in report.problems if p not in summarised]
    lines = [f"{report.pairs} pairs, {len(others) + len(report.undeclared)} problem(s)"]
    lines += [f"  PROBLEM: {p}" for p in others]
    lines += _undeclared_lines(report)
    if report.sizes:
        common = ", ".join(f"{h}x{w} ({n})" for (h, w), n in report.sizes.most_common(5))
        more = f" and {len(report.sizes) - 5} other sizes" if len(report.sizes) > 5 else ""
        lines.append(f"image sizes (HxW, count): {common}{more}")
    labelled = int(report.class_pixels.sum())
    total = labelled + report.ignored_pixels
    width = max(len("class"), *(len(n) for n in class_names))
    lines.append(f"{'id':>3}  {'class':<{width}}  {'pixels':>12}  {'% labelled':>10}")
    for k, (name, pixels) in enumerate(zip(class_names, report.class_pixels.tolist())):
        share = f"{100 * pixels / labelled:.3f}" if labelled else "-"
        note = "  (absent)" if pixels == 0 else ""
        lines.append(f"{k:>3}  {name:<{width}}  {pixels:>12}  {share:>10}{note}")
    ignored_share = f"{100 * report.ignored_pixels / total:.3f}% of all pixels" if total else "-"
    lines.append(f"ignored pixels: {report.ignored_pixels} ({ignored_share})")
    return "\n".join(lines)
