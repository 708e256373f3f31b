import math

import lightning as L
import pytest
import torch

from lt_lightning.zoo import Classifier, DigitsDataModule

DIGITS_MLP = {"in_features": 64, "hidden": [64], "num_classes": 10}


def make_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_fit_on_digits_learns():
    L.seed_everything(0, verbose=False)
    model = Classifier("mlp", DIGITS_MLP, optimizer="adam", lr=1e-2)
    dm = DigitsDataModule()
    trainer = make_trainer(max_epochs=2)
    before = trainer.validate(model, dm, verbose=False)[0]["val_acc"]
    trainer.fit(model, dm)
    after = trainer.callback_metrics["val_acc"].item()
    assert before < 0.3 < 0.8 < after  # measured ~0.1 -> ~0.9 over seeds 0-2
    assert "train_loss" in trainer.callback_metrics and "val_loss" in trainer.callback_metrics
    test = trainer.test(model, dm, verbose=False)[0]
    assert set(test) == {"test_loss", "test_acc"}
    # Digits' test loader is its val split, so both accuracies agree exactly.
    assert test["test_acc"] == pytest.approx(after)


def test_hparams_are_saved():
    model = Classifier("mlp", DIGITS_MLP, optimizer="sgd", lr=0.05)
    assert model.hparams.model_kwargs == DIGITS_MLP and model.hparams.optimizer == "sgd"
    assert model.hparams.lr == 0.05


@pytest.mark.parametrize(
    ("optimizer", "scheduler", "milestones", "final_lr", "opt_type"),
    [
        ("sgd", "cosine", None, 0.0, torch.optim.SGD),
        ("adamw", "multistep", [3, 10], 0.1 * 0.1 * 0.1, torch.optim.AdamW),
        ("adam", "multistep", [3, 100], 0.1 * 0.1, torch.optim.Adam),
        ("sgd", "none", None, 0.1, torch.optim.SGD),
    ],
)
def test_optimizers_and_step_schedulers(optimizer, scheduler, milestones, final_lr, opt_type):
    model = Classifier(
        "mlp", DIGITS_MLP, optimizer=optimizer, lr=0.1, scheduler=scheduler, milestones=milestones
    )
    trainer = make_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, DigitsDataModule(batch_size=128))  # 11 optimizer steps
    assert trainer.global_step == 11
    opt = trainer.optimizers[0]
    assert type(opt) is opt_type
    assert opt.param_groups[0]["lr"] == pytest.approx(final_lr, abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "rmsprop"}, r"unknown optimizer 'rmsprop'; allowed: sgd, adam, adamw"),
        ({"scheduler": "step"}, r"unknown scheduler 'step'; allowed: none, cosine, multistep"),
        ({"scheduler": "multistep"}, r"needs milestones.*got None"),
        ({"scheduler": "multistep", "milestones": [10, 5]}, r"needs milestones.*got \[10, 5\]"),
        ({"scheduler": "multistep", "milestones": [5, 5]}, r"needs milestones.*got \[5, 5\]"),
        ({"lr": 0.0}, r"lr must be > 0, got 0.0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"weight_decay": -1e-4}, r"weight_decay must be >= 0, got -0.0001"),
        ({"model": "resnet50"}, r"unknown model 'resnet50'; known: mlp"),
        ({"model_kwargs": None}, r"bad arguments for model 'mlp'.*in_features"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Classifier(**{"model_kwargs": DIGITS_MLP, **kwargs})


@pytest.mark.parametrize(("scheduler", "milestones"), [("none", None), ("multistep", [8]), ("cosine", None)])
def test_warmup_multiplies_the_schedule(scheduler, milestones):
    model = Classifier("mlp", DIGITS_MLP, optimizer="sgd", lr=0.1, scheduler=scheduler, milestones=milestones,
                       warmup_steps=4)
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    make_trainer(max_epochs=1, limit_val_batches=0, callbacks=[Record()]).fit(model, DigitsDataModule(batch_size=128))
    warm = [0.025, 0.05, 0.075, 0.1]  # lr * (step + 1) / 4
    if scheduler == "none":
        assert lrs == pytest.approx(warm + [0.1] * 7)
    elif scheduler == "multistep":
        assert lrs == pytest.approx(warm + [0.1] * 4 + [0.01] * 3)
    else:  # cosine over the 11 steps, times the warm-up
        assert lrs == pytest.approx([w * 0.5 * (1 + math.cos(math.pi * s / 11)) for s, w in
                                     enumerate(warm + [0.1] * 7)])


@pytest.mark.parametrize("warmup_steps", [-1, 2.5, True])
def test_bad_warmup_steps(warmup_steps):
    with pytest.raises(ValueError, match=rf"warmup_steps must be an integer >= 0, got {warmup_steps!r}"):
        Classifier("mlp", DIGITS_MLP, warmup_steps=warmup_steps)
