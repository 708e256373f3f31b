"""Exact top-k masks, computed at every forward of a supermask: the per-step cost this package has to keep small.

A supermask keeps the ``k`` largest ``|scores|`` of a layer (or of all layers) in every forward, ``k`` exact. Median
CPU time per call on one thread (``benchmarks/supermask_overhead.py``; AMD EPYC, AVX2) for LeNet-300-100's first
layer (235,200 scores, ``k`` half of them) along the steps of a supermask training, against a dense LeNet-300-100
optimizer step of ~3.4 ms in a Lightning loop (batch 60):

==============================================  ===========
``torch.sort``                                  22.2-22.5 ms
``torch.kthvalue`` + comparison                 3.4-3.9 ms
``torch.topk``                                  3.3-3.4 ms
:class:`TopK`                                   0.7-0.8 ms
==============================================  ===========

How: after an optimizer step the ``k``-th largest value has moved a little from the last one, ``t``.

1. One comparison with ``t``, written as the float mask, and its sum count the values at or above it: exactly ``k``
   means ``t`` still separates the top ``k``, and the comparison is the mask;
2. otherwise a Newton step from ``t`` (the count's error over the density of values near the threshold, measured
   between the last two comparisons) and then regula falsi on the counts (Illinois variant) move the threshold, one
   comparison each, until a count is exactly ``k`` (usually within 2-4) or 5 have been tried;
3. then the few values between the last two thresholds tried are gathered, without a full ``nonzero``: the blocks of
   32 values that hold one are found by a row maximum of the band's mask. The rank needed among them gives the exact
   threshold.

The first call, or one whose band cannot be bracketed, takes a **radix step**: a histogram of the top 16 bits of the
values' float32 bit patterns (non-negative floats order like their bit patterns) names the bucket holding the
``k``-th largest value, whose few values are sorted.

Comparisons write float masks directly into buffers kept between calls (``torch.ge(..., out=float_tensor)``): a
``bool`` result costs 3x a float one here, converting it 6x, and fresh megabyte-sized tensors pay page faults. Ties at
the threshold are kept in order (earlier tensor first, then lower flat index), so the count is exact whatever the
values. Small groups (up to 4,096 values) and CUDA tensors use ``torch.topk`` and a scatter, which needs no
synchronisation with the host; ties then fall in ``torch.topk``'s own (deterministic) order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

_BUCKET_SHIFT = 16
_BUCKETS = 1 << (31 - _BUCKET_SHIFT)  # the sign bit of a non-negative float is 0
_SMALL = 4096  # up to this many values in all, torch.topk is as fast as anything
_BLOCK = 32  # values per block when gathering a band's values
_BLOCKWISE = 65536  # from this many values on, gather blockwise
_SEARCH_STEPS = 5  # comparisons tried for an exact count before the band's values are gathered


class TopK:
    """Float masks keeping exactly the ``k`` largest of non-negative values spread over several tensors.

    One instance per group of tensors selected together (a layer, or all layers for a global top-k): it keeps the
    last threshold and the mask buffers (the masks it returns are overwritten by its next call).

    >>> top = TopK()
    >>> a, b = torch.tensor([0.5, 3.0, 1.5]), torch.tensor([[2.0, 1.0], [0.0, 0.2]])
    >>> [m.tolist() for m in top.masks([a, b], 3)]
    [[0.0, 1.0, 1.0], [[1.0, 0.0], [0.0, 0.0]]]
    >>> ties = torch.zeros(10_000); ties[:10] = 1.0
    >>> mask = top.masks([ties], 100)[0]   # 10 ones, then the first 90 of the tied zeros
    >>> int(mask.sum()), int(mask[:100].sum())
    (100, 100)
    """

    def __init__(self) -> None:
        self._threshold: float | None = None
        self._per_unit = 0.0  # values per unit of value near the threshold, measured at the last selection
        self._out: list[Tensor] = []
        self._low: list[Tensor] = []
        self._high: list[Tensor] = []

    def masks(self, values: Sequence[Tensor], k: int) -> list[Tensor]:
        """Masks shaped like ``values`` (float32), 1 at the ``k`` largest values, 0 elsewhere.

        ``values`` are float32, non-negative and not NaN (``|scores|``); ``0 <= k <=`` their total size.
        """
        total = sum(v.numel() for v in values)
        if not 0 <= k <= total:
            raise ValueError(f"k={k} is out of range: expected 0 <= k <= {total} (the number of values).")
        flats = [v.detach().reshape(-1) for v in values]
        self._refresh(flats)
        if k in (0, total):
            for out in self._out:
                out.fill_(float(k > 0))
        elif total <= _SMALL or any(f.device.type != "cpu" for f in flats):
            _top_k(flats, k, self._out)
        elif self._threshold is None or not self._from_last(flats, k):
            self._radix(flats, k, self._out)
        return [out.view(v.shape) for out, v in zip(self._out, values)]

    def _refresh(self, flats: list[Tensor]) -> None:
        """Three sets of buffers shaped like ``flats``: the masks returned, and two for the search."""
        stale = len(self._out) != len(flats) or any(
            b.shape != f.shape or b.device != f.device or (b.is_inference() and not torch.is_inference_mode_enabled())
            for b, f in zip(self._out, flats))
        if stale:
            self._out, self._low, self._high = (
                [torch.empty(f.shape, dtype=torch.float32, device=f.device) for f in flats] for _ in range(3))

    def _count_at_or_above(self, flats: list[Tensor], value: float, into: list[Tensor]) -> int:
        return sum(_count(torch.ge(f, value, out=b)) for f, b in zip(flats, into))

    def _from_last(self, flats: list[Tensor], k: int) -> bool:
        """Steps 1-3 of the module docstring; ``False`` if the threshold was not bracketed (masks undefined)."""
        # Invariant: low has >= k values at or above it, high fewer; their comparisons are in self._low/_high.
        t = self._threshold
        count = self._count_at_or_above(flats, t, self._out)
        if count == k:
            return True
        low: float | None = None
        high: float | None = None
        low_count = high_count = 0
        if count > k:
            low, low_count = t, count
            self._low, self._out = self._out, self._low
        else:
            high, high_count = t, count
            self._high, self._out = self._out, self._high
        last, last_count = t, count
        # Illinois: the weight of an edge kept twice in a row is halved, so that regula falsi does not stall on it.
        low_weight = high_weight = 1.0
        last_side = 0
        for _ in range(_SEARCH_STEPS):
            if low is not None and high is not None:
                f_low, f_high = (low_count - k) * low_weight, (k - high_count) * high_weight
                x = low + f_low / (f_low + f_high) * (high - low)
            else:  # a Newton step from the last point, 1.5x long so that it brackets the threshold
                x = max(last + 1.5 * (last_count - k) / self._per_unit, 0.0)
            count = self._count_at_or_above(flats, x, self._out)
            if x != last and count != last_count:  # the density of values between the last two points
                self._per_unit = abs(count - last_count) / abs(x - last)
            last, last_count = x, count
            if count == k:
                self._threshold = x
                return True
            side = 1 if count > k else -1
            if side > 0:
                low, low_count = x, count
                self._low, self._out = self._out, self._low
            else:
                high, high_count = x, count
                self._high, self._out = self._out, self._high
            if side != last_side:
                low_weight = high_weight = 1.0
            elif side > 0:
                high_weight /= 2
            else:
                low_weight /= 2
            last_side = side
        if low is None or high is None:
            return False
        for band, above in zip(self._low, self._high):  # values in [low, high): the candidates
            band.sub_(above)
        candidates = torch.cat([_gather(f, b) for f, b in zip(flats, self._low)])
        self._per_unit = candidates.numel() / max(high - low, math.ulp(low))
        self._select(flats, candidates, k - high_count, k, self._out)
        return True

    def _radix(self, flats: list[Tensor], k: int, outs: list[Tensor]) -> None:
        keys = [f.view(torch.int32).bitwise_right_shift(_BUCKET_SHIFT) for f in flats]
        hist = sum(torch.bincount(key, minlength=_BUCKETS) for key in keys)
        at_or_above = hist.flip(0).cumsum(0)  # at_or_above[j]: values in bucket _BUCKETS - 1 - j or higher
        j = int(torch.searchsorted(at_or_above, k))
        above = int(at_or_above[j - 1]) if j else 0
        bucket = _BUCKETS - 1 - j
        candidates = torch.cat([f[key == bucket] for f, key in zip(flats, keys)])
        edges = torch.tensor([bucket << _BUCKET_SHIFT, (bucket + 1) << _BUCKET_SHIFT], dtype=torch.int32)
        low, high = edges.view(torch.float32).tolist()
        self._per_unit = candidates.numel() / max(high - low, math.ulp(low))
        self._select(flats, candidates, k - above, k, outs)

    def _select(self, flats: list[Tensor], candidates: Tensor, rank: int, k: int, outs: list[Tensor]) -> None:
        """Masks of the ``k`` largest values, given that the ``k``-th is the ``rank``-th largest of ``candidates``
        and that every value above the candidates is kept."""
        value = float(torch.kthvalue(candidates, candidates.numel() - rank + 1).values)
        if _count((candidates >= value).float()) == rank:  # no tie at the threshold beyond the rank
            for flat, out in zip(flats, outs):
                torch.ge(flat, value, out=out)
            self._threshold = value
        else:
            _keep_first_ties(flats, value, k, outs)
            self._threshold = None


def _top_k(flats: list[Tensor], k: int, outs: list[Tensor]) -> None:
    # No host synchronisation (CUDA); ties are kept in torch.topk's own order.
    if len(flats) == 1:
        outs[0].zero_().index_fill_(0, torch.topk(flats[0], k, sorted=False).indices, 1.0)
        return
    joined = torch.cat(flats)
    kept = torch.zeros(joined.shape, dtype=torch.float32, device=joined.device)
    kept.index_fill_(0, torch.topk(joined, k, sorted=False).indices, 1.0)
    for out, part in zip(outs, kept.split([o.numel() for o in outs])):
        out.copy_(part)


def _gather(flat: Tensor, band: Tensor) -> Tensor:
    """The values of ``flat`` where the float mask ``band`` is 1. A large tensor's are found through its blocks of
    32 values that hold one (a row maximum), which is cheaper than a full ``nonzero``."""
    if flat.numel() < _BLOCKWISE:
        return flat.take(torch.argwhere(band).view(-1))
    whole = flat.numel() // _BLOCK * _BLOCK
    rows = torch.argwhere(band[:whole].view(-1, _BLOCK).amax(1)).view(-1)
    values = flat[:whole].view(-1, _BLOCK)[rows].view(-1)
    inside = torch.argwhere(band[:whole].view(-1, _BLOCK)[rows].view(-1)).view(-1)
    return torch.cat([values.take(inside), flat[whole:].take(torch.argwhere(band[whole:]).view(-1))])


def _count(mask: Tensor) -> int:
    """Ones in a float 0/1 mask: float32 sums of integers are exact below 2**24, and 4x faster than float64."""
    return int(mask.sum(dtype=torch.float32 if mask.numel() < 2**24 else torch.float64))


def _keep_first_ties(flats: list[Tensor], value: float, k: int, outs: list[Tensor]) -> None:
    """Masks of the values above ``value`` plus the first values equal to it, ``k`` in all."""
    kept = sum(_count(torch.gt(flat, value, out=out)) for flat, out in zip(flats, outs))
    for flat, out in zip(flats, outs):
        if kept == k:
            break
        ties = torch.nonzero(flat == value).view(-1)[: k - kept]
        out[ties] = 1
        kept += ties.numel()
