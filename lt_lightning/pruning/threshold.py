"""Exact global top-k over many score tensors, without concatenating them.

A radix select on the scores' bit patterns finds the k-th largest score in a few counting passes over
bounded batches (16 bits per pass: 2 passes for scores of 32 bits or less, 4 for 64-bit scores), then one
comparison pass writes the masks. Transient memory is a few batch-sized buffers and 64k-bin histograms
(about 5 MB in all), whatever the number of scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache, reduce

import torch
from torch import Tensor

__all__ = ["keep_top_k"]

CHUNK_SIZE = 2**18  # scores per batch: ~2.5 MB of buffers for 32-bit scores, small enough to stay in cache
_DIGIT_BITS = 16
_BINS = 1 << _DIGIT_BITS
_Span = tuple[int, int, int]  # (tensor index, flat start, flat stop)


def keep_top_k(scores: Sequence[Tensor], k: int, *, chunk_size: int = CHUNK_SIZE) -> list[Tensor]:
    """Boolean masks (same shapes/devices as `scores`) keeping exactly the k largest scores across all tensors.

    Ties are kept in order: earlier tensor first, then lower flat index, i.e. the first k positions of a
    stable descending sort of all flattened scores. ``-inf`` is a valid score (it sorts last); NaN is not.
    Floating and integer dtypes may be mixed; scores are compared by value.

    Example:
        >>> import torch
        >>> a, b = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([[2.0, 0.1], [float("-inf"), 0.5]])
        >>> [m.tolist() for m in keep_top_k([a, b], 3)]
        [[True, False, True], [[True, False], [False, False]]]
    """
    total = sum(s.numel() for s in scores)
    if not 0 <= k <= total:
        raise ValueError(f"k={k} is out of range: expected 0 <= k <= {total} (the total number of scores)")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be positive")
    masks = [torch.zeros(s.shape, dtype=torch.bool, device=s.device) for s in scores]
    if total == 0:
        return masks
    flats = [s.reshape(-1) for s in scores]  # views, except for non-contiguous scores
    batches = _batches(flats, chunk_size)
    bufs = _Buffers(_wide_dtype(scores), min(chunk_size, total))
    # Selecting at least one score also runs the NaN check, so k=0 rejects NaN like any other k.
    value, n_greater, n_equal = _kth_largest(flats, max(k, 1), batches, bufs)
    if k == 0:
        return masks
    # Of the n_equal ties at `value`, the first `keep` (in tensor order) survive and the last `drop` do not.
    keep = k - n_greater
    drop = n_equal - keep
    # Start from `> value` or `>= value`, whichever is closer, then fix the fewer ties from that end.
    strict = keep <= drop
    cmp = torch.gt if strict else torch.ge
    spans = [span for batch in batches for span in batch]
    for i, a, b in spans:
        cmp(bufs.widen(flats[i][a:b]), value, out=masks[i].view(-1)[a:b])
    _set_ties(flats, masks, value, keep if strict else drop, strict, spans, bufs)
    return masks


def _wide_dtype(scores: Sequence[Tensor]) -> torch.dtype:
    """One dtype holding every score exactly (integers beyond 2**53 excepted when mixed with floats)."""
    dtypes = {s.dtype for s in scores}
    if any(d.is_complex for d in dtypes):
        raise TypeError(f"complex scores cannot be ranked, got dtypes {sorted(map(str, dtypes))}")
    if not any(d.is_floating_point for d in dtypes):
        return torch.int64
    # float16 and bfloat16 convert exactly to float32, whose 32-bit keys need half the passes of float64.
    if dtypes <= {torch.float16, torch.bfloat16, torch.float32}:
        return torch.float32
    return torch.float64


def _batches(flats: list[Tensor], size: int) -> list[list[_Span]]:
    """Spans of at most `size` scores, grouped into batches of at most `size` on one device.

    Batching many small tensors (biases, norms) keeps per-operation overhead per batch, not per tensor.
    """
    batches: list[list[_Span]] = [[]]
    filled = 0
    for i, flat in enumerate(flats):
        for a in range(0, flat.numel(), size):
            b = min(a + size, flat.numel())
            if batches[-1] and (filled + b - a > size or flats[batches[-1][0][0]].device != flat.device):
                batches.append([])
                filled = 0
            batches[-1].append((i, a, b))
            filled += b - a
    return batches


class _Buffers:
    """Batch-sized scratch tensors per device, reused across batches and passes to bound memory."""

    def __init__(self, wide: torch.dtype, size: int) -> None:
        self.wide, self.size = wide, size
        self.bits = 32 if wide == torch.float32 else 64
        self.key_dtype = torch.int32 if self.bits == 32 else torch.int64
        self._per_device: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def get(self, device: torch.device, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """(wide values, integer scratch, bool scratch), each of `n` elements."""
        if device not in self._per_device:
            self._per_device[device] = (
                torch.empty(self.size, dtype=self.wide, device=device),
                torch.empty(self.size, dtype=self.key_dtype, device=device),
                torch.empty(self.size, dtype=torch.bool, device=device),
            )
        return tuple(t[:n] for t in self._per_device[device])  # type: ignore[return-value]

    def widen(self, chunk: Tensor) -> Tensor:
        """`chunk` in the wide dtype, copied into scratch only when its dtype differs."""
        return chunk if chunk.dtype == self.wide else self.get(chunk.device, chunk.numel())[0].copy_(chunk)

    def keys(self, flats: list[Tensor], batch: list[_Span]) -> Tensor:
        """Integer keys of a batch: raw float bits (sign-magnitude order), or the integers themselves."""
        wide = self.get(flats[batch[0][0]].device, sum(b - a for _, a, b in batch))[0]
        start = 0
        for i, a, b in batch:
            chunk, out = flats[i][a:b], wide[start : start + b - a]
            if chunk.is_floating_point():
                torch.add(chunk, 0.0, out=out)  # -0.0 + 0.0 == +0.0: equal values must share one key
            else:
                out.copy_(chunk)
            start += b - a
        return wide.view(self.key_dtype) if self.wide.is_floating_point else wide


@cache
def _bin_orders(floats: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Bins in descending value order: (top digit, lower digits under a negative float prefix, otherwise).

    Top digit: the non-negative half first, from its top; then the sign bit set, where a float's larger
    magnitude is a smaller value (and an integer's is not). Cached: built once, reused by every call.
    """
    half = _BINS // 2
    asc = torch.arange(_BINS, dtype=torch.int32)
    top = torch.where(asc < half, half - 1 - asc, asc if floats else _BINS + half - 1 - asc)
    return top, asc, asc.flip(0)


