import json
import os

import lightning.pytorch as pl
import pytest
import torch
from conformance.checks import assert_pruned_zero
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lt_lightning import IMPCallback, MaskingCallback, RewindCallback, load_ticket
from lt_lightning.masks import Masks
from lt_lightning.pruning import SCHEDULES

STEPS_PER_EPOCH = 22  # 1347 training digits, batch 64


class ZeroCheck(Callback):
    """Placed after the IMP callback: asserts pruned weights are zero before every forward (train and validation)
    and, when gradients are clipped, pruned gradients are zero when clipping sees them."""

    def __init__(self, imp):
        self.imp = imp
        self.checks = 0

    def _check(self, pl_module, grads=False):
        if self.imp.masks is None or self.imp.masks.density() == 1.0:
            return
        params = dict(pl_module.named_parameters())
        masks = {n: m for n, m in self.imp.masks.items() if not grads or params[n].grad is not None}
        assert_pruned_zero({n: params[n].grad if grads else params[n] for n in masks}, masks,
                           "(gradient)" if grads else "")
        self.checks += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._check(pl_module)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check(pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.gradient_clip_val:  # pruned gradients are zeroed for clipping, left alone otherwise
            self._check(pl_module, grads=True)


class ValidationSteps(Callback):
    def __init__(self):
        self.steps = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.steps.append(trainer.global_step)


def test_imp_rounds_densities_history_and_tickets(tmp_path, datamodule):
    imp = IMPCallback(rounds=3, pruning_fraction=0.5)
    validations = ValidationSteps()
    trainer = make_trainer(tmp_path, [RewindCallback(step="3it"), imp, validations], max_epochs=2)
    model = digits_model(optimizer="sgd", lr=0.1)
    trainer.fit(model, datamodule)

    one_training = 2 * STEPS_PER_EPOCH
    assert trainer.global_step == one_training + 3 * (one_training - 3)
    # Each round is validated at its end and where one training's epochs end: round 0 at step 22, and each later
    # round (rewound to step 3, mid-epoch) 19 steps after it starts, where its first epoch ends.
    round_ends = [one_training + r * (one_training - 3) for r in range(4)]
    assert set(round_ends) <= set(validations.steps)
    assert sorted(set(validations.steps) - set(round_ends)) == [22] + [end + 19 for end in round_ends[:-1]]
    assert [h["round"] for h in imp.history] == [0, 1, 2, 3]
    numel = sum(m.numel() for m in imp.masks.values())
    for h in imp.history:
        assert h["density"] == pytest.approx(round(0.5 ** h["round"] * numel) / numel)
        assert h["train_steps"] == (one_training if h["round"] == 0 else one_training - 3)
        assert {"val_loss", "val_acc", "train_loss"} <= set(h["final"]) and {"val_loss", "val_acc"} <= set(h["best"])
        assert h["best"]["val_loss"] <= h["final"]["val_loss"] + 1e-9 and h["best"]["val_acc"] >= h["final"]["val_acc"]
        assert 0 <= h["best_step"] <= one_training
    assert imp.history[0]["final"]["val_acc"] > 0.8  # the dense network learned
    # IMP masks are nested, so consecutive rounds' intersection over union is the ratio of densities.
    assert imp.history[0]["mask_overlap"] is None
    for prev, h in zip(imp.history, imp.history[1:]):
        assert h["mask_overlap"] == pytest.approx(h["density"] / prev["density"])
    assert all(h["distance_from_rewind"] > 0 for h in imp.history)

    # imp.masks: bool tensors named as in model.named_parameters(); pruned weights are zero at fit end.
    params = dict(model.named_parameters())
    assert list(imp.masks) == ["model.hidden.0.weight", "model.hidden.1.weight", "model.out.weight"]
    assert all(mask.dtype == torch.bool for mask in imp.masks.values())
    assert_pruned_zero(params, imp.masks)
    # Masks only shrink.
    tickets = [load_ticket(h["ticket"]) for h in imp.history]
    for before, after in zip(tickets, tickets[1:]):
        assert all(bool((after.masks[n] <= before.masks[n]).all()) for n in after.masks)

    # History as JSON beside the logs, the same as imp.history.
    with open(os.path.join(trainer.log_dir, "imp_history.json")) as f:
        assert json.load(f)["rounds"] == [r.to_dict() for r in imp.history]

    # A ticket is the masks plus the rewind weights: it fits a fresh module, weights masked.
    ticket = tickets[-1]
    snapshot = trainer.callbacks[0].snapshot
    fresh = digits_model()
    ticket.apply(fresh)
    for name, value in fresh.state_dict().items():
        expected = snapshot.model[name] * ticket.masks[name] if name in ticket.masks else snapshot.model[name]
        assert torch.equal(value, expected)
    assert ticket.metadata["round"] == 3 and ticket.metadata["rewind_step"] == 3
    # Beside the tickets: the unpruned rewind point, once.
    point = load_ticket(os.path.join(os.path.dirname(imp.history[0]["ticket"]), ticket.metadata["rewind_point"]))
    assert point.masks.density() == 1.0
    assert all(torch.equal(point.state_dict[k], v) for k, v in snapshot.model.items())


def test_rewind_restores_weights_optimizer_and_schedule(tmp_path, datamodule):
    """At each round's first batch the weights equal the rewind snapshot masked, and the LR is the step-k LR."""

    class Probe(Callback):
        def __init__(self, imp, rewind):
            self.imp, self.rewind, self.seen = imp, rewind, []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if len(self.seen) < self.imp.round:  # first batch of a new round
                state = pl_module.state_dict()
                same = all(
                    torch.equal(state[k], v * self.imp.masks[k] if k in self.imp.masks else v)
                    for k, v in self.rewind.snapshot.model.items()
                )
                self.seen.append((same, trainer.optimizers[0].param_groups[0]["lr"], trainer.global_step))

    rewind = RewindCallback(step=10)
    imp = IMPCallback(rounds=2, pruning_fraction=0.3)
    probe = Probe(imp, rewind)
    model = digits_model(optimizer="sgd", lr=0.2, scheduler="multistep", milestones=[5, 30])
    trainer = make_trainer(tmp_path, [rewind, imp, probe], max_epochs=2)
    trainer.fit(model, datamodule)
    assert rewind.snapshot.step == 10
    lr_at_k = rewind.snapshot.optimizers[0]["param_groups"][0]["lr"]
    assert lr_at_k == pytest.approx(0.02)  # after the milestone at 5, before the one at 30
    assert [s[0] for s in probe.seen] == [True, True]
    assert [s[1] for s in probe.seen] == [pytest.approx(lr_at_k)] * 2
    assert [s[2] for s in probe.seen] == [44, 44 + 34]


@pytest.mark.parametrize(("reset", "expected_lr"), [("lr_rewind", 0.2), ("finetune", 0.002)])
def test_lr_rewind_and_finetune_keep_trained_weights(tmp_path, datamodule, reset, expected_lr):
    class Probe(Callback):
        def __init__(self):
            self.lrs, self.weights = [], None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
            self.weights = pl_module.model.out.weight.detach().clone()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 44 and self.weights is not None and batch_idx == 0:
                self.start = pl_module.model.out.weight.detach().clone()
                self.before = self.weights

    imp = IMPCallback(rounds=1, pruning_fraction=0.5, reset=reset)
    probe = Probe()
    model = digits_model(optimizer="sgd", lr=0.2, scheduler="multistep", milestones=[10, 30])
    trainer = make_trainer(tmp_path, [imp, probe], max_epochs=2)
    trainer.fit(model, datamodule)
    mask = imp.masks["model.out.weight"]
    # Trained weights are kept (masked), not rewound.
    assert torch.equal(probe.start, probe.before * mask)
    # The first step of round 1 runs at the rewound LR (lr_rewind) or the final LR (finetune).
    assert probe.lrs[44] == pytest.approx(expected_lr)
    if reset == "finetune":
        assert all(lr == pytest.approx(0.002) for lr in probe.lrs[44:])


def test_layerwise_and_layer_fractions(tmp_path, datamodule):
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, allocation="layerwise", layer_fractions={r"out\.weight": 0.2})
    trainer = make_trainer(tmp_path, [imp], max_epochs=1)
    trainer.fit(digits_model(), datamodule)
    for h in imp.history:
        r = h["round"]
        for name, density in h["layer_density"].items():
            numel = imp.masks[name].numel()
            rate = 0.2 if name.endswith("out.weight") else 0.5
            assert density == pytest.approx(round((1 - rate) ** r * numel) / numel)


