"""``ssformer check-data``: scan a dataset, report every problem and the class pixel frequencies."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ssformer.data.check import check_dataset, format_report
from ssformer.data.datasets import DATASETS, build_dataset
from ssformer.engine.config import resolve_config_path
from ssformer.errors import UserError

# Keys of a training config's ``data`` section that describe splits and transforms, not the dataset.
_NOT_DATASET_OPTIONS = ("split", "train_split", "val_split", "train_transform", "test_transform", "options")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-data", help="check every image/label pair of a dataset",
        description="Read every image and label of a dataset split and report all problems (missing, "
                    "unreadable or corrupt files, size mismatches, label values outside the classes) and "
                    "per-class pixel counts. Exits 1 if there is any problem.")
    parser.add_argument("config", nargs="?", help="YAML file with a 'data:' section, or a shipped recipe name")
    parser.add_argument("--type", choices=sorted(DATASETS), help="dataset type (instead of a config)")
    parser.add_argument("--data-root", "--root", dest="root", help="dataset root folder (overrides the config's; "
                                                                   "--root is the old spelling)")
    parser.add_argument("--split", action="append",
                        help="split to check (repeatable); default: the config's split(s), else train and val")
    parser.add_argument("--class-names", metavar="A,B,...",
                        help="class names of a folder dataset, comma-separated (sets data.options.class_names; "
                             "default: the config's, else ROOT/classes.txt)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _data_section(path: str) -> dict[str, Any]:
    """The raw ``data`` section of a YAML file or of a shipped recipe name (e.g. ``camvid_cpu``)."""
    file = resolve_config_path(path)
    try:
        loaded = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"config {file} is not valid YAML (UTF-8 text): {e}") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("data"), dict):
        raise UserError(f"config {file} has no 'data:' section")
    return loaded["data"]


def _splits(section: dict[str, Any]) -> list[str]:
    """The split(s) a config names: ``split``, or ``train_split`` (str or list) and ``val_split``."""
    if section.get("split"):
        return [section["split"]]
    found: list[str] = []
    for key in ("train_split", "val_split"):
        value = section.get(key)
        for split in value if isinstance(value, list) else [value]:
            if split and split not in found:
                found.append(split)
    return found


def run(args: argparse.Namespace) -> int:
    section: dict[str, Any] = _data_section(args.config) if args.config else {}
    if args.type:
        section["type"] = args.type
    if args.root:
        section["root"] = args.root
    if not section.get("type") or not section.get("root"):
        raise UserError("give a CONFIG with a data section, or --type and --data-root")
    default = [None] if section["type"] == "folder" else ["train", "val"]  # as the trainer's defaults
    splits = args.split or _splits(section) or default
    options = {k: v for k, v in section.items() if k not in _NOT_DATASET_OPTIONS}
    options.update(section.get("options") or {})
    if args.class_names:
        options["class_names"] = [name.strip() for name in args.class_names.split(",") if name.strip()]
    options["allow_missing"] = True  # report incomplete pairs as problems with all the others
    # build every split first, so a missing folder is reported before the long scan
    datasets = [(split, build_dataset(options, **({"split": split} if split else {}))) for split in splits]
    failed = False
    for split, dataset in datasets:
        print(f"== {section['type']} {split or ''}: {section['root']}")
        report = check_dataset(dataset, progress=not args.no_progress)
        print(format_report(report, dataset.class_names))
        failed |= not report.ok
    print("FAILED: problems found" if failed else "OK: no problems found")
    return 1 if failed else 0
