"""Weight-decay groups against mmcv's decisions on the official names; the poly + warmup schedule."""

from __future__ import annotations

import json

import pytest
import torch

import ssformer
from ssformer.checkpoints.keymaps import from_mmseg
from ssformer.engine.optim import build_optimizer, param_groups, poly_warmup_lr
from tests.conftest import FIXTURES


def test_decay_groups_match_official_swin_b():
    # official name -> weight decay that mmcv 1.7.2's build_optimizer gave it (tools/make_decay_fixture.py)
    official = json.loads((FIXTURES / "official_swin_b_decay.json").read_text())
    mapped = from_mmseg({name: torch.zeros(1) for name in official})
    ours_of = dict(zip(official, mapped.state))  # insertion order is kept by the converter
    # Swin-B's depths (2, 2, 18, 2) give Swin-B's parameter names; narrow widths keep it fast
    model = ssformer.SSformer(num_classes=150, embed_dim=8, depths=(2, 2, 18, 2), num_heads=(1, 1, 1, 1),
                              decoder_dim=8)
    groups = param_groups(model, weight_decay=0.01)
    decay_by_id = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    ours = {name: decay_by_id[id(p)] for name, p in model.named_parameters()}
    assert sorted(ours) == sorted(ours_of.values())
    for official_name, wd in official.items():
        assert ours[ours_of[official_name]] == wd, official_name
    # spot checks of the rule as stated in the recipe
    assert ours["decoder.projections.0.bn.weight"] == 0.01
    assert ours["encoder.stages.0.blocks.0.attn.qkv.bias"] == 0.01
    assert ours["encoder.stages.0.blocks.0.norm1.weight"] == 0.0
    assert ours["encoder.stages.2.blocks.5.attn.relative_position_bias_table"] == 0.0
    assert ours["encoder.norms.3.bias"] == 0.0


def test_adamw_settings():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    opt = build_optimizer(model, lr=6e-5, weight_decay=0.01, no_decay_keys=("1.",))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8


def test_schedule_values_by_hand():
    base, total, warm, ratio = 6e-5, 160000, 1500, 1e-6
    # iteration 0: regular lr is base * (1 - 0)^1; warmup factor 1 - (1 - 0)(1 - ratio) = ratio
    assert poly_warmup_lr(0, base, total, 1.0, 0.0, warm, ratio) == pytest.approx(6e-5 * 1e-6, rel=1e-9)
    # iteration 750: regular 6e-5 * (1 - 750/160000) = 5.971875e-05; factor 1 - 0.5 * (1 - 1e-6) = 0.5000005
    assert poly_warmup_lr(750, base, total, 1.0, 0.0, warm, ratio) == pytest.approx(5.971875e-05 * 0.5000005,
                                                                                    rel=1e-9)
    # iteration 1500: warmup over; 6e-5 * (1 - 1500/160000) = 5.94375e-05
    assert poly_warmup_lr(1500, base, total, 1.0, 0.0, warm, ratio) == pytest.approx(5.94375e-05, rel=1e-12)
    # last update (159999): 6e-5 / 160000 = 3.75e-10; at the end (160000) the lr is 0
    assert poly_warmup_lr(159999, base, total, 1.0, 0.0, warm, ratio) == pytest.approx(3.75e-10, rel=1e-6)
    assert poly_warmup_lr(160000, base, total, 1.0, 0.0, warm, ratio) == 0.0
    # power 2 and a floor: (1e-3 - 1e-5) * 0.5^2 + 1e-5 = 2.575e-4
    assert poly_warmup_lr(50, 1e-3, 100, 2.0, 1e-5, 0, ratio) == pytest.approx(2.575e-4, rel=1e-12)


# --- the loss scaler --------------------------------------------------------------------------
def test_fp16_resume_of_a_run_without_a_scaler_starts_a_fresh_scale():
    """A bf16/fp32 run saves an empty scaler state, which an enabled GradScaler refuses to load."""
    from ssformer.engine.optim import build_grad_scaler, load_scaler_state

    saved = build_grad_scaler("bf16", "cpu").state_dict()
    scaler = build_grad_scaler("fp16", "cpu")  # the CPU scaler stands in for CUDA's (same class)
    with pytest.raises(RuntimeError, match="empty"):
        scaler.load_state_dict(saved)  # what the trainer did before
    assert load_scaler_state(scaler, saved) is False
    assert scaler.is_enabled() and scaler.get_scale() == 2.0 ** 16


def test_fp16_scaler_state_round_trips():
    from ssformer.engine.optim import build_grad_scaler, load_scaler_state

    first = build_grad_scaler("fp16", "cpu")
    first.scale(torch.ones(()))  # creates the scale tensor, as the first training step does
    first.update(new_scale=512.0)
    second = build_grad_scaler("fp16", "cpu")
    assert load_scaler_state(second, first.state_dict()) is True and second.get_scale() == 512.0
    assert load_scaler_state(build_grad_scaler("none", "cpu"), first.state_dict()) is False  # fp16 -> fp32
