"""Expanding command-line inputs (files, folders, globs) into images with mirrored output names."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path, PurePath

from ssformer.errors import UserError
from ssformer.inference.images import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class InputImage:
    path: Path
    relative: PurePath  # output name without suffix, e.g. ``sub/dir/photo``


def expand_inputs(inputs: list[str], extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[InputImage]:
    """Files as given (whatever their extension), folders searched recursively for image
    extensions (paths under the folder kept), globs expanded. A missing path is an error, and so is
    a folder or glob with no image; two inputs that would write the same output name are too."""
    found: list[InputImage] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not files:
                raise FileNotFoundError(f"folder {path} holds no image files ({', '.join(extensions)})")
            found += [InputImage(p, p.relative_to(path).with_suffix("")) for p in files]
        elif path.exists():
            found.append(InputImage(path, PurePath(path.stem)))
        elif glob.has_magic(text):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not files:
                raise FileNotFoundError(f"pattern {text!r} matches no files")
            found += [InputImage(p, PurePath(p.stem)) for p in files]
        else:
            raise FileNotFoundError(f"input {path} does not exist")
    seen: dict[PurePath, Path] = {}
    for item in found:
        if item.relative in seen and seen[item.relative] != item.path:
            raise UserError(f"inputs {seen[item.relative]} and {item.path} would both write {item.relative}.png; "
                            "run them separately or rename one")
        seen[item.relative] = item.path
    unique = {item.path.resolve(): item for item in found}  # the same file given twice runs once
    return list(unique.values())


def refuse_outputs_over_inputs(inputs: list[str], items: list[InputImage], out: Path, written: list[Path]) -> None:
    """Raise before anything is written when ``out`` is an input folder or lies inside one (its files
    would be read back as inputs, and a mask could replace an image), or when any path in ``written``
    is an input file: a prediction must never replace the user's images."""
    out_resolved = out.resolve()
    for text in inputs:
        folder = Path(text)
        if folder.is_dir() and out_resolved.is_relative_to(folder.resolve()):
            raise UserError(f"--out {out} is inside the input folder {folder}: its masks would replace or mix "
                            "with the images; give an --out folder outside the inputs")
    sources = {item.path.resolve(): item.path for item in items}
    for path in written:
        if path.resolve() in sources:
            raise UserError(f"--out {out} would overwrite the input {sources[path.resolve()]} with "
                            f"{path.name}; give an --out folder outside the inputs")
