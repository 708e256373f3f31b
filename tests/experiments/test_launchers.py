"""The processes launcher on real jobs: a job that fails, or whose process is killed, is recorded with its error
and the others finish; nothing of a finished job is touched."""

from __future__ import annotations

import os

import pytest
import yaml

from lt_lightning.experiments.jobs import Job, JobsFailed, run_jobs
from lt_lightning.experiments.launchers import make_launcher
from lt_lightning.records import read_result

SMOKE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "configs", "digits_smoke.yaml")


def _job(root, name, change=None):
    """A plain 10-step fit of the smoke config's model and data, writing result.json; ``change`` edits it."""
    with open(SMOKE) as f:
        base = yaml.safe_load(f)
    folder = root / name
    folder.mkdir()
    result = str(folder / "result.json")
    config = {"seed_everything": 0, "model": base["model"], "data": base["data"],
              "trainer": {"accelerator": "cpu", "max_steps": 10, "logger": False, "enable_checkpointing": False,
                          "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(folder),
                          "callbacks": [{"class_path": "lt_lightning.RecordCallback",
                                         "init_args": {"path": result, "monitor": "val_acc", "mode": "max"}}]}}
    if change is not None:
        change(config)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return Job(name, str(path), (result,))


def test_failing_and_killed_jobs_are_recorded_and_the_others_finish(tmp_path):
    good = _job(tmp_path, "good")
    bad = _job(tmp_path, "bad", lambda c: c["model"].update(class_path="lt_lightning.zoo.NoSuchModel"))
    killed = _job(tmp_path, "killed", lambda c: c["trainer"]["callbacks"].append(
        {"class_path": "self_kill.KillSelf", "init_args": {"at_step": 3}}))
    lines = []
    with pytest.raises(JobsFailed) as failed:
        run_jobs([bad, good, killed], make_launcher("processes", {"workers": 2}), lines.append)
    assert set(failed.value.failures) == {bad, killed}
    assert failed.value.failures[killed].startswith("killed by signal 9 (SIGKILL)")
    assert failed.value.failures[bad].startswith("exit status 2") and "NoSuchModel" in failed.value.failures[bad]
    assert "2 of 3 trainings failed" in str(failed.value)
    assert read_result(good.outputs[0])[0].train_steps == 10 and good.done
    for job in (bad, killed):
        assert not job.done and os.path.isfile(job.files.error) and os.path.isfile(job.files.log)
    assert sorted(line.split(":")[1].strip() for line in lines) == ["bad", "good", "killed"]
    assert sum("FAILED" in line for line in lines) == 2


def test_a_job_that_prints_and_fails_names_its_log(tmp_path):
    job = _job(tmp_path, "typo", lambda c: c["trainer"].update(max_stepz=10))
    with pytest.raises(JobsFailed) as failed:
        run_jobs([job], make_launcher("processes", {"workers": 1}), lambda line: None)
    assert "max_stepz" in failed.value.failures[job] and job.files.log in failed.value.failures[job]
