"""lt-lightning experiment: IMP per seed, the controls of every run's tickets and the report, in one command; running
it again does only what is missing; bad input and a second command on the same folder are refused before training."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

import pytest
import yaml
from conftest import run_cli as _main

from lt_lightning.layout import LOCK_FILE, RUN_CONFIG
from lt_lightning.records import read_history, read_result

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "configs")
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(CONFIGS, "digits_smoke.yaml")  # IMP, rounds 0-2, 20 steps each, seed_everything 0


def _quiet_config(tmp_path, **trainer):
    """digits_smoke.yaml without progress bars (and with ``trainer`` changes)."""
    with open(SMOKE) as f:
        config = yaml.safe_load(f)
    config["trainer"].update(enable_progress_bar=False, **trainer)
    path = tmp_path / f"imp{len(trainer)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _experiment(config, out, *extra):
    return _main(["experiment", "--config", config, "--out", str(out), "--seeds", "0", "1", "--controls", "reinit",
                  "--rounds", "2", *extra])


def _results(out):
    return {seed: read_result(out / f"seed_{seed}" / "branches" / "reinit" / "round_02" / f"seed_{1000 + seed}"
                              / "result.json")[0] for seed in (0, 1)}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished experiment: 2 IMP seeds, reinit of round 2's tickets, the report; and what it printed."""
    root = tmp_path_factory.mktemp("experiment")
    config, out = _quiet_config(root), root / "out"
    printed, errors = io.StringIO(), io.StringIO()
    with redirect_stdout(printed), redirect_stderr(errors):
        status = _experiment(config, out)
    assert status == 0, errors.getvalue()
    return config, out, printed.getvalue()


def test_one_command_runs_the_seeds_their_controls_and_the_report(done):
    config, out, printed = done
    for seed in (0, 1):
        run = out / f"seed_{seed}"
        history = read_history(run / "imp_history.json")
        assert [r.round for r in history] == [0, 1, 2]
        with open(run / RUN_CONFIG) as f:
            assert yaml.safe_load(f)["seed_everything"] == seed
        assert (run / "logs" / "config.yaml").is_file()  # Lightning's own copy, never over the run's
        assert sorted(os.listdir(run / "branches" / "reinit")) == ["round_02"]
        assert not (run / "resume").exists() and not (run / ".job-started").exists()
    results = _results(out)
    assert {r.train_steps for r in results.values()} == {20}
    assert results[0].final["val_acc"] != results[1].final["val_acc"]  # two seeds, not one twice
    report = (out / "report" / "report.md").read_text()
    assert "IMP runs over 2 seeds" in report and f"`{out / 'seed_0'}`" in report and "reinit" in report
    assert "## Ticket vs. controls" not in printed.split("report.md")[0]
    assert "| 2 | " in printed and "reinit (%)" in printed  # the verdict table is printed
    assert not (out / LOCK_FILE).exists()


def test_running_again_trains_nothing_and_keeps_every_result(done, capsys):
    config, out, _ = done
    result = out / "seed_0" / "branches" / "reinit" / "round_02" / "seed_1000" / "result.json"
    history = out / "seed_1" / "imp_history.json"
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (result, history)}
    assert _experiment(config, out) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("IMP ", "branch "))]
    assert len(lines) == 4 and all("done before" in line for line in lines)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before


def test_another_config_into_a_finished_experiment_is_refused(done, tmp_path, capsys):
    _, out, _ = done
    other = _quiet_config(tmp_path, max_steps=30)
    before = (out / "seed_0" / RUN_CONFIG).read_bytes()
    assert _experiment(other, out) == 1
    assert "holds a finished training of another configuration" in capsys.readouterr().err
    assert (out / "seed_0" / RUN_CONFIG).read_bytes() == before


def test_a_killed_experiment_goes_on_from_what_is_done(done, tmp_path):
    """A run whose IMP was killed (its start mark left, its controls missing) is trained again; the other seed's
    finished trainings are kept as they are."""
    config, finished, _ = done
    out = tmp_path / "out"
    shutil.copytree(finished, out, ignore=shutil.ignore_patterns("report"))
    # The copied configs name the first folder: plan them again into this one, as a kill would leave it.
    for seed in (0, 1):
        (out / f"seed_{seed}" / RUN_CONFIG).unlink()
    shutil.rmtree(out / "seed_1" / "branches")
    (out / "seed_1" / ".job-started").write_text("pid 1 at a time long ago\n")
    kept = out / "seed_0" / "branches" / "reinit" / "round_02" / "seed_1000" / "result.json"
    before = kept.read_bytes()
    assert _experiment(config, out) == 0
    assert kept.read_bytes() == before
    assert _results(out)[1].final == _results(finished)[1].final  # the retrained seed gives the same training
    assert not (out / "seed_1" / ".job-started").exists()


def test_dry_run_prints_the_imp_trainings_then_once_done_the_controls(done, tmp_path, capsys):
    config, finished, _ = done
    fresh = tmp_path / "fresh"
    assert _experiment(config, fresh, "--dry-run") == 0
    captured = capsys.readouterr()
    commands = captured.out.splitlines()
    assert commands == [f"lt-lightning fit --config {fresh / f'seed_{s}' / RUN_CONFIG}" for s in (0, 1)]
    assert "planned once the IMP runs are done" in captured.err
    assert not (fresh / "seed_0" / "imp_history.json").exists()
    assert _experiment(config, finished, "--dry-run") == 0  # every training done: nothing to print
    assert capsys.readouterr().out.strip() == ""


