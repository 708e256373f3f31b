"""Early-bird tickets on real Trainers: drawn and saved when the masks settle (training stops there, or IMP's round 0
ends there), not drawn when they keep changing."""

import copy
import os

import pytest
import torch
from conftest import digits_model, make_trainer
from test_rigl import NAMES

from lt_lightning import EarlyBirdCallback, IMPCallback, load_ticket
from lt_lightning.masks import Masks
from lt_lightning.pruning import ScoreContext, prune


def test_settled_masks_draw_the_ticket_on_the_initial_weights_and_stop(tmp_path, datamodule):
    # A learning rate this small barely moves the weights: the magnitude masks settle from the first checks.
    early_bird = EarlyBirdCallback(density=0.2, distance=0.01, window=3, every=5)
    model = digits_model(optimizer="sgd", lr=1e-4)
    initial = copy.deepcopy(model.state_dict())
    trainer = make_trainer(tmp_path, [early_bird], max_epochs=5)
    trainer.fit(model, datamodule)
    # Checks at steps 5, 10, 15, 20: three distances after the first, all below 0.01.
    assert trainer.global_step == 20 and early_bird.drawn_step == 20
    assert len(early_bird.distances) == 3 and max(early_bird.distances) < 0.01
    ticket = load_ticket(os.path.join(trainer.log_dir, "tickets", "early_bird.pt"))
    assert ticket.masks == early_bird.ticket.masks
    assert ticket.masks == prune(ScoreContext(model, Masks.dense(model, NAMES)), 0.2)  # the weights of step 20
    for name, value in initial.items():
        expected = value * ticket.masks[name] if name in ticket.masks else value
        assert torch.equal(ticket.state_dict[name], expected), name
    assert ticket.metadata["step"] == 20 and ticket.metadata["distances"] == early_bird.distances


def test_masks_that_keep_changing_draw_no_ticket(tmp_path, datamodule):
    early_bird = EarlyBirdCallback(density=0.2, distance=1e-4, window=2, every=5)  # any flipped weight is too many
    trainer = make_trainer(tmp_path, [early_bird])
    trainer.fit(digits_model(optimizer="sgd", lr=0.5), datamodule)
    assert trainer.global_step == 44 and early_bird.ticket is None and early_bird.drawn_step is None
    assert len(early_bird.distances) == 7 and min(early_bird.distances) >= 1e-4
    assert not os.path.exists(os.path.join(trainer.log_dir, "tickets"))


def test_with_imp_the_ticket_ends_round_zero(tmp_path, datamodule):
    early_bird = EarlyBirdCallback(density=0.2, distance=0.01, window=3, every=5)
    imp = IMPCallback(rounds=1, pruning_fraction=0.5)
    trainer = make_trainer(tmp_path, [early_bird, imp], max_steps=30)
    trainer.fit(digits_model(optimizer="sgd", lr=1e-4), datamodule)
    assert early_bird.drawn_step == 20
    assert imp.history[0]["stopped_step"] == 20 and imp.history[0]["stopped_early"]
    assert imp.history[1]["train_steps"] == 30 and not imp.history[1]["stopped_early"]
    assert trainer.global_step == 50


def test_it_stops_looking_once_a_masking_callback_prunes_the_network(tmp_path, datamodule):
    early_bird = EarlyBirdCallback(density=0.2, distance=1e-4, window=2, every="5it")
    imp = IMPCallback(rounds=1, pruning_fraction=0.5)
    make_trainer(tmp_path, [early_bird, imp], max_steps=20).fit(digits_model(optimizer="sgd", lr=0.5), datamodule)
    # Round 0 (dense) is checked at steps 5, 10, 15, 20; round 1 (steps 20-40, pruned) is not.
    assert len(early_bird.distances) == 3 and early_bird.ticket is None and len(imp.history) == 2


@pytest.mark.parametrize("every, window", [("3ep", 1), (20, 3)])
def test_checks_that_cannot_draw_a_ticket_in_the_fit_are_refused_before_training(tmp_path, datamodule, every, window):
    # 2 epochs of 22 steps: "3ep" never checks, every 20 steps checks twice where window=3 needs 4 checks.
    early_bird = EarlyBirdCallback(density=0.2, window=window, every=every)
    model = digits_model(optimizer="sgd", lr=0.1)
    initial = copy.deepcopy(model.state_dict())
    trainer = make_trainer(tmp_path, [early_bird])
    with pytest.raises(ValueError, match=rf"every='{every}(it)?' .* needs {window + 1} checks .* allowed every <= "):
        trainer.fit(model, datamodule)
    assert trainer.global_step == 0
    assert all(torch.equal(v, initial[k]) for k, v in model.state_dict().items())
