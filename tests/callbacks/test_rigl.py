"""RigL and SET on real Trainers: exact layer densities after every update, masks changing only on update steps,
grown weights and their optimizer state at zero, logging, the final ticket, DDP and bitwise resume."""

import csv
import logging
import os
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

from lt_lightning import PruneAtInitCallback, RigLCallback, SETCallback, load_ticket
from lt_lightning.dynamic import cosine_drop_fraction
from lt_lightning.masks import Masks
from lt_lightning.pruning import erk_densities
from lt_lightning.pruning.allocation import _counts
from lt_lightning.step import Step

NAMES = ["model.hidden.0.weight", "model.hidden.1.weight", "model.out.weight"]
SHAPES = {"model.hidden.0.weight": (32, 64), "model.hidden.1.weight": (16, 32), "model.out.weight": (10, 16)}
# Digits: 1348 training samples, batch 64: 22 optimizer steps per epoch; 2 epochs = 44 steps, stop=0.9 -> step 39.
UPDATES = [10, 20, 30]
STOP_STEP = 39


class Probe(Callback):
    """After the callback under test: the masks, the weights and the optimizer state at the end of every step."""

    def __init__(self, callback):
        self.callback = callback
        self.steps = []  # (step, masks, weights, optimizer state)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        params = dict(pl_module.named_parameters())
        state = trainer.optimizers[0].state
        self.steps.append((
            trainer.global_step,
            Masks(dict(self.callback.masks)),
            {n: params[n].detach().clone() for n in NAMES},
            {n: {k: v.clone() for k, v in state[params[n]].items() if v.shape == params[n].shape} for n in NAMES},
        ))


def _fit(tmp_path, callback, datamodule, optimizer="sgd", **trainer_kwargs):
    probe = Probe(callback)
    model = digits_model(optimizer=optimizer, lr=0.1 if optimizer == "sgd" else 0.01)
    trainer = make_trainer(tmp_path, [callback, probe], log_every_n_steps=1, **trainer_kwargs)
    trainer.fit(model, datamodule)
    return probe, model, trainer


@pytest.mark.parametrize("cls", [RigLCallback, SETCallback])
def test_layer_densities_exact_and_masks_change_only_on_update_steps(tmp_path, datamodule, cls):
    callback = cls(density=0.1, update_every=10, stop=0.9)
    probe, _, trainer = _fit(tmp_path, callback, datamodule)
    # ERK's layer counts, fixed through training.
    counts = _counts(erk_densities(SHAPES, 0.1), Masks({n: torch.ones(s, dtype=torch.bool) for n, s in SHAPES.items()}),
                     0.1)
    changed = []
    previous = None
    for step, masks, _, _ in probe.steps:
        assert {n: int(m.sum()) for n, m in masks.items()} == counts, step
        if previous is not None and masks != previous:
            changed.append(step)
        previous = masks
    assert trainer.global_step == 44 and changed == UPDATES
    assert [u["step"] for u in callback.updates] == UPDATES
    for update in callback.updates:
        fraction = cosine_drop_fraction(update["step"], 0.3, STOP_STEP)
        assert update["drop_fraction"] == pytest.approx(fraction)
        for name, kept in counts.items():
            assert update["dropped"][name] == update["grown"][name] <= int(fraction * kept), name
        assert sum(update["grown"].values()) > 0 and update["density"] == pytest.approx(sum(counts.values()) / 2720)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_grown_weights_and_their_optimizer_state_start_at_zero(tmp_path, datamodule, optimizer):
    probe, _, _ = _fit(tmp_path, RigLCallback(density=0.1, update_every=10, stop=0.9), datamodule, optimizer=optimizer)
    by_step = {step: (masks, weights, state) for step, masks, weights, state in probe.steps}
    keys = {"sgd": {"momentum_buffer"}, "adam": {"exp_avg", "exp_avg_sq"}}[optimizer]
    for step in UPDATES:
        old, _, _ = by_step[step - 1]
        new, weights, state = by_step[step]
        _, next_weights, _ = by_step[step + 1]
        for name in NAMES:
            grown, still_pruned = new[name] & ~old[name], ~new[name] & ~old[name]
            assert set(state[name]) == keys
            if not grown.any():
                continue
            assert bool((weights[name][grown] == 0).all()), (step, name)
            for key, value in state[name].items():
                assert bool((value[grown] == 0).all()), (step, name, key)
                # The state of pruned weights is not zero (their gradients reach the optimizer): the zero at grown
                # positions is the reset's.
                assert bool((value[still_pruned] != 0).any()), (step, name, key)
            assert bool((next_weights[name][grown] != 0).any()), (step, name)  # then they train


class Gradients(Callback):
    """Before the callback under test: the dense gradients of the optimizer step that ends at step 10."""

    def __init__(self):
        self.grads = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step + 1 == 10:
            self.grads = {n: p.grad.detach().abs().clone() for n, p in pl_module.named_parameters() if n in NAMES}


