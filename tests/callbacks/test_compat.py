"""IMP inside the Lightning set-ups researchers use: each works as expected, or fails before the first step."""

import json
import os

import lightning.pytorch as pl
import pytest
import torch
from conformance.checks import ZeroWatcher, assert_pruned_zero
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import (
    BackboneFinetuning,
    Callback,
    EarlyStopping,
    LearningRateFinder,
    ModelCheckpoint,
    StochasticWeightAveraging,
)
from torch import nn

from lt_lightning import IMPCallback, MaskingCallback, PruneAtInitCallback, RewindCallback
from lt_lightning.records import read_history
from lt_lightning.zoo import Classifier

STEPS_PER_EPOCH = 22  # 1347 training digits, batch 64


class NoTraining(Callback):
    def on_train_batch_start(self, *args):
        raise AssertionError("a training batch started")


# ---------------------------------------------------------------------------------------------------- A.1 stopping
class StopAt(Callback):
    """Sets trainer.should_stop after the given global steps, like any callback that stops training."""

    def __init__(self, steps):
        self.steps = set(steps)

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step in self.steps:
            trainer.should_stop = True


def test_early_stopping_ends_rounds_not_the_experiment(tmp_path, datamodule):
    # A huge min_delta: no validation is ever an improvement, so EarlyStopping stops after `patience` + 1 checks.
    stopper = EarlyStopping(monitor="val_loss", min_delta=10.0, patience=1, check_on_train_epoch_end=False)
    imp = IMPCallback(rounds=2, pruning_fraction=0.5)
    waits = []

    class Waits(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            waits.append((imp.round, stopper.wait_count))

    trainer = make_trainer(tmp_path, [RewindCallback(step=0), imp, Waits(), stopper], max_epochs=5)
    trainer.fit(digits_model(), datamodule)
    assert [h["round"] for h in imp.history] == [0, 1, 2]
    # Each round validates at each epoch end; the first check sets best, the second fails: stopped after 2 epochs.
    assert [h["stopped_step"] for h in imp.history] == [2 * STEPS_PER_EPOCH] * 3
    assert all(h["stopped_early"] for h in imp.history)
    assert [h["train_steps"] for h in imp.history] == [2 * STEPS_PER_EPOCH] * 3
    assert trainer.global_step == 6 * STEPS_PER_EPOCH
    # EarlyStopping starts each round afresh: its wait count is 0 at each round's first epoch.
    first_epochs = {}
    for r, w in waits:
        first_epochs.setdefault(r, w)
    assert first_epochs == {0: 0, 1: 0, 2: 0}
    assert sorted(os.listdir(os.path.join(trainer.log_dir, "tickets"))) == ["rewind_point.pt"] + [f"round_0{r}.pt" for r in range(3)]


def test_any_stop_request_ends_the_round_where_it_was_made(tmp_path, datamodule):
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, save_tickets=False)
    trainer = make_trainer(tmp_path, [imp, StopAt([30, 30 + 10])], max_epochs=2)
    trainer.fit(digits_model(), datamodule)
    assert [h["stopped_step"] for h in imp.history] == [30, 10, 44]
    assert [h["stopped_early"] for h in imp.history] == [True, True, False]
    # The round that stopped mid-epoch ended its epoch; the next started at the stop.
    assert trainer.global_step == 30 + 10 + 44


def test_a_stop_request_in_the_last_round_ends_the_experiment(tmp_path, datamodule):
    imp = IMPCallback(rounds=1, pruning_fraction=0.5, save_tickets=False)
    trainer = make_trainer(tmp_path, [imp, StopAt([44 + 5])], max_epochs=2)
    trainer.fit(digits_model(), datamodule)
    assert [h["stopped_step"] for h in imp.history] == [44, 5] and imp.history[-1]["stopped_early"]


# -------------------------------------------------------------------------------------------- A.2 no validation
class NoVal(pl.LightningDataModule):
    def __init__(self, datamodule):
        super().__init__()
        self.inner = datamodule

    def setup(self, stage):
        self.inner.setup(stage)

    def train_dataloader(self):
        return self.inner.train_dataloader()


