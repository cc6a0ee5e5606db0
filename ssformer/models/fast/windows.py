"""Window attention as one gather into windows: the fast path of :mod:`ssformer.models.attention`.

The same numbers as the plain formulation (exact up to float rounding); each step only removes
copies or wasted work:

* ``qkv`` runs on the real tokens only. A zero (padding) token's q/k/v is just the qkv bias, so
  *padding, cyclic shift, window partition and the split into heads are a single gather* of
  ``head_dim``-wide rows with a precomputed index (:func:`window_geometry`), plus writing the
  bias into the padding slots (:class:`_ToWindows`). q, k and v come out as contiguous
  (windows, heads, N, d) tensors.
* On CPUs without AMX attention is spelled out (:func:`window_attention`): q k^T, then the
  relative bias and the shift mask added in place to those fresh scores, softmax, times v; in
  inference a few windows at a time, so the scores stay in cache. For 7x7 windows on AMD Zen 4
  that beats PyTorch's fused CPU kernel, which also needs bias + shift mask summed into one
  (windows, heads, N, N) tensor per call; on Intel CPUs with AMX the fused kernel is the faster
  one (``benchmarks/attention_kernels.py`` on both; :func:`cpu_prefers_fused_kernel`).
  bf16/fp16 scores are widened to float32 before the masks and the softmax, as the official
  model's float32 bias does under autocast: many times more accurate, and PyTorch's float32 softmax is the faster one on CPU. Other devices, and
  CPUs with AMX, take ``F.scaled_dot_product_attention`` with that summed mask.
* The inverse gather takes each (token, head) back from its window slot (un-shift, un-partition,
  crop and merge heads in one copy), and ``proj`` then runs on the real tokens only.
* Index tensors and shift masks are cached per feature-map size, heads, device and dtype (shared
  by the blocks of a stage); in inference each block caches its gathered bias, keyed on the bias
  table's version, so changing the weights in place invalidates it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ssformer.models.fast import caching, hugepages
from ssformer.models.fast.linear import linear
from ssformer.models.window_grid import shift_window_mask

SCORES_CHUNK_BYTES = 4 << 20  # window_attention's working set per chunk of windows


class AttentionLayer(Protocol):
    """What the kernels read of ``attention.ShiftedWindowAttention`` (named here, not imported: the
    plain module calls this one, and nothing here depends on it)."""

    num_heads: int
    window_size: int
    shift: int
    qkv: nn.Linear
    proj: nn.Linear
    relative_position_bias_table: nn.Parameter

    def relative_position_bias(self) -> torch.Tensor: ...


class WindowGeometry(NamedTuple):
    """Index tensors that move a token map's q/k/v into windows and the attention output back.

    Rows are ``head_dim`` values wide: the ``qkv`` output (B * H * W, 3 * C) viewed as
    (B * H * W * 3 * heads, d) on the way in, the attention output (B * nW, heads, N, d) viewed
    as (B * nW * heads * N, d) on the way out. See :func:`window_geometry`.
    """

    gather: torch.Tensor  # (3 * B * nW * heads * N,) qkv row of every (q/k/v, window, head, slot)
    gather_padding: torch.Tensor  # positions in ``gather`` that are padding slots (they hold row 0)
    padding_source: torch.Tensor  # q/k/v-and-head row (``3 * heads`` of them) each of those takes
    scatter: torch.Tensor  # (B * H * W * heads,) attention-output row of every (token, head)
    scatter_padding: torch.Tensor  # attention-output rows that belong to padding slots
    shift_mask: torch.Tensor | None  # (B * nW, 1, N, N) in the mask dtype (:func:`mask_dtype`), shifted windows only


def _window_geometry(batch: int, h: int, w: int, window_size: int, shift: int, heads: int,
                     device: torch.device, dtype: torch.dtype) -> WindowGeometry:
    ws = window_size
    n = ws * ws
    hp, wp = (h + ws - 1) // ws * ws, (w + ws - 1) // ws * ws  # rounded up to the window grid
    tokens = h * w
    # Source token of every slot of the padded map after rolling it by (-shift, -shift).
    rows = (torch.arange(hp, device=device) + shift) % hp
    cols = (torch.arange(wp, device=device) + shift) % wp
    source = rows[:, None] * w + cols[None, :]
    is_padding = (rows[:, None] >= h) | (cols[None, :] >= w)
    slots = source.masked_fill(is_padding, -1).view(hp // ws, ws, wp // ws, ws).transpose(1, 2).reshape(-1)
    real = slots >= 0
    slot_of_token = torch.empty(tokens, dtype=torch.long, device=device)
    slot_of_token[slots[real]] = torch.arange(slots.numel(), device=device)[real]
    # Batched: sample b's token t is token b * tokens + t, its windows follow sample b - 1's.
    offsets = torch.arange(batch, device=device)[:, None]
    token_of_slot = torch.where(real, slots + offsets * tokens, 0).view(-1, 1, n)  # (B * nW, 1, N)
    slot_of_token = (slot_of_token + offsets * slots.numel()).reshape(-1)  # (B * H * W,)
    real = real.repeat(batch).view(-1, 1, n)

    # In: qkv row (token, j, head) of q/k/v j of every (window, head, slot), for j = 0, 1, 2.
    part = torch.arange(3, device=device).view(3, 1, 1, 1)
    head = torch.arange(heads, device=device).view(1, 1, heads, 1)
    gather = (token_of_slot * (3 * heads) + part * heads + head).reshape(-1)
    is_gather_padding = (~real).expand(3, -1, heads, n).reshape(-1)
    gather_padding = torch.nonzero(is_gather_padding).flatten()
    padding_source = (part * heads + head).expand(3, real.shape[0], heads, n).reshape(-1)[gather_padding]

    # Out: row (window, head, slot) of the attention output that every (token, head) takes.
    window, slot = slot_of_token // n, slot_of_token % n
    head = torch.arange(heads, device=device)
    scatter = ((window[:, None] * heads + head) * n + slot[:, None]).reshape(-1)
    scatter_padding = torch.nonzero((~real).expand(-1, heads, n).reshape(-1)).flatten()

    shift_mask = None
    if shift:
        mask = shift_window_mask(hp // ws, wp // ws, ws, shift, device, dtype)
        shift_mask = mask.repeat(batch, 1, 1).unsqueeze(1)
    return WindowGeometry(gather, gather_padding, padding_source, scatter, scatter_padding, shift_mask)


_cached_window_geometry = functools.lru_cache(maxsize=16)(_window_geometry)


def window_geometry(batch: int, h: int, w: int, window_size: int, shift: int, heads: int, device: torch.device,
                    dtype: torch.dtype = torch.float32) -> WindowGeometry:
    """Indices for zero-padding, cyclically shifting and partitioning a (B, H, W) token map in one gather.

    Windows are ordered (sample, window row, window column) and slots (row in window, column in
    window) over the map padded bottom/right to a multiple of the window and rolled by
    (-shift, -shift), exactly the official layout. Cached per size, heads and device (they hold
    no parameters).
    """
    with torch.inference_mode(False), torch.no_grad():  # cached: must stay usable outside inference mode
        return _cached_window_geometry(batch, h, w, window_size, shift, heads, device, dtype)


def _gather_rows(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``rows.index_select(0, index)`` into memory advised to use huge pages: the window gathers make
    the attention's largest tensors, hundreds of MB each at large maps (:mod:`ssformer.models.fast.hugepages`)."""
    out = hugepages.empty((index.numel(), *rows.shape[1:]), rows.dtype, rows.device)
    return torch.index_select(rows, 0, index, out=out)


