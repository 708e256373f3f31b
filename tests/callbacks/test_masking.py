"""MaskingCallback with controls: every control through a real fit on digits, from a real IMP run's tickets."""

import os

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conformance.checks import assert_pruned_zero
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lt_lightning import IMPCallback, MaskingCallback, RewindCallback, Ticket, load_ticket
from lt_lightning.controls import CONTROLS, make_control
from lt_lightning.masks import Masks
from lt_lightning.pruning.allocation import smart_ratio_densities
from lt_lightning.zoo import DigitsDataModule

SAME_LAYER_COUNTS = ("reinit", "shuffle_masks", "shuffle_weights", "keep_signs", "random_ticket_layerwise")


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    """A real IMP run rewound to step 3 (so that rewind weights are no fresh initialization): its tickets dir."""
    root = tmp_path_factory.mktemp("imp")
    pl.seed_everything(0, verbose=False)
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, dirpath=str(root))
    trainer = make_trainer(root, [RewindCallback(step="3it"), imp], max_epochs=None, max_steps=8, logger=False)
    trainer.fit(digits_model(optimizer="sgd", lr=0.1), DigitsDataModule(batch_size=64, seed=0))
    return os.path.join(root, "tickets")


class Start(Callback):
    """The module's weights when training starts (after the masking callback set them) and after the fit."""

    def on_train_start(self, trainer, pl_module):
        self.start = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_end(self, trainer, pl_module):
        self.end = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _fit(tmp_path, datamodule, callback, seed=0, steps=6, **trainer_kwargs):
    """Fit a module initialised under ``seed``; returns its fresh state_dict and the Start probe."""
    pl.seed_everything(seed, verbose=False)
    model = digits_model(optimizer="sgd", lr=0.1)
    fresh = {k: v.detach().clone() for k, v in model.state_dict().items()}
    probe = Start()
    trainer_kwargs.setdefault("logger", False)
    trainer = make_trainer(tmp_path, [callback, probe], max_epochs=None, max_steps=steps, **trainer_kwargs)
    trainer.fit(model, datamodule)
    return fresh, probe


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_each_control_trains_the_control_of_the_ticket(imp_run, tmp_path, datamodule, control):
    path = os.path.join(imp_run, "round_02.pt")
    ticket = load_ticket(path)
    callback = MaskingCallback(ticket=path, control=control, seed=1)
    fresh, probe = _fit(tmp_path, datamodule, callback, seed=4)
    # Exactly the core's control, with init from the rewind point (shuffle_masks) or the module as given to fit.
    init = load_ticket(os.path.join(imp_run, "rewind_point.pt")).state_dict if control == "shuffle_masks" else fresh
    expected = make_control(control, ticket, seed=1, init=init)
    assert callback.masks == expected.masks
    assert _equal(probe.start, expected.state_dict)
    if control in SAME_LAYER_COUNTS:
        assert callback.masks.layer_densities() == ticket.masks.layer_densities()
    else:  # random_ticket: the ticket's total at smart-ratio layer densities
        assert callback.masks.kept() == ticket.masks.kept()
        numel = {n: m.numel() for n, m in ticket.masks.items()}
        ratios = smart_ratio_densities(numel, ticket.masks.density())
        assert all(abs(int(m.sum()) - ratios[n] * numel[n]) < 1 for n, m in callback.masks.items())
    assert_pruned_zero(probe.end, callback.masks)  # pruned weights still zero after training; kept ones trained
    for name, mask in callback.masks.items():
        assert not torch.equal(probe.end[name][mask], probe.start[name][mask]), name
    assert callback.ticket_metadata["control"] == control and callback.ticket_metadata["control_seed"] == 1
    assert callback.ticket_metadata["round"] == 2


def test_a_control_is_reproducible_by_its_seed(imp_run, tmp_path, datamodule):
    path = os.path.join(imp_run, "round_02.pt")
    runs = [MaskingCallback(ticket=path, control="shuffle_masks", seed=s) for s in (3, 3, 4)]
    ends = [_fit(tmp_path / str(i), datamodule, c)[1].end for i, c in enumerate(runs)]
    assert runs[0].masks == runs[1].masks and _equal(ends[0], ends[1])
    assert runs[0].masks != runs[2].masks


def test_shuffle_masks_takes_newly_kept_weights_from_the_rewind_point(imp_run, tmp_path, datamodule):
    path = os.path.join(imp_run, "round_02.pt")
    ticket, point = load_ticket(path), load_ticket(os.path.join(imp_run, "rewind_point.pt"))
    assert ticket.metadata["rewind_step"] == 3
    callback = MaskingCallback(ticket=path, control="shuffle_masks", seed=0)
    fresh, probe = _fit(tmp_path, datamodule, callback)
    for name, mask in callback.masks.items():
        new = mask & ~ticket.masks[name]
        assert bool(new.any())
        assert torch.equal(probe.start[name][mask], point.state_dict[name][mask])  # Su et al.: the unpruned weights
        assert not torch.equal(probe.start[name][new], fresh[name][new])  # not the module's own initialization


def test_reinit_is_ticket_weights_false(imp_run, tmp_path, datamodule):
    path = os.path.join(imp_run, "round_01.pt")
    _, control = _fit(tmp_path / "a", datamodule, MaskingCallback(ticket=path, control="reinit"), seed=2)
    _, masked = _fit(tmp_path / "b", datamodule, MaskingCallback(ticket=path, ticket_weights=False), seed=2)
    assert _equal(control.start, masked.start) and _equal(control.end, masked.end)