@pytest.mark.parametrize("case", ["no_val_loader", "limit_val_batches_0"])
def test_rounds_without_validation(tmp_path, datamodule, case):
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, monitor="train_loss", save_tickets=False)
    if case == "no_val_loader":
        trainer = make_trainer(tmp_path, [RewindCallback(step=5), imp], max_epochs=1)
        trainer.fit(digits_model(), NoVal(datamodule))
    else:
        trainer = make_trainer(tmp_path, [RewindCallback(step=5), imp], max_epochs=1, limit_val_batches=0)
        trainer.fit(digits_model(), datamodule)
    assert len(imp.history) == 3
    assert all("train_loss" in h["final"] and "val_loss" not in h["final"] for h in imp.history)


# ------------------------------------------------------------------------------- A.3 callbacks that span the fit
@pytest.mark.parametrize(("callback", "name"), [
    (StochasticWeightAveraging(swa_lrs=0.01), "StochasticWeightAveraging"),
    (LearningRateFinder(), "LearningRateFinder"),
    (BackboneFinetuning(unfreeze_backbone_at_epoch=1), "BackboneFinetuning"),
])
@pytest.mark.parametrize("masking", ["imp", "prune_at_init"])
def test_fit_length_callbacks_are_refused_by_name(tmp_path, datamodule, callback, name, masking):
    masker = IMPCallback() if masking == "imp" else PruneAtInitCallback(method="magnitude", density=0.5)
    trainer = make_trainer(tmp_path, [masker, callback, NoTraining()], max_epochs=2)
    with pytest.raises(ValueError, match=f"cannot run with {name} in the Trainer"):
        trainer.fit(digits_model(), datamodule)


def test_time_limit_is_refused(tmp_path, datamodule):
    trainer = make_trainer(tmp_path, [IMPCallback(), NoTraining()], max_epochs=2, max_time={"minutes": 5})
    with pytest.raises(ValueError, match=r"time limit \(Trainer\(max_time=...\)"):
        trainer.fit(digits_model(), datamodule)


# ----------------------------------------------------------------------------- A.4 layers built late, lazy layers
class BuiltInConfigureModel(Classifier):
    def __init__(self):
        super().__init__("mlp", {"in_features": 64, "hidden": [8], "num_classes": 10})
        self.model = None

    def configure_model(self):
        if self.model is None:
            self.model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class BuiltInSetup(BuiltInConfigureModel):
    def configure_model(self):
        pass

    def setup(self, stage):
        if self.model is None:
            self.model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.mark.parametrize("cls", [BuiltInConfigureModel, BuiltInSetup])
def test_layers_built_in_setup_or_configure_model_get_masks(tmp_path, datamodule, cls):
    imp = IMPCallback(rounds=1, pruning_fraction=0.5, save_tickets=False)
    model = cls()
    make_trainer(tmp_path, [imp], max_epochs=1).fit(model, datamodule)
    assert list(imp.masks) == ["model.0.weight", "model.2.weight"]
    assert imp.history[-1]["density"] == pytest.approx(0.5, abs=1e-3)
    assert_pruned_zero(dict(model.named_parameters()), imp.masks)


def test_lazy_layers_get_a_clear_error(tmp_path, datamodule):
    class Lazy(BuiltInConfigureModel):
        def configure_model(self):
            if self.model is None:
                self.model = nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.Linear(32, 10))

    trainer = make_trainer(tmp_path, [IMPCallback(), NoTraining()], max_epochs=1)
    with pytest.raises(ValueError, match=r"uninitialized lazy parameters \['model.0.weight'.*Run one forward pass"):
        trainer.fit(Lazy(), datamodule)


# ------------------------------------------------------------------------------------------- A.5 LBFGS closures
class LBFGSClassifier(Classifier):
    def configure_optimizers(self):
        return torch.optim.LBFGS(self.parameters(), lr=0.5, max_iter=4, history_size=5)


def test_lbfgs_sees_pruned_weights_at_zero_in_every_forward(tmp_path, datamodule):
    imp = IMPCallback(rounds=2, pruning_fraction=0.6, save_tickets=False)
    check = ZeroWatcher(imp)
    model = LBFGSClassifier("mlp", {"in_features": 64, "hidden": [32, 16], "num_classes": 10})
    trainer = make_trainer(tmp_path, [imp, check], max_steps=12, limit_val_batches=2)
    trainer.fit(model, datamodule)
    assert len(imp.history) == 3 and imp.masks.density() < 0.2
    assert check.checked > 3 * 3 * 12  # 3 masked layers; LBFGS evaluates the loss several times inside each step


