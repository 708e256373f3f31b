"""Every Lightning internal that lt_lightning/callbacks/_trainer.py relies on: if Lightning changes one, this fails
loudly, naming it, instead of an experiment going silently wrong."""

import inspect

import lightning.pytorch as pl
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loops import _FitLoop, _TrainingEpochLoop
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from lightning.pytorch.utilities.types import LRSchedulerConfig

from lt_lightning.callbacks import _trainer as lt_trainer


def test_loop_attributes_and_properties_exist(tmp_path):
    trainer = make_trainer(tmp_path, max_epochs=1)
    for loop in (trainer.fit_loop, trainer.fit_loop.epoch_loop):
        assert isinstance(inspect.getattr_static(type(loop), "done"), property), type(loop).__name__
    assert isinstance(inspect.getattr_static(_FitLoop, "done"), property)
    assert isinstance(inspect.getattr_static(_TrainingEpochLoop, "done"), property)
    assert hasattr(trainer.fit_loop, "max_epochs") and hasattr(trainer.fit_loop.epoch_loop, "max_steps")
    assert callable(trainer.fit_loop.epoch_loop._should_check_val_fx)
    assert hasattr(trainer.fit_loop.epoch_loop.batch_progress, "is_last_batch")
    assert isinstance(trainer.callback_metrics, dict)
    assert {"frequency", "interval"} <= set(inspect.signature(LRSchedulerConfig).parameters)
    assert Timer(duration="00:00:01:00")._duration is not None and Timer()._duration is None
    assert inspect.isclass(_MultiProcessingLauncher)


def test_the_glue_acts_on_a_real_fit(tmp_path, datamodule):
    """Within one fit: an epoch ended by the module hook's -1, an extra validation, a stop request withdrawn."""
    events = {"epoch_ends": [], "validations": [], "asked": 0}

    class Glue(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            lt_trainer.end_epoch_when(pl_module, lambda batch_idx: batch_idx == 5)
            lt_trainer.validate_also_when(trainer, lambda: trainer.global_step == 3)
            lt_trainer.intercept_stop_requests(trainer, self.withdraw)
            lt_trainer.set_fit_length(trainer, max_steps=12, max_epochs=-1)
            self.trainer = trainer

        def withdraw(self):
            events["asked"] += 1
            self.trainer.should_stop = False

        def on_train_batch_end(self, trainer, *args):
            trainer.should_stop = True  # withdrawn each time: the fit goes on

        def on_train_epoch_end(self, trainer, pl_module):
            events["epoch_ends"].append(trainer.global_step)

        def on_validation_end(self, trainer, pl_module):
            events["validations"].append(trainer.global_step)

        def on_train_end(self, trainer, pl_module):
            lt_trainer.release_loops(trainer, pl_module)

    model = digits_model()
    trainer = make_trainer(tmp_path, [Glue()], max_epochs=1)
    trainer.fit(model, datamodule)
    assert events["epoch_ends"] == [5, 10, 12]  # 5 batches an epoch (the 6th is cut), max_steps ends the fit
    assert 3 in events["validations"]
    assert events["asked"] > 12
    assert type(trainer.fit_loop) is _FitLoop and "on_train_batch_start" not in vars(model)  # released


def test_schedulers_frozen_logging_silenced_loader_wrapped_in_a_real_fit(tmp_path, datamodule):
    """freeze_schedulers (LRSchedulerConfig.frequency), silent_logging (log shadowed on the instance) and
    wrap_train_dataloader (Lightning calls the instance's train_dataloader)."""
    seen = {"wrapped": 0, "lrs": []}

    def wrap(loaders):
        seen["wrapped"] += 1
        return loaders

    class Glue(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            with lt_trainer.silent_logging(pl_module):  # Lightning refuses self.log in on_train_start otherwise
                pl_module.training_step(next(iter(trainer.train_dataloader)), 0)
            assert "log" not in vars(pl_module)
            lt_trainer.freeze_schedulers(trainer)

        def on_train_batch_end(self, trainer, *args):
            seen["lrs"].append(trainer.optimizers[0].param_groups[0]["lr"])

    model = digits_model(optimizer="sgd", lr=0.1, scheduler="multistep", milestones=[2])
    lt_trainer.wrap_train_dataloader(datamodule, wrap)
    trainer = make_trainer(tmp_path, [Glue()], max_steps=5)
    trainer.fit(model, datamodule)
    lt_trainer.unwrap_train_dataloader(datamodule)
    assert seen["wrapped"] == 1 and "train_dataloader" not in vars(datamodule)
    assert seen["lrs"] == [0.1] * 5  # the milestone at step 2 never came


def test_logger_key_reads_the_wandb_prefix():
    from lightning.pytorch.loggers import WandbLogger

    assert lt_trainer.logger_key(WandbLogger(prefix="run", offline=True), "imp/round") == "run-imp/round"
    assert lt_trainer.logger_key(WandbLogger(offline=True), "imp/round") == "imp/round"
