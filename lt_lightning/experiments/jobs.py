"""The job model: a *job* is one training, ``lt-lightning fit --config FILE``, with its folder, its outputs (done
once they all exist and it is not mid-run) and, for resumable jobs, a checkpoint to go on from after a kill.

Planners (:mod:`~lt_lightning.experiments.branch`, :mod:`~lt_lightning.experiments.lmc`,
:mod:`~lt_lightning.experiments.experiment`) turn an experiment into stages of jobs; :func:`run_jobs` runs a stage
through a launcher (:mod:`lt_lightning.experiments.launchers`) and raises :class:`JobsFailed` naming every job that
failed once the others have run. A job's bookkeeping files are :class:`lt_lightning.layout.JobLayout`'s.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from lt_lightning.files import atomic_write_text
from lt_lightning.layout import RESULT_FILE, RESUME_DIR, JobLayout
from lt_lightning.records import read_result

#: A resumable job saves ``resume/last.ckpt`` every this many optimizer steps.
CHECKPOINT_EVERY = 100


@dataclass(frozen=True)
class Job:
    """One training: ``lt-lightning fit --config CONFIG`` in the folder of ``config``, done once every file of
    ``outputs`` exists and it is not mid-run (no ``.job-started``). ``kind`` labels its progress lines;
    ``resumable`` jobs save a checkpoint as they go (:func:`resumable`) and resume from it; a killed job with no
    checkpoint to go on from starts over, without the files and folders of ``restart`` its killed attempt wrote."""

    name: str
    config: str
    outputs: tuple[str, ...]
    kind: str = "training"
    resumable: bool = False
    restart: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        return os.path.dirname(self.config)

    @property
    def files(self) -> JobLayout:
        return JobLayout(self.folder)

    @property
    def done(self) -> bool:
        return all(os.path.isfile(p) for p in self.outputs) and not os.path.exists(self.files.started)

    @property
    def command(self) -> str:
        """The command line that runs this job, from any working directory."""
        return f"lt-lightning fit --config {shlex.quote(self.config)}"

    def fit_args(self) -> list[str]:
        """``fit --config CONFIG``, with ``--ckpt_path`` when a killed run left a checkpoint to go on from."""
        args = ["fit", "--config", self.config]
        if self.resumable and os.path.isfile(self.files.checkpoint):
            args += ["--ckpt_path", self.files.checkpoint]
        return args

    def summary(self) -> str:
        """What a finished job measured: the monitored metric of its ``result.json``, if it writes one."""
        results = [p for p in self.outputs if os.path.basename(p) == RESULT_FILE]
        if not results or not os.path.isfile(results[0]):
            return ""
        record = read_result(results[0])[0]
        value = record.final.get(record.monitor) if record.monitor else None
        return f"{record.monitor} {value:.4g}" if value is not None and math.isfinite(value) else f"{record.monitor} n/a"

    def __str__(self) -> str:
        return self.name


def resumable(config: dict[str, Any], folder: str, every: int = CHECKPOINT_EVERY) -> dict[str, Any]:
    """``config`` with a ``ModelCheckpoint`` that keeps only ``FOLDER/resume/last.ckpt``, written every ``every``
    optimizer steps, so that a killed job goes on from there (the runner deletes it once the job is done)."""
    out = copy.deepcopy(config)
    trainer = out.setdefault("trainer", {})
    trainer["enable_checkpointing"] = True  # Lightning refuses a ModelCheckpoint otherwise
    callbacks = trainer.get("callbacks") or []
    callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
    callbacks.append({"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                      "init_args": {"dirpath": JobLayout(folder).resume_dir, "save_last": True, "save_top_k": 0,
                                    "every_n_train_steps": every}})
    trainer["callbacks"] = callbacks
    return out


def is_resume_checkpoint(spec: Any) -> bool:
    """Whether a config's callback entry is the checkpoint :func:`resumable` added: a job's own, never a training
    derived from its config (a control of an IMP run's tickets)."""
    args = spec.get("init_args") or {} if isinstance(spec, dict) else {}
    dirpath = args.get("dirpath")
    return (isinstance(dirpath, str) and os.path.basename(os.path.normpath(dirpath)) == RESUME_DIR
            and args.get("save_top_k") == 0 and args.get("save_last") is True)


def write_job(job: Job, config: dict[str, Any]) -> None:
    """Write a job's YAML; a finished job of another config in the same place is refused, not mixed in."""
    if job.done and os.path.isfile(job.config):
        with open(job.config) as f:
            if yaml.safe_load(f) != config:
                raise ValueError(f"{job.folder!r} holds a finished training of another configuration"
                                 f" ({job.config}): give this analysis its own out folder.")
    atomic_write_text(job.config, yaml.safe_dump(config, sort_keys=False))


# ---------------------------------------------------------------------------------------------- running
def begin(job: Job) -> None:
    """Mark a job as running (a kill leaves the mark: the job is not done) and clear an earlier failure; a killed
    attempt that left no checkpoint leaves nothing of ``restart`` either (a fresh start would refuse them)."""
    os.makedirs(job.folder, exist_ok=True)
    if os.path.exists(job.files.started) and not (job.resumable and os.path.isfile(job.files.checkpoint)):
        for path in job.restart:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    atomic_write_text(job.files.started, f"pid {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    if os.path.exists(job.files.error):
        os.remove(job.files.error)


def end(job: Job, error: str | None) -> str | None:
    """Close a job's run: on success (no ``error`` and every output written) drop its mark and resume checkpoint;
    else write ``job-error.txt``. Returns the error, if any."""
    if error is None and not all(os.path.isfile(p) for p in job.outputs):
        missing = [p for p in job.outputs if not os.path.isfile(p)]
        error = f"the fit ended without writing {', '.join(missing)}"
    if error is not None:
        atomic_write_text(job.files.error, error + "\n")
        return error
    for path in (job.files.started, job.files.checkpoint):
        with contextlib.suppress(FileNotFoundError):  # under DDP every rank ends the job: one removes it first
            os.remove(path)
    if os.path.isdir(job.files.resume_dir) and not os.listdir(job.files.resume_dir):
        os.rmdir(job.files.resume_dir)
    return None


class JobsFailed(RuntimeError):
    """Some jobs of a stage failed (the others ran); ``failures`` maps each to its error."""

    def __init__(self, failures: dict[Job, str], total: int) -> None:
        self.failures = failures
        lines = [f"  {job.kind} {job.name}: {error} (config {job.config})" for job, error in failures.items()]
        super().__init__(f"{len(failures)} of {total} trainings failed:\n" + "\n".join(lines)
                         + "\nTrainings done so far are kept: run the command again to go on.")


def run_jobs(jobs: Sequence[Job], launcher: Any, echo: Callable[[str], Any] = print) -> None:
    """Run the jobs not done yet through ``launcher`` (:class:`~lt_lightning.experiments.launchers.Launcher`),
    ``echo`` one line per job (``KIND i/n: NAME: ...``), and raise :class:`JobsFailed` naming every failure once
    the others have run."""
    number = {job: i for i, job in enumerate(jobs, 1)}
    for job in jobs:
        if job.done:
            summary = job.summary()
            echo(f"{job.kind} {number[job]}/{len(jobs)}: {job.name}: done before" + (f", {summary}" if summary else ""))
    failures: dict[Job, str] = {}

    def finished(job: Job, error: str | None, seconds: float) -> None:
        head = f"{job.kind} {number[job]}/{len(jobs)}: {job.name}"
        if error is not None:
            failures[job] = error
            echo(f"{head}: FAILED ({error})")
        else:
            summary = job.summary()
            echo(f"{head}: " + (f"{summary}, " if summary else "") + f"{seconds:.3g} s")

    launcher.run([job for job in jobs if not job.done], finished)
    if failures:
        raise JobsFailed({job: failures[job] for job in jobs if job in failures}, len(jobs))
