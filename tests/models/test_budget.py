"""The memory estimate behind the refusal of absurd model sizes (issue 28, item 8)."""

from __future__ import annotations

import pytest

from ssformer.errors import UserError
from ssformer.models.budget import Sizes, build_bytes, check_buildable, parameter_count
from ssformer.models.ssformer import SSformer


@pytest.mark.parametrize("kwargs", [
    dict(num_classes=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=4, decoder_dim=32),
    dict(num_classes=19, embed_dim=8, depths=(2, 3), num_heads=(1, 2), window_size=5, decoder_dim=8, mlp_ratio=2.5),
    dict(num_classes=150, embed_dim=32, depths=(2, 2, 6, 2), num_heads=(1, 2, 4, 8), window_size=7, decoder_dim=64),
])
def test_the_count_is_the_built_models(kwargs):
    model = SSformer(**kwargs)
    assert parameter_count(model.config.sizes()) == sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for name, b in model.named_buffers()
                  if name.endswith("relative_position_index"))
    assert build_bytes(model.config.sizes()) == 4 * sum(p.numel() for p in model.parameters()) + buffers


def test_a_model_beyond_the_limit_is_refused_naming_the_biggest_cause():
    sizes = Sizes(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, decoder_dim=1 << 20,
                  num_classes=150)
    with pytest.raises(UserError, match=r"^model\.decoder_dim=1048576 would make a model of about"):
        check_buildable(sizes, prefix="model.", limit=2 ** 30)
    check_buildable(sizes, limit=2 ** 50)  # fits: nothing raised


def test_building_an_absurd_model_fails_before_allocating():
    with pytest.raises(UserError, match="embed_dim"):
        SSformer(num_classes=2, embed_dim=1 << 30, depths=(1,), num_heads=(1,))
