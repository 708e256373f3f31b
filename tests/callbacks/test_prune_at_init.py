"""PruneAtInitCallback on a real Trainer: pruned once before the first step, masks fixed, resumable, DDP-safe."""

import csv
import os
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch
from conformance.checks import assert_pruned_zero
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.nn import functional as F

from lt_lightning import IMPCallback, PruneAtInitCallback
from lt_lightning.masks import Masks
from lt_lightning.pruning import ScoreContext, erk_densities, prune
from lt_lightning.zoo import Classifier, DigitsDataModule

NAMES = ["model.hidden.0.weight", "model.hidden.1.weight", "model.out.weight"]
PRUNABLE = 64 * 32 + 32 * 16 + 16 * 10


class Probe(Callback):
    """After the callback under test: what the first training step sees, and pruned weights zero at every step."""

    def __init__(self, callback):
        self.callback, self.first = callback, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        params = dict(pl_module.named_parameters())
        assert self.callback.masks is not None, "no masks before a training step"
        assert_pruned_zero(params, self.callback.masks, f"at step {trainer.global_step}")
        if self.first is None:
            self.first = {"masks": Masks(dict(self.callback.masks)), "x": batch[0].clone(), "step": trainer.global_step,
                          "weights": {n: p.detach().clone() for n, p in params.items()}}


def test_snip_prunes_once_before_the_first_step(tmp_path, datamodule):
    callback = PruneAtInitCallback(method="snip", density=0.1, batches=2)
    probe = Probe(callback)
    model = digits_model()
    trainer = make_trainer(tmp_path, [callback, probe], max_steps=8, log_every_n_steps=1)
    trainer.fit(model, datamodule)

    assert probe.first["step"] == 0 and probe.first["masks"].density() == round(0.1 * PRUNABLE) / PRUNABLE
    assert callback.masks == probe.first["masks"]  # fixed through training
    params = dict(model.named_parameters())
    assert_pruned_zero(params, callback.masks)
    assert not any(torch.equal(params[n], probe.first["weights"][n]) for n in callback.masks)  # trained

    # Drawing the scoring batches did not change the training data order.
    fresh = DigitsDataModule(batch_size=64, seed=0)
    fresh.setup("fit")
    assert torch.equal(probe.first["x"], next(iter(fresh.train_dataloader()))[0])

    # training_step's self.log calls during scoring neither failed nor reached the logs: one train_loss per step.
    with open(os.path.join(trainer.log_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sum(1 for r in rows if r.get("train_loss")) == 8
    assert [float(r["prune_at_init/density"]) for r in rows if r.get("prune_at_init/density")] == [
        pytest.approx(callback.masks.density())]


class InOrder(DigitsDataModule):
    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=False)


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_masks_are_those_of_the_score_on_the_first_batches(tmp_path, method):
    callback = PruneAtInitCallback(method=method, density=0.1, batches=2)
    model = digits_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    make_trainer(tmp_path, [callback], max_steps=1).fit(model, InOrder(batch_size=64))
    data = InOrder(batch_size=64)
    data.setup("fit")
    loader = iter(data.train_dataloader())
    reference = digits_model()
    reference.load_state_dict(initial)
    context = ScoreContext(reference, Masks.dense(reference, NAMES), batches=[next(loader), next(loader)],
                           loss_fn=lambda module, batch: F.cross_entropy(module(batch[0]), batch[1]))
    assert callback.masks == prune(context, 0.1, score=method)


@pytest.mark.parametrize(("method", "allocation"), [("grasp", "global"), ("synflow", "erk"), ("random", "layerwise")])
def test_methods_and_allocations_through_the_callback(tmp_path, datamodule, method, allocation):
    callback = PruneAtInitCallback(method=method, density=0.2, allocation=allocation, iterations=10,
                                   keep_dense=r"out\.weight")
    probe = Probe(callback)
    trainer = make_trainer(tmp_path, [callback, probe], max_steps=3)
    trainer.fit(digits_model(), datamodule)
    densities = probe.first["masks"].layer_densities()
    assert densities["model.out.weight"] == 1.0
    body = NAMES[:2]
    kept = sum(int(probe.first["masks"][n].sum()) for n in body)
    assert kept == round(0.2 * (64 * 32 + 32 * 16))
    if allocation == "erk":
        expected = erk_densities({"a": (32, 64), "b": (16, 32)}, 0.2)
        assert [densities[n] for n in body] == pytest.approx(list(expected.values()), abs=1 / 512)
    if allocation == "layerwise":
        assert [int(probe.first["masks"][n].sum()) for n in body] == [round(0.2 * 2048), round(0.2 * 512)]


def _resume_run(root, seed, ckpt_path=None):
    callback = PruneAtInitCallback(method="random", density=0.2, seed=seed)
    model = digits_model()
    ckpt = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=5, save_top_k=-1)
    trainer = make_trainer(root, [callback, Probe(callback), ckpt], max_steps=10, enable_checkpointing=True)
    trainer.fit(model, DigitsDataModule(batch_size=64, seed=0), ckpt_path=ckpt_path)
    return callback, model


