"""A fit killed anywhere and resumed from a checkpoint ends like an uninterrupted one: same masks, history, weights."""

import lightning.pytorch as pl
import pytest
import torch
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from resumable import Crash, ResumableDigits, SaveAt

from lt_lightning import IMPCallback, RewindCallback


def _run(root, crash_at=None, ckpt_path=None, rewind="1ep", save_at=(50, 67, 89)):
    pl.seed_everything(0, verbose=False)
    imp = IMPCallback(rounds=3, pruning_fraction=0.4)
    callbacks = [
        RewindCallback(step=rewind),
        imp,
        SaveAt(root, save_at),
        # After validation: Lightning skips an epoch's validation when resuming from its last batch's checkpoint.
        ModelCheckpoint(dirpath=root / "ckpt", save_top_k=-1, filename="{step}-validated"),
    ]
    if crash_at is not None:
        callbacks.append(Crash(crash_at))
    model = digits_model(optimizer="sgd", lr=0.1, scheduler="multistep", milestones=[30, 60])
    trainer = make_trainer(root, callbacks, max_epochs=2, enable_checkpointing=True)
    trainer.fit(model, ResumableDigits(batch_size=64), ckpt_path=ckpt_path)
    return imp, model, trainer


def _comparable(history):
    return [{k: v for k, v in h.items() if k not in ("wall_time_s", "ticket")} for h in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("full"))


# one training = 44 steps, rewind to 22 (1 epoch): rounds end at 44, 66, 88, 110.
@pytest.mark.parametrize(("crash_at", "resume_at"), [(53, "50"), (70, "66-validated"), (72, "67"), (100, "89")],
                         ids=["mid-round", "at-round-end-before-prune", "right-after-prune", "late-round"])
def test_resume_matches_uninterrupted_run(tmp_path, uninterrupted, crash_at, resume_at):
    full_imp, full_model, _ = uninterrupted
    with pytest.raises(RuntimeError, match="injected crash"):
        _run(tmp_path, crash_at=crash_at)
    imp, model, trainer = _run(tmp_path, ckpt_path=tmp_path / "ckpt" / f"step={resume_at}.ckpt")
    assert trainer.global_step == 110
    assert imp.masks == full_imp.masks
    assert _comparable(imp.history) == _comparable(full_imp.history)
    for name, value in full_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


@pytest.fixture(scope="module")
def uninterrupted_mid_epoch_rewind(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("full_mid"), rewind=10)


# Rewind to step 10, mid-epoch: rounds of 34 steps end at 44, 78, 112, 146; each later round first trains the 12
# steps left of its first epoch (an epoch of its own), so checkpoints fall inside such a short epoch (50) or after it.
@pytest.mark.parametrize(("crash_at", "resume_at"), [(53, "50"), (70, "60"), (95, "80")])
def test_resume_matches_uninterrupted_run_with_a_mid_epoch_rewind(tmp_path, uninterrupted_mid_epoch_rewind,
                                                                  crash_at, resume_at):
    full_imp, full_model, _ = uninterrupted_mid_epoch_rewind
    with pytest.raises(RuntimeError, match="injected crash"):
        _run(tmp_path, crash_at=crash_at, rewind=10, save_at=(50, 60, 80))
    imp, model, trainer = _run(tmp_path, ckpt_path=tmp_path / "ckpt" / f"step={resume_at}.ckpt", rewind=10,
                               save_at=(50, 60, 80))
    assert trainer.global_step == 146
    assert imp.masks == full_imp.masks
    assert _comparable(imp.history) == _comparable(full_imp.history)
    for name, value in full_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
