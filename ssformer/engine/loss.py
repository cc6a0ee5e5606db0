"""Pixel-wise cross-entropy averaged as mmseg 0.24.1 averages it, computed without full-size logits.

The official loss resizes the (B, K, H/4, W/4) logits to the label size, then takes the cross-entropy:
at 512x512 with 150 classes that materialises three full-size float32 tensors (upsampled logits,
log-probabilities and their gradient), and in a CPU training step of SSformer-T it takes about a
third of the time. :class:`UpsampledCrossEntropy` computes the same numbers a band of output rows at
a time: the bilinear taps of ``F.interpolate(..., mode="bilinear", align_corners=False)`` applied
as gathers, ``logsumexp`` over the classes, and in backward the softmax minus the one-hot label
sent back through the transposed taps. Only the low-resolution gradient is ever full-size.
"""

from __future__ import annotations

import torch

from ssformer.errors import UserError

# Elements of one band of upsampled logits (B x rows x W x K); float32 bands of ~8 MB stay in cache.
_BAND_ELEMENTS_CPU = 1 << 21
_BAND_ELEMENTS_GPU = 1 << 26


def bilinear_taps(in_size: int, out_size: int, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per output index along one axis: the two source indices and their weights.

    The formula of PyTorch's bilinear resize with ``align_corners=False`` and an output size (not a
    scale factor): source = max((dst + 0.5) * in / out - 0.5, 0), in float32.
    """
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    source = ((torch.arange(out_size, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_(min=0)
    low = source.floor().long().clamp_(max=in_size - 1)
    high = (low + 1).clamp_(max=in_size - 1)
    high_weight = (source - low.float()).clamp_(0, 1)
    return low.to(device), high.to(device), (1 - high_weight).to(device), high_weight.to(device)


class UpsampledCrossEntropy(torch.autograd.Function):
    """Per-pixel cross-entropy of bilinearly resized logits, (B, K, h, w) -> (B, H, W), band by band.

    Equal (up to float32 rounding) to ``F.cross_entropy(F.interpolate(logits, (H, W), mode="bilinear",
    align_corners=False), labels, ignore_index=..., reduction="none")``; ignored pixels give 0.
    The resize is separable: columns first (two gathers, once), then each band of output rows is
    a small matrix of row taps times the few source rows it reads (one GEMM, memory speed).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        b, k, h, w = logits.shape
        height, width = labels.shape[1:]
        x = logits.detach().float().permute(0, 2, 3, 1).contiguous()  # (B, h, w, K): classes innermost
        column_taps = bilinear_taps(w, width, x.device)
        columns_done = _resize_columns(x, column_taps)  # (B, h, W, K)
        bands = _row_bands(h, height, b * width * k, x.device)
        valid = labels != ignore_index
        target = labels.masked_fill(~valid, 0).long()
        losses = torch.empty(b, height, width, device=x.device)
        logsumexp = torch.empty_like(losses)
        for band, sources, taps in bands:
            y = _resize_band(columns_done, sources, taps)  # (B, rows, W, K)
            band_lse = torch.logsumexp(y, dim=-1)
            picked = y.gather(-1, target[:, band, :, None]).squeeze(-1)
            losses[:, band] = (band_lse - picked).masked_fill_(~valid[:, band], 0)
            logsumexp[:, band] = band_lse
        ctx.save_for_backward(columns_done, target, valid, logsumexp)
        ctx.bands, ctx.column_taps, ctx.input_width, ctx.logits_dtype = bands, column_taps, w, logits.dtype
        return losses

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses: torch.Tensor):
        columns_done, target, valid, logsumexp = ctx.saved_tensors
        b, h, width, k = columns_done.shape
        grad_columns = torch.zeros_like(columns_done).view(b, h, width * k)
        scale = grad_losses.float() * valid  # d loss / d pixel loss; 0 where ignored
        for band, sources, taps in ctx.bands:
            y = _resize_band(columns_done, sources, taps)
            g = scale[:, band, :, None]
            probabilities = torch.exp_(y.sub_(logsumexp[:, band, :, None])).mul_(g)  # softmax * g
            grad_y = probabilities.scatter_add_(-1, target[:, band, :, None], -g)  # minus one-hot * g
            window = grad_columns[:, sources]
            window.baddbmm_(taps.t().expand(b, -1, -1), grad_y.view(b, -1, width * k))  # transposed taps
        low, high, low_weight, high_weight = ctx.column_taps
        grad_columns = grad_columns.view(b, h, width, k)
        grad_x = columns_done.new_zeros(b, h, ctx.input_width, k)
        grad_x.index_add_(2, low, grad_columns * low_weight[:, None])
        grad_x.index_add_(2, high, grad_columns * high_weight[:, None])
        return grad_x.permute(0, 3, 1, 2).to(ctx.logits_dtype), None, None


