"""Files that break image readers, shared by the per-file fault tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` (900 megapixels): Pillow's decompression
    bomb check refuses it on open, as it would a real one, without the test building one."""
    data = bytearray(png_bytes(np.zeros((1, 1, 3), np.uint8)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def write_bad_images(folder: Path) -> dict[str, str]:
    """Bad files in ``folder``, by name: what each one is."""
    folder.mkdir(parents=True, exist_ok=True)
    good = png_bytes(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (folder / "bomb.png").write_bytes(bomb_png())
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_bytes(b"not an image at all")
    return {"bomb.png": "decompression bomb", "truncated.png": "truncated", "empty.png": "zero bytes",
            "text.jpg": "not an image"}
