"""Time one training step of the camvid_cpu model in fp32 and under bf16 autocast on this CPU.

Shows whether bf16 pays here: on CPUs without AVX-512 BF16 or AMX it is emulated and far slower.
Usage: python3 tools/amp_step_time.py [--threads N] [--steps K] [--size H W] [--amp none|bf16 ...]
"""

from __future__ import annotations

import argparse
import time

import torch

import ssformer
from ssformer.devices import cpu_bf16_native
from ssformer.engine.config import load_config
from ssformer.engine.trainer import model_config


def step_seconds(amp: str, steps: int, size: tuple[int, int]) -> float:
    config = load_config("camvid_cpu", validate=False)
    torch.manual_seed(0)
    model = ssformer.SSformer.from_config(model_config(config, 11))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    (h, w) = size
    images, labels = torch.randn(8, 3, h, w), torch.randint(0, 11, (8, h // 4, w // 4))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=amp == "bf16"):
            logits = model.forward_logits(images)
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return min(times[1:])  # the first step warms up allocations and oneDNN primitives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(192, 256), metavar=("H", "W"), help="crop size")
    parser.add_argument("--amp", nargs="+", choices=("none", "bf16"), default=["none", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_bf16_native()}, "
          f"{args.threads} thread(s)")
    for amp in args.amp:
        seconds = step_seconds(amp, args.steps, tuple(args.size))
        print(f"amp {amp}: {seconds:.3f} s per step (batch 8, {args.size[0]}x{args.size[1]})")


if __name__ == "__main__":
    main()
