"""Dice, focal and Lovász-softmax losses and OHEM pixel selection, as mmseg 0.24.1 defines them.

All take full-size (B, K, H, W) float logits (already resized to the label size) and (B, H, W)
labels with ``ignore_index`` for pixels that do not count. Each function's docstring gives its
formula and where it departs from mmseg 0.24.1 (tests/engine/test_loss_terms.py compares them with
fixtures made by mmseg 0.24.1 itself, tools/make_loss_fixtures.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255, smooth: float = 1.0,
              exponent: float = 2.0, class_weight: torch.Tensor | None = None,
              exclude_ignored: bool = False) -> torch.Tensor:
    """V-Net Dice loss of the softmax, per image and class, averaged: mmseg 0.24.1's ``DiceLoss``.

    With p = softmax(logits), y = one-hot labels and v = 1 on labelled pixels, for image b and class c
    ``d_bc = 1 - (2 sum(p y v) + smooth) / (sum(p^exponent + y^exponent) + smooth)``; the loss is
    ``sum_c w_c mean_b d_bc / K``. As in mmseg 0.24.1 the denominator sums over every pixel, ignored
    ones included, where y is the one-hot of class K-1 (mmseg clamps the ignore value into range).
    ``exclude_ignored=True`` departs from that: ignored pixels are left out of the denominator too,
    so the loss is the Dice of the labelled pixels alone.
    """
    num_classes = logits.shape[1]
    probabilities = F.softmax(logits.float(), dim=1)
    valid = labels != ignore_index
    mask = valid[:, None].float()
    clamped = labels.long().clamp(0, num_classes - 1)  # mmseg: ignored pixels become class K-1
    target = F.one_hot(clamped, num_classes).permute(0, 3, 1, 2).float()
    numerator = 2 * (probabilities * target * mask).flatten(2).sum(-1) + smooth
    summed = probabilities.pow(exponent) + target.pow(exponent)
    denominator = (summed * mask if exclude_ignored else summed).flatten(2).sum(-1) + smooth
    per_class = (1 - numerator / denominator).mean(0)  # (K,): mean over images
    if class_weight is not None:
        per_class = per_class * class_weight.to(per_class)
    return per_class.sum() / num_classes


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255, gamma: float = 2.0,
               alpha: float | Sequence[float] = 0.5, class_weight: torch.Tensor | None = None,
               pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017) over every (pixel, class) pair: mmseg's ``FocalLoss``.

    With x the logit and t the one-hot target of a pair, s = sigmoid(x): ``BCE(x, t) * (alpha t +
    (1 - alpha)(1 - t)) * ((1 - s) t + s (1 - t))^gamma``, times ``class_weight[c]`` and 0 at ignored
    pixels, averaged over all B*H*W*K pairs (ignored pixels count in the denominator, as in mmseg).
    ``alpha`` may be one number or one per class. ``pixel_weight`` (B, H, W), e.g. OHEM's selection,
    multiplies each pixel's K terms (mmseg 0.24.1 cannot combine its focal loss with a sampler).
    """
    x = logits.float()
    valid = labels != ignore_index
    target = F.one_hot(labels.masked_fill(~valid, 0).long(), x.shape[1]).permute(0, 3, 1, 2).float()
    alpha_t = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    if alpha_t.dim() == 1:
        alpha_t = alpha_t.view(1, -1, 1, 1)
    s = torch.sigmoid(x)
    one_minus_pt = (1 - s) * target + s * (1 - target)
    weight = (alpha_t * target + (1 - alpha_t) * (1 - target)) * one_minus_pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(x, target, reduction="none") * weight
    loss = loss * valid[:, None]
    if class_weight is not None:
        loss = loss * class_weight.to(loss).view(1, -1, 1, 1)
    if pixel_weight is not None:
        loss = loss * pixel_weight[:, None]
    return loss.mean()


def _lovasz_gradient(sorted_foreground: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at errors sorted descending (Alg. 1)."""
    total = sorted_foreground.sum()
    intersection = total - sorted_foreground.cumsum(0)
    union = total + (1 - sorted_foreground).cumsum(0)
    jaccard = 1 - intersection / union
    if len(jaccard) > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def _lovasz_flat(probabilities: torch.Tensor, labels: torch.Tensor, classes: str | Sequence[int],
                 class_weight: torch.Tensor | None) -> torch.Tensor:
    """Lovász-softmax of (P, K) probabilities of labelled pixels against their (P,) labels."""
    if probabilities.numel() == 0:
        return probabilities.sum() * 0
    chosen = range(probabilities.shape[1]) if classes in ("all", "present") else classes
    losses = []
    for c in chosen:
        foreground = (labels == c).float()
        if classes == "present" and foreground.sum() == 0:
            continue
        errors = (foreground - probabilities[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        loss = torch.dot(errors_sorted, _lovasz_gradient(foreground[order]))
        losses.append(loss * class_weight[c] if class_weight is not None else loss)
    return torch.stack(losses).mean()


def lovasz_softmax_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255,
                        classes: str | Sequence[int] = "present", per_image: bool = False,
                        class_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Lovász-softmax loss (Berman et al. 2018): mmseg's ``LovaszLoss(loss_type='multi_class')``.

    For each class c (``present``: those in the labels; ``all``; or a list), the errors
    ``|[y = c] - p_c|`` of the labelled pixels sorted descending, dotted with the gradient of the
    Lovász extension of the Jaccard loss; times ``class_weight[c]``; averaged over the classes.
    ``per_image`` does this per image and averages over the images; otherwise over the whole batch.
    """
    probabilities = F.softmax(logits.float(), dim=1)
    weight = class_weight.to(probabilities) if class_weight is not None else None

    def flat(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])
        y = y.reshape(-1)
        keep = y != ignore_index
        return _lovasz_flat(p[keep], y[keep], classes, weight)

    if per_image:
        return torch.stack([flat(p[None], y[None]) for p, y in zip(probabilities, labels)]).mean()
    return flat(probabilities, labels)


@torch.no_grad()
def ohem_pixel_weight(labels: torch.Tensor, ignore_index: int, min_kept: int, thresh: float | None = None,
                      true_class_probability: torch.Tensor | None = None,
                      pixel_loss: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W) 0/1 weights of the hard pixels: mmseg 0.24.1's ``OHEMPixelSampler.sample``.

    With ``thresh``: keep the labelled pixels whose softmax probability of their true class is below
    ``max(thresh, q)``, q the ``min(min_kept * B, n - 1)``-th smallest such probability (0-based, n
    labelled pixels), so at least about ``min_kept`` per image are kept. Without: keep the
    ``min_kept * B`` labelled pixels of largest ``pixel_loss`` (the summed cross-entropy terms).
    """
    valid = labels != ignore_index
    weight = torch.zeros(labels.shape, device=labels.device)
    kept = min_kept * labels.shape[0]
    if thresh is not None:
        probability = true_class_probability[valid]
        threshold = thresh
        if probability.numel() > 0:
            k = min(kept, probability.numel() - 1)
            threshold = max(float(probability.kthvalue(k + 1).values), thresh)
        weight[valid] = (probability < threshold).float()
    else:
        losses = pixel_loss[valid]
        selected = torch.zeros_like(losses)
        selected[losses.topk(min(kept, losses.numel())).indices] = 1
        weight[valid] = selected
    return weight
