"""SupermaskCallback: strong lottery tickets in any LightningModule: train scores, not weights (edge-popup), binarize
the kept weights (biprop's multi-prize tickets) and the activations, or select coefficients in another basis.

The core is :mod:`lt_lightning.supermask` (pure torch); this callback decides when: it makes the module's prunable
layers supermask layers right after ``configure_model`` (so the module's own ``configure_optimizers`` trains the
scores), checks the optimizer, follows the progressive density schedule, logs, and writes the finished subnetwork as a
ticket.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lt_lightning.callbacks._trainer import (
    TrainingLength,
    after_configure_model,
    log_metrics,
    run_dir,
    runs_in_launched_processes,
    steps_per_epoch,
)
from lt_lightning.callbacks.base import BaseMaskingCallback
from lt_lightning.masks import DEFAULT_TYPES, Masks, _preview, named_parameters
from lt_lightning.supermask import (
    BinaryTicket,
    FunctionalActivationCheck,
    SupermaskSpec,
    binarize_activations,
    frozen_tensors,
    layer_statistics,
    progressive_density,
    set_density,
    subnetwork_masks,
    subnetwork_ticket,
    supermask_layers,
)
from lt_lightning.ticket import Ticket
from lt_lightning.validation import check_bool, check_int

TICKET_FILE = "supermask.pt"
BINARY_TICKET_FILE = "supermask_binary.pt"


class SupermaskCallback(BaseMaskingCallback):
    """Find a subnetwork of the module's untrained, frozen weights by training a score per weight: every forward
    computes with the top ``density`` of the scores of each layer (edge-popup, Ramanujan et al. 2020), or with those
    weights binarized to ``alpha * sign(w)`` (``method="biprop"``, Diffenderfer & Kailkhura 2021: MPT-1/32; with
    ``binary_activations=True``, MPT-1/1).

    The module and its ``configure_optimizers`` stay as they are: right after ``configure_model`` (before the
    optimizer is built) each prunable weight becomes frozen (``requires_grad=False``) and gets a score tensor, the new
    trainable parameter, and every other parameter (biases, norms, embeddings, layers left out) is frozen as the
    papers do, unless ``train`` names it; so an optimizer built from ``self.parameters()`` trains the scores and
    nothing else (frozen parameters get no gradient, so weight decay and momentum leave them too). One info line at
    the start says what trains. The masks are not stored but follow from the scores in every forward, exactly
    ``density`` of each layer; the scores and frozen weights are in the module's ``state_dict``, so Lightning
    checkpoints resume the fit. Weights drawn by ``weight_init`` come from ``seed`` (the same on every rank; DDP
    also broadcasts rank zero's at the start).

    At the end of the fit (unless ``save_tickets=False``) the subnetwork is written, on rank zero, to
    ``<dirpath>/tickets/supermask.pt`` (``dirpath`` defaults to the trainer's log dir): a ticket of the masks and
    the weights the subnetwork computes with, which :func:`~lt_lightning.supermask.apply_supermask_ticket` (or, with
    the identity basis and no binary activations, :func:`~lt_lightning.ticket.apply_ticket`) loads into a fresh
    module; biprop also writes ``supermask_binary.pt``, bit-packed.

    Every attached logger gets, each ``log_every_n_steps`` and at the end: ``supermask/density`` and per layer
    ``supermask/layer_density/<weight>`` (the kept fraction), ``supermask/score_mean|score_std|score_min|score_max/
    <weight>``, and ``supermask/alpha/<weight>`` for biprop.

    >>> SupermaskCallback(density=1.5)
    Traceback (most recent call last):
    ValueError: density=1.5 is not allowed; a density is a fraction of weights kept, in (0, 1].

    Args:
        density: fraction of the weights each layer keeps (of all prunable weights with ``allocation="global"``).
        method: ``"edge_popup"`` (kept weights as they are) or ``"biprop"`` (kept weights ``alpha * sign(w)``), or
            one registered with :func:`~lt_lightning.supermask.register_method`.
        weight_init: the frozen weights: ``"module"`` (the module's own initialization), ``"kaiming_normal"`` or
            ``"signed_constant"`` (drawn from ``seed``).
        scale_fan: scale drawn weights by ``1 / sqrt(density)`` (the paper's scaled initializations).
        allocation: ``"layerwise"`` (the top ``density`` of each layer) or ``"global"`` (of all layers together).
        binary_activations: swap the module's activation modules (``nn.ReLU``, ...) for ``sign`` (MPT-1/1).
            Refused when the module has none; an activation called as a function in ``forward`` (``F.relu``) stops
            the first training step with an error naming the call.
        progressive_epochs: biprop's progressive pruning: the density falls from 0.5 to ``density`` over the first
            ``progressive_epochs`` epochs (0: ``density`` from the start).
        basis: ``"identity"`` or ``"dct"``: the masks select coefficients of the weights in this basis.
        include, exclude, types: which weights get supermasks (see :func:`~lt_lightning.masks.select_parameters`).
        train: regex searched in parameter names (of the module before the callback changes it): the matching
            parameters other than the supermasked weights train too, e.g. ``"LayerNorm|classifier"``; ``None``: the
            scores only.
        seed: seed of the drawn weights and of the initial scores.
        dirpath: folder for the tickets (``None``: the trainer's log dir).
        save_tickets: write the tickets at the end of the fit (``callback.ticket()`` gives one at any time).
    """

    def __init__(
        self,
        density: float = 0.5,
        method: str = "edge_popup",
        weight_init: str = "module",
        scale_fan: bool = False,
        allocation: Literal["layerwise", "global"] = "layerwise",
        binary_activations: bool = False,
        progressive_epochs: int = 0,
        basis: str = "identity",
        include: str | None = None,
        exclude: str | None = None,
        types: list[str] | tuple[str, ...] = DEFAULT_TYPES,
        train: str | None = None,
        seed: int = 0,
        dirpath: str | None = None,
        save_tickets: bool = True,
    ) -> None:
        super().__init__()
        self.spec = SupermaskSpec(density=density, method=method, allocation=allocation, weight_init=weight_init,
                                  scale_fan=scale_fan, basis=basis, include=include, exclude=exclude, types=types,
                                  seed=seed, train=train)
        check_bool("binary_activations", binary_activations)
        if binary_activations and method == "edge_popup":
            # MPT-1/1 binarizes weights and activations; sign activations over real-valued kept weights is no
            # published method, so say what was combined rather than run it without a word.
            rank_zero_warn("binary_activations=True with method='edge_popup' keeps real-valued weights under sign"
                           " activations, which no paper's recipe does: MPT-1/1 is method='biprop' with"
                           " binary_activations=True.", category=UserWarning)
        check_int("progressive_epochs", progressive_epochs)
        if dirpath is not None and not isinstance(dirpath, str):
            raise ValueError(f"dirpath={dirpath!r} is not allowed; expected a folder path or None.")
        check_bool("save_tickets", save_tickets)
        self.binary_activations = binary_activations
        self.progressive_epochs = progressive_epochs
        self.dirpath = dirpath
        self.save_tickets = save_tickets
        self._module: pl.LightningModule | None = None
        self._activation_check: FunctionalActivationCheck | None = None
        self._checked_activations = False

    @property  # type: ignore[override]
    def masks(self) -> Masks | None:
        """The masks of the current subnetwork, by weight name; ``None`` before the module is prepared."""
        return subnetwork_masks(self._module) if self._module is not None else None

    def config(self) -> dict[str, Any]:
        """The arguments that decide the subnetwork, as plain data (checkpoints and tickets record them)."""
        return {**self.spec.metadata(), "binary_activations": self.binary_activations,
                "progressive_epochs": self.progressive_epochs}

    # ------------------------------------------------------------------ preparing the module
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if runs_in_launched_processes(trainer):
            raise ValueError(f"SupermaskCallback changes the module's layers inside the fit's processes, which"
                             f" strategy {type(trainer.strategy).__name__} starts: the launching process's module"
                             " would not match them. Use strategy='ddp' (one process per device, started by the"
                             " launcher of your script, torchrun or SLURM).")
        if pl_module is self._module:
            return  # prepared by an earlier fit, validate or test of this callback
        if supermask_layers(pl_module):
            raise ValueError(f"{type(pl_module).__name__} already has supermask layers that another"
                             " SupermaskCallback made: give each module one SupermaskCallback, or resume its fit from"
                             " a checkpoint with a fresh module.")
        after_configure_model(pl_module, lambda: self._prepare_module(pl_module))

    def _prepare_module(self, pl_module: pl.LightningModule) -> None:
        swapped = binarize_activations(pl_module) if self.binary_activations else []
        names = self.spec.apply(pl_module)
        self._module = pl_module
        rank_zero_info(self._announcement(pl_module, names, swapped))

    def _announcement(self, pl_module: pl.LightningModule, names: list[str], swapped: list[str]) -> str:
        """What trains, what is frozen: the start-up line."""
        layers = supermask_layers(pl_module)
        weights = sum(layer.scores.numel() for layer in layers.values())
        masked = {id(t) for t in frozen_tensors(pl_module).values()} | {id(layer.scores) for layer in layers.values()}
        others = [(n, p) for n, p in named_parameters(pl_module).items() if id(p) not in masked]
        trained = [n for n, p in others if p.requires_grad]
        frozen = sum(p.numel() for _, p in others if not p.requires_grad)
        if trained:
            also = (f"also trained, as train={self.spec.train!r} matches: {len(trained)} tensors,"
                    f" {sum(p.numel() for _, p in others if p.requires_grad):,} parameters ({_preview(trained)})")
        else:
            also = "nothing else trains (train=REGEX lets named parameters train)"
        return (f"lt-lightning: supermask ({self.spec.method}, density {self.spec.density}, {self.spec.allocation})"
                f" on {len(names)} layers: {weights:,} weights frozen (weight_init={self.spec.weight_init!r}) and"
                f" their {weights:,} scores trained; {also}; {frozen:,} other parameters frozen"
                + (f"; {len(swapped)} activation modules binarized" if swapped else "") + ".")

    @override
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._module is not pl_module:
            raise RuntimeError("SupermaskCallback did not prepare the module: its setup() hook did not run before"
                               " configure_model (is the callback in Trainer(callbacks=...)?).")
        trained = {id(p) for optimizer in trainer.optimizers for group in optimizer.param_groups
                   for p in group["params"]}
        untrained = [name for name, layer in supermask_layers(pl_module).items() if id(layer.scores) not in trained]
        if untrained:
            raise ValueError(f"the optimizers built by configure_optimizers do not train the scores of {untrained}:"
                             " the supermask learns nothing. Build the optimizer from self.parameters() (the callback"
                             " adds the scores before configure_optimizers runs), or include the parameters named"
                             " '...parametrizations.weight.0.scores'.")
        self._follow_schedule(trainer)

    def _check_schedule_length(self, trainer: pl.Trainer) -> None:
        """The schedule reaches ``density`` at epoch ``progressive_epochs``: a training that ends before it never
        trains (or saves) the density asked for."""
        per_epoch = steps_per_epoch(trainer)
        if not self.progressive_epochs or self.spec.density >= 0.5 or per_epoch == math.inf:
            return
        try:
            epochs = math.ceil(TrainingLength.read(trainer).steps(per_epoch) / per_epoch)
        except ValueError:
            return  # no finite length: the schedule's end is reached
        if self.progressive_epochs >= epochs:
            reached = progressive_density(self.spec.density, epochs - 1, self.progressive_epochs)
            raise ValueError(f"progressive_epochs={self.progressive_epochs} is not allowed with a training of"
                             f" {epochs} epochs ({TrainingLength.read(trainer)}): the density reaches"
                             f" {self.spec.density} at epoch {self.progressive_epochs}, so the fit would end at"
                             f" {reached:.4g}. Use progressive_epochs < {epochs}, or train longer.")

    def _follow_schedule(self, trainer: pl.Trainer) -> None:
        if self._module is not None and self.progressive_epochs:
            set_density(self._module, progressive_density(self.spec.density, trainer.current_epoch,
                                                          self.progressive_epochs))

    # ------------------------------------------------------------------ hooks
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.prepare(trainer, pl_module)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_schedule_length(trainer)
        # The loops are restored by now (not yet in on_fit_start), and a fit resumed mid-epoch gets no
        # on_train_epoch_start for that epoch: the density of the resumed epoch is set here.
        self._follow_schedule(trainer)
        self._log(trainer)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._follow_schedule(trainer)

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.binary_activations and not self._checked_activations:
            # The first training forward runs under a check that refuses activations called as functions.
            self._activation_check = FunctionalActivationCheck()
            self._activation_check.__enter__()

    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._end_activation_check()

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._end_activation_check()
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            self._log(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer)
        if not self.save_tickets:
            return
        folder = os.path.join(run_dir(trainer, self.dirpath), "tickets")
        if trainer.is_global_zero:
            ticket = self.ticket(trainer)
            ticket.save(os.path.join(folder, TICKET_FILE))
            if self.spec.method == "biprop":
                BinaryTicket.from_ticket(ticket).save(os.path.join(folder, BINARY_TICKET_FILE))

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._end_activation_check()
        super().on_exception(trainer, pl_module, exception)

    def _end_activation_check(self) -> None:
        if self._activation_check is not None:
            self._activation_check.__exit__(None, None, None)
            self._activation_check = None
            self._checked_activations = True

    # ------------------------------------------------------------------ results
    def ticket(self, trainer: pl.Trainer | None = None) -> Ticket:
        """The current subnetwork as a ticket; its metadata: the arguments, densities, ``alpha`` per layer for
        biprop, and the trainer's step and epoch."""
        if self._module is None:
            raise ValueError("SupermaskCallback has no subnetwork yet: it is made when a fit starts.")
        stats = layer_statistics(self._module)
        metadata = {**self.config(), "layer_density": {n: s["density"] for n, s in stats.items()}}
        if self.spec.method == "biprop":
            metadata["alpha"] = {n: s["alpha"] for n, s in stats.items()}
        if trainer is not None:
            metadata.update(global_step=trainer.global_step, epoch=trainer.current_epoch)
        return subnetwork_ticket(self._module, metadata)

    def _log(self, trainer: pl.Trainer) -> None:
        if self._module is None or not trainer.loggers or not trainer.is_global_zero:
            return
        stats = layer_statistics(self._module)
        sizes = {name: layer.scores.numel() for name, layer in supermask_layers(self._module).items()}
        metrics = {"supermask/density": sum(stats[n]["density"] * sizes[n] for n in sizes) / sum(sizes.values())}
        for name, row in stats.items():
            for stat, value in row.items():
                metrics[f"supermask/{'layer_density' if stat == 'density' else stat}/{name}"] = value
        log_metrics(trainer, metrics)

    # ------------------------------------------------------------------ checkpoints
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("config")
        if saved is None:
            raise ValueError("the checkpoint's SupermaskCallback state has no configuration: it was not written by"
                             " a SupermaskCallback.")
        differ = {k: (saved.get(k), v) for k, v in self.config().items() if saved.get(k) != v}
        if differ:
            told = ", ".join(f"{k}={new!r} (checkpoint: {old!r})" for k, (old, new) in differ.items())
            raise ValueError(f"SupermaskCallback resumes a fit made with other arguments: {told}. Resume with the"
                             " checkpoint's arguments.")
