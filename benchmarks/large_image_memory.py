"""Peak memory of one prediction on a large image: the mask path must not hold (K, H, W) logits.

    PYTHONPATH=. python3 benchmarks/large_image_memory.py --size 6000 6000 --classes 150

Builds a tiny random SSformer with ``--classes`` classes (the model's own memory is negligible, so
what is measured is the image path: decoding, the test-scale resize, the resize-and-argmax and
the mask), predicts one random ``--size`` image and prints the process's peak RSS. Resizing the
logits to full size first, as before, needs K x H x W x 4 bytes on top (21.6 GB for 6000x6000 and
150 classes). ``--json`` prints the numbers as one JSON line (used by the tests).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch


def peak_rss_gib() -> float:
    """This process's peak RSS: ``VmHWM`` where Linux reports it (``ru_maxrss`` survives ``exec``, so
    under a big parent such as pytest it reports the parent's size), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**20  # KiB -> GiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(6000, 6000), metavar=("H", "W"))
    parser.add_argument("--classes", type=int, default=150)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import ssformer

    torch.manual_seed(0)
    model = ssformer.SSformer(num_classes=args.classes, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2),
                              window_size=7, decoder_dim=8)
    segmenter = ssformer.Segmenter(model, device="cpu")
    height, width = args.size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    before = peak_rss_gib()
    start = time.perf_counter()
    mask = segmenter.predict(image)
    seconds = time.perf_counter() - start
    peak = peak_rss_gib()
    full = args.classes * height * width * 4 / 2**30
    result = {"height": height, "width": width, "classes": args.classes, "seconds": round(seconds, 1),
              "peak_rss_gib": round(peak, 2), "rss_before_predict_gib": round(before, 2),
              "full_size_logits_gib": round(full, 1), "mask_shape": list(mask.shape)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{height}x{width}, {args.classes} classes: predict {seconds:.1f} s, peak RSS {peak:.2f} GiB "
              f"(before predict {before:.2f} GiB; full-size logits alone would be {full:.1f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
