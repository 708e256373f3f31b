"""Instability analysis and rewind-point search in Lightning: real Trainers and fits on sklearn digits, on CPU."""

from __future__ import annotations

import copy
import csv
import glob
import json
import os
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import digits_model, make_trainer
from lightning.pytorch.callbacks import Callback

from lt_lightning import RewindCallback
from lt_lightning.analysis import error_barrier
from lt_lightning.callbacks import DataOrderCallback, SnapshotCallback, TrainFromCallback
from lt_lightning.cli import main
from lt_lightning.experiments.lmc import (
    check_validation,
    error_metrics,
    instability,
    read_start,
    rewind_search,
    validation_evaluator,
)
from lt_lightning.masks import Masks
from lt_lightning.records import read_history
from lt_lightning.state import Snapshot, load_snapshot, save_snapshot, snapshot_file
from lt_lightning.ticket import Ticket
from lt_lightning.zoo import DigitsDataModule

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)  # lmc_modules, named by class path in configs
MLP = {"in_features": 64, "hidden": [32, 16], "num_classes": 10}
# 1348 training digits / batch 64 = 22 steps an epoch; one training is 20 steps.
CONFIG = {
    "seed_everything": 0,
    "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 20, "limit_val_batches": 2,
                "enable_checkpointing": False, "enable_model_summary": False, "enable_progress_bar": False,
                "deterministic": True,
                "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "unused"}}},
    "model": {"class_path": "lt_lightning.zoo.Classifier",
              "init_args": {"model": "mlp", "model_kwargs": MLP, "optimizer": "sgd", "lr": 0.1}},
    "data": {"class_path": "lt_lightning.zoo.DigitsDataModule", "init_args": {"batch_size": 64}},
}


def _config(**trainer):
    config = copy.deepcopy(CONFIG)
    config["trainer"].update(trainer)
    return config


def _own_evaluation(state, accuracy_scale=1.0):
    """A copy's own evaluation: its weights in a fresh module, validated by a fresh Trainer."""
    module = digits_model(optimizer="sgd", lr=0.1)
    module.load_state_dict(state)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=2)
    (metrics,) = trainer.validate(module, DigitsDataModule(batch_size=64), verbose=False)
    return error_metrics(metrics, accuracy_scale)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    out = tmp_path_factory.mktemp("instability") / "out"
    return instability(CONFIG, step=3, points=4, out=out, echo=lambda _: None)


# -- the analysis end to end -----------------------------------------------------------------------------------------


def test_two_copies_from_step_k_and_the_barrier_of_their_path(analysis):
    out = analysis["out"]
    start = load_snapshot(os.path.join(out, "start", "step_3it.pt"))
    assert start.step == 3 and analysis["step"] == 3 and analysis["train_steps"] == 20
    ends = [load_snapshot(os.path.join(out, f"copy_seed{s}", "end.pt")) for s in (1, 2)]
    assert [e.step for e in ends] == [20, 20]
    # The copies trained from the same state with different data orders: they ended apart.
    assert analysis["l2_distance"] > 0.05
    assert all(not torch.equal(e.model["model.out.weight"], start.model["model.out.weight"]) for e in ends)
    for seed in (1, 2):
        with open(os.path.join(out, f"copy_seed{seed}", "copy.yaml")) as f:
            config = yaml.safe_load(f)
        assert config["seed_everything"] == seed
        by_class = {c["class_path"].rsplit(".", 1)[1]: c["init_args"] for c in config["trainer"]["callbacks"]}
        assert by_class["DataOrderCallback"] == {"seed": seed}
        assert by_class["TrainFromCallback"]["state"] == os.path.join(out, "start", "step_3it.pt")
        assert {k: v for k, v in config.items() if k not in ("seed_everything", "trainer")} == \
            {k: v for k, v in CONFIG.items() if k not in ("seed_everything", "trainer")}
    # The curve: 4 evenly spaced points, the barrier read off it, the endpoints the copies' own evaluation.
    curve = analysis["curve"]
    assert [p["alpha"] for p in curve] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    errors = [p["val_err"] for p in curve]
    assert analysis["barrier"] == error_barrier(curve) == pytest.approx(max(errors) - (errors[0] + errors[-1]) / 2)
    assert analysis["stable"] == (analysis["barrier"] < 0.02)
    for point, end in zip((curve[0], curve[-1]), ends):
        assert {k: v for k, v in point.items() if k != "alpha"} == _own_evaluation(end.model)
    with open(os.path.join(out, "instability.json")) as f:
        assert json.load(f) == json.loads(json.dumps(analysis.to_dict()))


