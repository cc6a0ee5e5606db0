"""Regenerate the committed exactness fixtures in tests/fixtures/ from the official implementation.

Run with the interpreter made by ../shared/reference/setup_official.sh (mmseg 0.24.1):

    bash ../shared/reference/setup_official.sh /tmp/ssformer-official
    /tmp/ssformer-official/bin/python tools/make_fixtures.py

For each small configuration it builds the official model, gives every parameter, every
relative position table and every BatchNorm running statistic non-trivial random values, and
writes:

* ``official_<name>.pth``: an official-format checkpoint (``{'state_dict', 'meta'}``);
* ``official_<name>_io.pt``: the config, the inputs, the official logits
  (``encode_decode``, eval mode, fp32) and the four encoder outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str((HERE.parent.parent / "shared" / "reference").resolve()))
from official import build_official  # noqa: E402

CONFIGS = {
    # name: (build kwargs, list of input shapes (B, H, W))
    "w7": (dict(num_classes=5, embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7,
                channels=32),
           [(2, 64, 96), (1, 203, 317), (1, 45, 37), (2, 1, 1)]),
    "w5": (dict(num_classes=7, embed_dims=24, depths=(1, 2, 3, 2), num_heads=(2, 3, 4, 6), window_size=5,
                channels=16),
           [(1, 96, 64), (2, 77, 131), (1, 33, 33)]),
    "w4": (dict(num_classes=3, embed_dims=8, depths=(2, 2, 4, 2), num_heads=(2, 2, 4, 8), window_size=4,
                channels=8),
           [(2, 128, 128), (1, 203, 317), (1, 19, 250)]),
}


def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial values everywhere: weights, LayerNorm/BN affine, BN running stats, bias tables."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
            elif p.dim() == 1 and ("norm" in name or ".bn." in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=generator))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=generator))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=generator))
            elif name.endswith("num_batches_tracked"):
                b.fill_(1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE.parent / "tests" / "fixtures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    for name, (kwargs, shapes) in CONFIGS.items():
        generator = torch.Generator().manual_seed(sum(map(ord, name)))
        model = build_official(drop_path_rate=0.1, **kwargs)
        randomise(model, generator)
        model.eval()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "meta": {"generator": "tools/make_fixtures.py", "config": name}},
                   args.out / f"official_{name}.pth")
        cases = []
        with torch.no_grad():
            for b, h, w in shapes:
                x = torch.randn(b, 3, h, w, generator=generator)
                logits = model.encode_decode(x, None)
                features = model.backbone(x)
                cases.append({"input": x, "logits": logits, "features": list(features)})
        torch.save({"config": kwargs, "cases": cases}, args.out / f"official_{name}_io.pt")
        print(name, [tuple(c["logits"].shape) for c in cases])


if __name__ == "__main__":
    main()