def _resize_columns(x: torch.Tensor, taps: tuple[torch.Tensor, ...]) -> torch.Tensor:
    low, high, low_weight, high_weight = taps
    return x.index_select(2, low) * low_weight[:, None] + x.index_select(2, high) * high_weight[:, None]


def _row_bands(in_rows: int, out_rows: int, row_elements: int, device: torch.device
               ) -> list[tuple[slice, slice, torch.Tensor]]:
    """Bands of output rows: (output rows, the source rows they read, (rows x sources) tap matrix)."""
    budget = _BAND_ELEMENTS_CPU if device.type == "cpu" else _BAND_ELEMENTS_GPU
    step = max(1, budget // max(1, row_elements))
    low, high, low_weight, high_weight = bilinear_taps(in_rows, out_rows, torch.device("cpu"))
    bands = []
    for start in range(0, out_rows, step):
        band = slice(start, min(start + step, out_rows))
        first, last = int(low[band].min()), int(high[band].max())
        taps = torch.zeros(band.stop - band.start, last - first + 1)
        index = torch.arange(band.stop - band.start)
        taps.index_put_((index, low[band] - first), low_weight[band], accumulate=True)
        taps.index_put_((index, high[band] - first), high_weight[band], accumulate=True)
        bands.append((band, slice(first, last + 1), taps.to(device)))
    return bands


def _resize_band(columns_done: torch.Tensor, sources: slice, taps: torch.Tensor) -> torch.Tensor:
    b, _, width, k = columns_done.shape
    window = columns_done[:, sources].reshape(b, -1, width * k)
    return torch.matmul(taps, window).view(b, -1, width, k)


def per_pixel_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """(B, H, W) cross-entropy of (B, K, h, w) logits resized to the (B, H, W) labels; 0 where ignored.

    Checks the shapes and the label values (a label that is neither a class nor ``ignore_index``
    raises ``ValueError``), then runs :class:`UpsampledCrossEntropy`. Weighted and mined losses
    (``ssformer.engine.criterion``) scale this map before reducing it.
    """
    if labels.dim() != 3 or logits.dim() != 4 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"expected logits (B, K, h, w) and labels (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    num_classes = logits.shape[1]
    labelled = labels != ignore_index
    out_of_range = ((labels < 0) | (labels >= num_classes)) & labelled
    if out_of_range.any():
        bad = labels[out_of_range].unique()[:5].tolist()
        raise UserError(f"labels {bad} are outside the {num_classes} classes [0, {num_classes - 1}] "
                        f"and are not ignore_index={ignore_index}")
    return UpsampledCrossEntropy.apply(logits, labels, ignore_index)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255,
                      avg_non_ignore: bool = False) -> torch.Tensor:
    """Cross-entropy of (B, K, h, w) logits against (B, H, W) labels.

    The logits are resized to the label size (bilinear, ``align_corners=False``) in float32, as
    mmseg does, but band by band (:class:`UpsampledCrossEntropy`). With ``avg_non_ignore=False``
    (the official setting) ignored pixels contribute 0 but still count in the denominator, i.e. the
    mean is over all B*H*W pixels; with ``True`` it is over the non-ignored pixels only (mmseg
    divides by their count plus float32 eps). A label that is neither a class nor ``ignore_index``
    raises ``ValueError``.
    """
    per_pixel = per_pixel_cross_entropy(logits, labels, ignore_index)
    if avg_non_ignore:
        return per_pixel.sum() / ((labels != ignore_index).sum().float() + torch.finfo(torch.float32).eps)
    return per_pixel.mean()