def _kth_largest(
    flats: list[Tensor], k: int, batches: list[list[_Span]], bufs: _Buffers
) -> tuple[float | int, int, int]:
    """(k-th largest value, number of scores above it, number equal to it), by MSD radix select."""
    floats = bufs.wide.is_floating_point
    top_desc, asc, rev = _bin_orders(floats)
    prefix, n_greater = 0, 0
    for shift in range(bufs.bits - _DIGIT_BITS, -1, -_DIGIT_BITS):
        first = shift == bufs.bits - _DIGIT_BITS
        hists: dict[torch.device, Tensor] = {}
        for batch in batches:
            keys = bufs.keys(flats, batch)
            values, scratch, sel = bufs.get(keys.device, keys.numel())
            # A NaN makes the sum NaN, and summing is far cheaper than isnan; a NaN sum from +inf + -inf
            # or float16 overflow only costs an exact check.
            if first and floats and math.isnan(values.sum().item()):
                _check_nan(flats, batch)
            if not first:  # only keys under the prefix found so far compete
                high = torch.bitwise_right_shift(keys, shift + _DIGIT_BITS, out=scratch)
                keys = keys[torch.eq(high, prefix, out=sel)]
            digits = torch.bitwise_right_shift(keys, shift, out=scratch[: keys.numel()]).bitwise_and_(_BINS - 1)
            if keys.device not in hists:
                hists[keys.device] = torch.zeros(_BINS, dtype=torch.int64, device=keys.device)
            hist = hists[keys.device]
            if digits.numel() >= _BINS:  # many digits (usually the first pass): a dense histogram is faster
                hist += torch.bincount(digits, minlength=_BINS)
            else:  # few digits (small batches, or candidates under a prefix): skip the 64k-bin output
                hist.index_add_(0, digits, torch.ones_like(digits, dtype=torch.int64))
        desc = top_desc if first else asc if floats and prefix < 0 else rev
        # Scores in each bin and all bins above it; in place, as every 64k-bin temporary adds to the peak.
        at_or_above = reduce(torch.add, [h.cpu() for h in hists.values()])[desc].cumsum_(0)
        j = int(torch.searchsorted(at_or_above, k))  # the first bin, from the top, to reach k
        above = int(at_or_above[j - 1]) if j else 0
        n_greater, k = n_greater + above, k - above
        digit = int(desc[j])
        # The prefix is the arithmetic right shift of the key: the top digit carries the sign.
        prefix = (digit - _BINS if digit >= _BINS // 2 else digit) if first else (prefix << _DIGIT_BITS) | digit
    value = torch.tensor(prefix, dtype=bufs.key_dtype).view(bufs.wide).item() if floats else prefix
    return value, n_greater, int(at_or_above[j]) - above


def _check_nan(flats: list[Tensor], batch: list[_Span]) -> None:
    """Raise ValueError naming the first tensor of `batch` that holds a NaN."""
    for i, a, b in batch:
        if bool(torch.isnan(flats[i][a:b]).any()):
            raise ValueError(f"scores[{i}] contains NaN; NaN scores cannot be ranked")


def _set_ties(
    flats: list[Tensor], masks: list[Tensor], value: float | int, n: int, forward: bool, spans: list[_Span],
    bufs: _Buffers,
) -> None:
    """Set the first (`forward`) or last `n` scores equal to `value` to `forward` in their masks."""
    for i, a, b in spans if forward else reversed(spans):
        if n == 0:
            return
        chunk = bufs.widen(flats[i][a:b])
        tie = torch.eq(chunk, value, out=bufs.get(chunk.device, b - a)[2])
        found = int(torch.count_nonzero(tie))
        if found == 0:
            continue
        mask = masks[i].view(-1)[a:b]
        if found <= n:
            mask.masked_fill_(tie, forward)
        else:
            where = tie.nonzero().squeeze(1)
            mask[where[:n] if forward else where[found - n :]] = forward
        n -= min(found, n)