def test_the_curve_and_barrier_go_to_the_configured_logger(analysis):
    with open(os.path.join(analysis["out"], "logs", "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    points = [r for r in rows if r["lmc/alpha"]]
    assert [int(r["step"]) for r in points] == [0, 1, 2, 3]
    assert [float(r["lmc/val_err"]) for r in points] == pytest.approx([p["val_err"] for p in analysis["curve"]])
    (summary,) = [r for r in rows if r["lmc/barrier"]]
    assert float(summary["lmc/barrier"]) == pytest.approx(analysis["barrier"])
    assert float(summary["lmc/stable"]) == float(analysis["stable"])


def test_a_second_run_reuses_the_trainings_and_gives_the_same_result(analysis):
    lines = []
    again = instability(CONFIG, step=3, points=4, out=analysis["out"], echo=lines.append)
    assert [line.endswith("done before") for line in lines[:3]] == [True] * 3
    assert again["curve"] == analysis["curve"] and again["barrier"] == analysis["barrier"]
    # The same folder with another configuration is refused rather than mixed in.
    with pytest.raises(ValueError, match="holds a finished training of another configuration"):
        instability(_config(max_steps=19), step=3, points=4, out=analysis["out"])


# -- callbacks of a copy ---------------------------------------------------------------------------------------------


class _Batches(Callback):
    def __init__(self):
        self.labels, self.epoch_ends = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.labels.append(batch[1].tolist())

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_ends.append(trainer.global_step)


def _order(tmp_path, seed, steps=3):
    spy = _Batches()
    make_trainer(tmp_path, [DataOrderCallback(seed=seed), spy], max_steps=steps, logger=False).fit(
        digits_model(), DigitsDataModule(batch_size=64, seed=0))
    return spy.labels


def test_data_order_follows_the_seed_not_the_datamodule_generator(tmp_path):
    one, two, again = _order(tmp_path, 1), _order(tmp_path, 2), _order(tmp_path, 1)
    assert one == again and one != two
    spy = _Batches()  # without the callback, the datamodule's own seed decides
    make_trainer(tmp_path, [spy], max_steps=3, logger=False).fit(digits_model(), DigitsDataModule(batch_size=64))
    assert spy.labels not in (one, two)
    # Each epoch gets an order of its own.
    epochs = _order(tmp_path, 1, steps=44)
    assert epochs[:3] == one and epochs[22:] != epochs[:22]


def test_data_order_refuses_loaders_it_cannot_seed(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.randn(64, 64), torch.randint(0, 10, (64,)))

    class Sequential(DigitsDataModule):
        def train_dataloader(self):
            return DataLoader(data, batch_size=8)  # no shuffle: a SequentialSampler

    with pytest.raises(ValueError, match="cannot seed the train loader's SequentialSampler"):
        make_trainer(tmp_path, [DataOrderCallback(seed=1)], max_steps=2).fit(digits_model(), Sequential())
    with pytest.raises(ValueError, match="neither Classifier nor a datamodule defines it.*passed to fit"):
        make_trainer(tmp_path, [DataOrderCallback(seed=1)], max_steps=2).fit(
            digits_model(), train_dataloaders=DataLoader(data, batch_size=8, shuffle=True))
    with pytest.raises(ValueError, match=r"seed=True is not allowed"):
        DataOrderCallback(seed=True)


class _Start(Callback):
    """What the module and optimizer hold when training starts (after the callbacks before it)."""

    def on_train_start(self, trainer, pl_module):
        self.weights = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.optimizer = copy.deepcopy(trainer.optimizers[0].state_dict())
        self.scheduler = trainer.lr_scheduler_configs[0].scheduler.state_dict()


def test_train_from_loads_the_whole_state_and_trains_the_rest_of_one_training_in_aligned_epochs(tmp_path):
    model = digits_model(optimizer="sgd", lr=0.1, scheduler="multistep", milestones=[10])
    make_trainer(tmp_path, [SnapshotCallback(steps=[3, "1ep"], dirpath=str(tmp_path / "s"))], max_steps=40,
                 logger=False).fit(model, DigitsDataModule(batch_size=64))
    start = load_snapshot(snapshot_file(tmp_path / "s", 3))
    assert start.step == 3 and load_snapshot(snapshot_file(tmp_path / "s", "1ep")).step == 22
    assert start.optimizers[0]["state"]  # SGD momentum after 3 steps
    seen, spy = _Start(), _Batches()
    end = tmp_path / "end.pt"
    trainer = make_trainer(tmp_path, [TrainFromCallback(state=snapshot_file(tmp_path / "s", 3), save_to=str(end)),
                                      seen, spy], max_steps=40, logger=False)
    trainer.fit(digits_model(optimizer="sgd", lr=0.1, scheduler="multistep", milestones=[10]),
                DigitsDataModule(batch_size=64))
    assert all(torch.equal(seen.weights[k], v) for k, v in start.model.items())
    momentum = seen.optimizer["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, start.optimizers[0]["state"][0]["momentum_buffer"])
    assert seen.scheduler["last_epoch"] == 3 and seen.scheduler["_last_lr"] == pytest.approx([0.1])
    # 37 steps: the 19 left of the epoch step 3 was in, as an epoch of its own, then whole epochs of 22.
    assert trainer.global_step == 37 and spy.epoch_ends == [19, 37]
    assert trainer.lr_scheduler_configs[0].scheduler.get_last_lr() == pytest.approx([0.01])  # stepped 40 times
    final = load_snapshot(end)
    assert final.step == 40 and all(torch.equal(final.model[k], v) for k, v in trainer.model.state_dict().items())


def test_train_from_refuses_a_state_past_one_training_before_any_step(tmp_path):
    save_snapshot(Snapshot(step=25, epoch=1, model=digits_model().state_dict()), tmp_path / "late.pt")
    seen = _Batches()
    with pytest.raises(ValueError, match=r"at step 25, not inside one training of 20 steps"):
        make_trainer(tmp_path, [TrainFromCallback(state=str(tmp_path / "late.pt")), seen], max_steps=20).fit(
            digits_model(), DigitsDataModule(batch_size=64))
    assert seen.labels == []


# -- evaluation ------------------------------------------------------------------------------------------------------


def test_errors_from_accuracies():
    assert error_metrics({"acc": 0.25, "val_loss": 1.0}) == {"acc": 0.25, "val_loss": 1.0, "err": 0.75}
    assert error_metrics({"val_acc/dataloader_idx_1": 0.5})["val_err/dataloader_idx_1"] == 0.5
    # A logged error wins; names that merely contain "acc" are not accuracies.
    assert error_metrics({"val_acc": 0.9, "val_err": 0.2})["val_err"] == 0.2
    assert error_metrics({"val_accel": 3.0}) == {"val_accel": 3.0}
    with pytest.raises(ValueError, match=r"'val_acc' = 97.5 is read as an accuracy in \[0, 1\].*accuracy_scale=100"):
        error_metrics({"val_acc": 97.5})


def test_the_evaluator_is_the_module_own_validation(tmp_path):
    module = digits_model()
    trainer = make_trainer(tmp_path, limit_val_batches=2)
    evaluate = validation_evaluator(trainer, module, DigitsDataModule(batch_size=64))
    metrics = evaluate(module)
    assert metrics == _own_evaluation(module.state_dict())
    assert metrics["val_err"] == pytest.approx(1 - metrics["val_acc"])
    assert not os.path.exists(tmp_path / "run")  # the points are not logged as validation metrics


def test_modules_without_validation_are_refused_by_name(tmp_path):
    from lmc_modules import NoValData, NoValidation

    with pytest.raises(ValueError, match="NoValidation has no validation_step"):
        check_validation(NoValidation("mlp", MLP), DigitsDataModule())
    with pytest.raises(ValueError, match="neither NoValData nor Classifier defines val_dataloader"):
        check_validation(digits_model(), NoValData())
    with pytest.raises(ValueError, match="limit_val_batches=0"):
        validation_evaluator(make_trainer(tmp_path, limit_val_batches=0), digits_model(), DigitsDataModule())
    config = _config()
    config["model"]["class_path"] = "lmc_modules.NoValidation"
    with pytest.raises(ValueError, match="NoValidation has no validation_step"):
        instability(config, out=tmp_path / "a")
    assert not os.path.exists(tmp_path / "a" / "start")


def test_batchnorm_statistics_are_reestimated_at_every_point_by_default(tmp_path, recwarn):
    from lmc_modules import BatchNormClassifier

    from lt_lightning.analysis import reestimate_batchnorm

    config = _config(max_steps=6)
    config["model"]["class_path"] = "lmc_modules.BatchNormClassifier"
    result = instability(config, step=2, points=3, out=tmp_path / "out", echo=lambda _: None)
    assert result["bn_batches"] == 10
    assert not [w for w in recwarn if "running statistics are interpolated" in str(w.message)]
    data = DigitsDataModule(batch_size=64)
    data.setup("fit")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        batches = list(iter(data.train_dataloader()))[:10]
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=2)
    for point, seed in ((result["curve"][0], 1), (result["curve"][-1], 2)):
        module = BatchNormClassifier(model="mlp", model_kwargs=MLP)
        module.load_state_dict(load_snapshot(tmp_path / "out" / f"copy_seed{seed}" / "end.pt").model)
        reestimate_batchnorm(module, batches)
        (own,) = trainer.validate(module, DigitsDataModule(batch_size=64), verbose=False)
        assert {k: v for k, v in point.items() if k != "alpha"} == error_metrics(own)
    with pytest.warns(UserWarning, match="running statistics are interpolated"):
        plain = instability(config, step=2, points=3, bn_batches=0, out=tmp_path / "out", echo=lambda _: None)
    assert plain["bn_batches"] == 0 and plain["curve"][0] != result["curve"][0]


# -- start states ----------------------------------------------------------------------------------------------------


def test_start_from_a_checkpoint_rewind_snapshot_with_a_ticket(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    pl.seed_everything(0)
    model = digits_model(optimizer="sgd", lr=0.1)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    make_trainer(tmp_path, [RewindCallback(step=5), checkpoint], max_steps=20, enable_checkpointing=True).fit(
        model, DigitsDataModule(batch_size=64))
    start = read_start(tmp_path / "ckpt" / "last.ckpt")
    assert start.snapshot.step == 5 and start.snapshot.optimizers and start.ticket is None
    generator = torch.Generator().manual_seed(0)
    masks = Masks({n: torch.rand(p.shape, generator=generator) < 0.3 for n, p in model.named_parameters()
                   if n.endswith("weight")})
    Ticket.from_state(start.snapshot.model, masks, {"rewind_step": 5}).save(tmp_path / "ticket.pt")
    result = instability(CONFIG, tmp_path / "ckpt" / "last.ckpt", ticket=str(tmp_path / "ticket.pt"), points=3,
                         out=tmp_path / "out", echo=lambda _: None)
    assert result["step"] == 5 and result["density"] == pytest.approx(masks.density())
    for seed in (1, 2):  # each copy trained the ticket: pruned weights stayed exactly zero
        end = load_snapshot(tmp_path / "out" / f"copy_seed{seed}" / "end.pt")
        for name, mask in masks.items():
            assert bool((end.model[name][~mask] == 0).all()) and bool((end.model[name][mask] != 0).any())
    # A ticket file is a start of its own (weights only, at its rewind step).
    ticket_start = read_start(tmp_path / "ticket.pt")
    assert ticket_start.snapshot.step == 5 and ticket_start.ticket == str(tmp_path / "ticket.pt")
    assert not ticket_start.snapshot.optimizers
    with pytest.raises(ValueError, match="step=4 was given, but the state from .* is at step 5"):
        read_start(tmp_path / "ckpt" / "last.ckpt", step=4)


# -- bad input, refused before any training --------------------------------------------------------------------------


def _no_training(out):
    # Configs may be written (planning); no fit has left logs, a start state or end weights.
    trained = [p for pattern in ("copy_seed*/end.pt", "*/logs", "*/config.yaml", "start/step_*")
               for p in glob.glob(os.path.join(out, pattern))]
    assert trained == [], trained


@pytest.mark.parametrize("change, message", [
    ({"points": 1}, r"points=1 must be an int >= 2"),
    ({"seeds": (3, 3)}, r"seeds=\[3, 3\]: the analysis trains two copies"),
    ({"key": "val_f1"}, r"key='val_f1' is not among the metrics Classifier's validation gives: \['val_acc', 'val_err'"),
    ({"step": 20}, r"step '20it' is not inside one training of max_steps=20; allowed: 0 to 19"),
    ({"threshold": 0}, r"threshold=0 must be > 0"),
])
def test_bad_arguments_are_refused_before_any_training(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        instability(CONFIG, out=tmp_path / "out", **change)
    _no_training(tmp_path / "out")


def test_steps_past_one_training_of_max_epochs_are_refused_before_any_training_even_in_a_dry_run(tmp_path, capsys,
                                                                                                 monkeypatch):
    config = _config(max_steps=-1, max_epochs=1)  # 22 steps an epoch: one training is 22 steps
    with pytest.raises(ValueError, match=r"step '2ep' is not inside one training: 22 steps \(max_epochs=1, max_steps=-1,"
                                         r" 22 steps an epoch\); allowed: 0 to 21 \('2ep' is step 44\)"):
        instability(config, step="2ep", out=tmp_path / "out", dry_run=True)
    _no_training(tmp_path / "out")
    monkeypatch.setattr(sys, "argv", ["lt-lightning"])
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    for argv, step in ((["instability", "--step", "5000"], "5000it"), (["rewind-search", "--steps", "0", "9999"], "9999it")):
        assert main([*argv, "--config", str(tmp_path / "fit.yaml"), "--out", str(tmp_path / "cli"), "--dry-run"]) == 1
        err = capsys.readouterr().err
        assert f"error: step '{step}' is not inside one training: 22 steps" in err and "Traceback" not in err
    assert not glob.glob(str(tmp_path / "cli" / "**" / "parent.yaml"), recursive=True)  # planned nothing


def test_states_of_another_architecture_or_parameter_names_are_refused(tmp_path):
    other = digits_model(model_kwargs={"in_features": 64, "hidden": [16], "num_classes": 10})
    save_snapshot(Snapshot(step=0, epoch=0, model=other.state_dict()), tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"does not fit Classifier: it lacks \['model.hidden.1.weight'"):
        instability(CONFIG, tmp_path / "other.pt", out=tmp_path / "out")
    renamed = {k.replace("hidden", "body"): v for k, v in digits_model().state_dict().items()}
    save_snapshot(Snapshot(step=0, epoch=0, model=renamed), tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match=r"lacks \['model.hidden.0.weight'.*and has \['model.body.0.weight'"):
        instability(CONFIG, tmp_path / "renamed.pt", out=tmp_path / "out")
    wider = dict(digits_model().state_dict(), **{"model.out.bias": torch.zeros(11)})
    save_snapshot(Snapshot(step=0, epoch=0, model=wider), tmp_path / "wider.pt")
    with pytest.raises(ValueError, match=r"'model.out.bias' has shape \(11,\) there and \(10,\) in the module"):
        instability(CONFIG, tmp_path / "wider.pt", out=tmp_path / "out")
    with pytest.raises(ValueError, match="neither an lt-lightning state file, a ticket nor a Lightning checkpoint"):
        torch.save({"weights": 1}, tmp_path / "junk.pt")
        instability(CONFIG, tmp_path / "junk.pt", out=tmp_path / "out")
    _no_training(tmp_path / "out")


# -- rewind-point search ---------------------------------------------------------------------------------------------


def test_rewind_search_with_imp_tickets_per_step(tmp_path):
    config = _config()
    config["trainer"]["callbacks"] = [{"class_path": "lt_lightning.IMPCallback",
                                       "init_args": {"rounds": 1, "pruning_fraction": 0.5, "monitor": "val_acc",
                                                     "mode": "max"}}]
    search = rewind_search(config, [0, 5], points=3, run_imp=True, out=tmp_path / "search", echo=lambda _: None)
    rows = search["rows"]
    assert [r["step"] for r in rows] == [0, 5]
    for row in rows:
        with open(os.path.join(row["out"], "instability.json")) as f:
            assert json.load(f)["barrier"] == row["barrier"]
        assert row["stable"] == (row["barrier"] < 0.02)
        assert row["ticket_density"] == pytest.approx(0.5, abs=0.01)
        assert row["matches"] == (row["ticket_error"] <= row["dense_error"] + 0.002)
        assert read_history(os.path.join(row["imp_run"], "imp_history.json"))[1]["start_step"] == row["step"]
    assert search["earliest_stable"] == next((r["step"] for r in rows if r["stable"]), None)
    assert search["earliest_matching"] == next((r["step"] for r in rows if r["matches"]), None)
    # One training saved both start states; the dense state at 5 is the IMP run's rewind point at 5.
    start = load_snapshot(snapshot_file(tmp_path / "search" / "start", 5))
    rewind_point = torch.load(os.path.join(rows[1]["imp_run"], "tickets", "rewind_point.pt"), weights_only=True)
    assert all(torch.equal(rewind_point["state_dict"][k], v) for k, v in start.model.items())
    with pytest.raises(ValueError, match="2 IMP runs for 1 steps"):
        rewind_search(config, [0], imp_runs=[rows[0]["imp_run"], rows[1]["imp_run"]], out=tmp_path / "x")
    with pytest.raises(ValueError, match=r"rewinds to step 0, but it is given for rewind step 5"):
        rewind_search(config, [5], imp_runs=[rows[0]["imp_run"]], out=tmp_path / "x")
    with pytest.raises(ValueError, match="the config has none"):
        rewind_search(CONFIG, [0], run_imp=True, out=tmp_path / "x")
    with pytest.raises(ValueError, match=r"steps=\[3, '3it'\]: give distinct rewind steps"):
        rewind_search(CONFIG, [3, "3it"], out=tmp_path / "x")


# -- the command line ------------------------------------------------------------------------------------------------


def test_cli_instability_from_yaml_and_dry_run_for_launchers(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lt-lightning"])
    config = _config(max_steps=12)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(tmp_path / "fit.yaml")]) == 0
    path = tmp_path / "logs" / "lightning_logs" / "version_0" / "config.yaml"  # as LightningCLI saved it
    assert {"ckpt_path", "weights_only"} <= set(yaml.safe_load(path.read_text()))
    out = tmp_path / "out"
    args = ["instability", "--config", str(path), "--step", "2", "--points", "3", "--seeds", "4", "5", "--out", str(out)]
    assert main([*args, "--dry-run"]) == 0
    commands = capsys.readouterr().out.split("\n")
    assert commands[:3] == [f"lt-lightning fit --config {out}/start/parent.yaml",
                            f"lt-lightning fit --config {out}/copy_seed4/copy.yaml",
                            f"lt-lightning fit --config {out}/copy_seed5/copy.yaml"]
    for command in commands[:3]:  # what a launcher would run, one plain fit each
        assert main(command.split()[1:]) == 0
    assert main(args) == 0
    written = capsys.readouterr().out.split()
    assert written[-2:] == [str(out / "report" / "error_vs_alpha.png"), str(out / "report" / "report.md")]
    result = json.loads((out / "instability.json").read_text())
    assert result["seeds"] == [4, 5] and result["step"] == 2 and result["train_steps"] == 12
    page = (out / "report" / "report.md").read_text()
    assert f"barrier **{result['barrier']:.4g}**" in page and "| alpha | val_loss | val_acc | val_err |" in page
    assert main(["report", str(out), "--out", str(tmp_path / "again")]) == 0
    assert sorted(os.listdir(tmp_path / "again")) == ["error_vs_alpha.png", "report.md"]
    assert main(["instability", "--config", str(path), "--points", "1"]) == 1
    assert "points=1 must be an int >= 2" in capsys.readouterr().err


@pytest.mark.ddp
def test_instability_with_two_ddp_processes(tmp_path):
    script = os.path.join(HERE, "ddp_instability.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, script, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # every rank computed the same curve from the same synced metrics
    result = ranks[0]
    assert result["step"] == 2 and len(result["curve"]) == 3
    assert result["l2_distance"] > 0  # the DistributedSampler shuffled by each copy's seed
    assert result["barrier"] == error_barrier(result["curve"])
    with open(tmp_path / "analysis" / "copy_seed2" / "copy.yaml") as f:
        copy_config = yaml.safe_load(f)
    assert copy_config["trainer"]["strategy"] == "ddp" and copy_config["seed_everything"] == 2