def test_resume_keeps_the_masks_and_does_not_prune_again(tmp_path):
    pl.seed_everything(0, verbose=False)
    first, _ = _resume_run(tmp_path, seed=0)
    saved = torch.load(tmp_path / "ckpt" / "epoch=0-step=5.ckpt", weights_only=False)
    state = next(v for k, v in saved["callbacks"].items() if k.startswith("PruneAtInitCallback"))
    assert Masks.unpack(state["masks"]) == first.masks

    # Another seed would draw other random masks: equal masks after resuming mean no second pruning.
    pl.seed_everything(1, verbose=False)
    resumed, model = _resume_run(tmp_path / "resumed", seed=1, ckpt_path=tmp_path / "ckpt" / "epoch=0-step=5.ckpt")
    assert resumed.masks == first.masks
    assert_pruned_zero(dict(model.named_parameters()), resumed.masks)
    fresh, _ = _resume_run(tmp_path / "fresh", seed=1)
    assert fresh.masks != first.masks


@pytest.mark.ddp
def test_ddp_snip_masks_computed_once_and_identical_on_all_ranks(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "ddp_prune_at_init.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, script, str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    masks = [Masks.unpack(r["masks"]) for r in ranks]
    local = [Masks.unpack(r["local"]) for r in ranks]
    assert local[0] != local[1]  # each rank's own data would give other masks...
    assert masks[0] == masks[1] == local[0]  # ...but every rank has rank zero's
    assert masks[0].density() == pytest.approx(0.1, abs=1e-3)
    for name, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][name]), name


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"method": "snipp"}, r"unknown score 'snipp'; known scores: \[.*'grasp'.*'snip', 'synflow'\]"),
    ({"density": 0.0}, r"density=0.0 is not allowed; a density is a fraction of weights kept, in \(0, 1\]"),
    ({"density": 1.5}, r"density=1.5 is not allowed"),
    ({"allocation": "ERK"}, r"unknown allocation 'ERK'; known allocations: \['erk', 'global', 'layerwise'"),
    ({"batches": 0}, r"batches=0 is not allowed; expected an int >= 1"),
    ({"iterations": 2.5}, r"iterations=2.5 is not allowed"),
    ({"layer_density": {"out[": 0.5}}, r"layer_density key='out\[' is not a valid regex"),
    ({"layer_density": {"out": 0.0}}, r"layer_density\['out'\]=0.0 is not allowed"),
    ({"keep_dense": "(("}, r"keep_dense='\(\(' is not a valid regex"),
])
def test_arguments_checked_at_construction(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        PruneAtInitCallback(**kwargs)


class NoLoss(Classifier):
    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)


class Manual(Classifier):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False


def _model(cls=Classifier):
    return cls(model="mlp", model_kwargs={"in_features": 64, "hidden": [32, 16], "num_classes": 10})


class NoTraining(Callback):
    def on_train_batch_start(self, *args):
        raise AssertionError("training started before the error")


