"""Exact top-k masks, computed at every forward of a supermask: the per-step cost this package has to keep small.

A supermask keeps the ``k`` largest ``|scores|`` of a layer (or of all layers) in every forward, ``k`` exact. Median
CPU time per call on one thread (``benchmarks/supermask_overhead.py``; AMD EPYC, AVX2) for LeNet-300-100's first
layer (235,200 scores, ``k`` half of them) along Adam-like steps, against a dense LeNet-300-100 optimizer step of
~2.5 ms (plain PyTorch loop; ~4 ms in a Lightning loop):

==============================================  ========
``torch.sort``                                  22.4 ms
``torch.kthvalue`` + comparison                 3.9 ms
``torch.topk``                                  3.3 ms
:class:`TopK`                                   0.2-0.3 ms
==============================================  ========

How: after an optimizer step the ``k``-th largest value has moved a little from the last one, ``t``.

1. One comparison with ``t``, written as the float mask: exactly ``k`` values at or above it means it still
   separates the top ``k``, and the comparison is the mask;
2. otherwise a step to the other side (the count's error over the density of values near the threshold, measured
   at the last selection, 1.5x long and doubled while it falls short) brackets the ``k``-th value between two
   comparisons, ``low`` (``k`` or more at or above) and ``high`` (fewer);
3. the values in ``[low, high)`` are the only candidates; they are found without a pass over all values: each
   comparison also counts its ones per block of 64 values, and only the blocks whose counts differ between the two
   hold a candidate. The rank needed among the candidates gives the exact ``k``-th value, and the mask is ``high``'s
   plus the candidates kept.

So a selection is usually two comparisons, each one pass writing the mask and one reading it. The first call, or one
whose band cannot be bracketed in a few comparisons, takes a **radix step**: a histogram of the top 16 bits of the
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
_BLOCK = 64  # values per block counted by a comparison; every tensor's values are padded to whole blocks
_PAD = -1.0  # the padding's value: below every value compared, so never counted or kept
_BAND = 1 / 16  # a bracket holding more than this fraction of a group's values is narrowed first
_ROUNDS = 6  # comparisons tried to bracket every group's k-th value before a radix step


class _Search:
    """One group's search for its ``k``-th largest value: the point it is compared at, and the two comparisons
    (round, point, count) that bracket the value once found, ``low`` (``k`` or more at or above) and ``high``."""

    __slots__ = ("k", "size", "point", "low", "high", "done", "ties", "wide", "stretch")

    def __init__(self, k: int, size: int, point: float) -> None:
        self.k, self.size, self.point = k, size, point
        self.low: tuple[int, float, int] | None = None
        self.high: tuple[int, float, int] | None = None
        self.done = False  # compared at a point with exactly k values at or above it
        self.ties: float | None = None  # the k-th value, tied with values kept and dropped (radix step)
        self.wide = False  # bracketed, but too wide to gather: narrowed first
        self.stretch = 1.5  # of the next Newton step

    @property
    def bracketed(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def settled(self) -> bool:
        """Nothing more to compare: the group's mask is in the last comparison, or follows from two of them."""
        return self.done or self.ties is not None or (self.bracketed and not self.wide)


