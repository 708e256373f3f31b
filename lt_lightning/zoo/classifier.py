"""``Classifier``: a LightningModule wrapping a zoo model, configurable from YAML."""

import bisect
import functools
import math
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch.optim import lr_scheduler

from lt_lightning.zoo.models import build_model

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "cosine", "multistep")


Batch = tuple[torch.Tensor, torch.Tensor]


class Classifier(L.LightningModule):
    """Cross-entropy classifier around ``build_model(model, **model_kwargs)``.

    ``momentum`` only applies to SGD. Schedulers step every optimizer step:
    ``cosine`` anneals over ``trainer.estimated_stepping_batches``; ``multistep``
    multiplies the lr by 0.1 at each of ``milestones`` (in steps). ``warmup_steps`` > 0 multiplies the schedule by
    a linear warm-up from ``lr / warmup_steps`` to ``lr`` over the first ``warmup_steps`` steps (OpenLTH's
    ``warmup_steps``; Frankle et al. 2020 make VGG-16 and ResNet-20 stable earlier with it).

    >>> Classifier("mlp", {"in_features": 64, "hidden": [32], "num_classes": 10}).model.out
    Linear(in_features=32, out_features=10, bias=True)
    """

    def __init__(
        self,
        model: str = "mlp",
        model_kwargs: dict[str, Any] | None = None,
        optimizer: Literal["sgd", "adam", "adamw"] = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        scheduler: Literal["none", "cosine", "multistep"] = "none",
        milestones: list[int] | None = None,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        steps = list(milestones or [])
        if scheduler == "multistep" and (not steps or steps[0] < 1 or steps != sorted(set(steps))):
            raise ValueError(
                "scheduler='multistep' needs milestones: increasing positive step counts, "
                f"got {milestones!r}"
            )
        self.save_hyperparameters()
        self.model = build_model(model, **(model_kwargs or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def _evaluate(self, batch: Batch, prefix: str) -> None:
        x, y = batch
        logits = self(x)
        metrics = {
            f"{prefix}_loss": F.cross_entropy(logits, y),
            f"{prefix}_acc": (logits.argmax(dim=1) == y).float().mean(),
        }
        # batch_size makes the epoch value an exact per-sample mean when the last batch is short.
        self.log_dict(
            metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y), prog_bar=True
        )

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams  # AttributeDict: the constructor's arguments as attributes
        params = self.parameters()
        if hp.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        elif hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        warmup = hp.get("warmup_steps", 0)
        if hp.scheduler == "none" and not warmup:
            return opt
        total = self.trainer.estimated_stepping_batches if hp.scheduler == "cosine" else 0
        if not math.isfinite(total):
            raise ValueError("scheduler='cosine' needs a finite max_epochs or max_steps")
        if warmup:
            sched: lr_scheduler.LRScheduler = lr_scheduler.LambdaLR(
                opt, functools.partial(_warmup_factor, warmup, hp.scheduler, int(total), tuple(hp.milestones or ())))
        elif hp.scheduler == "cosine":
            sched = lr_scheduler.CosineAnnealingLR(opt, T_max=int(total))
        else:
            sched = lr_scheduler.MultiStepLR(opt, milestones=list(hp.milestones), gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _warmup_factor(warmup: int, scheduler: str, total: int, milestones: tuple[int, ...], step: int) -> float:
    """The lr factor at ``step``: linear warm-up over ``warmup`` steps times the scheduler's own factor.

    >>> [_warmup_factor(4, "multistep", 0, (6,), s) for s in (0, 3, 5, 6)]
    [0.25, 1.0, 1.0, 0.1]
    """
    factor = min(1.0, (step + 1) / warmup)
    if scheduler == "cosine":
        factor *= 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    elif scheduler == "multistep":
        factor *= 0.1 ** bisect.bisect_right(milestones, step)
    return factor
