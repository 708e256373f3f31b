"""lt-lightning branch: controls of a real IMP run's tickets, each a plain `lt-lightning fit`, and bad input."""

from __future__ import annotations

import os
import re
import shlex
import shutil

import pytest
import yaml
from conftest import run_cli as _main

from lt_lightning.records import read_history, read_result
from lt_lightning.ticket import load_ticket

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "configs")
LINE = re.compile(r"^branch (\d+)/(\d+): (\w+) round (\d\d) seed (\d+): val_acc (\d\.\d+), [\d.e-]+ s$")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real IMP run of examples/configs/digits_smoke.yaml (seed_everything 0; rounds 0-2, 20 steps each)."""
    root = tmp_path_factory.mktemp("branch")
    assert _main(["fit", "--config", os.path.join(CONFIGS, "digits_smoke.yaml"),
                  "--trainer.logger.init_args.save_dir", str(root), "--trainer.enable_progress_bar", "false"]) == 0
    return os.path.join(root, "lightning_logs", "version_0")


def _copy(run_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("branches"))
    return target


def test_branch_trains_each_round_control_and_seed_as_one_fit(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    argv = ["branch", str(run), "--control", "reinit", "shuffle_masks", "--rounds", "2", "--seeds", "1", "2"]
    assert _main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [m.groups()[:5] for m in parsed] == [
        ("1", "4", "reinit", "02", "1"), ("2", "4", "reinit", "02", "2"),
        ("3", "4", "shuffle_masks", "02", "1"), ("4", "4", "shuffle_masks", "02", "2")]
    ticket = load_ticket(run / "tickets" / "round_02.pt")
    for m in parsed:
        control, seed = m.group(3), int(m.group(5))
        folder = run / "branches" / control / "round_02" / f"seed_{seed}"
        record, metadata = read_result(folder / "result.json")
        assert metadata == {"ticket": str(run / "tickets" / "round_02.pt"), "ticket_round": 2, "control": control,
                            "control_seed": seed}
        assert record.round == 2 and record.layer_density == ticket.masks.layer_densities()
        assert record.train_steps == 20 and record.monitor == "val_acc"  # one training: round 0's length
        assert record.final["val_acc"] == pytest.approx(float(m.group(6)), abs=1e-4)
        assert os.path.isfile(folder / "logs" / "metrics.csv")  # the run's CSVLogger, in the branch's folder
        with open(folder / "branch.yaml") as f:
            config = yaml.safe_load(f)
        assert config["seed_everything"] == seed
        assert [c["class_path"] for c in config["trainer"]["callbacks"]] == [
            "lt_lightning.MaskingCallback", "lt_lightning.RecordCallback",
            "lightning.pytorch.callbacks.ModelCheckpoint"]  # resume/last.ckpt while it runs, removed when done
        assert not os.path.exists(folder / "resume") and not os.path.exists(folder / ".job-started")
    # Another seed draws another control; the same seed again is skipped.
    a = read_result(run / "branches" / "shuffle_masks" / "round_02" / "seed_1" / "result.json")[0]
    b = read_result(run / "branches" / "shuffle_masks" / "round_02" / "seed_2" / "result.json")[0]
    assert a.final != b.final
    stamp = os.path.getmtime(run / "branches" / "reinit" / "round_02" / "seed_1" / "result.json")
    assert _main(argv) == 0
    assert all(line.endswith("done before, val_acc " + line.rsplit(" ", 1)[1]) for line in
               capsys.readouterr().out.splitlines())
    assert os.path.getmtime(run / "branches" / "reinit" / "round_02" / "seed_1" / "result.json") == stamp


def test_dry_run_prints_one_fit_command_per_training_that_runs_as_printed(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    assert _main(["branch", str(run), "--control", "keep_signs", "--dry-run"]) == 0
    out = capsys.readouterr()
    commands = out.out.splitlines()
    assert commands == [f"lt-lightning fit --config {run}/branches/keep_signs/round_{r:02d}/seed_1/branch.yaml"
                        for r in (1, 2)]  # every pruned round, the run's seed + 1
    assert "2 trainings" in out.err and not list(run.glob("branches/**/result.json"))
    argv = shlex.split(commands[1])[1:]
    assert _main(argv) == 0  # what a job array would run
    record, metadata = read_result(run / "branches" / "keep_signs" / "round_02" / "seed_1" / "result.json")
    assert metadata["control"] == "keep_signs" and record.density == read_history(run / "imp_history.json")[2].density
    assert _main(["branch", str(run), "--control", "keep_signs", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == commands[:1]  # the one done is not printed again


# ---------------------------------------------------------------------------------------------- bad input
def _fails(argv, capsys, status=1):
    assert _main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_unknown_control_lists_the_allowed(run_dir, capsys):
    err = _fails(["branch", run_dir, "--control", "reinit", "shuffle_mask"], capsys)
    assert "lt-lightning branch: error: unknown control 'shuffle_mask'; known controls: ['keep_signs'," in err
    assert not os.path.exists(os.path.join(run_dir, "branches", "reinit"))


@pytest.mark.parametrize("seed", ["1.5", "one"])
def test_seeds_that_are_not_integers(run_dir, capsys, seed):
    with pytest.raises(SystemExit) as done:
        _main(["branch", run_dir, "--seeds", "1", seed])
    assert done.value.code == 2
    assert f"argument --seeds: seed '{seed}' is not an integer" in capsys.readouterr().err


@pytest.mark.parametrize(("seed", "needle"), [
    ("0", "seed 0 is the IMP run's own seed_everything: a control trained with it would start from the ticket's own"
          " initialization"),
    ("-1", r"seed -1 is not allowed; seeds are integers in [0, 2**32)"),
    (str(2**32), f"seed {2**32} is not allowed"),
])
def test_seeds_out_of_range_or_the_runs_own(run_dir, capsys, seed, needle):
    assert needle in _fails(["branch", run_dir, "--seeds", seed], capsys)


def test_a_run_dir_without_history(tmp_path, capsys):
    err = _fails(["branch", str(tmp_path)], capsys)
    assert err.startswith(f"lt-lightning branch: error: no IMP history in '{tmp_path}'")


def test_a_run_dir_without_config(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    os.remove(run / "config.yaml")
    err = _fails(["branch", str(run)], capsys)
    assert f"no config.yaml in '{run}': branches re-run the IMP run's LightningCLI config" in err


def test_a_round_that_is_not_in_the_history(run_dir, capsys):
    assert "round 7 is not in the run's history; its rounds are [0, 1, 2]" in _fails(
        ["branch", run_dir, "--rounds", "1", "7"], capsys)


def test_a_control_needing_weights_on_tickets_without_them(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    os.remove(run / "tickets" / "rewind_point.pt")
    err = _fails(["branch", str(run), "--control", "reinit", "shuffle_masks"], capsys)
    assert (f"control 'shuffle_masks' takes the unpruned weights of the ticket's rewind point:"
            f" '{run}/tickets/round_01.pt' names 'rewind_point.pt', but there is no file") in err
    assert not (run / "branches").exists()  # nothing trained, not even the reinit branches


@pytest.mark.parametrize("seed", ["1", 1.5, True])
def test_plan_branches_refuses_seeds_that_are_not_integers(run_dir, seed):
    from lt_lightning.experiments import plan_branches

    with pytest.raises(ValueError, match=rf"seed {seed!r} is not allowed; seeds are integers in \[0, 2\*\*32\)"):
        plan_branches(run_dir, ["reinit"], seeds=[3, seed])


@pytest.mark.parametrize("launcher", [["--launcher", "processes", "--workers", "2"],
                                      ["--launcher", "submitit", "--cluster", "local"]])
def test_other_launchers_train_the_same_branches_as_local(run_dir, tmp_path, capsys, launcher):
    argv = ["--control", "reinit", "--rounds", "2", "--seeds", "1", "2"]
    here, there = _copy(run_dir, tmp_path / "local"), _copy(run_dir, tmp_path / "other")
    assert _main(["branch", str(here), *argv]) == 0
    assert _main(["branch", str(there), *argv, *launcher]) == 0
    for seed in (1, 2):
        folder = os.path.join("branches", "reinit", "round_02", f"seed_{seed}", "result.json")
        a, b = read_result(here / folder)[0], read_result(there / folder)[0]
        assert a.train_steps == b.train_steps == 20
        assert b.final["val_acc"] == pytest.approx(a.final["val_acc"], abs=0.02)  # one torch thread there