def test_target_density_stops_the_experiment(tmp_path, datamodule):
    imp = IMPCallback(rounds=None, pruning_fraction=0.5, target_density=0.2, save_tickets=False)
    trainer = make_trainer(tmp_path, [imp], max_epochs=1)
    trainer.fit(digits_model(), datamodule)
    assert [h["density"] for h in imp.history] == pytest.approx([1.0, 0.5, 0.25, 0.125], abs=1e-3)
    assert all(h["ticket"] is None for h in imp.history)
    assert not os.path.exists(os.path.join(trainer.log_dir, "tickets"))


def test_a_schedule_chosen_by_name_shapes_the_path_to_the_same_final_density(tmp_path, datamodule):
    imp = IMPCallback(rounds=3, pruning_fraction=0.5, schedule="cubic", save_tickets=False)
    trainer = make_trainer(tmp_path, [imp], max_epochs=1)
    trainer.fit(digits_model(), datamodule)
    numel = sum(m.numel() for m in imp.masks.values())
    expected = [SCHEDULES["cubic"](r / 3, 1.0, 0.5 ** 3) for r in range(4)]  # 1, 0.384, 0.1574, 0.125
    assert [h["density"] for h in imp.history] == pytest.approx([round(d * numel) / numel for d in expected])
    assert imp.history[1]["density"] < 0.45  # below geometric's 0.5: the cubic prunes most in the first round
    assert imp.state_dict()["config"]["schedule"] == "cubic"


