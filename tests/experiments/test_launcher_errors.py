"""Bad input to the experiment commands (branch, instability, rewind-search): a clear error, naming the value and
what is allowed, before any training: no job folder, no result written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import run_cli as _main

from lt_lightning.experiments.launchers.processes import cpu_cores, visible_gpus

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "configs")
SMOKE = os.path.abspath(os.path.join(CONFIGS, "digits_smoke.yaml"))
COMMANDS = ("branch", "instability", "rewind-search")


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    """A real IMP run of digits_smoke.yaml (rounds 0-2, 20 steps each), for `branch`."""
    root = tmp_path_factory.mktemp("errors")
    assert _main(["fit", "--config", SMOKE, "--trainer.logger.init_args.save_dir", str(root),
                  "--trainer.enable_progress_bar", "false"]) == 0
    return os.path.join(root, "lightning_logs", "version_0")


@pytest.fixture
def target(imp_run, tmp_path):
    """``(argv_of(command, config=None), nothing_trained())`` for a copy of the run (branch) or an --out folder
    (instability, rewind-search); ``config`` replaces the run's config.yaml or is given as --config."""
    run = tmp_path / "run"
    shutil.copytree(imp_run, run)
    out = tmp_path / "out"

    def argv_of(command, config=None):
        if command == "branch":
            if config is not None:
                shutil.copy(config, run / "config.yaml")
            return ["branch", str(run), "--control", "reinit", "--rounds", "1"]
        lmc = ["--config", str(config or SMOKE), "--out", str(out), "--points", "3"]
        return [command, *lmc, *(["--steps", "2"] if command == "rewind-search" else [])]

    def nothing_trained():
        return not (run / "branches").exists() and not out.exists()

    return argv_of, nothing_trained


def _fails(argv, capsys):
    assert _main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("flags", "needle"), [
    (["--launcher", "mpi"], "error: unknown launcher 'mpi'; known launchers: ['local', 'processes', 'submitit']."),
    (["--launcher", "processes", "--workers", "0"],
     "error: workers=0 is not allowed; expected an int >= 1 (processes at a time)."),
    (["--launcher", "processes", "--workers", "-3"],
     "error: workers=-3 is not allowed; expected an int >= 1 (processes at a time)."),
    (["--workers", "2"], "error: the local launcher takes no option ['workers']; its options: none."),
])
def test_launcher_flags_refused_before_any_training(target, capsys, command, flags, needle):
    argv_of, nothing_trained = target
    err = _fails([*argv_of(command), *flags], capsys)
    assert err.startswith(f"lt-lightning {command}: {needle}"), err
    assert nothing_trained()


@pytest.mark.skipif(bool(visible_gpus()), reason="with GPUs, workers are counted per GPU, not per core")
@pytest.mark.parametrize("command", COMMANDS)
def test_more_workers_than_cores_on_cpu(target, capsys, command):
    argv_of, nothing_trained = target
    cores = cpu_cores()
    err = _fails([*argv_of(command), "--launcher", "processes", "--workers", str(cores + 1)], capsys)
    assert (f"error: workers={cores + 1} on {cores} CPU cores would run more torch threads than cores" in err
            and f"allowed: 1 to {cores}." in err), err
    assert nothing_trained()


@pytest.mark.parametrize("command", COMMANDS)
def test_submitit_missing_names_the_extra(target, tmp_path, command):
    """submitit really missing: a package of that name first on sys.path whose import fails, in a fresh process."""
    argv_of, nothing_trained = target
    shadow = tmp_path / "shadow" / "submitit"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named submitit (hidden by the test)')\n")
    env = {**os.environ, "WANDB_MODE": "offline",
           "PYTHONPATH": os.pathsep.join([str(shadow.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "lt_lightning.cli", *argv_of(command), "--launcher", "submitit",
                           "--cluster", "local"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert (f"lt-lightning {command}: error: the submitit launcher needs submitit, which is missing (No module named"
            " submitit (hidden by the test)): pip install 'lt-lightning[slurm]'") in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert nothing_trained()


@pytest.mark.parametrize("command", COMMANDS)
def test_config_that_is_not_yaml(target, tmp_path, capsys, command):
    argv_of, nothing_trained = target
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [max_steps: 20\n")
    err = _fails(argv_of(command, bad), capsys)
    where = tmp_path / "run" / "config.yaml" if command == "branch" else bad
    assert f"lt-lightning {command}: error: '{where}' is not readable YAML (while parsing a flow sequence" in err, err
    assert nothing_trained()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("edit", "needle"), [
    (lambda c: c["trainer"].update(max_stepz=20), "Group 'trainer' does not accept option 'max_stepz'"),
    (lambda c: c["model"]["init_args"].update(optimiser="sgd"),
     "Problem with given class_path 'lt_lightning.zoo.Classifier': Option 'optimiser' is not accepted"),
    (lambda c: c["model"]["init_args"].update(lr=-0.1),
     "a configured class refused its arguments: lr must be > 0, got -0.1"),
])
def test_config_that_fit_would_refuse(target, imp_run, tmp_path, capsys, command, edit, needle):
    """An unknown key or a refused value: named with the file, before any training (for branch, in the run's
    config.yaml: every branch would fail with it)."""
    argv_of, nothing_trained = target
    source = os.path.join(imp_run, "config.yaml") if command == "branch" else SMOKE
    with open(source) as f:
        config = yaml.safe_load(f)
    edit(config)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config, sort_keys=False))
    err = _fails(argv_of(command, bad), capsys)
    where = f"the IMP run's '{tmp_path / 'run' / 'config.yaml'}'" if command == "branch" else f"'{bad}'"
    assert f"lt-lightning {command}: error: {where} does not parse: " in err, err
    assert needle in err, err
    assert nothing_trained()


def test_rewind_search_imp_checks_the_imp_callback(target, tmp_path, capsys):
    """With --imp the config's IMPCallback trains too: a value it refuses fails before the parent training."""
    argv_of, nothing_trained = target
    with open(SMOKE) as f:
        config = yaml.safe_load(f)
    config["trainer"]["callbacks"][1]["init_args"]["pruning_fraction"] = 1.5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config, sort_keys=False))
    err = _fails([*argv_of("rewind-search", bad), "--imp"], capsys)
    assert err.startswith(f"lt-lightning rewind-search: error: '{bad}' does not parse: a configured class refused"
                          " its arguments: pruning_fraction=1.5"), err
    assert nothing_trained()
