"""Window attention on CPU: the fused SDPA kernel against the spelled-out path of ssformer.models.fast.windows.

For each stage of SSformer-B at a given input size (7x7 windows, 32-dim heads) it times, on the
same random q/k/v (B * nW, heads, 49, 32), contiguous as the gather of ``ShiftedWindowAttention``
leaves them:

* ``fused``: ``F.scaled_dot_product_attention`` with the relative bias and (shifted blocks) the
  shift mask summed into one (B * nW, heads, N, N) mask, as the model calls it on CPUs with AMX;
* ``spelled-out``: :func:`ssformer.models.fast.windows.window_attention` on CPU, as the model calls
  it on CPUs without AMX: q k^T, scale, both masks added in place, softmax, times v; for bf16
  q/k/v the scores are widened to float32 before the masks (``mask_dtype``);
* ``bf16 masks`` (bf16 only): the same with the scores, masks and softmax left in bf16 (the
  model before float32 scores).

``err`` is the max |difference| from the same attention in float64 on the same (rounded) inputs.

    python3 benchmarks/attention_kernels.py --threads 2
    python3 benchmarks/attention_kernels.py --threads 2 --end-to-end 5   # the whole model with each kernel
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ssformer.models.fast import windows as fast_windows  # noqa: E402
from ssformer.models.fast.windows import window_attention  # noqa: E402
from ssformer.models.window_grid import shift_window_mask  # noqa: E402


def median_ms(fn, runs: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def end_to_end(size: tuple[int, int], rounds: int) -> None:
    """The whole model with either kernel forced, alternating the order each round (first round untimed)."""
    import ssformer

    torch.manual_seed(0)
    fp32 = ssformer.create_model("ssformer_swin_b", num_classes=150).eval()
    models = {"fp32": fp32, "bf16": copy.deepcopy(fp32).to(torch.bfloat16)}
    x = torch.randn(1, 3, *size)
    times: dict[tuple[str, bool], list[float]] = {}
    with torch.inference_mode():
        for r in range(rounds + 1):
            for dtype, model in models.items():
                for fused in (True, False) if r % 2 else (False, True):
                    fast_windows.cpu_prefers_fused_kernel = lambda f=fused: f
                    start = time.perf_counter()
                    model(x.to(next(model.parameters()).dtype))
                    if r:
                        times.setdefault((dtype, fused), []).append((time.perf_counter() - start) * 1e3)
    for dtype in models:
        fused, spelled = times[(dtype, True)], times[(dtype, False)]
        print(f"{dtype}: fused median {statistics.median(fused):.0f} ms {[round(t) for t in fused]}, spelled-out "
              f"{statistics.median(spelled):.0f} ms {[round(t) for t in spelled]}: "
              f"{statistics.median(spelled) / statistics.median(fused):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--end-to-end", type=int, default=0, metavar="ROUNDS",
                        help="instead: SSformer-B inference (fp32 and bf16) with each kernel, ROUNDS interleaved rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"the model takes the {'fused' if fast_windows.cpu_prefers_fused_kernel() else 'spelled-out'} kernel "
          "on this CPU (ssformer.models.fast.windows.cpu_prefers_fused_kernel)")
    if args.end_to_end:
        return end_to_end(args.size, args.end_to_end)
    fast_windows.cpu_prefers_fused_kernel = lambda: False  # time the spelled-out kernel here whatever the CPU
    torch.manual_seed(0)
    ws, d = 7, 32
    n = ws * ws
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, SSformer-B at {args.size[0]}x{args.size[1]}")
    totals = {}
    for dtype in (torch.float32, torch.bfloat16):
        for stage, heads in enumerate((4, 8, 16, 32)):
            h, w = (-(-s // 4) // 2 ** stage for s in args.size)
            hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
            windows = (hp // ws) * (wp // ws)
            q, k, v = torch.randn(3, windows, heads, n, d).to(dtype).unbind(0)
            bias = torch.randn(1, heads, n, n).to(dtype)
            for shift in (0, ws // 2):
                mask = shift_window_mask(hp // ws, wp // ws, ws, shift).unsqueeze(1) if shift else None
                masks = {"fused": dtype, "spelled-out": torch.float32 if dtype != torch.float32 else dtype}
                if dtype != torch.float32:
                    masks["bf16 masks"] = dtype
                exact = window_attention(q.double(), k.double(), v.double(), bias.double(),
                                         None if mask is None else mask.double())
                name = str(dtype).removeprefix("torch.")
                depth = 18 if stage == 2 else 2  # SSformer-B: half the blocks of a stage are shifted
                line = []
                for kind, masks_in in masks.items():
                    b, m = bias.to(masks_in), None if mask is None else mask.to(masks_in)
                    if kind == "fused":
                        call = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=b if m is None else b + m)
                    else:
                        call = lambda: window_attention(q, k, v, b, m)
                    with torch.inference_mode():
                        ms = median_ms(call, args.runs)
                        error = (call().double() - exact).abs().max().item()
                    line.append(f"{kind} {ms:6.2f} ms (err {error:.1e})")
                    kinds = totals.setdefault(name, {})
                    kinds[kind] = kinds.get(kind, 0.0) + ms * depth / 2
                print(f"{name:<8} stage {stage + 1} {windows:>4} windows x {heads:>2} heads, shift {shift}: "
                      + "  ".join(line))
    for name, kinds in totals.items():
        print(f"{name}: all 24 blocks of SSformer-B: " + ", ".join(f"{k} {ms:.1f} ms" for k, ms in kinds.items()))


if __name__ == "__main__":
    main()