# ------------------------------------------------------------------------------- A.6 epoch-interval schedulers
class EpochScheduled(Classifier):
    def __init__(self, kind):
        super().__init__("mlp", {"in_features": 64, "hidden": [16], "num_classes": 10}, optimizer="sgd", lr=0.1)
        self.kind = kind

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        if self.kind == "step":
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)}
        if self.kind == "cosine":
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)}
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0, threshold=10.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss", "interval": "epoch"}}


class LRs(Callback):
    """The learning rate of every optimizer step, by round and step of one training."""

    def __init__(self, imp):
        self.imp, self.by_round = imp, {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        step = self.imp.timeline.virtual_step(trainer.global_step)
        self.by_round.setdefault(self.imp.round, {})[step] = optimizer.param_groups[0]["lr"]


@pytest.mark.parametrize("kind", ["step", "cosine", "plateau"])
@pytest.mark.parametrize("rewind", [0, 10, 22])
def test_epoch_schedules_replay_exactly_from_the_rewind_step(tmp_path, datamodule, kind, rewind):
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, save_tickets=False)
    lrs = LRs(imp)
    trainer = make_trainer(tmp_path, [RewindCallback(step=rewind), imp, lrs], max_epochs=4)
    trainer.fit(EpochScheduled(kind), datamodule)
    one_training = 4 * STEPS_PER_EPOCH
    round0 = lrs.by_round[0]
    assert sorted(round0) == list(range(one_training))
    assert len(set(round0.values())) > 1  # the schedule moved
    for r in (1, 2):
        assert sorted(lrs.by_round[r]) == list(range(rewind, one_training))
        assert lrs.by_round[r] == {s: round0[s] for s in range(rewind, one_training)}, f"round {r}"


def test_scheduler_frequency_other_than_one_is_refused(tmp_path, datamodule):
    class Every2(EpochScheduled):
        def configure_optimizers(self):
            config = super().configure_optimizers()
            config["lr_scheduler"] = {"scheduler": config["lr_scheduler"], "frequency": 2}
            return config

    trainer = make_trainer(tmp_path, [IMPCallback(), NoTraining()], max_epochs=2)
    with pytest.raises(ValueError, match="frequency=2 .* use frequency=1"):
        trainer.fit(Every2("step"), datamodule)


