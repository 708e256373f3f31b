"""One pruning event: score the weights, then allocate the surviving ones; and a sequence of such events."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lt_lightning.masks import Masks
from lt_lightning.pruning.allocation import ALLOCATIONS, _alive_scores, check_allocation, layerwise
from lt_lightning.pruning.schedule import check_density
from lt_lightning.pruning.scores import ScoreContext, compute_scores
from lt_lightning.pruning.threshold import keep_top_k
from lt_lightning.validation import check_int, check_regex


class LayerCollapseWarning(UserWarning):
    """The layer-collapse guard of :func:`prune` kept weights in layers that the allocation would have emptied."""


def match_parameters(pattern: str, names: Sequence[str], what: str) -> list[str]:
    """The ``names`` that the regex ``pattern`` is found in; ``ValueError`` naming ``what`` if there are none.

    >>> match_parameters(r"^out\\.", ["hidden.weight", "out.weight"], "keep_dense")
    ['out.weight']
    """
    regex = check_regex(what, pattern)
    matched = [n for n in names if regex.search(n)]
    if not matched:
        raise ValueError(f"{what}={pattern!r} matches no prunable parameter; they are: {list(names)}.")
    return matched


def prune(
    context: ScoreContext,
    density: float,
    *,
    score: str = "magnitude",
    allocation: str = "global",
    layer_density: Mapping[str, float] | None = None,
    keep_dense: str | None = None,
    allow_layer_collapse: bool = False,
    min_kept: int = 1,
    notes: dict[str, Any] | None = None,
) -> Masks:
    """New masks keeping ``density`` of ``context.masks``' weights, chosen by ``score`` and ``allocation``.

    Parameters named in ``layer_density`` are pruned on their own to the density given there, and those whose name
    the regex ``keep_dense`` is found in are not pruned further; ``density`` applies to the others. Weights pruned
    before stay pruned.

    Layer collapse guard: unless ``allow_layer_collapse``, a layer left with fewer than ``min_kept`` weights keeps its
    ``min_kept`` highest-scoring ones instead, taken from the lowest-scoring kept weights of the layers that
    ``allocation`` pruned, so that the total stays the same; a :class:`LayerCollapseWarning` names the layers saved.

    Ties: of the live weights that score the same as the last one a threshold keeps (within a layer, or across all
    layers for ``allocation="global"``), as many as it keeps are drawn at random (seeded by ``context.generator``),
    never taken in layer or index order. Layers whose scores are all zero (or all equal) are named in a
    :class:`TiedScoresWarning` with the likely cause and remedy, and in ``notes["all_zero_scores"]`` and
    ``notes["tied_scores"]`` when a ``notes`` dict is given; a ``ValueError`` if every weight scores the same.

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    >>> masks = prune(ScoreContext(net, Masks.dense(net, ["0.weight", "1.weight"])), 0.5,
    ...               layer_density={"1.weight": 0.75})
    >>> masks.layer_densities()
    {'0.weight': 0.5, '1.weight': 0.75}
    """
    check_density("density", density)
    check_allocation(allocation)
    check_int("min_kept", min_kept, minimum=1)
    masks = context.masks
    explicit = dict(layer_density or {})
    unknown = sorted(set(explicit) - set(masks))
    if unknown:
        raise ValueError(f"layer_density names parameters that are not masked: {unknown}; masked: {list(masks)}.")
    for name, value in explicit.items():
        check_density(f"layer_density[{name!r}]", value)
    if keep_dense is not None:
        dense = match_parameters(keep_dense, list(masks), "keep_dense")
        both = sorted(set(dense) & set(explicit))
        if both:
            raise ValueError(f"layer_density and keep_dense={keep_dense!r} both name {both}: give each layer one rule.")
        explicit.update(dict.fromkeys(dense, 1.0))
    scores = compute_scores(score, context)
    new: dict[str, Tensor] = {}
    rest = [n for n in masks if n not in explicit]
    if rest:
        new.update(ALLOCATIONS[allocation]({n: scores[n] for n in rest}, Masks({n: masks[n] for n in rest}), density))
    for name, value in explicit.items():
        new.update(layerwise({name: scores[name]}, Masks({name: masks[name]}), value))
    _check_ties(score, scores, masks, notes)
    groups = [rest] if allocation == "global" else [[n] for n in rest]
    _break_ties_at_random(new, scores, masks, groups + [[n] for n in explicit], context.generator)
    if not allow_layer_collapse:
        _keep_layers_alive(new, scores, masks, rest, min_kept)
    return Masks({n: new[n] for n in masks})


class TiedScoresWarning(UserWarning):
    """Layers' scores were all zero (or all equal), so which of their weights are kept was drawn at random."""