def test_control_and_seed_go_to_the_loggers(imp_run, tmp_path, datamodule):
    from lightning.pytorch.loggers import CSVLogger

    path = os.path.join(imp_run, "round_01.pt")
    logger = CSVLogger(str(tmp_path), name="run")
    _fit(tmp_path, datamodule, MaskingCallback(ticket=path, control="keep_signs", seed=7), logger=logger)
    with open(os.path.join(logger.log_dir, "hparams.yaml")) as f:
        hparams = yaml.safe_load(f)
    assert hparams["lt/control"] == "keep_signs" and hparams["lt/control_seed"] == 7
    assert hparams["lt/ticket"] == path and hparams["lt/ticket_round"] == 1


def test_resume_keeps_the_checkpoints_masks(imp_run, tmp_path, datamodule):
    path = os.path.join(imp_run, "round_02.pt")
    first = MaskingCallback(ticket=path, control="random_ticket_layerwise", seed=1)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    pl.seed_everything(0, verbose=False)
    trainer = make_trainer(tmp_path, [first, checkpoint], max_epochs=None, max_steps=4, logger=False,
                           enable_checkpointing=True)
    trainer.fit(digits_model(optimizer="sgd", lr=0.1), datamodule)
    # Resumed with another seed: the checkpoint's masks go on, no new control is drawn.
    resumed = MaskingCallback(ticket=path, control="random_ticket_layerwise", seed=2)
    trainer = make_trainer(tmp_path, [resumed], max_epochs=None, max_steps=8, logger=False)
    trainer.fit(digits_model(optimizer="sgd", lr=0.1), datamodule, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.masks == first.masks and trainer.global_step == 8
    assert resumed.ticket_metadata == first.ticket_metadata and resumed.ticket_metadata["control_seed"] == 1


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"control": "shufle_masks"}, r"control='shufle_masks' is not allowed; expected None or one of \['keep_signs',"
                                  r" 'random_ticket', 'random_ticket_layerwise', 'reinit', 'shuffle_masks',"),
    ({"control": "reinit", "seed": "1"}, r"seed='1' is not allowed; expected an int"),
    ({"control": "reinit", "seed": 1.0}, r"seed=1.0 is not allowed; expected an int"),
    ({"control": "reinit", "seed": True}, r"seed=True is not allowed"),
    ({"control": "reinit", "seed": -1}, r"seed=-1 is not allowed; expected an int in \[0, 2\*\*32\)"),
    ({"control": "shuffle_weights", "ticket_weights": False}, r"ticket_weights=False would throw them away"),
    ({"seed": 3}, r"seed=3 is the seed of a control, and control is None"),
    ({"ticket": ""}, r"ticket='' is not allowed"),
])
def test_arguments_checked_at_construction(kwargs, needle):
    kwargs.setdefault("ticket", "tickets/round_01.pt")
    with pytest.raises(ValueError, match=needle):
        MaskingCallback(**kwargs)


class NoTraining(Callback):
    def on_train_batch_start(self, *args):
        raise AssertionError("training started before the error")


def test_a_control_needing_weights_on_a_ticket_without_them(imp_run, tmp_path, datamodule):
    """A ticket rewound to step 3 without the rewind point beside it has no weights for newly kept positions."""
    ticket = load_ticket(os.path.join(imp_run, "round_02.pt"))
    lone = tmp_path / "lone" / "round_02.pt"
    Ticket(ticket.masks, ticket.state_dict, {k: v for k, v in ticket.metadata.items() if k != "rewind_point"}).save(
        lone)
    moved = tmp_path / "moved" / "round_02.pt"
    ticket.save(moved)  # names rewind_point.pt, which was not copied along
    for path, needle in [
        (lone, rf"control 'shuffle_masks' needs weights for the positions it newly keeps, and the ticket '{lone}' has"
               r" none: it names no rewind point .* rewound to step 3"),
        (moved, rf"'{moved}' names 'rewind_point.pt', but there is no file '{moved.parent / 'rewind_point.pt'}'"),
    ]:
        model = digits_model()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        trainer = make_trainer(tmp_path, [MaskingCallback(ticket=str(path), control="shuffle_masks"), NoTraining()],
                               max_steps=4, logger=False)
        with pytest.raises(ValueError, match=needle):
            trainer.fit(model, datamodule)
        assert _equal(before, model.state_dict())
    # Controls that draw nothing from the rewind point train the lone ticket.
    _fit(tmp_path, datamodule, MaskingCallback(ticket=str(lone), control="shuffle_weights"), steps=2)


def test_a_fresh_control_on_the_tickets_own_initialization_is_refused(tmp_path, datamodule):
    """Seeded as the IMP run was, the module "freshly" initialised is the ticket's own: reinit would be the ticket."""
    pl.seed_everything(5, verbose=False)
    model = digits_model()
    masks = Masks({n: torch.rand(p.shape) < 0.5 for n, p in model.named_parameters() if n.endswith("weight")})
    Ticket.from_state(model.state_dict(), masks, {"round": 1, "rewind_step": 0}).save(tmp_path / "round_01.pt")
    for control in ("reinit", "keep_signs", "random_ticket"):
        pl.seed_everything(5, verbose=False)
        trainer = make_trainer(tmp_path, [MaskingCallback(ticket=str(tmp_path / "round_01.pt"), control=control),
                                          NoTraining()], max_steps=2, logger=False)
        with pytest.raises(ValueError, match=f"holds the ticket's own weights at every kept position, so control"
                                             f" '{control}' would train the ticket itself"):
            trainer.fit(digits_model(), datamodule)
    _fit(tmp_path, datamodule, MaskingCallback(ticket=str(tmp_path / "round_01.pt"), control="reinit"), seed=6,
         steps=2)