# ------------------------------------------------------------------------------------------ A.7 round metrics
class LogsDensity(Classifier):
    """Logs the density of its first layer's weights, per step and as an epoch mean: a value each round owns."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        density = (self.model.hidden[0].weight != 0).float().mean()
        self.log("w_density", density, on_step=False, on_epoch=True)
        self.log("train_f1", -loss, on_step=False, on_epoch=True)
        return loss


def test_round_metrics_come_from_the_round_epoch_level_included(tmp_path, datamodule):
    imp = IMPCallback(rounds=3, pruning_fraction=0.5, allocation="layerwise", save_tickets=False,
                      modes={"train_f1": "min"})
    model = LogsDensity("mlp", {"in_features": 64, "hidden": [32, 16], "num_classes": 10})
    make_trainer(tmp_path, [RewindCallback(step=7), imp], max_epochs=2).fit(model, datamodule)
    for h in imp.history:
        layer = h["layer_density"]["model.hidden.0.weight"]
        assert h["final"]["w_density"] == pytest.approx(layer, abs=1e-6), h["round"]
        assert h["best"]["w_density"] == pytest.approx(layer, abs=1e-6)
        # best is never worse than final, in each metric's own direction
        assert h["best"]["val_loss"] <= h["final"]["val_loss"] and h["best"]["val_acc"] >= h["final"]["val_acc"]
        assert h["best"]["train_f1"] <= h["final"]["train_f1"]  # explicit: minimised although named like a score
        assert h["mode"] == "min" and h["monitor"] == "val_loss"


def test_a_monitor_never_logged_is_warned_about(tmp_path, datamodule):
    imp = IMPCallback(rounds=1, pruning_fraction=0.5, monitor="val_accuracy", save_tickets=False)
    with pytest.warns(UserWarning, match=r"monitor='val_accuracy' was never logged.*'val_acc'"):
        make_trainer(tmp_path, [imp], max_epochs=1).fit(digits_model(), datamodule)
    assert imp.history[0]["best_step"] is None


# -------------------------------------------------------------------------------------------------- A.8 resume
def _ckpt(tmp_path):
    return ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_epochs=1, save_top_k=-1, save_last=True)


def test_resume_with_more_rounds_extends_the_experiment(tmp_path, datamodule):
    imp = IMPCallback(rounds=2, pruning_fraction=0.5)
    trainer = make_trainer(tmp_path / "a", [RewindCallback(step="1ep"), imp, _ckpt(tmp_path)], max_epochs=2,
                           enable_checkpointing=True)
    trainer.fit(digits_model(), datamodule)
    assert len(imp.history) == 3
    # The same rewind step spelled otherwise, and two more rounds.
    more = IMPCallback(rounds=4, pruning_fraction=0.5, dirpath=trainer.log_dir)
    resumed = make_trainer(tmp_path / "b", [RewindCallback(step=STEPS_PER_EPOCH), more], max_epochs=2)
    resumed.fit(digits_model(), datamodule, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert [h["round"] for h in more.history] == [0, 1, 2, 3, 4]
    # The checkpoint was written before round 2's record: the resumed fit records it, alike but for the wall time.
    untimed = [{k: v for k, v in h.items() if k != "wall_time_s"} for h in (*more.history[:3], *imp.history)]
    assert untimed[:3] == untimed[3:]
    assert more.history[-1]["density"] == pytest.approx(0.5 ** 4, abs=1e-3)
    assert resumed.global_step == 44 + 4 * 22
    assert [r.round for r in read_history(os.path.join(trainer.log_dir, "imp_history.json"))] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"rounds": 2, "pruning_fraction": 0.3}, r"pruning_fraction: 0.5 in the checkpoint, 0.3 now"),
    ({"rounds": 2, "pruning_fraction": 0.5, "allocation": "layerwise"}, r"allocation: 'global' in the checkpoint"),
    ({"rounds": 2, "pruning_fraction": 0.5, "schedule": "linear"}, r"schedule: 'geometric' in the checkpoint, 'lin"),
    ({"rounds": 1, "pruning_fraction": 0.5}, r"at round 2, past the 1 rounds"),
])
def test_resume_with_other_pruning_arguments_fails_before_training(tmp_path, datamodule, kwargs, needle):
    imp = IMPCallback(rounds=2, pruning_fraction=0.5)
    trainer = make_trainer(tmp_path / "a", [imp, _ckpt(tmp_path)], max_epochs=1, enable_checkpointing=True)
    trainer.fit(digits_model(), datamodule)
    before = open(os.path.join(trainer.log_dir, "imp_history.json")).read()
    other = IMPCallback(dirpath=trainer.log_dir, **kwargs)
    with pytest.raises(ValueError, match=needle):
        make_trainer(tmp_path / "b", [other, NoTraining()], max_epochs=1).fit(
            digits_model(), datamodule, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert open(os.path.join(trainer.log_dir, "imp_history.json")).read() == before


def test_a_checkpoint_from_before_schedules_resumes_on_the_geometric_one(tmp_path, datamodule):
    trainer = make_trainer(tmp_path / "a", [IMPCallback(rounds=1, pruning_fraction=0.5), _ckpt(tmp_path)],
                           max_epochs=1, enable_checkpointing=True)
    trainer.fit(digits_model(), datamodule)
    path = str(tmp_path / "ckpt" / "last.ckpt")
    checkpoint = torch.load(path, weights_only=False)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("IMPCallback")]
    del state["config"]["schedule"]  # as lt-lightning 0.2 wrote it
    torch.save(checkpoint, path)
    more = IMPCallback(rounds=2, pruning_fraction=0.5, dirpath=trainer.log_dir)
    make_trainer(tmp_path / "b", [more], max_epochs=1).fit(digits_model(), datamodule, ckpt_path=path)
    assert [h["round"] for h in more.history] == [0, 1, 2]
    assert more.history[-1]["density"] == pytest.approx(0.25, abs=1e-3)


def test_resume_with_another_rewind_step_fails_before_training(tmp_path, datamodule):
    trainer = make_trainer(tmp_path / "a", [RewindCallback(step=5), IMPCallback(rounds=1), _ckpt(tmp_path)],
                           max_epochs=1, enable_checkpointing=True)
    trainer.fit(digits_model(), datamodule)
    with pytest.raises(ValueError, match="rewound to step 5; this Trainer gives 22 and 6"):
        make_trainer(tmp_path / "b", [RewindCallback(step=6), IMPCallback(rounds=1, dirpath=str(tmp_path / "b")),
                                      NoTraining()], max_epochs=1).fit(
            digits_model(), datamodule, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))


def test_resume_from_a_checkpoint_without_imp_fails_before_training(tmp_path, datamodule):
    trainer = make_trainer(tmp_path / "a", [_ckpt(tmp_path)], max_epochs=1, enable_checkpointing=True)
    trainer.fit(digits_model(), datamodule)
    with pytest.raises(ValueError, match="holds no IMPCallback state"):
        make_trainer(tmp_path / "b", [IMPCallback(), NoTraining()], max_epochs=1).fit(
            digits_model(), datamodule, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))


# -------------------------------------------------------------------------------------------- A.9 a second fit
def test_the_same_callbacks_in_a_second_fit_run_a_fresh_experiment(tmp_path, datamodule):
    rewind, imp = RewindCallback(step=3), IMPCallback(rounds=1, pruning_fraction=0.5)
    make_trainer(tmp_path / "a", [rewind, imp], max_epochs=1).fit(digits_model(), datamodule)
    first_snapshot = rewind.snapshot
    model = digits_model()
    make_trainer(tmp_path / "b", [rewind, imp], max_epochs=1).fit(model, datamodule)
    assert [h["round"] for h in imp.history] == [0, 1]
    assert rewind.snapshot is not first_snapshot
    assert not torch.equal(rewind.snapshot.model["model.out.weight"], first_snapshot.model["model.out.weight"])


# -------------------------------------------------------------------------------------------------- A.10 files
def test_a_run_never_writes_over_another_runs_files(tmp_path, datamodule):
    folder = str(tmp_path / "shared")
    make_trainer(tmp_path / "a", [IMPCallback(rounds=1, dirpath=folder)], max_epochs=1).fit(digits_model(), datamodule)
    before = open(os.path.join(folder, "imp_history.json")).read()
    with pytest.raises(ValueError, match="already holds the history or tickets of another IMP run"):
        make_trainer(tmp_path / "b", [IMPCallback(rounds=1, dirpath=folder), NoTraining()], max_epochs=1).fit(
            digits_model(), datamodule)
    assert open(os.path.join(folder, "imp_history.json")).read() == before
    assert json.loads(before)["format"] == "lt-lightning-history/1"


def test_dirpath_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        IMPCallback(dirpath=str(path))


# ------------------------------------------------------------------------------------------- A.14 bad input
def test_keep_dense_matching_every_layer_is_refused(tmp_path, datamodule):
    trainer = make_trainer(tmp_path, [IMPCallback(keep_dense="weight"), NoTraining()], max_epochs=1)
    with pytest.raises(ValueError, match="keep_dense='weight' matches every prunable parameter"):
        trainer.fit(digits_model(), datamodule)


def test_target_density_with_keep_dense_reaches_the_target_or_says_it_cannot(tmp_path, datamodule):
    # hidden.0 has 64*32 = 2048 of the 2720 prunable weights; keeping out (16*10) dense floors the density at 5.9%.
    imp = IMPCallback(rounds=None, pruning_fraction=0.5, target_density=0.2, keep_dense=r"out\.", save_tickets=False)
    make_trainer(tmp_path / "a", [imp], max_epochs=1, limit_val_batches=1).fit(digits_model(), datamodule)
    assert imp.history[-1]["density"] <= 0.2 < imp.history[-2]["density"]
    too_low = IMPCallback(rounds=None, pruning_fraction=0.5, target_density=0.05, keep_dense=r"out\.")
    with pytest.raises(ValueError, match="target_density=0.05 cannot be reached: keep_dense keeps 0.0588"):
        make_trainer(tmp_path / "b", [too_low, NoTraining()], max_epochs=1).fit(digits_model(), datamodule)


def test_masking_callback_needs_a_ticket():
    with pytest.raises(ValueError, match="ticket=None is not allowed"):
        MaskingCallback(ticket=None)