def test_a_second_command_on_the_folder_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from lt_lightning.experiments.lock import folder_lock\n"
                               f"with folder_lock({str(out)!r}, 'lt-lightning experiment (test holder)'):\n"
                               "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _experiment(_quiet_config(tmp_path), out) == 1
        err = capsys.readouterr().err
        assert f"pid {holder.pid} on " in err and "test holder" in err and "in use by another" in err
        assert sorted(os.listdir(out)) == [LOCK_FILE]  # nothing planned, nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text(f"pid {dead.pid} on {socket.gethostname()} since 2026-01-01 00:00:00: killed\n")
    assert _experiment(_quiet_config(tmp_path), out, "--dry-run") == 0
    assert "taking over" in capsys.readouterr().err
    assert not (out / LOCK_FILE).exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--seeds", "0", "0"], "repeat one"),
    (["--controls", "nonsense"], "unknown control 'nonsense'; known controls"),
    (["--rounds", "3"], "round 3 is not allowed: controls train pruned rounds' tickets, 1 to 2"),
    (["--rounds", "0"], "round 0 is not allowed"),
    (["--launcher", "mpi"], "unknown launcher 'mpi'"),
    (["--launcher", "processes", "--workers", "0"], "workers=0 is not allowed"),
])
def test_bad_arguments_are_refused_before_any_training(tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    status = _main(["experiment", "--config", _quiet_config(tmp_path), "--out", str(out), *argv])
    assert status == 1
    assert needle in capsys.readouterr().err
    assert not (out / "seed_0" / "imp_history.json").exists()


@pytest.mark.parametrize(("change", "needle"), [
    (lambda c: c["trainer"].update(callbacks=[]), "configures no IMPCallback"),
    (lambda c: c["trainer"].update(no_such_option=1), "no_such_option"),
    (lambda c: c["trainer"]["callbacks"][1]["init_args"].update(pruning_fraction=2.0), "pruning_fraction"),
    (lambda c: c["model"].update(class_path="lt_lightning.zoo.NoSuchModel"), "NoSuchModel"),
])
def test_a_config_that_cannot_run_is_refused_before_any_training(tmp_path, capsys, change, needle):
    with open(SMOKE) as f:
        config = yaml.safe_load(f)
    change(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert _experiment(str(path), out) == 1
    assert needle in capsys.readouterr().err
    assert not any(name.startswith("seed_") for name in (os.listdir(out) if out.exists() else []))


@pytest.mark.slow
def test_an_experiment_killed_with_sigkill_resumes_its_training_from_the_checkpoint(tmp_path):
    """SIGKILL mid-IMP (after the checkpoint at step 100 of 180): running again goes on from the checkpoint, takes
    over the dead command's lock, and ends with the history of an uninterrupted run (a resumable data order:
    tests/resumable.py's)."""
    with open(SMOKE) as f:
        config = yaml.safe_load(f)
    config["trainer"].update(enable_progress_bar=False, max_steps=60)  # 3 trainings of 60 steps
    config["data"]["class_path"] = "resumable.ResumableDigits"
    path = tmp_path / "imp.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "killed"
    argv = ["experiment", "--config", str(path), "--out", str(out), "--seeds", "0", "--controls", "reinit",
            "--rounds", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.Popen([sys.executable, "-m", "lt_lightning.cli", *argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    checkpoint = out / "seed_0" / "resume" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert checkpoint.exists(), "the experiment ended before its first checkpoint"
    assert (out / LOCK_FILE).exists() and (out / "seed_0" / ".job-started").exists()
    assert not (out / "seed_0" / "branches").exists()
    assert _main(argv) == 0
    resumed = read_history(out / "seed_0" / "imp_history.json")
    assert _main([*argv[:4], str(tmp_path / "whole"), *argv[5:]]) == 0
    whole = read_history(tmp_path / "whole" / "seed_0" / "imp_history.json")
    assert [(r.round, r.density, r.train_steps) for r in resumed] == [(r.round, r.density, r.train_steps)
                                                                       for r in whole]
    for a, b in zip(resumed, whole):
        assert a.final["val_acc"] == pytest.approx(b.final["val_acc"], abs=1e-6)
        assert a.layer_density == b.layer_density
    assert not checkpoint.exists() and not (out / LOCK_FILE).exists()


def test_one_seed_failing_leaves_the_others_and_their_controls_trained(tmp_path, capsys):
    with open(SMOKE) as f:
        config = yaml.safe_load(f)
    config["trainer"]["enable_progress_bar"] = False
    config["trainer"]["callbacks"].append({"class_path": "self_kill.FailForSeed", "init_args": {"seed": 1}})
    path = tmp_path / "imp.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert _experiment(str(path), out, "--launcher", "processes", "--workers", "2") == 1
    err = capsys.readouterr().err
    assert "1 of 3 trainings failed" in err and "IMP seed 1" in err and "failing on purpose for seed 1" in err
    assert read_result(out / "seed_0" / "branches" / "reinit" / "round_02" / "seed_1000" / "result.json")[0]
    assert not (out / "seed_1" / "branches").exists() and not (out / "report").exists()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["--launcher", "processes", "--workers", "2"],
                                      ["--launcher", "submitit", "--cluster", "local"]])
def test_other_launchers_train_what_local_trains(done, tmp_path, launcher):
    config, finished, _ = done
    out = tmp_path / "out"
    assert _experiment(config, out, *launcher) == 0
    for seed, result in _results(out).items():
        assert result.train_steps == 20
        assert result.final["val_acc"] == pytest.approx(_results(finished)[seed].final["val_acc"], abs=0.02)
