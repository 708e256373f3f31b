"""The masking methods the conformance suite runs: one :class:`Method` entry each. A new masking method gets every
check of ``test_conformance.py`` (and of the DDP script) by adding its entry here."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightning.pytorch.callbacks import Callback

from lt_lightning import (
    BaseMaskingCallback,
    BasisCallback,
    EarlyBirdCallback,
    GMPCallback,
    IMPCallback,
    MaskingCallback,
    PruneAtInitCallback,
    RewindCallback,
    RigLCallback,
    SETCallback,
    SupermaskCallback,
    Ticket,
)
from lt_lightning.callbacks.basis import COEFFICIENTS
from lt_lightning.masks import Masks
from lt_lightning.pruning import ScoreContext, prune
from lt_lightning.zoo import Classifier

PRUNABLE = 64 * 32 + 32 * 16 + 16 * 10  # the digits MLP 64-32-16-10: what every density below counts


def digits_model(**kwargs: Any) -> Classifier:
    return Classifier(model="mlp", model_kwargs={"in_features": 64, "hidden": [32, 16], "num_classes": 10},
                      optimizer="sgd", lr=0.1, **kwargs)


@dataclass(frozen=True)
class Method:
    """A masking method as the suite runs it.

    Args:
        name: the test id.
        callbacks: ``callbacks(root)``: the Trainer's callbacks for a good run (exactly one masking callback).
        density: the density the run must end at (``abs=tolerance``).
        steps: ``max_steps`` of one training (IMP-like methods train several).
        resume_at: the global step whose checkpoint a second fit resumes from; it must end like the first.
        refused_in_init: ``(make, match)``: ``make()`` builds the callback with an argument it refuses.
        refused_at_fit: ``(callbacks(root), match)``: arguments that only the built module can refuse: the fit must
            stop with ``ValueError`` before the first optimizer step.
        checkpoint_has_weights: the checkpoint's state dict holds the masked tensors (a supermask's holds frozen
            weights and scores, from which the masks follow).
    """

    name: str
    callbacks: Callable[[str], list[Callback]]
    density: float
    steps: int
    resume_at: int
    refused_in_init: tuple[Callable[[], Any], str]
    refused_at_fit: tuple[Callable[[str], list[Callback]], str]
    tolerance: float = 1e-3
    checkpoint_has_weights: bool = True
    trainer: dict[str, Any] = field(default_factory=dict)


def masking_callback(callbacks: list[Callback]) -> BaseMaskingCallback:
    (found,) = [c for c in callbacks if isinstance(c, BaseMaskingCallback)]
    return found


def _ticket(root: str, hidden: list[int] | None = None) -> str:
    """A magnitude ticket at density 0.3 of a fresh digits MLP (``hidden``: of another architecture)."""
    model = Classifier(model="mlp", model_kwargs={"in_features": 64, "hidden": hidden or [32, 16], "num_classes": 10})
    names = [n for n, _ in model.named_parameters() if n.endswith("weight")]
    masks = prune(ScoreContext(model, Masks.dense(model, names)), 0.3)
    path = os.path.join(root, f"ticket_{'x'.join(map(str, hidden or [32, 16]))}.pt")
    Ticket.from_state(model.state_dict(), masks, {"round": 1}).save(path)
    return path


METHODS = [
    Method(
        "imp",
        lambda root: [RewindCallback(step=2), IMPCallback(rounds=2, pruning_fraction=0.5, dirpath=root)],
        density=0.25, steps=8, resume_at=11,  # rounds end at 8, 14, 20: resumed mid round 1
        refused_in_init=(lambda: IMPCallback(pruning_fraction=1.5), r"pruning_fraction=1.5 is not allowed"),
        refused_at_fit=(lambda root: [IMPCallback(keep_dense=r"weight", dirpath=root)], "matches every prunable"),
    ),
    Method(
        "masking",
        lambda root: [MaskingCallback(ticket=_ticket(root))],
        density=0.3, steps=12, resume_at=6,
        refused_in_init=(lambda: MaskingCallback(ticket=""), "ticket='' is not allowed"),
        refused_at_fit=(lambda root: [MaskingCallback(ticket=_ticket(root, [16]))], "does not fit"),
    ),
    Method(
        "prune_at_init",
        lambda root: [PruneAtInitCallback(method="snip", density=0.2)],
        density=0.2, steps=12, resume_at=6,
        refused_in_init=(lambda: PruneAtInitCallback(density=0.0), "density=0.0 is not allowed"),
        refused_at_fit=(lambda root: [PruneAtInitCallback(layer_density={"nomatch": 0.5})], "matches no prunable"),
    ),
    Method(
        "rigl",
        lambda root: [RigLCallback(density=0.2, update_every=4, stop=0.9, dirpath=root)],
        density=0.2, steps=16, resume_at=6,  # updates at 4, 8, 12
        refused_in_init=(lambda: RigLCallback(update_every=0), "update_every=0 is not allowed"),
        refused_at_fit=(lambda root: [RigLCallback(density=0.9, allow_dense_layers=False, dirpath=root)], "ERK"),
    ),
    Method(
        "set",
        lambda root: [SETCallback(density=0.2, update_every=4, stop=0.9, dirpath=root)],
        density=0.2, steps=16, resume_at=6,
        refused_in_init=(lambda: SETCallback(drop_fraction=1.0), "drop_fraction=1.0 is not allowed"),
        refused_at_fit=(lambda root: [SETCallback(keep_dense="weight", dirpath=root)], "matches every prunable"),
    ),
    Method(
        "gmp",
        lambda root: [GMPCallback(final=0.2, start=2, end=12, every=4, dirpath=root)],
        density=0.2, steps=16, resume_at=7,  # events at 6, 10, 12
        refused_in_init=(lambda: GMPCallback(initial=0.5, final=0.8), "final=0.8 is not below initial=0.5"),
        refused_at_fit=(lambda root: [GMPCallback(final=0.2, end=1000, dirpath=root)], "beyond"),
    ),
    Method(
        # Early-bird draws the ticket and ends IMP's dense round 0 early; IMP's masks are the ones in force.
        "early_bird",
        lambda root: [EarlyBirdCallback(density=0.5, distance=0.5, window=1, every=2, dirpath=root),
                      IMPCallback(rounds=1, pruning_fraction=0.5, dirpath=root)],
        density=0.5, steps=10, resume_at=7,
        refused_in_init=(lambda: EarlyBirdCallback(density=0.5, window=0), "window=0 is not allowed"),
        refused_at_fit=(lambda root: [EarlyBirdCallback(density=0.5, include="nomatch", dirpath=root),
                                      IMPCallback(rounds=1, dirpath=root)], "matches no parameter"),
    ),
    Method(
        "supermask",
        lambda root: [SupermaskCallback(density=0.5, dirpath=root)],
        density=0.5, steps=12, resume_at=6, checkpoint_has_weights=False,
        refused_in_init=(lambda: SupermaskCallback(density=1.5), "density=1.5 is not allowed"),
        refused_at_fit=(lambda root: [SupermaskCallback(types=["Conv2d"], dirpath=root)], "Conv2d"),
    ),
    Method(
        "basis",
        lambda root: [BasisCallback("dct"), IMPCallback(rounds=1, pruning_fraction=0.5, include=COEFFICIENTS,
                                                        dirpath=root)],
        density=0.5, steps=8, resume_at=11,
        refused_in_init=(lambda: BasisCallback(basis="fourier"), "unknown basis name 'fourier'"),
        refused_at_fit=(lambda root: [BasisCallback("dct", include="nomatch"), IMPCallback(rounds=1, dirpath=root)],
                        "matches no parameter"),
    ),
]
