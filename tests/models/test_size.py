"""Model size: parameters and official-convention MACs against numbers from the official code.

Where the expected numbers come from (none is computed by the code under test):

* The official code's published measurements (mmcv 1.7.2 ``get_model_complexity_info``; docs/model.md):
  SSformer-B, 150 classes:
  87,539,790 parameters (backbone 86,745,016, head 794,774), 91.01 GFLOPs at 512x512; 19 classes:
  87.506 M, 194.15 / 355.82 / 701.90 G at 768x768 / 1024x1024 / 1024x2048. These are rounded to
  0.01 G (and 0.001 M), so they are compared after the same rounding (tolerance: half a unit in
  the last printed digit).
* ``OFFICIAL_SMALL``: exact counts printed by the same mmcv counter on the official model
  (mmseg 0.24.1 via the shared reference's official.py), for the three fixture configurations of
  tools/make_fixtures.py at odd and tiny input sizes, by this command (official venv)::

      for name, kw in CONFIGS.items():            # tools/make_fixtures.py's configs
          m = build_official(**kw).eval(); m.forward = m.forward_dummy
          flops, params = get_model_complexity_info(m, (3, h, w), print_per_layer_stat=False,
                                                    as_strings=False)

  At full precision the same runs gave 91,007,909,888 (512x512, 150 classes) and
  194,148,200,448 / 355,820,175,360 / 701,903,798,272 (19 classes), compared exactly too.
"""

from __future__ import annotations

import pytest
import torch

import ssformer
from ssformer.models.size import count_flops, measure, meta_model, official_macs
from tests.conftest import tiny_model_kwargs

SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=7, decoder_dim=256)

FIXTURE_CONFIGS = {
    "w7": dict(num_classes=5, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=7,
               decoder_dim=32),
    "w5": dict(num_classes=7, embed_dim=24, depths=(1, 2, 3, 2), num_heads=(2, 3, 4, 6), window_size=5,
               decoder_dim=16),
    "w4": dict(num_classes=3, embed_dim=8, depths=(2, 2, 4, 2), num_heads=(2, 2, 4, 8), window_size=4,
               decoder_dim=8),
}
# (config, H, W): (mmcv MACs, parameters) from the official model.
OFFICIAL_SMALL = {
    ("w7", 64, 96): (20260032, 588983), ("w7", 203, 317): (144519792, 588983),
    ("w7", 45, 37): (12529912, 588983), ("w7", 1, 1): (8937621, 588983),
    ("w5", 64, 96): (33707808, 1398727), ("w5", 203, 317): (280623600, 1398727),
    ("w5", 45, 37): (18469272, 1398727), ("w5", 1, 1): (11618847, 1398727),
    ("w4", 64, 96): (3962704, 174219), ("w4", 203, 317): (40345408, 174219),
    ("w4", 45, 37): (1992432, 174219), ("w4", 1, 1): (945243, 174219),
}


def test_swin_b_parameters_match_reference():
    size = measure(ssformer.SSformerConfig(num_classes=150, **SWIN_B), 512, 512, flops=False)
    assert (size.params, size.encoder_params, size.decoder_params) == (87_539_790, 86_745_016, 794_774)
    size19 = measure(ssformer.SSformerConfig(num_classes=19, **SWIN_B), 512, 512, flops=False)
    assert round(size19.params / 1e6, 3) == 87.506


@pytest.mark.parametrize("classes, h, w, gmacs, exact", [
    (150, 512, 512, 91.01, 91_007_909_888),
    (19, 768, 768, 194.15, 194_148_200_448),
    (19, 1024, 1024, 355.82, 355_820_175_360),
    (19, 1024, 2048, 701.90, 701_903_798_272),
])
def test_swin_b_macs_match_reference(classes, h, w, gmacs, exact):
    macs, attention = official_macs(ssformer.SSformerConfig(num_classes=classes, **SWIN_B), h, w)
    assert round(macs / 1e9, 2) == gmacs
    assert macs == exact


def test_attention_products_are_about_1_9_g_at_512():
    _, attention = official_macs(ssformer.SSformerConfig(num_classes=150, **SWIN_B), 512, 512)
    assert round(attention / 1e9, 1) == 1.9  # the official measurement: "those add about 1.9 G"


@pytest.mark.parametrize("key", sorted(OFFICIAL_SMALL))
def test_small_configs_match_official_counter_exactly(key):
    name, h, w = key
    size = measure(ssformer.SSformerConfig(**FIXTURE_CONFIGS[name]), h, w, flops=False)
    assert (size.macs, size.params) == OFFICIAL_SMALL[key]


def test_measure_accepts_a_model_and_counts_its_parameters(tiny_model):
    size = measure(tiny_model, 64, 64, flops=False)
    assert size.params == sum(p.numel() for p in tiny_model.parameters())
    assert size.encoder_params + size.decoder_params == size.params
    assert size.decoder_params == sum(p.numel() for n, p in tiny_model.named_parameters() if n.startswith("decoder."))


def test_meta_model_has_no_storage():
    model = meta_model(ssformer.SSformerConfig(num_classes=150, **SWIN_B))
    assert {p.device.type for p in model.parameters()} == {"meta"}


def _encoder_macs_by_hand(embed_dim, depths, window, h, w):
    """Matrix-product MACs of the encoder when no stage needs padding: patch conv, qkv, attention
    products, proj, MLP, patch merging."""
    h, w = h // 4, w // 4
    total = 16 * 3 * embed_dim * h * w
    for i, depth in enumerate(depths):
        d, n = embed_dim * 2 ** i, h * w
        total += depth * (n * d * 3 * d + 2 * n * window * window * d + n * d * d + 2 * n * d * 4 * d)
        if i < len(depths) - 1:
            h, w = h // 2, w // 2
            total += h * w * 4 * d * 2 * d
    return total


def test_flop_counter_counts_encoder_products_and_attention():
    # window 2 and input 64: stages 16, 8, 4, 2 are multiples of the window, so no padding.
    kwargs = dict(tiny_model_kwargs(), window_size=2)
    model = ssformer.SSformer(**kwargs).eval()
    flops = count_flops(model.encoder, torch.zeros(1, 3, 64, 64))
    assert flops == 2 * _encoder_macs_by_hand(8, (2, 2, 2, 2), 2, 64, 64)
    whole = measure(model, 64, 64)
    assert whole.flops > flops  # the decoder adds its convolutions


def test_measured_flops_do_not_exceed_the_official_work():
    """This implementation skips padded tokens; it never does more than the official model."""
    config = ssformer.SSformerConfig(**FIXTURE_CONFIGS["w7"])
    size = measure(config, 45, 37)
    macs, attention = official_macs(config, 45, 37)
    assert 0 < size.flops <= 2 * (macs + attention)
    assert size.flops >= 2 * attention


def test_bad_size_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        official_macs(ssformer.SSformerConfig(), 0, 5)
