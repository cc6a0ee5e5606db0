"""AdamW parameter groups with the official decay exemptions, and the poly + linear-warmup schedule.

The official recipe gives weight decay multiplier 0 to every parameter whose name contains
``absolute_pos_embed``, ``relative_position_bias_table`` or ``norm`` (so LayerNorms are exempt, while
the decoder's ``bn`` parameters and all biases are decayed). This model's parameter names were chosen
so that the substring rule picks the same tensors as on the official names.

The schedule is mmcv 1.7.2's ``PolyLrUpdaterHook`` by iteration with linear warmup:
``regular = (lr - min_lr) * (1 - it / iters) ** power + min_lr`` and, for ``it < warmup_iters``,
``lr = regular * (1 - (1 - it / warmup_iters) * (1 - warmup_ratio))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def decays(name: str, no_decay_keys: Sequence[str]) -> bool:
    """Whether the parameter called ``name`` gets weight decay under the substring rule."""
    return not any(key in name for key in no_decay_keys)


def param_groups(model: nn.Module, weight_decay: float,
                 no_decay_keys: Sequence[str] = ("absolute_pos_embed", "relative_position_bias_table", "norm"),
                 ) -> list[dict]:
    """Two AdamW groups: decayed and exempt parameters (frozen parameters are left out)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if decays(name, no_decay_keys) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
              {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: Sequence[float] = (0.9, 0.999),
                    eps: float = 1e-8, no_decay_keys: Sequence[str] = ("absolute_pos_embed",
                                                                       "relative_position_bias_table", "norm"),
                    ) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay, no_decay_keys), lr=lr,
                             betas=(float(betas[0]), float(betas[1])), eps=eps)


def poly_warmup_lr(iteration: int, base_lr: float, max_iters: int, power: float = 1.0, min_lr: float = 0.0,
                   warmup_iters: int = 1500, warmup_ratio: float = 1e-6) -> float:
    """The learning rate used for the update at 0-based ``iteration`` (mmcv semantics)."""
    regular = (base_lr - min_lr) * (1 - iteration / max_iters) ** power + min_lr
    if iteration < warmup_iters:
        return regular * (1 - (1 - iteration / warmup_iters) * (1 - warmup_ratio))
    return regular


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def build_grad_scaler(amp: str, device: torch.device | str) -> torch.amp.GradScaler:
    """The loss scaler fp16 autocast needs (fp16 gradients underflow without it); disabled otherwise."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict) -> bool:
    """Restore a checkpoint's scaler state where there is one; False if the scaler starts afresh.

    A run without fp16 saves an empty state (disabled scaler), which an enabled scaler refuses to
    load, so resuming a bf16 or fp32 run with ``amp=fp16`` starts from the initial scale.
    """
    if not scaler.is_enabled() or not state:
        return False
    scaler.load_state_dict(state)
    return True
