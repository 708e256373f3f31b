"""Every masking method passes the same checks, on real Trainers, a real MLP and real digits: pruned weights zero in
every forward, in every checkpoint and in every ticket it writes; the density asked for; a fit resumed from a
checkpoint ends bitwise like the uninterrupted one; bad arguments refused in ``__init__``, and arguments that only
the built module can refuse stopped before the first optimizer step. Masks identical on two DDP ranks:
``test_ddp_conformance.py``."""

import glob
import os

import lightning.pytorch as pl
import pytest
import torch
from conftest import make_trainer
from resumable import ResumableDigits, SaveAt

from conformance.checks import StepCounter, ZeroWatcher, assert_pruned_zero, checkpoint_masks
from conformance.methods import METHODS, PRUNABLE, digits_model, masking_callback
from lt_lightning import load_ticket

BY_NAME = {m.name: m for m in METHODS}


def fit(method, root, ckpt_path=None, watch=True):
    """One good run of ``method`` in ``root``: checkpoints at ``resume_at`` and at the end."""
    pl.seed_everything(0, verbose=False)
    callbacks = method.callbacks(str(root))
    source = masking_callback(callbacks)
    watcher = ZeroWatcher(source, method.checkpoint_has_weights)
    callbacks += [watcher, SaveAt(root, [method.resume_at])]
    model = digits_model()
    trainer = make_trainer(root, callbacks, max_epochs=None, max_steps=method.steps, limit_val_batches=2,
                           val_check_interval=4, check_val_every_n_epoch=None, **method.trainer)
    trainer.fit(model, ResumableDigits(batch_size=64), ckpt_path=ckpt_path)
    trainer.save_checkpoint(os.path.join(root, "ckpt", "last.ckpt"))
    return {"source": source, "watcher": watcher, "model": model, "trainer": trainer, "root": root}


@pytest.fixture(scope="module", params=[m.name for m in METHODS])
def run(request, tmp_path_factory):
    method = BY_NAME[request.param]
    return method, fit(method, tmp_path_factory.mktemp(method.name))


def test_pruned_weights_are_zero_in_every_forward_checkpoint_and_ticket(run):
    method, done = run
    source, watcher = done["source"], done["watcher"]
    assert watcher.checked >= done["trainer"].global_step  # every training forward at least
    if method.checkpoint_has_weights:
        assert watcher.checkpoints >= 2
        for file in glob.glob(os.path.join(done["root"], "ckpt", "*.ckpt")):
            checkpoint = torch.load(file, weights_only=False)
            masks = checkpoint_masks(checkpoint, source.state_key)
            assert masks is not None and masks.density() < 1, file
            assert_pruned_zero(checkpoint["state_dict"], masks, file)
    tickets = [f for f in glob.glob(os.path.join(done["root"], "**", "tickets", "*.pt"), recursive=True)
               if "binary" not in f]
    for file in tickets:
        ticket = load_ticket(file)
        assert_pruned_zero(ticket.state_dict, ticket.masks, file)


def test_density_is_the_one_asked_for(run):
    method, done = run
    masks = done["source"].masks
    assert masks.density() == pytest.approx(method.density, abs=method.tolerance)
    assert masks.numel() == PRUNABLE


def test_resume_ends_like_the_uninterrupted_run(run, tmp_path):
    method, full = run
    resumed = fit(method, tmp_path, ckpt_path=os.path.join(full["root"], "ckpt", f"step={method.resume_at}.ckpt"))
    assert resumed["trainer"].global_step == full["trainer"].global_step
    assert resumed["source"].masks == full["source"].masks
    for name, value in full["model"].state_dict().items():
        assert torch.equal(resumed["model"].state_dict()[name], value), name


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_bad_arguments_are_refused_in_init(method):
    make, match = method.refused_in_init
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_what_the_module_refuses_stops_the_fit_before_the_first_optimizer_step(method, tmp_path):
    make, match = method.refused_at_fit
    steps = StepCounter()
    trainer = make_trainer(tmp_path, [*make(str(tmp_path)), steps], max_epochs=None, max_steps=method.steps)
    with pytest.raises(ValueError, match=match):
        trainer.fit(digits_model(), ResumableDigits(batch_size=64))
    assert steps.steps == 0 and trainer.global_step == 0
