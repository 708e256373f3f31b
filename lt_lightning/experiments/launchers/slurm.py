"""The ``submitit`` launcher: each job a SLURM array task through submitit (``pip install 'lt-lightning[slurm]'``).

A task runs its fit in the task's process (:func:`~lt_lightning.experiments.launchers.local.fit_here`). A task
preempted or timed out is requeued by submitit (up to ``max_requeues`` times) and its fit resumes from the job's last
checkpoint (``resume/last.ckpt`` of resumable jobs; others start again). ``cluster``: ``None`` picks SLURM where
submitit finds it, ``"local"`` runs the tasks as processes of this machine and ``"debug"`` in this one (both for
tests). Submitit's own files (each task's stdout, stderr, pickles) go to ``folder``, by default ``submitit/`` in the
jobs' common folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from lt_lightning.experiments.jobs import Job
from lt_lightning.experiments.launchers import LAUNCHERS, Finished, Launcher


def import_submitit() -> Any:
    try:
        import submitit
    except ImportError as err:
        raise ImportError(f"the submitit launcher needs submitit, which is missing ({err}): pip install"
                          " 'lt-lightning[slurm]'") from err
    return submitit


class _Fit:
    """The callable a task runs: one job's fit. ``checkpoint`` (submitit's hook on preemption and timeout)
    resubmits it as it is; the fit then resumes from the job's checkpoint."""

    def __init__(self, job: Job, threads: int) -> None:
        self.job, self.threads = job, threads

    def __call__(self) -> str | None:
        import torch

        from lt_lightning.experiments.launchers.local import fit_here

        torch.set_num_threads(self.threads)
        return fit_here(self.job)

    def checkpoint(self) -> Any:
        return import_submitit().helpers.DelayedSubmission(self)


@LAUNCHERS.register("submitit")
class SubmititLauncher(Launcher):
    """SLURM arrays by submitit: ``partition``, ``time_min`` (per task), ``gpus_per_job``, ``cpus_per_job`` (also
    each fit's torch threads), ``mem_gb``, ``max_parallel`` (tasks at once), ``max_requeues``, ``cluster`` and
    ``folder`` (see the module docstring)."""

    name = "submitit"

    def __init__(self, partition: str | None = None, time_min: int = 60, gpus_per_job: int = 0,
                 cpus_per_job: int = 1, mem_gb: float | None = None, max_parallel: int | None = None,
                 max_requeues: int = 3, cluster: str | None = None, folder: str | None = None) -> None:
        import_submitit()  # missing: an error now, before any training
        for name, value, low in (("time_min", time_min, 1), ("gpus_per_job", gpus_per_job, 0),
                                 ("cpus_per_job", cpus_per_job, 1), ("max_requeues", max_requeues, 0),
                                 ("max_parallel", 1 if max_parallel is None else max_parallel, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} is not allowed; expected an int >= {low}.")
        if cluster not in (None, "slurm", "local", "debug"):
            raise ValueError(f"cluster={cluster!r} is not allowed; expected 'slurm', 'local', 'debug' or None.")
        self.partition, self.time_min, self.gpus_per_job, self.cpus_per_job = partition, time_min, gpus_per_job, \
            cpus_per_job
        self.mem_gb, self.max_parallel, self.max_requeues = mem_gb, max_parallel, max_requeues
        self.cluster, self.folder = cluster, folder

    def executor(self, folder: str) -> Any:
        submitit = import_submitit()
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster,
                                         slurm_max_num_timeout=self.max_requeues)
        parameters: dict[str, Any] = {"timeout_min": self.time_min, "gpus_per_node": self.gpus_per_job,
                                      "cpus_per_task": self.cpus_per_job, "tasks_per_node": 1, "nodes": 1,
                                      "name": "lt-lightning"}
        if self.mem_gb is not None:
            parameters["mem_gb"] = self.mem_gb
        if self.partition is not None:
            parameters["slurm_partition"] = self.partition
        if self.max_parallel is not None:
            parameters["slurm_array_parallelism"] = self.max_parallel
        executor.update_parameters(**parameters)
        return executor

    def run(self, jobs: Sequence[Job], finished: Finished) -> None:
        if not jobs:
            return
        submitit = import_submitit()
        folder = self.folder or os.path.join(os.path.commonpath([j.folder for j in jobs]), "submitit")
        started = time.perf_counter()
        tasks = self.executor(folder).submit_array([_Fit(job, self.cpus_per_job) for job in jobs])
        by_task = dict(zip([t.job_id for t in tasks], jobs))
        for task in submitit.helpers.as_completed(tasks):
            try:
                error = task.result()
            except Exception as err:  # the task itself failed (cancelled, out of requeues, node lost)
                error = f"task {task.job_id} failed ({type(err).__name__}: {str(err).strip()[-500:]})"
            finished(by_task[task.job_id], error, time.perf_counter() - started)
