"""Regenerate tests/fixtures/official_swin_b_decay.json: the weight decay mmcv gives each official parameter.

Run with the interpreter made by ../shared/reference/setup_official.sh (mmseg 0.24.1, mmcv 1.7.2):

    /tmp/ssformer-official/bin/python tools/make_decay_fixture.py

It builds the official SSformer (Swin-B, 150 classes), builds the optimiser exactly as the official
configs do (AdamW lr 6e-5, weight decay 0.01, ``paramwise_cfg.custom_keys`` with ``decay_mult=0`` for
``absolute_pos_embed``, ``relative_position_bias_table`` and ``norm``) through mmcv's
``build_optimizer``, and records the weight decay of the group that holds each named parameter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str((HERE.parent.parent / "shared" / "reference").resolve()))
from mmcv.runner import build_optimizer  # noqa: E402
from official import build_official  # noqa: E402

OPTIMIZER = dict(type="AdamW", lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01,
                 paramwise_cfg=dict(custom_keys={"absolute_pos_embed": dict(decay_mult=0.0),
                                                 "relative_position_bias_table": dict(decay_mult=0.0),
                                                 "norm": dict(decay_mult=0.0)}))


def main() -> None:
    model = build_official()
    optimizer = build_optimizer(model, OPTIMIZER)
    decay_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            decay_of[id(p)] = group["weight_decay"]
    table = {name: decay_of[id(p)] for name, p in model.named_parameters()}
    out = HERE.parent / "tests" / "fixtures" / "official_swin_b_decay.json"
    out.write_text(json.dumps(table, indent=0, sort_keys=True) + "\n")
    print(f"{len(table)} parameters, {sum(v > 0 for v in table.values())} decayed -> {out}")


if __name__ == "__main__":
    main()
