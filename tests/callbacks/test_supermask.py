"""SupermaskCallback on real Trainers: frozen weights, exact masks at every step, scores trained through the user's
own optimizer, resume, DDP, bf16, tickets (plain and binary), binary activations, and every refused input."""

import csv
import os
import subprocess
import sys
import warnings

import lightning.pytorch as pl
import pytest
import torch
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from test_resume import Crash, ResumableDigits, SaveAt
from torch import nn
from torch.nn import functional as F

from lt_lightning import PruneAtInitCallback, SupermaskCallback
from lt_lightning.cli import main as cli
from lt_lightning.masks import Masks
from lt_lightning.supermask import (
    BinaryActivation,
    apply_supermask_ticket,
    frozen_tensors,
    kept_count,
    read_ticket,
    supermask_layers,
)
from lt_lightning.zoo import Classifier

LAYERS = {"model.hidden.0.weight": 64 * 32, "model.hidden.1.weight": 32 * 16, "model.out.weight": 16 * 10}


class Probe(Callback):
    """After the callback under test: the weights each layer computes with, at every step, and the scores' gradients."""

    def __init__(self):
        self.kept, self.frozen, self.grads = [], None, []

    def on_train_start(self, trainer, pl_module):
        self.frozen = {n: t.detach().clone() for n, t in frozen_tensors(pl_module).items()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        weights = {n: pl_module.get_submodule(n.rsplit(".", 1)[0]).weight for n in LAYERS}
        self.kept.append({n: int((w != 0).sum()) for n, w in weights.items()})

    def on_after_backward(self, trainer, pl_module):
        self.grads.append({n: layer.scores.grad.clone() for n, layer in supermask_layers(pl_module).items()})


class Sequential(Classifier):
    """A classifier whose activations are modules (nn.ReLU), as binary activations need."""

    def __init__(self, **kwargs):
        super().__init__("mlp", {"in_features": 64, "hidden": [32], "num_classes": 10}, **kwargs)
        self.model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


class Functional(Sequential):
    def forward(self, x):
        return self.model[4](F.relu(self.model[2](self.model[1](self.model[0](x)))))


def test_scores_train_and_the_frozen_weights_stay_bit_identical(tmp_path, datamodule):
    callback, probe = SupermaskCallback(density=0.3, method="edge_popup", weight_init="module"), Probe()
    model = digits_model(lr=0.05)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = make_trainer(tmp_path, [callback, probe], max_epochs=2)
    trainer.fit(model, datamodule)
    assert trainer.global_step == 44 and len(probe.kept) == 44
    for name, numel in LAYERS.items():
        assert torch.equal(frozen_tensors(model)[name], initial[name])  # the module's own init, untouched
        assert all(step[name] == kept_count(0.3, numel) for step in probe.kept), name  # exact at every step
    # The straight-through gradient reaches every score, kept or pruned, through the module's own optimizer.
    layer = supermask_layers(model)["model.hidden.0.weight"]
    assert all(bool((g["model.hidden.0.weight"][layer.mask() == 0] != 0).any()) for g in probe.grads)
    assert not torch.equal(callback.masks["model.hidden.0.weight"],
                           Masks({"m": probe.frozen["model.hidden.0.weight"] != 0})["m"])
    # A subnetwork of random weights that learned something, its scores alone trained (0.27 after 44 steps; chance 0.1).
    assert trainer.callback_metrics["val_acc"] > 0.2
    with open(os.path.join(trainer.log_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r.get("supermask/density")]
    assert rows and float(rows[-1]["supermask/layer_density/model.out.weight"]) == kept_count(0.3, 160) / 160
    assert {"supermask/score_std/model.hidden.0.weight", "supermask/score_max/model.out.weight"} <= set(rows[-1])


def test_the_ticket_evaluates_in_a_fresh_module_without_training(tmp_path, datamodule):
    callback = SupermaskCallback(density=0.5, weight_init="signed_constant", seed=7)
    model = digits_model(lr=0.05)
    trainer = make_trainer(tmp_path, [callback], max_epochs=2)
    trainer.fit(model, datamodule)
    path = os.path.join(trainer.log_dir, "tickets", "supermask.pt")
    ticket, binary = read_ticket(path)
    assert binary is None and ticket.metadata["weight_init"] == "signed_constant" and ticket.metadata["seed"] == 7
    assert ticket.metadata["global_step"] == 44 and ticket.masks == callback.masks
    fresh = digits_model()
    apply_supermask_ticket(path, fresh)
    evaluate = make_trainer(tmp_path / "eval", logger=False)
    assert evaluate.validate(fresh, datamodule, verbose=False)[0]["val_acc"] == pytest.approx(
        evaluate.validate(model, datamodule, verbose=False)[0]["val_acc"])
    with pytest.raises(ValueError, match=r"does not fit Classifier: 'model.hidden.0.bias' has shape \(32,\) in the"):
        apply_supermask_ticket(path, digits_model(model_kwargs={"in_features": 64, "hidden": [8, 16],
                                                                "num_classes": 10}))


def test_biprop_binary_ticket_is_bit_packed_and_inspect_shows_its_size(tmp_path, datamodule, capsys):
    callback = SupermaskCallback(density=0.25, method="biprop", weight_init="kaiming_normal", progressive_epochs=2,
                                 allocation="global")
    densities = []

    class Density(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            densities.append(callback.masks.density())

    model = digits_model(lr=0.05)
    trainer = make_trainer(tmp_path, [callback, Density()], max_epochs=3)
    trainer.fit(model, datamodule)
    total = sum(LAYERS.values())
    assert [round(d * total) for d in densities] == [round(0.5 * total), round((0.25 + 0.25 / 8) * total),
                                                     round(0.25 * total)]
    folder = os.path.join(trainer.log_dir, "tickets")
    plain, _ = read_ticket(os.path.join(folder, "supermask.pt"))
    ticket, binary = read_ticket(os.path.join(folder, "supermask_binary.pt"))
    for name in LAYERS:  # the round trip restores every weight exactly
        assert torch.equal(ticket.state_dict[name], plain.state_dict[name].float())
        assert plain.metadata["alpha"][name] == pytest.approx(binary.alpha[name])
    kept = callback.masks.kept()
    others = sum(v.numel() for k, v in plain.state_dict.items() if k not in LAYERS)
    assert binary.packed_bytes() == sum(-(-n // 8) + 4 for n in LAYERS.values()) + -(-kept // 8) * 0 + sum(
        -(-int(m.sum()) // 8) for m in callback.masks.values()) + 4 * others
    assert binary.dense_bytes() == 4 * (total + others) and binary.packed_bytes() < binary.dense_bytes() / 8
    assert cli(["ticket", "inspect", os.path.join(folder, "supermask_binary.pt")]) == 0
    out = capsys.readouterr().out
    assert f"binary ticket: {binary.packed_bytes():,} bytes packed" in out
    assert f"vs {binary.dense_bytes():,} bytes as dense float32" in out


def test_binary_activations_swap_modules_and_the_ticket_keeps_them(tmp_path, datamodule):
    callback = SupermaskCallback(density=0.5, method="biprop", binary_activations=True, weight_init="signed_constant")
    model = Sequential(lr=0.05)
    trainer = make_trainer(tmp_path, [callback], max_epochs=1)
    trainer.fit(model, datamodule)
    kinds = [BinaryActivation if isinstance(m, BinaryActivation) else nn.Linear if isinstance(m, nn.Linear) else None
             for m in model.model]
    assert kinds == [nn.Linear, BinaryActivation, nn.Linear, BinaryActivation, nn.Linear]
    fresh = Sequential()
    apply_supermask_ticket(os.path.join(trainer.log_dir, "tickets", "supermask_binary.pt"), fresh)
    assert isinstance(fresh.model[1], BinaryActivation)
    x = torch.rand(5, 64)
    assert torch.allclose(fresh(x), model(x))


def test_functional_activations_are_refused_before_the_first_step(tmp_path, datamodule):
    trainer = make_trainer(tmp_path, [SupermaskCallback(binary_activations=True)], max_epochs=1)
    with pytest.raises(ValueError, match=r"swaps activation modules .* but Classifier has none: its activations are"):
        trainer.fit(digits_model(), datamodule)
    assert trainer.global_step == 0
    trainer = make_trainer(tmp_path, [SupermaskCallback(binary_activations=True)], max_epochs=1)
    with pytest.raises(ValueError, match=r"calls F.relu as a function at .*test_supermask.py:\d+ \(forward\)"):
        trainer.fit(Functional(), datamodule)
    assert trainer.global_step == 0


def test_bf16_mixed_keeps_exact_masks_and_frozen_weights(tmp_path, datamodule):
    callback, probe = SupermaskCallback(density=0.4, weight_init="signed_constant"), Probe()
    model = digits_model(lr=0.05)
    trainer = make_trainer(tmp_path, [callback, probe], max_steps=6, precision="bf16-mixed")
    trainer.fit(model, datamodule)
    assert all(step[n] == kept_count(0.4, numel) for step in probe.kept for n, numel in LAYERS.items())
    for name, value in frozen_tensors(model).items():
        assert torch.equal(value, probe.frozen[name]) and value.dtype == torch.float32


def _run(root, crash_at=None, ckpt_path=None, **kwargs):
    pl.seed_everything(0, verbose=False)
    callback = SupermaskCallback(density=0.3, method="biprop", weight_init="signed_constant", **kwargs)
    callbacks = [callback, ModelCheckpoint(dirpath=root / "ckpt", save_top_k=-1, filename="{epoch}")]
    if crash_at is not None:
        callbacks.append(Crash(crash_at))
    model = digits_model(optimizer="sgd", lr=0.1)
    trainer = make_trainer(root, callbacks, max_epochs=3, enable_checkpointing=True)
    trainer.fit(model, ResumableDigits(batch_size=64), ckpt_path=ckpt_path)
    return callback, model


def test_resume_from_a_checkpoint_matches_the_uninterrupted_fit(tmp_path):
    full_callback, full_model = _run(tmp_path / "full")
    with pytest.raises(RuntimeError, match="injected crash"):
        _run(tmp_path, crash_at=50)
    callback, model = _run(tmp_path, ckpt_path=tmp_path / "ckpt" / "epoch=1.ckpt")
    assert callback.masks == full_callback.masks
    for name, value in full_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    with pytest.raises(ValueError, match=r"other arguments: density=0.5 \(checkpoint: 0.3\)"):
        pl.seed_everything(0, verbose=False)
        trainer = make_trainer(tmp_path / "other", [SupermaskCallback(density=0.5, method="biprop",
                                                                      weight_init="signed_constant")], max_epochs=3)
        trainer.fit(digits_model(optimizer="sgd", lr=0.1), ResumableDigits(batch_size=64),
                    ckpt_path=tmp_path / "ckpt" / "epoch=1.ckpt")


@pytest.mark.ddp
def _progressive(root, save_at=(), ckpt_path=None, max_epochs=3):
    pl.seed_everything(0, verbose=False)
    callback = SupermaskCallback(density=0.3, method="biprop", weight_init="signed_constant", progressive_epochs=2)
    densities = []

    class Density(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            densities.append((trainer.global_step, round(callback.masks.density(), 3)))

    trainer = make_trainer(root, [callback, Density(), SaveAt(root, save_at)], max_epochs=max_epochs)
    model = digits_model(optimizer="sgd", lr=0.1)
    trainer.fit(model, ResumableDigits(batch_size=64), ckpt_path=ckpt_path)
    return model, dict(densities), callback.ticket(trainer)


@pytest.mark.parametrize("step", [30, 50])  # inside the schedule's second epoch; after its end (22 steps an epoch)
def test_progressive_schedule_resumes_mid_epoch_where_it_was(tmp_path, step):
    full, full_densities, full_ticket = _progressive(tmp_path / "full", save_at=(step,))
    model, densities, ticket = _progressive(tmp_path / "resumed", ckpt_path=tmp_path / "full" / "ckpt" /
                                            f"step={step}.ckpt")
    assert min(densities) == step and all(densities[s] == full_densities[s] for s in densities)
    assert densities[step] == (0.325 if step == 30 else 0.3)  # was 0.5, the schedule's first density
    for name, value in full.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert ticket.masks == full_ticket.masks
    assert all(d == pytest.approx(0.3, abs=2e-3) for d in ticket.metadata["layer_density"].values())


def test_a_schedule_longer_than_the_training_is_refused(tmp_path, datamodule):
    trainer = make_trainer(tmp_path, [SupermaskCallback(density=0.3, progressive_epochs=3)], max_epochs=3)
    with pytest.raises(ValueError, match=r"progressive_epochs=3 is not allowed with a training of 3 epochs \(max_epo"
                                         r"chs=3, max_steps=-1\): the density reaches 0.3 at epoch 3, so the fit"
                                         r" would end at 0.3074. Use progressive_epochs < 3"):
        trainer.fit(digits_model(), datamodule)
    assert trainer.global_step == 0


def test_ddp_ranks_end_identical(tmp_path):
    script = os.path.join(os.path.dirname(__file__), "ddp_supermask.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, script, str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert not torch.equal(ranks[0]["own_init"], ranks[1]["own_init"])  # each rank built its module differently
    assert Masks.unpack(ranks[0]["masks"]) == Masks.unpack(ranks[1]["masks"])
    for name, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][name]), name
    assert torch.equal(ranks[0]["frozen"], ranks[0]["own_init"])  # rank zero's weights, broadcast
    assert ranks[0]["scores_moved"] and sorted(os.listdir(tmp_path / "tickets")) == ["supermask.pt",
                                                                                       "supermask_binary.pt"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"density": 0}, r"density=0 is not allowed; a density is a fraction of weights kept, in \(0, 1\]"),
    ({"density": 2.0}, r"density=2.0 is not allowed"),
    ({"method": "edgepopup"}, r"unknown supermask method 'edgepopup'; known supermask methods: \['biprop',"),
    ({"basis": "wavelet"}, r"unknown basis name 'wavelet'; known basis names: \['dct', 'identity'\]"),
    ({"binary_activations": "yes"}, r"binary_activations='yes' is not allowed; expected a bool"),
    ({"progressive_epochs": -1}, r"progressive_epochs=-1 is not allowed; expected an int >= 0"),
])
def test_bad_arguments_fail_when_the_callback_is_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SupermaskCallback(**kwargs)


def test_refused_before_the_first_step(tmp_path, datamodule):
    cases = [
        ([SupermaskCallback(), PruneAtInitCallback(method="magnitude")], digits_model(),
         r"SupermaskCallback sets the masks of this fit; the Trainer also has \['PruneAtInitCallback'\]"),
        ([SupermaskCallback(types=["Linear", "ReLU"])], Sequential(),
         r"types=\['Linear', 'ReLU'\] names ReLU, but 'model.1' has no weight to mask"),
        ([SupermaskCallback(include=r"bias")], digits_model(), r"'model.hidden.0.bias' has shape \(32,\)"),
    ]
    for callbacks, model, message in cases:
        trainer = make_trainer(tmp_path, callbacks, max_epochs=1)
        with pytest.raises(ValueError, match=message):
            trainer.fit(model, datamodule)
        assert trainer.global_step == 0


class BuiltLate(Classifier):
    """Builds its layers in configure_model, as large models do."""

    def __init__(self):
        super().__init__("mlp", {"in_features": 64, "hidden": [8], "num_classes": 10}, lr=0.05)
        self.model = None

    def configure_model(self):
        if self.model is None:
            self.model = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))


def test_layers_built_in_configure_model_get_supermasks(tmp_path, datamodule):
    callback = SupermaskCallback(density=0.5, binary_activations=True)
    model = BuiltLate()
    trainer = make_trainer(tmp_path, [callback], max_steps=3)
    trainer.fit(model, datamodule)
    assert list(callback.masks) == ["model.0.weight", "model.2.weight"] and isinstance(model.model[1], BinaryActivation)


class BiasesOnly(Classifier):
    def configure_optimizers(self):
        return torch.optim.SGD([p for n, p in self.named_parameters() if n.endswith("bias")], lr=0.1)


def test_an_optimizer_without_the_scores_is_refused(tmp_path, datamodule):
    trainer = make_trainer(tmp_path, [SupermaskCallback()], max_epochs=1)
    model = BiasesOnly("mlp", {"in_features": 64, "hidden": [8], "num_classes": 10})
    with pytest.raises(ValueError, match=r"do not train the scores of \['model.hidden.0.weight', 'model.out.weight'\]"):
        trainer.fit(model, datamodule)
    assert trainer.global_step == 0


def test_imp_prunes_and_rewinds_coefficients_in_the_dct_basis(tmp_path, datamodule):
    from lt_lightning import BasisCallback, IMPCallback, RewindCallback, load_ticket
    from lt_lightning.callbacks.basis import COEFFICIENTS
    from lt_lightning.supermask import BASES, export_weights

    model = digits_model(optimizer="sgd", lr=0.1)
    initial = {n: BASES["dct"](p.detach(), False) for n, p in model.named_parameters() if n in LAYERS}
    imp = IMPCallback(rounds=1, pruning_fraction=0.5, include=COEFFICIENTS)
    trainer = make_trainer(tmp_path, [BasisCallback("dct"), RewindCallback(step=0), imp], max_steps=10)
    trainer.fit(model, datamodule)
    names = [n.replace(".weight", ".parametrizations.weight.original") for n in LAYERS]
    assert list(imp.masks) == names and imp.masks.density() == pytest.approx(0.5, abs=1e-3)
    ticket = load_ticket(os.path.join(trainer.log_dir, "tickets", "round_01.pt"))
    for name, plain in zip(names, LAYERS):  # the ticket: the initial coefficients, pruned
        mask = imp.masks[name]
        assert torch.allclose(ticket.state_dict[name], initial[plain] * mask, atol=1e-6)
        weight = model.get_submodule(name.split(".parametrizations")[0]).weight.detach()
        assert bool((BASES["dct"](weight, False)[~mask].abs() < 1e-5).all())  # pruned coefficients stay zero
    export_weights(model)
    assert {n for n, _ in model.named_parameters() if n.endswith("weight")} == set(LAYERS)


def test_binary_activations_with_edge_popup_is_named_as_no_papers_recipe():
    with pytest.warns(UserWarning, match="MPT-1/1 is method='biprop' with binary_activations=True"):
        SupermaskCallback(density=0.5, method="edge_popup", binary_activations=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SupermaskCallback(density=0.5, method="biprop", binary_activations=True)