# With gradient clipping the pruned gradients are zeroed before clipping: RigL must still grow by the dense ones.
@pytest.mark.parametrize("clip", [None, 0.5], ids=["no_clipping", "clipping"])
def test_rigl_grows_where_the_dense_gradient_is_largest(tmp_path, datamodule, clip):
    gradients = Gradients()
    callback = RigLCallback(density=0.1, update_every=10, stop=0.9)
    probe = Probe(callback)
    trainer = make_trainer(tmp_path, [gradients, callback, probe], max_steps=20, gradient_clip_val=clip)
    trainer.fit(digits_model(optimizer="sgd", lr=0.1), datamodule)
    old, new = probe.steps[8][1], probe.steps[9][1]
    for name in NAMES:
        grown, passed_over = new[name] & ~old[name], ~old[name] & ~new[name]
        assert grown.any()
        assert float(gradients.grads[name][grown].min()) >= float(gradients.grads[name][passed_over].max()), name


def test_set_grows_at_random_reproducibly_by_seed(tmp_path, datamodule):
    runs = []
    for seed in (0, 0, 1):
        pl.seed_everything(0, verbose=False)
        callback = SETCallback(density=0.1, update_every=10, stop=0.9, seed=seed)
        _fit(tmp_path / str(len(runs)), callback, datamodule)
        runs.append(callback.masks)
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_no_update_is_static_sparse_training_with_prune_at_init_random_erk(tmp_path, datamodule):
    rigl = RigLCallback(density=0.1, update_every=100)
    with pytest.warns(UserWarning, match="no update will happen, the masks stay the initial random ones"):
        _fit(tmp_path / "rigl", rigl, datamodule)
    static = PruneAtInitCallback(method="random", allocation="erk", density=0.1)
    make_trainer(tmp_path / "static", [static], max_steps=1).fit(digits_model(), datamodule)
    assert rigl.masks == static.masks and rigl.updates == []


def test_updates_reach_the_logger_and_the_final_ticket_is_written(tmp_path, datamodule):
    callback = RigLCallback(density=0.1, update_every=10, stop=0.9)
    _, model, trainer = _fit(tmp_path, callback, datamodule)
    with open(os.path.join(trainer.log_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r.get("rigl/mask_overlap")]
    assert [int(r["step"]) for r in rows] == UPDATES
    for row, update in zip(rows, callback.updates):
        assert float(row["rigl/drop_fraction"]) == pytest.approx(update["drop_fraction"])
        assert float(row["rigl/mask_overlap"]) == pytest.approx(update["mask_overlap"]) and 0 < update["mask_overlap"] < 1
        for name in NAMES:
            assert float(row[f"rigl/dropped/{name}"]) == update["dropped"][name]
            assert float(row[f"rigl/grown/{name}"]) == update["grown"][name]
            assert float(row[f"rigl/layer_density/{name}"]) == pytest.approx(callback.masks.layer_densities()[name])
    ticket = load_ticket(callback.ticket)
    assert callback.ticket == os.path.join(trainer.log_dir, "tickets", "rigl_final.pt")
    assert ticket.masks == callback.masks and ticket.metadata["updates"] == 3 and ticket.metadata["trained"]
    for name, value in model.state_dict().items():
        assert torch.equal(ticket.state_dict[name], value), name


SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_rigl.py")


@pytest.mark.ddp
def test_ddp_masks_identical_on_all_ranks(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["updates"] == ranks[1]["updates"] and [u["step"] for u in ranks[0]["updates"]] == [5, 10, 15]
    assert Masks.unpack(ranks[0]["masks"]) == Masks.unpack(ranks[1]["masks"])
    for name, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][name]), name


def _resumable_run(root, make_callback, crash_at=None, ckpt_path=None, save_at=(15, 20)):
    from test_resume import Crash, ResumableDigits, SaveAt

    pl.seed_everything(0, verbose=False)
    callback = make_callback()
    callbacks = [callback, SaveAt(root, save_at)] + ([Crash(crash_at)] if crash_at is not None else [])
    model = digits_model(optimizer="sgd", lr=0.1, scheduler="multistep", milestones=[25])
    trainer = make_trainer(root, callbacks, max_epochs=2)
    trainer.fit(model, ResumableDigits(batch_size=64), ckpt_path=ckpt_path)
    return callback, model, trainer


@pytest.fixture(scope="module")
def uninterrupted_rigl(tmp_path_factory):
    return _resumable_run(tmp_path_factory.mktemp("full"), lambda: RigLCallback(density=0.1, update_every=10, stop=0.9))


