"""RecordCallback: one training's record on disk, measured at the training's last step."""

import os

import pytest
import torch
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback

from lt_lightning import IMPCallback, MaskingCallback, RecordCallback, Ticket
from lt_lightning.masks import Masks
from lt_lightning.records import read_result


class Validations(Callback):
    def __init__(self):
        self.seen = {}

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.seen[trainer.global_step] = float(trainer.callback_metrics["val_acc"])


def test_a_controls_record_is_measured_at_its_end(tmp_path, datamodule):
    model = digits_model()
    gen = torch.Generator().manual_seed(0)
    masks = Masks({n: torch.rand(p.shape, generator=gen) < 0.3 for n, p in model.named_parameters()
                   if n.endswith("weight")})
    Ticket(masks, model.state_dict(), {"round": 4, "rewind_step": 0}).save(tmp_path / "round_04.pt")
    path = str(tmp_path / "out" / "result.json")
    record, validations = RecordCallback(path, monitor="val_acc", mode="max"), Validations()
    masking = MaskingCallback(ticket=str(tmp_path / "round_04.pt"), control="shuffle_masks", seed=2)
    # Validation every 10 steps never falls on step 25: the callback adds one there.
    trainer = make_trainer(tmp_path, [masking, record, validations], max_epochs=None, max_steps=25,
                           val_check_interval=10, check_val_every_n_epoch=None, logger=False)
    trainer.fit(digits_model(), datamodule)
    assert sorted(validations.seen) == [10, 20, 25]
    saved, metadata = read_result(path)
    assert saved == record.record
    assert saved.final["val_acc"] == validations.seen[25] and "train_loss" in saved.final
    assert saved.best["val_acc"] == max(validations.seen.values())
    assert validations.seen[saved.best_step] == saved.best["val_acc"]
    assert (saved.round, saved.train_steps, saved.stopped_early, saved.monitor, saved.mode) == (4, 25, False, "val_acc",
                                                                                                  "max")
    assert saved.density == masking.masks.density() == pytest.approx(masks.density())
    assert saved.layer_density == masking.masks.layer_densities() and saved.ticket == str(tmp_path / "round_04.pt")
    assert metadata == {"ticket": str(tmp_path / "round_04.pt"), "ticket_round": 4, "control": "shuffle_masks",
                        "control_seed": 2}


def test_a_dense_training_has_density_one(tmp_path, datamodule):
    record = RecordCallback(str(tmp_path / "r.json"))
    make_trainer(tmp_path, [record], max_epochs=1, logger=False).fit(digits_model(), datamodule)
    saved, metadata = read_result(tmp_path / "r.json")
    assert saved.density == 1.0 and saved.layer_density == {} and metadata == {}
    assert saved.monitor == "val_loss" and saved.best_step == 22 and saved.train_steps == 22


def test_a_monitor_never_logged_is_warned_about(tmp_path, datamodule):
    record = RecordCallback(str(tmp_path / "r.json"), monitor="val_accuracy", mode="max")
    with pytest.warns(UserWarning, match=r"monitor='val_accuracy' was never logged in this training, so best_step"
                                         r" stays empty; logged metrics: \[.*'val_acc'.*\]\. Set RecordCallback"):
        make_trainer(tmp_path, [record], max_steps=5, logger=False).fit(digits_model(), datamodule)
    assert read_result(tmp_path / "r.json")[0].best_step is None


def test_refused_next_to_imp_and_bad_arguments(tmp_path, datamodule):
    trainer = make_trainer(tmp_path, [IMPCallback(rounds=1), RecordCallback(str(tmp_path / "r.json"))], logger=False)
    with pytest.raises(ValueError, match="this Trainer has an IMPCallback, which records its rounds"):
        trainer.fit(digits_model(), datamodule)
    assert not os.path.exists(tmp_path / "r.json")
    with pytest.raises(ValueError, match=r"path='' is not allowed; expected the path of a JSON file"):
        RecordCallback("")
    with pytest.raises(ValueError, match=r"mode='high' is not allowed"):
        RecordCallback("r.json", mode="high")
