"""The ``local`` launcher: every job in this process, one after another (what ``lt-lightning branch`` always did)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

from lt_lightning.experiments.configs import quiet_lightning
from lt_lightning.experiments.jobs import Job, begin, end
from lt_lightning.experiments.launchers import LAUNCHERS, Finished, Launcher


def fit_here(job: Job) -> str | None:
    """Run one job's fit in this process (markers and resume checkpoint included); its error, or ``None``."""
    from lt_lightning.cli import lightning_cli  # the CLI imports the experiments

    begin(job)
    error = None
    try:
        with warnings.catch_warnings(), quiet_lightning():
            # Each fit gets its own arguments; sys.argv holds the experiment's command line.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            lightning_cli(job.fit_args())
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
    return end(job, error)


@LAUNCHERS.register("local")
class LocalLauncher(Launcher):
    """In this process, one job after another; Lightning's info lines are held back (each job's logs are in its
    folder)."""

    name = "local"

    def run(self, jobs: Sequence[Job], finished: Finished) -> None:
        for job in jobs:
            started = time.perf_counter()
            error = fit_here(job)
            finished(job, error, time.perf_counter() - started)
