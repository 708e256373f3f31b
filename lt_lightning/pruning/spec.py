"""One typed pruning specification: what is prunable and how a pruning event chooses what to keep.

Validated once, when it is built (before any training), and shared by every callback that prunes: IMP, pruning at
initialization, and the methods that change masks during training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lt_lightning.masks import DEFAULT_TYPES, Masks, select_parameters
from lt_lightning.pruning.allocation import check_allocation
from lt_lightning.pruning.prune import check_regex, match_parameters, prune, prune_iteratively
from lt_lightning.pruning.schedule import check_density
from lt_lightning.pruning.scores import ScoreContext, check_score
from lt_lightning.validation import check_bool, check_fraction, check_seed, check_selection


@dataclass(frozen=True)
class PruningSpec:
    """Which parameters are prunable (``include``/``exclude`` regexes, ``types`` class names), how each event scores
    (``score``) and allocates (``allocation``) the kept weights, per-layer densities by regex (``layer_density``, for
    one pruning event) or per-layer fractions pruned each round (``layer_fractions``, IMP's), layers never pruned
    (``keep_dense``), the layer-collapse guard, and the seed of random scores.

    >>> spec = PruningSpec(allocation="layerwise", keep_dense=r"^1\\.")
    >>> net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    >>> names, _ = spec.resolve(net)
    >>> spec.prune(ScoreContext(net, Masks.dense(net, names)), 0.5).layer_densities()
    {'0.weight': 0.5, '1.weight': 1.0}
    """

    score: str = "magnitude"
    allocation: str = "global"
    layer_density: Mapping[str, float] = field(default_factory=dict)
    keep_dense: str | None = None
    allow_layer_collapse: bool = False
    include: str | None = None
    exclude: str | None = None
    types: Sequence[str] = DEFAULT_TYPES
    seed: int = 0
    layer_fractions: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_score(self.score)
        check_allocation(self.allocation)
        types = check_selection(self.include, self.exclude, self.types, self.keep_dense)
        for arg, check in (("layer_density", check_density), ("layer_fractions", check_fraction)):
            rule = getattr(self, arg)
            if not isinstance(rule, Mapping):
                raise ValueError(f"{arg}={rule!r} is not allowed; expected {{regex: {arg.removeprefix('layer_')}}}.")
            for pattern, value in rule.items():
                check_regex(f"{arg} key", pattern)
                check(f"{arg}[{pattern!r}]", value)
            object.__setattr__(self, arg, dict(rule))
        if self.layer_density and self.layer_fractions:
            raise ValueError("layer_density and layer_fractions are both given: a layer gets a density (one pruning"
                             " event) or a fraction pruned per round (IMP), not both.")
        check_seed("seed", self.seed)
        check_bool("allow_layer_collapse", self.allow_layer_collapse)
        object.__setattr__(self, "types", types)

    def resolve(self, module: nn.Module) -> tuple[list[str], dict[str, float]]:
        """The prunable parameter names of ``module`` and the per-layer rule (``layer_density`` or
        ``layer_fractions``) by name; ``ValueError`` if a regex matches nothing, or ``keep_dense`` leaves nothing to
        prune."""
        _check_materialized(module)
        names = select_parameters(module, include=self.include, exclude=self.exclude, types=self.types)
        arg, rule = ("layer_fractions", self.layer_fractions) if self.layer_fractions else ("layer_density",
                                                                                          self.layer_density)
        by_name: dict[str, float] = {}
        for pattern, value in rule.items():
            by_name.update(dict.fromkeys(match_parameters(pattern, names, f"{arg} key"), value))
        if self.keep_dense is not None:
            dense = match_parameters(self.keep_dense, names, "keep_dense")
            if len(dense) == len(names):
                raise ValueError(f"keep_dense={self.keep_dense!r} matches every prunable parameter ({names}): nothing"
                                 " would be pruned. Narrow it, or choose the prunable parameters with include/exclude.")
            both = sorted(set(dense) & set(by_name))
            if both:
                raise ValueError(f"{arg} and keep_dense={self.keep_dense!r} both name {both}:"
                                 " give each layer one rule.")
        return names, by_name

    def prune(self, context: ScoreContext, density: float, layer_density: Mapping[str, float] | None = None,
              notes: dict[str, Any] | None = None) -> Masks:
        """One pruning event to ``density`` (``layer_density`` by name overrides it per layer); ``notes`` receives the
        layers whose scores could not rank their weights (see :func:`~lt_lightning.pruning.prune`)."""
        return prune(context, density, score=self.score, allocation=self.allocation, layer_density=layer_density,
                     keep_dense=self.keep_dense, allow_layer_collapse=self.allow_layer_collapse, notes=notes)

    def prune_iteratively(self, context: ScoreContext, densities: Sequence[float],
                          layer_density: Mapping[str, float] | None = None, **kwargs: Any) -> Masks:
        """Pruning events to each of ``densities`` in turn, each scoring the network the previous one masked (an
        iterative schedule, e.g. SynFlow's); ``kwargs`` go to :func:`~lt_lightning.pruning.prune`."""
        return prune_iteratively(context, densities, score=self.score, allocation=self.allocation,
                                 layer_density=layer_density, keep_dense=self.keep_dense,
                                 allow_layer_collapse=self.allow_layer_collapse, **kwargs)

    def dense_names(self, names: Sequence[str]) -> list[str]:
        """The prunable names that ``keep_dense`` keeps dense."""
        return [] if self.keep_dense is None else match_parameters(self.keep_dense, names, "keep_dense")


def rounds_to_target(
    numels: Mapping[str, int], fraction: float, target: float, layer_fraction: Mapping[str, float] | None = None,
    dense: Sequence[str] = (),
) -> int:
    """Fewest rounds of geometric pruning (``fraction`` a round, ``layer_fraction`` for named layers, ``dense`` never
    pruned) after which the density of all ``numels`` is at most ``target``; ``ValueError`` if it never gets there.

    >>> rounds_to_target({"a": 100, "b": 100}, 0.5, 0.6, dense=["b"])   # 0.75, 0.625, 0.5625
    3
    """
    layer_fraction = dict(layer_fraction or {})
    total = sum(numels.values())
    floor = sum(numels[n] for n in dense) / total
    if floor > target:
        raise ValueError(f"target_density={target} cannot be reached: keep_dense keeps {floor:.4f} of the prunable"
                         f" weights dense ({sorted(dense)}); lower keep_dense's reach or raise target_density.")
    rounds = 0
    density = 1.0
    while density > target * (1 + 1e-9):
        rounds += 1
        kept = sum(n * (1.0 if name in dense else (1 - layer_fraction.get(name, fraction)) ** rounds)
                   for name, n in numels.items())
        density = kept / total
        if rounds > 10_000 or math.isclose(density, floor):
            raise ValueError(f"target_density={target} is not reached after {rounds} rounds (density {density:.4g}).")
    return max(rounds, 1)


def _check_materialized(module: nn.Module) -> None:
    """Lazy modules have no shapes until their first forward: masks cannot be made for them yet."""
    lazy = [n for n, p in module.named_parameters() if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        raise ValueError(
            f"{type(module).__name__} has uninitialized lazy parameters {lazy[:5]}: masks need their shapes. Run one"
            " forward pass before fitting (e.g. in the LightningModule's setup() or configure_model(): "
            "self(self.example_input_array)), or use non-lazy layers."
        )
