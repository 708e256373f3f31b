"""PruneAtInitCallback: prune once at initialization (SNIP, GraSP, SynFlow, random, ...), then train the sparse network.

The masks are computed on rank zero just before the first optimizer step, broadcast to every rank and kept fixed;
they are saved in checkpoints, and a resumed fit keeps them instead of pruning again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from typing_extensions import override

from lt_lightning.callbacks._trainer import silent_logging
from lt_lightning.callbacks.base import BaseMaskingCallback, announce_prunable
from lt_lightning.masks import DEFAULT_TYPES, Masks
from lt_lightning.pruning import ScoreContext
from lt_lightning.pruning.schedule import one_shot, synflow_exponential
from lt_lightning.pruning.scores import BATCHES, EXAMPLE_INPUT, ITERATIVE, SCORES
from lt_lightning.pruning.spec import PruningSpec
from lt_lightning.validation import check_density, check_int


class PruneAtInitCallback(BaseMaskingCallback):
    """Prune at initialization, once, before the first optimizer step; then keep the masks fixed through training.

    ``method`` scores the weights (higher = kept), ``allocation`` turns the scores into masks keeping ``density`` of
    the prunable weights. What a score gets follows what it declared when registered (``register_score(name,
    needs=...)``), for built-in and user scores alike. Scores needing ``"batches"`` (SNIP, GraSP) score on ``batches``
    batches of the train loader (rank zero's), the loss being what the LightningModule's ``training_step`` returns (a
    tensor, or a dict with ``"loss"``); its ``self.log`` calls are ignored while scoring, and drawing the batches
    leaves the training data order unchanged. Scores needing an ``"example_input"`` (SynFlow, data-free) get one
    shaped like ``example_input_array`` (or the first element of a training batch); ``"iterative"`` ones prune in
    ``iterations`` steps at exponentially decreasing densities (Tanaka et al. 2020).

    Args:
        method: score by name (``lt_lightning.pruning.SCORES``): ``"snip"``, ``"grasp"``, ``"synflow"``,
            ``"magnitude"``, ``"random"`` or one registered with ``register_score``.
        density: fraction of the prunable weights kept, in (0, 1].
        allocation: how the kept weights are spread over layers (``lt_lightning.pruning.ALLOCATIONS``):
            ``"global"``, ``"layerwise"``, ``"erk"``, ``"smart_ratios"``, ``"smart_ratios_linear"``.
        batches: training batches that SNIP and GraSP score on.
        iterations: prune-and-rescore steps of SynFlow; the other methods prune in one step.
        layer_density: ``{regex: density}``: the matching prunable parameters are pruned on their own to that
            density (reached at SynFlow's first step); ``density`` applies to the others.
        keep_dense: regex of prunable parameters left dense (e.g. ``"out\\.weight"``); ``density`` applies to the
            others.
        allow_layer_collapse: allow a layer to lose all its weights; by default each keeps its best weight, the
            others giving it up, with a ``LayerCollapseWarning`` naming the layers.
        include, exclude, types: which parameters are prunable (see :func:`lt_lightning.masks.select_parameters`).
        seed: seed for random scores, and for the draw among weights tied at the threshold.

    After pruning (rank zero), :attr:`score_notes` names the layers whose scores were all zero
    (``"all_zero_scores"``) or all equal (``"tied_scores"``); a ``TiedScoresWarning`` names them too.
    """

    def __init__(
        self,
        method: str = "snip",
        density: float = 0.1,
        allocation: str = "global",
        batches: int = 1,
        iterations: int = 100,
        layer_density: dict[str, float] | None = None,
        keep_dense: str | None = None,
        allow_layer_collapse: bool = False,
        include: str | None = None,
        exclude: str | None = None,
        types: list[str] | tuple[str, ...] = DEFAULT_TYPES,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_density("density", density)
        check_int("batches", batches, minimum=1)
        check_int("iterations", iterations, minimum=1)
        self.spec = PruningSpec(score=method, allocation=allocation, layer_density=layer_density or {},
                                keep_dense=keep_dense, allow_layer_collapse=allow_layer_collapse, include=include,
                                exclude=exclude, types=types, seed=seed)
        self.method = method
        self.density = density
        self.batches = batches
        self.iterations = iterations
        self._names: list[str] = []
        self._layer_density: dict[str, float] = {}
        self.score_notes: dict[str, list[str]] = {}

    @override
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if BATCHES in SCORES.needs(self.method) and not pl_module.automatic_optimization:
            raise ValueError(f"method={self.method!r} scores with the loss of training_step, which under manual"
                             " optimization steps the optimizer itself: use automatic optimization, or a data-free"
                             " method ('synflow', 'magnitude', 'random').")
        self._names, self._layer_density = self.spec.resolve(pl_module)
        announce_prunable(pl_module, self._names, self.spec.types)

    @override
    def initial_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Masks:
        started = time.perf_counter()
        masks = self._prune(trainer, pl_module)
        rank_zero_info(f"lt-lightning: {self.method} pruned to density {masks.density():.4f} in"
                       f" {time.perf_counter() - started:.1f} s.")
        return masks

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pruned = self.masks is None
        super().on_train_start(trainer, pl_module)  # computes the masks on rank zero unless a checkpoint gave them
        if pruned:
            self.log_densities(trainer, "prune_at_init")

    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Masks:
        device = pl_module.device
        with _untouched_rng(trainer.train_dataloader, device), silent_logging(pl_module), torch.enable_grad():
            batches = _draw(trainer, self.batches)
            context = ScoreContext(
                pl_module,
                Masks.dense(pl_module, self._names),
                batches=batches,
                loss_fn=self._loss,
                generator=torch.Generator().manual_seed(self.spec.seed),
                example_input=_example_input(pl_module, batches[0]),
            )
            needs = SCORES.needs(self.method)
            if EXAMPLE_INPUT in needs and context.example_input is None:
                raise ValueError(f"method={self.method!r} feeds ones shaped like one input: set example_input_array on"
                                 " the LightningModule, or use batches whose first element is the input tensor.")
            schedule = (synflow_exponential(self.density, self.iterations) if ITERATIVE in needs
                        else one_shot(self.density))
            return self.spec.prune_iteratively(context, schedule, self._layer_density, notes=self.score_notes)

    def _loss(self, module: nn.Module, batch: Any) -> Tensor:
        out = module.training_step(batch, 0)  # type: ignore[operator]
        loss = out.get("loss") if isinstance(out, Mapping) else out
        if not isinstance(loss, Tensor):
            raise ValueError(f"method={self.method!r} needs a loss, but {type(module).__name__}.training_step returned"
                             f" {out!r}: return the loss tensor, or a dict with a 'loss' tensor.")
        return loss


def _draw(trainer: pl.Trainer, count: int) -> list[Any]:
    """The first ``count`` batches of the train loader, on the module's device."""
    loader = trainer.train_dataloader
    if loader is None or isinstance(loader, (list, tuple, Mapping)):
        raise ValueError(f"PruneAtInitCallback draws its scoring batches from one train loader; the Trainer has"
                         f" {type(loader).__name__}.")
    batches = []
    iterator = iter(loader)
    for _ in range(count):
        try:
            batches.append(trainer.strategy.batch_to_device(next(iterator)))
        except StopIteration:
            raise ValueError(f"batches={count} is more than the train loader's {len(batches)} batches.") from None
    return batches


def _example_input(pl_module: pl.LightningModule, batch: Any) -> Tensor | tuple[Tensor, ...] | dict[str, Tensor] | None:
    """One input of the module: its ``example_input_array``, else a training batch that is itself the input (a
    tensor, token ids included, or a dict of keyword inputs), else the first element of a ``(input, target)``
    batch."""
    example = pl_module.example_input_array
    if example is None:
        if isinstance(batch, (Tensor, Mapping)):
            example = batch
        elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
            example = batch[0]
    if isinstance(example, Tensor):
        return example.to(pl_module.device)
    if isinstance(example, Mapping) and all(isinstance(x, Tensor) for x in example.values()):
        return {k: x.to(pl_module.device) for k, x in example.items()}
    if isinstance(example, (tuple, list)) and all(isinstance(x, Tensor) for x in example):
        return tuple(x.to(pl_module.device) for x in example)
    return None


@contextmanager
def _untouched_rng(loader: Any, device: torch.device) -> Iterator[None]:
    """Random draws while scoring (the loader's shuffle, dropout) leave every random stream as it was, so that the
    training run sees the data order and randomness it would have without pruning at init."""
    generators = {id(g): g for g in (getattr(loader, "generator", None),
                                     getattr(getattr(loader, "sampler", None), "generator", None))
                  if isinstance(g, torch.Generator)}
    states = [(g, g.get_state()) for g in generators.values()]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    for generator, state in states:
        generator.set_state(state)