def _break_ties_at_random(
    new: dict[str, Tensor], scores: Mapping[str, Tensor], before: Masks, groups: Sequence[Sequence[str]],
    generator: torch.Generator | None,
) -> None:
    """Weights scoring the same as the last weight a group kept (the layers one threshold ranks together) would be
    kept in index order, earlier layers first: a structured pattern no score chose. Of all the group's live weights
    at that score, keep as many as the threshold kept, drawn at random (seeded)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    for group in groups:
        live = {n: before[n].to(new[n].device) for n in group}
        kept = sum(int(new[n].sum()) for n in group)
        if kept == 0 or kept == sum(int(m.sum()) for m in live.values()):
            continue
        threshold = min(float(torch.where(new[n], scores[n], torch.full_like(scores[n], float("inf"))).min())
                        for n in group if bool(new[n].any()))
        tied = {n: live[n] & (scores[n] == threshold) for n in group}
        counts = {n: int(t.sum()) for n, t in tied.items()}
        keep = sum(int((t & new[n]).sum()) for n, t in tied.items())
        if keep == sum(counts.values()):
            continue
        chosen = torch.zeros(sum(counts.values()), dtype=torch.bool)
        chosen[torch.randperm(chosen.numel(), generator=generator)[:keep]] = True
        for n, part in zip(tied, chosen.split(list(counts.values()))):
            if counts[n]:
                new[n] = new[n].clone()
                new[n][tied[n]] = part.to(new[n].device)


def _tied_layers(scores: Mapping[str, Tensor], before: Masks) -> tuple[list[str], list[str]]:
    """(layers whose live scores are all zero, layers whose live scores are all one other value)."""
    zero: list[str] = []
    equal: list[str] = []
    for name, mask in before.items():
        alive = mask.to(scores[name].device)
        if int(alive.sum()) < 2:
            continue
        live = scores[name][alive]
        low, high = live.min(), live.max()
        if bool(low == high):
            (zero if bool(low == 0) else equal).append(name)
    return zero, equal


def _check_ties(score: str, scores: Mapping[str, Tensor], before: Masks, notes: dict[str, Any] | None) -> None:
    """Name every layer whose scores cannot rank its weights; refuse when no layer's can."""
    zero, equal = _tied_layers(scores, before)
    if notes is not None:
        for key, names in (("all_zero_scores", zero), ("tied_scores", equal)):
            notes[key] = sorted(set(notes.get(key, [])) | set(names), key=list(before).index)
    if not zero and not equal:
        return
    if score == "magnitude":
        likely = "their weights are zero (a zero-initialised layer, e.g. a head or a block's last layer)"
        remedy = "Remedy: initialise those weights otherwise, or leave them out of pruning (keep_dense, exclude)."
    else:
        likely = ("a zero-initialised normalization or output layer after them (timm's ResNets zero the last"
                  " BatchNorm of every block, zero_init_last=True) leaves them no gradient or signal to be scored by")
        remedy = ("Remedy: initialise without the zeroed layers (timm: zero_init_last=False), or use a score that"
                  " does not pass through them ('magnitude', 'random').")
    cause = (f"the {score!r} scores of {len(zero)} of {len(before)} prunable layers are all zero: {zero}. Likely"
             f" cause: {likely}." if zero else "")
    if equal:
        cause += f"{' ' if cause else ''}The {score!r} scores of {equal} are all equal (e.g. constant weights)."
    if len(zero) + len(equal) == len(before) and len({float(scores[n][before[n]].max()) for n in before}) == 1:
        raise ValueError(f"{cause} Every prunable weight scores the same, so the score cannot choose any. {remedy}")
    warnings.warn(f"{cause} Which of their weights survive was drawn at random (seeded by the pruning seed), not"
                  f" chosen by the score. {remedy}", TiedScoresWarning, stacklevel=4)


def prune_iteratively(context: ScoreContext, densities: Sequence[float], **kwargs: object) -> Masks:
    """:func:`prune` to each of ``densities`` in turn, each time scoring the network masked by the previous masks
    (e.g. SynFlow with :func:`~lt_lightning.pruning.schedule.synflow_exponential`); ``kwargs`` go to :func:`prune`.

    >>> from torch import nn
    >>> net = nn.Linear(10, 10)
    >>> prune_iteratively(ScoreContext(net, Masks.dense(net, ["weight"])), [0.5, 0.25]).density()
    0.25
    """
    # The batches are read once per event: an iterator would be exhausted after the first.
    batches = list(context.batches) if context.batches is not None else None
    masks = context.masks
    for density in densities:
        step = dataclasses.replace(context, masks=masks, batches=batches)
        masks = prune(step, density, **kwargs)  # type: ignore[arg-type]
    return masks


def _keep_layers_alive(
    new: dict[str, Tensor], scores: Mapping[str, Tensor], before: Masks, donors: Sequence[str], min_kept: int
) -> None:
    """The layer collapse guard of :func:`prune`, in place on ``new``."""
    alive = dict(zip(before, _alive_scores(scores, before)))
    wanted = {n: min(min_kept, int(before[n].sum())) for n in before}
    saved = {n: int(new[n].sum()) for n in new if int(new[n].sum()) < wanted[n]}
    if not saved:
        return
    for name in saved:
        new[name] = keep_top_k([alive[name]], wanted[name])[0]
    # The weights the saved layers keep come from the lowest-scoring kept weights of the other layers, each of which
    # keeps its own min_kept best.
    givers = [n for n in donors if n not in saved]
    offered = []
    for name in givers:
        kept = torch.where(new[name], alive[name], torch.full_like(alive[name], float("-inf")))
        spare = new[name] & ~keep_top_k([kept], min(min_kept, int(new[name].sum())))[0]
        offered.append(torch.where(spare, -alive[name], torch.full_like(alive[name], float("-inf"))))
    needed = sum(wanted[n] - k for n, k in saved.items())
    available = sum(int(torch.isfinite(o).sum()) for o in offered)
    if available < needed:
        raise ValueError(
            f"the density is too low to keep {min_kept} weight(s) in each of the {len(before)} prunable layers"
            f" (layers {sorted(saved)} would be emptied): raise the density, or pass allow_layer_collapse=True."
        )
    for name, dropped in zip(givers, keep_top_k(offered, needed)):
        new[name] = new[name] & ~dropped
    warnings.warn(
        f"layer collapse guard saved {sorted(saved)}: the allocation kept {saved} of their weights, fewer than"
        f" min_kept={min_kept}; they keep their highest-scoring weights instead, taken from the lowest-scoring kept"
        " weights of the other layers. Pass allow_layer_collapse=True to allow empty layers.",
        LayerCollapseWarning,
        stacklevel=3,
    )
