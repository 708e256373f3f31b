"""A branch killed with SIGKILL mid-training: running `lt-lightning branch` again resumes it from its last
checkpoint, and leaves the branch finished before untouched."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import run_cli as _main

from lt_lightning.experiments.jobs import CHECKPOINT_EVERY
from lt_lightning.records import read_result

CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "configs")
STEPS = 3 * CHECKPOINT_EVERY  # a branch's length: long enough to be killed between two checkpoints


@pytest.fixture
def run(tmp_path):
    """A real IMP run of digits_smoke.yaml whose config trains STEPS steps a branch, its CSVLogger writing its
    rows every 10 steps (so that a killed training leaves rows behind)."""
    assert _main(["fit", "--config", os.path.join(CONFIGS, "digits_smoke.yaml"),
                  "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"]) == 0
    run = tmp_path / "run"
    shutil.move(tmp_path / "lightning_logs" / "version_0", run)
    with open(run / "config.yaml") as f:
        config = yaml.safe_load(f)
    config["trainer"]["max_steps"] = STEPS
    config["trainer"]["logger"]["init_args"]["flush_logs_every_n_steps"] = 10
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def _train_steps_logged(metrics_csv):
    with open(metrics_csv) as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train_loss")]


@pytest.mark.slow
def test_a_killed_branch_resumes_from_its_checkpoint_and_finished_ones_stay(run, tmp_path, capsys):
    argv = ["branch", str(run), "--control", "reinit", "--rounds", "1", "--seeds", "1", "2"]
    assert _main([*argv[:-1]]) == 0  # seed 1 only: the branch finished before
    done = run / "branches" / "reinit" / "round_01" / "seed_1"
    finished = (done / "result.json").read_bytes(), os.path.getmtime(done / "result.json")
    capsys.readouterr()

    assert _main([*argv, "--dry-run"]) == 0  # writes seed 2's branch.yaml; prints its command
    (command,) = capsys.readouterr().out.splitlines()
    killed = run / "branches" / "reinit" / "round_01" / "seed_2"
    assert command == f"lt-lightning fit --config {killed / 'branch.yaml'}"
    checkpoint = killed / "resume" / "last.ckpt"
    fit = subprocess.Popen([sys.executable, "-m", "lt_lightning.cli", "fit", "--config", str(killed / "branch.yaml")],
                           cwd=tmp_path, env={**os.environ, "WANDB_MODE": "offline"}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and fit.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # let the checkpoint's write end (Lightning writes it in place)
    fit.send_signal(signal.SIGKILL)
    assert fit.wait() == -signal.SIGKILL  # killed, not finished
    assert not (killed / "result.json").exists()
    resumed_from = torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"]
    assert resumed_from % CHECKPOINT_EVERY == 0 and 0 < resumed_from < STEPS
    before = _train_steps_logged(killed / "logs" / "metrics.csv")
    assert before and max(before) >= resumed_from - 10  # the killed training's rows, up to its checkpoint

    assert _main([*argv, "--launcher", "processes", "--workers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("branch 1/2: reinit round 01 seed 1: done before, val_acc "), lines
    assert lines[1].startswith("branch 2/2: reinit round 01 seed 2: val_acc "), lines
    with open(killed / "job.log") as f:
        assert f"Restoring states from the checkpoint path at {checkpoint}" in f.read()
    record = read_result(killed / "result.json")[0]
    assert record.train_steps == read_result(done / "result.json")[0].train_steps == STEPS
    # Resumed, not started over: the steps before the checkpoint were not trained (and logged) again.
    steps = _train_steps_logged(killed / "logs" / "metrics.csv")
    assert len(steps) == len(set(steps)), sorted(s for s in steps if steps.count(s) > 1)
    assert steps[len(before):] and min(steps[len(before):]) >= resumed_from
    assert not checkpoint.exists() and not (killed / ".job-started").exists()
    assert ((done / "result.json").read_bytes(), os.path.getmtime(done / "result.json")) == finished