class TopK:
    """Float masks keeping exactly the ``k`` largest of non-negative values, of each tensor (``k`` per tensor) or
    of all the tensors together (one ``k``).

    One instance per set of tensors selected at every step: it keeps each group's last threshold, a padded copy of
    the values and the mask buffer (the masks it returns are overwritten by its next call). All groups are compared
    in the same passes, so a selection costs about the same number of operations for one tensor or many.

    >>> top = TopK()
    >>> a, b = torch.tensor([0.5, 3.0, 1.5]), torch.tensor([[2.0, 1.0], [0.0, 0.2]])
    >>> [m.tolist() for m in top.masks([a, b], 3)]   # the 3 largest of all values
    [[0.0, 1.0, 1.0], [[1.0, 0.0], [0.0, 0.0]]]
    >>> [m.tolist() for m in TopK().masks([-a, b], [1, 2], absolute=True)]   # the largest |values| of each
    [[0.0, 1.0, 0.0], [[1.0, 1.0], [0.0, 0.0]]]
    >>> ties = torch.zeros(10_000); ties[:10] = 1.0
    >>> mask = TopK().masks([ties], 100)[0]   # 10 ones, then the first 90 of the tied zeros
    >>> int(mask.sum()), int(mask[:100].sum())
    (100, 100)
    """

    def __init__(self) -> None:
        self._layout: tuple[object, ...] = ()
        self._thresholds: list[float | None] = []  # each group's k-th value at its last selection
        self._per_unit: list[float] = []  # values per unit of value near each group's threshold, measured then

    def masks(self, values: Sequence[Tensor], k: int | Sequence[int], absolute: bool = False) -> list[Tensor]:
        """Masks shaped like ``values`` (float32), 1 at the ``k`` largest values (of ``|values|`` if
        ``absolute``), 0 elsewhere: with an int ``k``, of all values together; with one ``k`` per tensor, of each.

        The values compared are not NaN and, unless ``absolute``, non-negative; ``0 <= k <=`` the group's size.
        """
        ks = [k] if isinstance(k, int) else list(k)
        sizes = [v.numel() for v in values]
        groups = [sum(sizes)] if isinstance(k, int) else sizes
        if len(ks) != len(groups):
            raise ValueError(f"k={list(ks)} gives {len(ks)} counts for {len(values)} tensors: give one int, or one"
                             " count per tensor.")
        for count, size in zip(ks, groups):
            if not 0 <= count <= size:
                raise ValueError(f"k={count} is out of range: expected 0 <= k <= {size} (the number of values).")
        self._refresh(values, isinstance(k, int))
        for value, start in zip(values, self._starts):
            real = self._values[start: start + value.numel()].view(value.shape)
            if absolute and value.dtype == torch.float32:
                torch.abs(value.detach(), out=real)
            else:
                real.copy_(value.detach())
                if absolute:
                    real.abs_()
        if self._values.device.type != "cpu":
            self._top_k(ks)
        else:
            self._select(ks)
        return [self._mask[start: start + v.numel()].view(v.shape) for v, start in zip(values, self._starts)]

    # ------------------------------------------------------------------ layout
    def _refresh(self, values: Sequence[Tensor], together: bool) -> None:
        """The padded layout of ``values`` (kept between calls while their shapes and device stay)."""
        device = values[0].device
        layout = (together, device, torch.is_inference_mode_enabled(), *(v.numel() for v in values))
        if layout == self._layout:
            return
        self._sizes = [v.numel() for v in values]
        padded = [-(-n // _BLOCK) * _BLOCK for n in self._sizes]
        self._starts = [sum(padded[:i]) for i in range(len(padded))]
        self._values = torch.full((sum(padded),), _PAD, device=device)
        self._mask = torch.zeros(sum(padded), device=device)
        # Groups are runs of whole blocks: all tensors together, or one each.
        spans = [sum(padded)] if together else padded
        self._members = [list(range(len(values)))] if together else [[i] for i in range(len(values))]
        self._blocks = torch.tensor([n // _BLOCK for n in spans], device=device)
        self._ends = torch.tensor(spans, device=device).cumsum(0).div(_BLOCK, rounding_mode="floor").sub(1)
        self._block_starts = [sum(spans[:i]) // _BLOCK for i in range(len(spans))]
        self._thresholds = [None] * len(spans)
        self._per_unit = [0.0] * len(spans)
        self._layout = layout

    def _real(self, group: int) -> tuple[list[Tensor], list[Tensor]]:
        """The values of a group's tensors and their masks, without padding."""
        members = self._members[group]
        starts, sizes = [self._starts[i] for i in members], [self._sizes[i] for i in members]
        return ([self._values[s: s + n] for s, n in zip(starts, sizes)],
                [self._mask[s: s + n] for s, n in zip(starts, sizes)])

    # ------------------------------------------------------------------ selection
    def _select(self, ks: list[int]) -> None:
        """Steps 1-3 of the module docstring, for every group in the same passes."""
        searches = []
        for g, k in enumerate(ks):
            size = sum(self._sizes[i] for i in self._members[g])
            if k in (0, size):  # every real value is >= 0 > the padding
                search = _Search(k, size, math.inf if k == 0 else 0.0)
            elif self._thresholds[g] is None:
                search = self._radix(g, k, size)
            else:
                search = _Search(k, size, self._thresholds[g])
            searches.append(search)
        rounds: list[Tensor] = []
        for attempt in range(_ROUNDS + 1):
            counts, blocks = self._compare([s.point for s in searches])
            rounds.append(blocks)
            if attempt == _ROUNDS:  # a radix step found the values still searching: this round wrote them
                break
            for g, (search, count) in enumerate(zip(searches, counts)):
                if not search.settled:
                    self._step(g, search, count, len(rounds) - 1)
            if all(s.settled for s in searches):
                break
            if attempt == _ROUNDS - 1:
                for g, search in enumerate(searches):
                    if not search.settled:
                        searches[g] = self._radix(g, search.k, search.size)
        bracketed = [g for g, s in enumerate(searches) if s.bracketed and not s.done]
        if bracketed:
            self._select_bands(searches, bracketed, rounds)
        for g, search in enumerate(searches):
            if search.done:  # a trivial k (0 or all) is no threshold to start the next selection from
                self._thresholds[g] = search.point if 0 < search.k < search.size else None
            elif search.ties is not None:
                _keep_first_ties(*self._real(g), search.ties, search.k)
                self._thresholds[g] = None

    def _compare(self, points: list[float]) -> tuple[list[int], Tensor]:
        """Write ``values >= point`` (each group's own) into the mask; the ones per group and per block."""
        blocks_view = self._mask.view(-1, _BLOCK)
        if len(points) == 1:
            torch.ge(self._values, points[0], out=self._mask)
        else:
            thresholds = torch.tensor(points, device=self._values.device).repeat_interleave(self._blocks)
            torch.ge(self._values.view(-1, _BLOCK), thresholds.view(-1, 1), out=blocks_view)
        blocks = blocks_view.sum(1)
        # Block counts are whole numbers up to 64: float32 running sums of them are exact below 2**24.
        running = blocks.cumsum(0, dtype=torch.float32 if self._mask.numel() < 2**24 else torch.float64)
        ends = running.index_select(0, self._ends).tolist()
        return [int(e - (ends[g - 1] if g else 0)) for g, e in enumerate(ends)], blocks

    def _step(self, g: int, search: _Search, count: int, round_: int) -> None:
        """Take one comparison's count into a group's search; choose where it compares next."""
        if count == search.k:
            search.done = True
            return
        if count > search.k:
            search.low = (round_, search.point, count)
        else:
            search.high = (round_, search.point, count)
        if search.bracketed:
            (_, low, low_count), (_, high, high_count) = search.low, search.high
            self._per_unit[g] = (low_count - high_count) / max(high - low, math.ulp(low))
            search.wide = low_count - high_count > max(_BAND * search.size, 4 * _BLOCK)
            if search.wide:  # too many values to gather cheaply: aim inside, by linear interpolation
                search.point = low + (low_count - search.k) / (low_count - high_count) * (high - low)
            # else gathered next; compared at this end meanwhile, so that the mask keeps one end
            return
        per_unit = self._per_unit[g] if self._per_unit[g] > 0 else search.size / max(search.point, 1e-30)
        # A Newton step 1.5x long, so that it brackets the value; doubled while it falls short.
        search.point = max(search.point + search.stretch * (count - search.k) / per_unit, 0.0)
        search.stretch *= 2

    def _select_bands(self, searches: list[_Search], bracketed: list[int], rounds: list[Tensor]) -> None:
        """For each bracketed group, the mask (at one of its ends) gets the largest of its values in
        ``[low, high)``, ``k`` in all (ties: earlier tensor, lower index)."""
        # Per block, the counts at each group's two ends; blocks of other groups compare one round with itself.
        last = len(rounds) - 1
        low_parts, high_parts = [], []
        for g, (start, end) in enumerate(zip(self._block_starts, self._block_starts[1:] + [len(rounds[0])])):
            search = searches[g]
            low_round, high_round = (search.low[0], search.high[0]) if g in bracketed else (last, last)
            low_parts.append(rounds[low_round][start:end])
            high_parts.append(rounds[high_round][start:end])
        low_blocks = torch.cat(low_parts) if len(low_parts) > 1 else low_parts[0]
        high_blocks = torch.cat(high_parts) if len(high_parts) > 1 else high_parts[0]
        rows = torch.nonzero(low_blocks != high_blocks).view(-1)  # the blocks holding a value in a band
        values = self._values.view(-1, _BLOCK).index_select(0, rows)
        # Rows per group (the rows are in block order, and groups are runs of blocks).
        edges = torch.searchsorted(rows, torch.tensor(self._block_starts[1:] + [len(rounds[0])],
                                                      device=rows.device)).tolist()
        above = high_blocks.index_select(0, rows).cumsum(0).tolist()  # values at or above each group's high end
        thresholds, spans = [], []
        for g in range(len(searches)):
            first, end = (edges[g - 1] if g else 0), edges[g]
            spans.append(end - first)
            if g not in bracketed:
                thresholds.append(math.inf)  # no rows
                continue
            search = searches[g]
            gathered_above = int((above[end - 1] if end else 0) - (above[first - 1] if first else 0))
            order = search.k - search.high[2] + gathered_above  # the k-th value's rank among the gathered ones
            group_values = values[first:end].view(-1)
            thresholds.append(torch.kthvalue(group_values, group_values.numel() - order + 1).values)
        found = torch.stack([t if isinstance(t, Tensor) else torch.tensor(t, device=values.device)
                             for t in thresholds]).tolist()
        per_row = torch.tensor(found, device=values.device).repeat_interleave(
            torch.tensor(spans, device=values.device))
        kept = torch.ge(values, per_row.view(-1, 1), out=torch.empty_like(values))
        kept_running = kept.sum(1).cumsum(0).tolist()
        for g in bracketed:
            first, end = (edges[g - 1] if g else 0), edges[g]
            search = searches[g]
            gathered_above = int((above[end - 1] if end else 0) - (above[first - 1] if first else 0))
            order = search.k - search.high[2] + gathered_above
            kept_here = int((kept_running[end - 1] if end else 0) - (kept_running[first - 1] if first else 0))
            if kept_here != order:  # ties at the k-th value: the first ones, in order, are kept
                group_values, value = values[first:end].view(-1), found[g]
                ties = group_values == value
                greater = group_values > value
                take = ties & (ties.cumsum(0) <= order - int(greater.sum()))
                kept[first:end] = (greater | take).float().view(-1, _BLOCK)
            self._thresholds[g] = found[g]
        self._mask.view(-1, _BLOCK).index_copy_(0, rows, kept)

    def _radix(self, g: int, k: int, size: int) -> _Search:
        """The exact ``k``-th largest value of a group from the top 16 bits of its values' float32 bit patterns
        (non-negative floats order like their bit patterns): the bucket holding it, whose few values are sorted."""
        flats, _ = self._real(g)
        keys = [f.view(torch.int32).bitwise_right_shift(_BUCKET_SHIFT) for f in flats]
        hist = sum(torch.bincount(key, minlength=_BUCKETS) for key in keys)
        at_or_above = hist.flip(0).cumsum(0)  # at_or_above[j]: values in bucket _BUCKETS - 1 - j or higher
        j = int(torch.searchsorted(at_or_above, k))
        above = int(at_or_above[j - 1]) if j else 0
        bucket = _BUCKETS - 1 - j
        candidates = torch.cat([f[key == bucket] for f, key in zip(flats, keys)])
        edges = torch.tensor([bucket << _BUCKET_SHIFT, (bucket + 1) << _BUCKET_SHIFT], dtype=torch.int32)
        low, high = edges.view(torch.float32).tolist()
        self._per_unit[g] = candidates.numel() / max(high - low, math.ulp(low))
        value = float(torch.kthvalue(candidates, candidates.numel() - (k - above) + 1).values)
        search = _Search(k, size, value)
        if int((candidates >= value).sum()) == k - above:  # no tie at the threshold beyond the rank
            search.done = True
        else:
            search.ties = value
        return search

    def _top_k(self, ks: list[int]) -> None:
        """``torch.topk`` and a scatter per group: no synchronisation with the host (CUDA); ties are kept in
        ``torch.topk``'s own (deterministic) order. The padding is below every value."""
        self._mask.zero_()
        for g, k in enumerate(ks):
            members = self._members[g]
            start = self._starts[members[0]]
            end = self._starts[members[-1]] + -(-self._sizes[members[-1]] // _BLOCK) * _BLOCK
            self._mask[start:end].index_fill_(0, torch.topk(self._values[start:end], k, sorted=False).indices, 1.0)


def _keep_first_ties(flats: list[Tensor], outs: list[Tensor], value: float, k: int) -> None:
    """Masks of the values above ``value`` plus the first values equal to it, ``k`` in all."""
    kept = sum(int(torch.gt(flat, value, out=out).sum()) for flat, out in zip(flats, outs))
    for flat, out in zip(flats, outs):
        if kept == k:
            break
        ties = torch.nonzero(flat == value).view(-1)[: k - kept]
        out[ties] = 1
        kept += ties.numel()