# Updates at steps 10, 20, 30: resumed before the update at 20 (from 15) and right after it (from 20, whose
# checkpoint holds the new masks and the reset optimizer state), crashed after it.
@pytest.mark.parametrize("resume_at", [15, 20])
def test_resume_is_bitwise_across_an_update(tmp_path, uninterrupted_rigl, resume_at):
    full, full_model, _ = uninterrupted_rigl
    make = lambda: RigLCallback(density=0.1, update_every=10, stop=0.9)  # noqa: E731
    with pytest.raises(RuntimeError, match="injected crash"):
        _resumable_run(tmp_path, make, crash_at=25)
    callback, model, trainer = _resumable_run(tmp_path, make, ckpt_path=tmp_path / "ckpt" / f"step={resume_at}.ckpt")
    assert trainer.global_step == 44 and [u["step"] for u in callback.updates] == UPDATES
    assert callback.masks == full.masks and callback.updates == full.updates
    for name, value in full_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_resume_with_other_arguments_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="injected crash"):
        _resumable_run(tmp_path, lambda: RigLCallback(density=0.1, update_every=10), crash_at=16)
    with pytest.raises(ValueError, match=r"RigLCallback cannot resume this checkpoint with other arguments: update_every:"
                                         r" 10 in the checkpoint, 5 now"):
        _resumable_run(tmp_path, lambda: RigLCallback(density=0.1, update_every=5),
                       ckpt_path=tmp_path / "ckpt" / "step=15.ckpt")


@pytest.mark.parametrize(("class_path", "init_args"), [
    ("lt_lightning.RigLCallback", {"density": 0.2, "distribution": "uniform", "update_every": 50, "keep_dense": "out"}),
    ("lt_lightning.SETCallback", {"density": 0.05, "allow_dense_layers": False}),
    ("lt_lightning.GMPCallback", {"final": 0.2, "start": "1ep", "end": "500it", "every": 50}),
    ("lt_lightning.EarlyBirdCallback", {"density": 0.1, "every": "2ep", "stop": False}),
])
def test_callbacks_are_written_in_yaml(class_path, init_args):
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.callbacks import Callback as LightningCallback

    parser = ArgumentParser()
    parser.add_argument("--callback", type=LightningCallback)
    config = parser.parse_string(yaml.safe_dump({"callback": {"class_path": class_path, "init_args": init_args}}))
    callback = parser.instantiate(config).callback
    assert type(callback).__name__ == class_path.split(".")[-1]
    for name, value in init_args.items():
        held = getattr(callback, name) if hasattr(callback, name) else getattr(callback.spec, name)
        assert held == (Step.parse(value) if isinstance(held, Step) else value), name


def _tiny_bert():
    """A BERT classifier whose head is 2 x 64, which ERK at density 0.1 would give a density of 1.81."""
    from tiny_bert import TinyBert

    return TinyBert(hidden_size=64, lr=1e-3)


def _token_batches():
    generator = torch.Generator().manual_seed(0)
    ids, labels = torch.randint(0, 40, (32, 12), generator=generator), torch.randint(0, 2, (32,), generator=generator)
    return DataLoader(TensorDataset(ids, labels), batch_size=8)


@pytest.mark.parametrize("cls", [RigLCallback, SETCallback])
def test_erk_keeps_a_small_classifier_head_dense_and_says_so(tmp_path, cls, caplog):
    pytest.importorskip("transformers")
    callback = cls(density=0.1, update_every=1)
    with caplog.at_level(logging.INFO):
        make_trainer(tmp_path, [callback], max_steps=4, logger=False).fit(_tiny_bert(), _token_batches())
    densities = callback.masks.layer_densities()
    assert len(densities) == 14 and [n for n, d in densities.items() if d == 1.0] == ["bert.classifier.weight"]
    assert callback.masks.density() == pytest.approx(0.1, abs=1e-4)  # the asked density, over all 69,760 weights
    assert len(callback.updates) == 2  # steps 1 and 2, before stop=0.75 of 4
    lines = [r.getMessage() for r in caplog.records if "would give a density above 1" in r.getMessage()]
    assert lines == [f"lt-lightning: {cls.__name__} keeps 1 layer(s) dense that ERK at density=0.1 would give a"
                     " density above 1, as RigL's reference code does: bert.classifier.weight (2x64); the other layers"
                     " are scaled up, overall density 0.1000 (allow_dense_layers=False refuses such a density"
                     " instead)."]


def test_erk_refuses_a_dense_head_when_asked(tmp_path):
    pytest.importorskip("transformers")
    model = _tiny_bert()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=r"density=0.1 is too high for distribution='erk': ERK would give layer"
                                         r" 'bert.classifier.weight' \(2x64\) a density of 1.81, above 1"):
        make_trainer(tmp_path, [RigLCallback(density=0.1, allow_dense_layers=False)], max_steps=4,
                     logger=False).fit(model, _token_batches())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_no_info_line_when_erk_fits_every_layer(tmp_path, datamodule, caplog):
    with caplog.at_level(logging.INFO):
        _fit(tmp_path, RigLCallback(density=0.1, update_every=10), datamodule)
    assert not [r for r in caplog.records if "would give a density above 1" in r.getMessage()]
