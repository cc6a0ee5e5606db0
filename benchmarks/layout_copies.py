"""Two memory-layout choices of ssformer.models, timed against what they replaced (SSformer-B, 512x512).

* **bias add**: the (1, heads, 49, 49) relative-position bias added in place to a chunk of scores,
  as the permuted (head-innermost) view of the gathered table that the model used to cache, and
  as the contiguous tensor ``ShiftedWindowAttention.relative_position_bias`` returns now;
* **patch merging**: the 2x2 neighbourhood of a stage's token map reordered into the checkpoints'
  channel-major 4C, as one permute to (..., C, kh, kw) (2-value rows, the plain ``PatchMerging.forward``)
  and as the two copies of ``ssformer.models.fast.merging`` (C-value rows); the results are checked to be identical.

    python3 benchmarks/layout_copies.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from attention_kernels import median_ms  # noqa: E402  (benchmarks/, the script's own folder)

from ssformer.models.fast.merging import neighbourhoods  # noqa: E402


def one_permute(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The patch-merging reorder the model used before: a single permute with 2-value rows."""
    b, _, c = x.shape
    return x.view(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h * w // 4, 4 * c)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            name = str(dtype).removeprefix("torch.")
            scores = torch.randn(25, 16, 49, 49).to(dtype)  # stage 3: 25 windows x 16 heads, one chunk
            strided = torch.randn(49, 49, 16).to(dtype).permute(2, 0, 1).unsqueeze(0)
            contiguous = strided.contiguous()
            strided_ms = median_ms(lambda: scores.add_(strided), args.runs)
            contiguous_ms = median_ms(lambda: scores.add_(contiguous), args.runs)
            print(f"{name:<8} bias add, stage 3 scores: strided {strided_ms:.3f} ms, contiguous {contiguous_ms:.3f} ms")
            for size, channels in ((128, 128), (64, 256), (32, 512)):
                x = torch.randn(1, size * size, channels).to(dtype)
                assert torch.equal(neighbourhoods(x, size, size)[0], one_permute(x, size, size))
                before = median_ms(lambda: one_permute(x, size, size), args.runs)
                now = median_ms(lambda: neighbourhoods(x, size, size), args.runs)
                print(f"{name:<8} patch merging {size}x{size}x{channels}: one permute {before:.2f} ms, "
                      f"two copies (fast.merging.neighbourhoods) {now:.2f} ms")


if __name__ == "__main__":
    main()