def test_an_unknown_schedule_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match=r"unknown schedule 'cubical'; known schedules: \['cubic', 'geometric', "):
        IMPCallback(schedule="cubical")


OPTIMIZER_CASES = {
    "sgd_momentum_wd": ({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}, {}),
    "adam_l2": ({"optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-3}, {}),
    "adamw": ({"optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-2}, {}),
    "grad_clipping": ({"optimizer": "sgd", "lr": 0.5}, {"gradient_clip_val": 0.1}),
    "grad_accumulation": ({"optimizer": "adam", "lr": 1e-2}, {"accumulate_grad_batches": 3}),
    "bf16_mixed": ({"optimizer": "adam", "lr": 1e-2}, {"precision": "bf16-mixed"}),
}


@pytest.mark.parametrize("case", list(OPTIMIZER_CASES))
def test_pruned_weights_stay_zero(tmp_path, datamodule, case):
    model_kwargs, trainer_kwargs = OPTIMIZER_CASES[case]
    imp = IMPCallback(rounds=2, pruning_fraction=0.6, save_tickets=False)
    check = ZeroCheck(imp)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1)
    trainer = make_trainer(tmp_path, [RewindCallback(step=2), imp, check, ckpt], max_epochs=1,
                           enable_checkpointing=True, **trainer_kwargs)
    model = digits_model(**model_kwargs)
    trainer.fit(model, datamodule)
    assert len(imp.history) == 3 and check.checks > 20
    assert_pruned_zero(dict(model.named_parameters()), imp.masks)
    # Every saved checkpoint has its own masks' pruned weights at exactly zero.
    files = sorted(os.listdir(tmp_path / "ckpt"))
    assert len(files) >= 3
    pruned_seen = False
    for file in files:
        ckpt_data = torch.load(tmp_path / "ckpt" / file, weights_only=False)
        state = next(v for k, v in ckpt_data["callbacks"].items() if k.startswith("IMPCallback"))
        masks = Masks.unpack(state["masks"])
        pruned_seen |= masks.density() < 1
        assert_pruned_zero(ckpt_data["state_dict"], masks, file)
    assert pruned_seen


def test_logged_scalars_reach_csv_logger(tmp_path, datamodule):
    imp = IMPCallback(rounds=1, pruning_fraction=0.5, save_tickets=False)
    trainer = make_trainer(tmp_path, [imp], max_epochs=1)
    trainer.fit(digits_model(), datamodule)
    with open(os.path.join(trainer.log_dir, "metrics.csv")) as f:
        header = f.readline().strip().split(",")
    for key in ("imp/round", "imp/density", "imp/layer_density/model.out.weight", "imp/final/val_acc",
                "imp/best/val_loss", "imp/best_step"):
        assert key in header


def test_masking_callback_trains_a_ticket_sparsely(tmp_path, datamodule):
    imp = IMPCallback(rounds=1, pruning_fraction=0.8)
    make_trainer(tmp_path / "imp", [imp], max_epochs=1).fit(digits_model(), datamodule)
    path = imp.history[-1]["ticket"]

    pl.seed_everything(123)
    control = digits_model()
    own_init = control.model.hidden[0].weight.detach().clone()
    masking = MaskingCallback(ticket=path, ticket_weights=False)
    make_trainer(tmp_path / "control", [masking], max_epochs=1).fit(control, datamodule)
    mask = masking.masks["model.hidden.0.weight"]
    assert masking.masks == load_ticket(path).masks
    assert_pruned_zero(dict(control.named_parameters()), masking.masks)
    assert not torch.equal(control.model.hidden[0].weight, own_init * mask)  # it trained


def test_same_basin_distances_and_trained_tickets(tmp_path, datamodule):
    from lt_lightning.analysis import cosine_similarity, l2_distance
    from lt_lightning.reporting.summary import round_table

    imp = IMPCallback(rounds=2, pruning_fraction=0.5, same_basin=True, save_trained=True)
    trainer = make_trainer(tmp_path, [RewindCallback(step=3), imp], max_epochs=1)
    model = digits_model(optimizer="sgd", lr=0.1)
    trainer.fit(model, datamodule)
    trained = [load_ticket(h["trained_ticket"]) for h in imp.history]
    names = list(imp.masks)
    # The last trained ticket is the network the fit ended with.
    assert all(torch.equal(trained[-1].state_dict[n], model.state_dict()[n]) for n in names)
    dense = {n: trained[0].state_dict[n] for n in names}
    assert imp.history[0]["basin"] == {"l2_to_dense": 0.0, "cosine_to_dense": pytest.approx(1.0),
                                       "l2_to_previous": 0.0, "cosine_to_previous": pytest.approx(1.0)}
    for r in (1, 2):
        weights = {n: trained[r].state_dict[n] for n in names}
        previous = {n: trained[r - 1].state_dict[n] for n in names}
        basin = imp.history[r]["basin"]
        assert basin["l2_to_dense"] == pytest.approx(l2_distance(weights, dense), rel=1e-6) and basin["l2_to_dense"] > 0
        assert basin["cosine_to_dense"] == pytest.approx(cosine_similarity(weights, dense), rel=1e-6)
        assert basin["l2_to_previous"] == pytest.approx(l2_distance(weights, previous), rel=1e-6)
        assert 0 < basin["cosine_to_dense"] < 1
    columns, rows = round_table(imp.history)
    assert "basin/l2_to_dense" in columns and rows[2][columns.index("basin/l2_to_dense")] > 0


def test_basin_options_are_type_checked():
    with pytest.raises(ValueError, match="same_basin='yes' is not allowed; expected a bool"):
        IMPCallback(same_basin="yes")


def test_rounds_below_what_the_collapse_guard_keeps_are_refused_before_the_first_step(tmp_path, datamodule):
    # 3 layers of 2,720 weights: 0.1 ** 4 keeps 0 weights, 0.1 ** 3 keeps 3, one a layer.
    trainer = make_trainer(tmp_path, [IMPCallback(rounds=4, pruning_fraction=0.9)], max_steps=4)
    with pytest.raises(ValueError, match=r"rounds=4 with pruning_fraction=0.9 ends at density 0.0001, keeping 0 of"
                                         r" 2,720 weights in 3 layers: fewer than the one weight per layer the"
                                         r" layer-collapse guard keeps, .* Use at most 3 rounds"):
        trainer.fit(digits_model(), datamodule)
    assert trainer.global_step == 0
    imp = IMPCallback(rounds=3, pruning_fraction=0.9)
    make_trainer(tmp_path / "ok", [imp], max_steps=2).fit(digits_model(), datamodule)
    assert len(imp.history) == 4 and imp.masks.kept() == 3
