"""The ``processes`` launcher: N worker processes on this machine, each job a fresh ``lt-lightning fit`` process.

Each job's process is forked from a server that has imported lt-lightning, Lightning and torch once (the standard
library's ``forkserver``): a job starts in milliseconds instead of the seconds those imports take (about 8 s of CPU
on our 2-core machine, as long as a small training), and still shares no state with the others.

With GPUs, one worker per visible GPU by default, each job seeing one (``CUDA_VISIBLE_DEVICES``). On CPU, one worker
per core by default, each job with ``cores // workers`` torch threads: never more threads than cores in all (two
cores oversubscribed once slowed a run 50x), so more workers than cores is refused. A job's output goes to its
folder's ``job.log``; a failing job is recorded (``job-error.txt``, the last line of its log) and the others go on.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from queue import Queue

from lt_lightning.experiments.jobs import Job, begin, end
from lt_lightning.experiments.launchers import LAUNCHERS, Finished, Launcher

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cpu_cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs jobs may use: ``CUDA_VISIBLE_DEVICES`` if set, else every CUDA device torch sees."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [g for g in given.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


@LAUNCHERS.register("processes")
class ProcessesLauncher(Launcher):
    """``workers`` processes at a time (default: one per visible GPU, else one per core)."""

    name = "processes"
    concurrent = True

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers={workers!r} is not allowed; expected an int >= 1 (processes at a time).")
        self.gpus = visible_gpus()
        cores = cpu_cores()
        if workers is None:
            workers = len(self.gpus) or cores
        if not self.gpus and workers > cores:
            raise ValueError(f"workers={workers} on {cores} CPU cores would run more torch threads than cores (two"
                             f" oversubscribed cores once slowed a run 50x); allowed: 1 to {cores}.")
        self.workers = workers
        self.threads = max(1, cores // workers)
        # Shared by every stage this launcher runs at once (concurrent): never more than `workers` jobs in all.
        self._slots: Queue[int] = Queue()
        for slot in range(workers):
            self._slots.put(slot)
        self._lock = threading.Lock()  # one progress line at a time

    def _env(self, slot: int) -> dict[str, str]:
        env = {**os.environ, **{name: str(self.threads) for name in _THREAD_VARIABLES}}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        return env

    def _one(self, job: Job, slot: int) -> str | None:
        begin(job)
        process = _FORKS.Process(target=_fit, args=(job.fit_args(), self._env(slot), self.threads, job.files.log,
                                                    os.getcwd(), sys.path))
        process.start()
        process.join()
        code = process.exitcode
        error = None if code == 0 else f"{_status(code)}: {last_line(job.files.log)} (log: {job.files.log})"
        return end(job, error)

    def run(self, jobs: Sequence[Job], finished: Finished) -> None:
        slots, lock = self._slots, self._lock

        def work(job: Job) -> None:
            slot = slots.get()  # waiting threads get slots first come, first served
            started = time.perf_counter()
            try:
                error = self._one(job, slot)
            except Exception as err:  # the launcher's own trouble (a full disk, say): this job fails, others go on
                error = f"{type(err).__name__}: {err}"
            finally:
                slots.put(slot)
            with lock:
                finished(job, error, time.perf_counter() - started)

        with ThreadPoolExecutor(self.workers) as pool:
            for future in [pool.submit(work, job) for job in jobs]:
                future.result()


# Job processes fork from a server that imported the CLI (and so Lightning and torch) once.
_FORKS = multiprocessing.get_context("forkserver")
_FORKS.set_forkserver_preload(["lt_lightning.cli"])


def _fit(args: list[str], env: dict[str, str], threads: int, log: str, cwd: str, path: list[str]) -> None:
    """A job's process: ``lt-lightning fit`` with the job's environment, output into its log; exits with its status."""
    os.environ.clear()
    os.environ.update(env)  # CUDA_VISIBLE_DEVICES is read when CUDA starts, later in the fit
    os.chdir(cwd)
    sys.path[:] = path  # a config's own modules (mymod.MyNet) import as they would in the parent
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # the process's own, closed at its exit
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    import torch

    from lt_lightning.cli import main

    torch.set_num_threads(threads)  # the server imported torch before the job's OMP_NUM_THREADS was set
    sys.argv = ["lt-lightning", *args]
    sys.exit(main(args))


def _status(code: int | None) -> str:
    """``exit status 1``, or the signal that ended a job's process.

    >>> _status(1), _status(-9)
    ('exit status 1', 'killed by signal 9 (SIGKILL)')
    """
    if code is not None and code < 0:
        import signal

        return f"killed by signal {-code} ({signal.Signals(-code).name})"
    return f"exit status {code}"


def last_line(path: str) -> str:
    """The last non-empty line of a log: the error a failed fit printed last."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][-500:] if lines else "no output"
