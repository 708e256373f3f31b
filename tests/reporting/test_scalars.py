"""Loggers other than W&B get the round scalars too: a TensorBoard run read back from its event file."""

import pytest
from conftest import digits_model, make_trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lt_lightning import IMPCallback

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_tensorboard_event_file_holds_the_round_scalars(tmp_path, datamodule):
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, save_tickets=False)
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    trainer = make_trainer(tmp_path, [imp], max_steps=4, limit_val_batches=1, logger=logger)
    trainer.fit(digits_model(), datamodule)
    logger.finalize("success")

    events = event_accumulator.EventAccumulator(logger.log_dir, size_guidance={event_accumulator.SCALARS: 0})
    events.Reload()
    # Each round's record is logged at the step where the round ends (4, 8, 12).
    final = [(e.step, e.value) for e in events.Scalars("imp/final/val_acc")]
    assert final == [(4 * (r + 1), pytest.approx(h["final"]["val_acc"])) for r, h in enumerate(imp.history)]
    # Density is also logged when a round starts: at a round's end step there are the record's and the next round's.
    density = [(e.step, e.value) for e in events.Scalars("imp/density")]
    assert density == [(0, 1.0), (4, 1.0), (4, 0.5), (8, 0.5), (8, 0.25), (12, 0.25)]
    assert [h["density"] for h in imp.history] == [1.0, 0.5, 0.25]
    assert [e.value for e in events.Scalars("imp/round")][-1] == 2
    assert {"imp/mask_overlap", "imp/distance_from_rewind", "imp/layer_density/model.out.weight"} <= set(
        events.Tags()["scalars"])