@pytest.mark.parametrize(("callbacks", "model", "needle"), [
    ([PruneAtInitCallback(layer_density={"hidden\\.9": 0.5})], Classifier,
     r"layer_density key='hidden\\\\.9' matches no prunable parameter; they are: \['model.hidden.0.weight'"),
    ([PruneAtInitCallback(keep_dense="^out")], Classifier, r"keep_dense='\^out' matches no prunable parameter"),
    ([PruneAtInitCallback(), IMPCallback()], Classifier, r"the Trainer also has \['IMPCallback'\]"),
    ([PruneAtInitCallback(method="snip")], Manual, r"method='snip' scores with the loss of training_step, which"
                                                   r" under manual optimization"),
    ([PruneAtInitCallback(method="grasp")], NoLoss, r"method='grasp' needs a loss, but NoLoss.training_step returned"
                                                    r" None"),
    ([PruneAtInitCallback(method="random", density=0.015, allocation="smart_ratios")], Classifier,
     r"smart ratios keep 30% of the last layer 'model.out.weight' \(48 weights\), which is all of the 41 weights"),
    ([PruneAtInitCallback(batches=50)], Classifier, r"batches=50 is more than the train loader's 22 batches"),
])
def test_bad_input_fails_before_training_and_leaves_the_module_alone(tmp_path, datamodule, callbacks, model, needle):
    module = _model(model)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = make_trainer(tmp_path, [*callbacks, NoTraining()], max_steps=2)
    with pytest.raises(ValueError, match=needle):
        trainer.fit(module, datamodule)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_imp_takes_the_same_names_keep_dense_and_the_guard(tmp_path, datamodule):
    imp = IMPCallback(rounds=1, pruning_fraction=0.5, allocation="erk", keep_dense=r"out\.weight", save_tickets=False)
    make_trainer(tmp_path, [imp], max_steps=4).fit(digits_model(), datamodule)
    densities = imp.masks.layer_densities()
    assert densities["model.out.weight"] == 1.0
    expected = erk_densities({"a": (32, 64), "b": (16, 32)}, 0.5)
    assert [densities[n] for n in NAMES[:2]] == pytest.approx(list(expected.values()), abs=1 / 512)
    with pytest.raises(ValueError, match=r"score='snip' scores the network on data or inputs, which IMPCallback does"
                                         r" not give its scores: prune at initialization with PruneAtInitCallback"):
        IMPCallback(score="snip")
    with pytest.raises(ValueError, match=r"keep_dense='\[' is not a valid regex"):
        IMPCallback(keep_dense="[")


def test_synflow_input_from_a_batch_that_is_itself_the_input():
    from lt_lightning.callbacks.prune_at_init import _example_input

    model = digits_model()
    ids = torch.randint(0, 10, (4, 6))
    assert _example_input(model, ids) is not None and torch.equal(_example_input(model, ids), ids)
    assert torch.equal(_example_input(model, {"input_ids": ids})["input_ids"], ids)
    x = torch.randn(3, 64)
    assert torch.equal(_example_input(model, (x, torch.zeros(3))), x)


def test_a_checkpoint_of_lt_lightning_0_1_keeps_its_masks(tmp_path, datamodule):
    # 0.1 keyed the callback's state by its arguments: such a checkpoint still gives its masks back.
    first = PruneAtInitCallback(method="random", density=0.3, seed=1)
    trainer = make_trainer(tmp_path / "a", [first], max_epochs=1)
    trainer.fit(digits_model(), datamodule)
    path = tmp_path / "old.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["callbacks"] = {"PruneAtInitCallback{'method': 'random', 'density': 0.3}":
                               checkpoint["callbacks"].pop("PruneAtInitCallback")}
    torch.save(checkpoint, path)
    resumed = PruneAtInitCallback(method="random", density=0.3, seed=2)  # would draw other masks
    make_trainer(tmp_path / "b", [resumed], max_epochs=2).fit(digits_model(), datamodule, ckpt_path=str(path))
    assert resumed.masks == first.masks
