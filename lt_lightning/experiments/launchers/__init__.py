"""Launchers by name: what runs a stage of jobs (:class:`~lt_lightning.experiments.jobs.Job`).

- ``local``: in this process, one after another.
- ``processes``: N worker processes on this machine, each job a fresh ``lt-lightning fit`` process.
- ``submitit``: SLURM job arrays through submitit (``pip install 'lt-lightning[slurm]'``).

A launcher is a class whose ``run(jobs, finished)`` runs every job (the runner has already left out those done)
and calls ``finished(job, error_or_None, seconds)`` once per job; a failing job must not stop the others.
:func:`make_launcher` builds one by name from keyword options, checked before any training.

>>> make_launcher("local").name
'local'
>>> make_launcher("mpi")
Traceback (most recent call last):
...
ValueError: unknown launcher 'mpi'; known launchers: ['local', 'processes', 'submitit'].
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lt_lightning.experiments.jobs import Job
from lt_lightning.registry import Registry

Finished = Callable[[Job, "str | None", float], Any]


class Launcher:
    """Base of the launchers: ``name`` in the registry, :meth:`run` the stage. A ``concurrent`` launcher may be
    given several stages at once from several threads (they share its workers): an experiment then starts a run's
    controls as soon as that run is done, not once every run is."""

    name = "launcher"
    concurrent = False

    def run(self, jobs: Sequence[Job], finished: Finished) -> None:
        raise NotImplementedError


LAUNCHERS: Registry[Callable[..., Launcher]] = Registry("launcher")


def make_launcher(name: str, options: Mapping[str, Any] | None = None) -> Launcher:
    """The launcher ``name`` built with ``options`` (those set, i.e. not ``None``); ``ValueError`` naming an unknown
    launcher, or an option it does not take and the ones it does."""
    LAUNCHERS.check(name)
    factory = LAUNCHERS[name]
    given = {k: v for k, v in (options or {}).items() if v is not None}
    allowed = [p for p in inspect.signature(factory).parameters]
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"the {name} launcher takes no option {unknown}; its options: {allowed or 'none'}.")
    return factory(**given)


# Registered on import: each module registers its class.
from lt_lightning.experiments.launchers import local, processes, slurm  # noqa: E402, F401

__all__ = ["LAUNCHERS", "Launcher", "make_launcher"]
