"""Every file a run leaves, named in one place and read back from it (as OpenLTH's ``foundations/paths.py``).

A *run folder* (an IMP run's log dir, or ``IMPCallback(dirpath=...)``) holds::

    imp_history.json               the rounds (lt_lightning.records)
    config.yaml                    the LightningCLI config that ran it (SaveConfigCallback)
    tickets/round_NN.pt            each round's ticket (masks + rewind weights)
    tickets/trained_NN.pt          each round's trained network, with save_trained=True
    tickets/rewind_point.pt        the unpruned weights at the rewind step
    branches/<control>/round_NN/seed_S/result.json   controls of the tickets (lt-lightning branch)
    report/report.md               lt-lightning report

A *job folder* (one training of an experiment) holds its config, ``job.log`` (its output under the ``processes``
launcher), ``resume/last.ckpt`` while it runs, ``.job-started`` from its start to its successful end (a killed job
leaves it, so it is not taken as done) and ``job-error.txt`` when it failed. An analysis folder holds
``instability.json`` or ``rewind_search.json``; an experiment folder holds ``.lt-lightning.lock`` while a command
works in it. ``lt-lightning experiment`` leaves one run folder per seed, ``OUT/seed_S/`` (its ``config.yaml`` the
training's own, Lightning's logs and saved config in ``logs/``), and ``OUT/report/``.

>>> run = RunLayout("runs/v0")
>>> run.ticket(3), run.branch("reinit", 2, 7)
('runs/v0/tickets/round_03.pt', 'runs/v0/branches/reinit/round_02/seed_7')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lt_lightning.records import RoundRecord
    from lt_lightning.ticket import Ticket

HISTORY_FILE = "imp_history.json"
RUN_CONFIG = "config.yaml"
TICKETS_DIR = "tickets"
REWIND_POINT_FILE = "rewind_point.pt"
BRANCHES_DIR = "branches"
BRANCH_CONFIG = "branch.yaml"
RESULT_FILE = "result.json"
REPORT_DIR = "report"
REPORT_PAGE = "report.md"
INSTABILITY_FILE = "instability.json"
SEARCH_FILE = "rewind_search.json"
# One job (training) of an experiment.
JOB_LOG = "job.log"
JOB_ERROR = "job-error.txt"
JOB_STARTED = ".job-started"
RESUME_DIR = "resume"
RESUME_CHECKPOINT = "last.ckpt"
LOCK_FILE = ".lt-lightning.lock"
LOGS_DIR = "logs"


def ticket_name(round_: int) -> str:
    """A round's ticket file name.

    >>> ticket_name(2)
    'round_02.pt'
    """
    return f"round_{round_:02d}.pt"


def trained_name(round_: int) -> str:
    """A round's trained network file name (``IMPCallback(save_trained=True)``).

    >>> trained_name(2)
    'trained_02.pt'
    """
    return f"trained_{round_:02d}.pt"


@dataclass(frozen=True)
class RunLayout:
    """The files of the run in folder ``root``; paths only, nothing is read until asked."""

    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", os.fspath(self.root))

    @property
    def history_file(self) -> str:
        return os.path.join(self.root, HISTORY_FILE)

    @property
    def config_file(self) -> str:
        return os.path.join(self.root, RUN_CONFIG)

    @property
    def tickets(self) -> str:
        return os.path.join(self.root, TICKETS_DIR)

    @property
    def rewind_point(self) -> str:
        return os.path.join(self.tickets, REWIND_POINT_FILE)

    @property
    def report(self) -> str:
        return os.path.join(self.root, REPORT_DIR)

    def ticket(self, round_: int) -> str:
        return os.path.join(self.tickets, ticket_name(round_))

    def trained(self, round_: int) -> str:
        return os.path.join(self.tickets, trained_name(round_))

    def branch(self, control: str, round_: int, seed: int) -> str:
        """The folder of the training of ``control`` of round ``round_``'s ticket with ``seed``."""
        return branch_dir(self.root, control, round_, seed)

    def history(self) -> list[RoundRecord]:
        """The rounds (:func:`lt_lightning.records.load_history`: errors name the folder)."""
        from lt_lightning.records import load_history

        return load_history(self.root)

    def load_ticket(self, round_: int) -> Ticket:
        from lt_lightning.ticket import load_ticket

        return load_ticket(self.ticket(round_))


def seed_run(out: str | os.PathLike, seed: int) -> str:
    """The run folder of seed ``seed`` of an ``lt-lightning experiment`` in ``out``.

    >>> seed_run("lt_logs/demo", 2)
    'lt_logs/demo/seed_2'
    """
    return os.path.join(os.fspath(out), f"seed_{seed}")


def branch_dir(run_dir: str | os.PathLike, control: str, round_: int, seed: int) -> str:
    """The folder of the training of ``control`` of round ``round_``'s ticket of the run in ``run_dir``, with ``seed``.

    >>> branch_dir("runs/v0", "shuffle_masks", 5, 1)
    'runs/v0/branches/shuffle_masks/round_05/seed_1'
    """
    return os.path.join(os.fspath(run_dir), BRANCHES_DIR, control, f"round_{round_:02d}", f"seed_{seed}")


@dataclass(frozen=True)
class JobLayout:
    """The bookkeeping files of one job (training) in folder ``folder``."""

    folder: str

    @property
    def log(self) -> str:
        return os.path.join(self.folder, JOB_LOG)

    @property
    def error(self) -> str:
        return os.path.join(self.folder, JOB_ERROR)

    @property
    def started(self) -> str:
        return os.path.join(self.folder, JOB_STARTED)

    @property
    def resume_dir(self) -> str:
        return os.path.join(self.folder, RESUME_DIR)

    @property
    def checkpoint(self) -> str:
        """The checkpoint a killed job resumes from (``None``-free: check it exists)."""
        return os.path.join(self.resume_dir, RESUME_CHECKPOINT)