class _ToWindows(torch.autograd.Function):
    """qkv rows -> (3 * B * nW * heads * N, d) q/k/v window rows; padding slots take ``padding_rows``.

    A custom backward because ``index_select``'s own (a scatter-add) is slow on CPU; here every
    real qkv row sits in exactly one slot, so the gradient is just the inverse gather.
    """

    @staticmethod
    def forward(ctx, qkv_rows: torch.Tensor, padding_rows: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        ctx.geometry, ctx.padding_shape, ctx.rows = geometry, padding_rows.shape, qkv_rows.shape[0]
        out = _gather_rows(qkv_rows, geometry.gather)
        # index_copy_, not ``out[padding] = rows``: that index_put is far slower on CPU
        out.index_copy_(0, geometry.gather_padding,
                        padding_rows.to(out.dtype).index_select(0, geometry.padding_source))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        geometry = ctx.geometry
        grad_rows = None
        if ctx.needs_input_grad[0]:  # position in ``gather`` of every qkv row (made here: inference never needs it)
            source = geometry.gather.index_fill(0, geometry.gather_padding, ctx.rows)  # padding -> a spare row
            inverse = torch.empty(ctx.rows + 1, dtype=torch.long, device=grad.device)
            inverse[source] = torch.arange(source.numel(), device=grad.device)
            grad_rows = grad.index_select(0, inverse[:ctx.rows])
        grad_padding = None
        if ctx.needs_input_grad[1]:
            grad_padding = grad.new_zeros(ctx.padding_shape)
            grad_padding.index_add_(0, geometry.padding_source, grad.index_select(0, geometry.gather_padding))
        return grad_rows, grad_padding, None


class _FromWindows(torch.autograd.Function):
    """Attention-output rows -> (B * H * W * heads, d) token rows (un-shift, un-partition, crop)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
        ctx.geometry, ctx.rows = geometry, rows.shape[0]
        return _gather_rows(rows, geometry.scatter)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        geometry = ctx.geometry
        inverse = torch.zeros(ctx.rows, dtype=torch.long, device=grad.device)  # position in ``scatter``
        inverse[geometry.scatter] = torch.arange(geometry.scatter.numel(), device=grad.device)
        grad_rows = grad.index_select(0, inverse)
        grad_rows.index_fill_(0, geometry.scatter_padding, 0)
        return grad_rows, None


@functools.cache
def cpu_prefers_fused_kernel() -> bool:
    """Whether this CPU runs 7x7-window attention faster through PyTorch's fused kernel: where it has AMX.

    Chosen by what the CPU has, from ``benchmarks/attention_kernels.py`` on both families (all 24
    blocks of SSformer-B at 512x512, 2 threads): on an Intel Xeon with AMX the fused kernel took
    43 ms against 130 ms spelled out in fp32 and 49 against 67 ms in bf16; on AMD Zen 4 (AVX-512,
    no AMX) the spelled-out path is the faster one (docs/benchmarks.md).
    """
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def uses_fused_kernel(device: torch.device) -> bool:
    """Whether :func:`window_attention` takes ``F.scaled_dot_product_attention`` on ``device``: off the CPU,
    and on CPUs where :func:`cpu_prefers_fused_kernel`."""
    return device.type != "cpu" or cpu_prefers_fused_kernel()


def mask_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype attention adds its bias and shift mask in, for q/k/v in ``dtype`` on ``device``.

    On CPU bf16/fp16 scores meet float32 masks (module docstring): spelled out, the scores are
    widened first; PyTorch's fused CPU kernel takes a float32 mask beside bf16 q/k/v and adds it to
    its float32 scores (max error 0.0065 against 0.0101 with a bf16 mask, no slower on AMD Zen 4).
    Other devices' fused kernels take the mask in the tokens' dtype.
    """
    if dtype in (torch.bfloat16, torch.float16) and device.type == "cpu":
        return torch.float32
    return dtype


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor,
                     shift_mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias + shift_mask) v over (B * nW, heads, N, d) windows.

    Spelled out, the scores are taken to ``bias``'s dtype (:func:`mask_dtype`) and the masks added
    in place (no (B * nW, heads, N, N) sum of bias and mask is made); the fused kernel where
    :func:`uses_fused_kernel`. Without autograd the windows go in chunks whose scores take about
    ``SCORES_CHUNK_BYTES``: they stay in cache and are reused, where all scores at once are a
    fresh allocation of hundreds of MB at large inputs.
    """
    if uses_fused_kernel(q.device):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias if shift_mask is None else bias + shift_mask)
    windows, heads, n, _ = q.shape
    step = max(1, SCORES_CHUNK_BYTES // (heads * n * n * bias.element_size()))
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, bias))
    if step >= windows or needs_grad:
        return _attend(q, k, v, bias, shift_mask)
    out = hugepages.empty(q.shape, q.dtype, q.device)
    for start in range(0, windows, step):
        chunk = slice(start, start + step)
        _attend(q[chunk], k[chunk], v[chunk], bias, None if shift_mask is None else shift_mask[chunk], out=out[chunk])
    return out


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, shift_mask: torch.Tensor | None,
            out: torch.Tensor | None = None) -> torch.Tensor:
    scores = torch.matmul(q, k.transpose(-2, -1)).to(bias.dtype)  # widened for bf16/fp16 (mask_dtype)
    scores.mul_(q.shape[-1] ** -0.5).add_(bias)
    if shift_mask is not None:
        scores.add_(shift_mask)
    return torch.matmul(scores.softmax(-1).to(v.dtype), v, out=out)


def attention_bias(module: AttentionLayer, dtype: torch.dtype) -> torch.Tensor:
    """(1, heads, N, N) relative position bias of ``module`` in ``dtype``.

    Cached when no gradient can flow into the bias table (inference); the key holds the table's
    version, so an in-place weight change recomputes it. Contiguous: adding the table's
    head-innermost layout to the scores as a strided view was 6-12x slower
    (``benchmarks/layout_copies.py``).
    """
    table = module.relative_position_bias_table
    if torch.is_grad_enabled() and table.requires_grad:
        return module.relative_position_bias().unsqueeze(0).to(dtype)
    return caching.cached(module, "attention_bias", (table,), dtype,
                          lambda: module.relative_position_bias().unsqueeze(0).to(dtype))


def attention(module: AttentionLayer, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``module(x, h, w)`` (W-MSA or SW-MSA on (B, h*w, C) tokens) through the gathered windows."""
    b, tokens, c = x.shape
    heads, n, d = module.num_heads, module.window_size ** 2, c // module.num_heads
    qkv = linear(module.qkv, x)
    masks_in = mask_dtype(qkv.dtype, x.device)
    geometry = window_geometry(b, h, w, module.window_size, module.shift, heads, x.device, masks_in)
    bias = module.qkv.bias
    padding = bias if bias is not None else qkv.new_zeros(3 * c)  # q/k/v of a zero token
    windows = _ToWindows.apply(qkv.reshape(-1, d), padding.view(-1, d), geometry)
    q, k, v = windows.view(3, -1, heads, n, d).unbind(0)  # each (B * nW, heads, N, d), contiguous
    out = window_attention(q, k, v, attention_bias(module, masks_in), geometry.shift_mask)
    out = _FromWindows.apply(out.contiguous().view(-1, d), geometry)  # real tokens, map order
    return linear(module.proj, out.view(b, tokens, c))
