"""The classic lottery-ticket figure as one experiment: what ``lt-lightning experiment`` runs.

From one LightningCLI config with an ``IMPCallback`` (the YAML ``lt-lightning fit --config`` reads), three stages:

1. **IMP, one run per seed**: the config with ``seed_everything: S``, its IMP files in ``OUT/seed_S/`` (the run
   folder: ``config.yaml``, ``imp_history.json``, ``tickets/``; Lightning's logs in ``OUT/seed_S/logs/``), each
   a resumable :class:`~lt_lightning.experiments.jobs.Job`;
2. **controls of every run's tickets** (:mod:`~lt_lightning.experiments.branch`): each chosen round x control,
   seeded ``1000 + S``, planned once the IMP runs exist;
3. the report across the seeds (``lt-lightning report``), written by the command.

Every stage goes through a launcher, so the seeds (and then all their controls) train in parallel where the launcher
allows; on a concurrent one (``processes``) a run's controls start as soon as its IMP run is done. A training done
is never run again: running the experiment again does only what is missing, and a training killed mid-way goes on
from its last checkpoint. Everything is checked before the first training: the config builds
(module, data, Trainer and callbacks), it has an IMPCallback, the seeds, controls and rounds are allowed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from lt_lightning.callbacks import IMPCallback
from lt_lightning.experiments.branch import DEFAULT_CONTROLS, Branch, check_controls, plan_branches, write_configs
from lt_lightning.experiments.configs import check_builds, config_callbacks, config_is, logger_below
from lt_lightning.experiments.jobs import Job, JobsFailed, resumable, run_jobs, write_job
from lt_lightning.experiments.launchers import Launcher, make_launcher
from lt_lightning.experiments.lmc import read_config
from lt_lightning.layout import LOGS_DIR, RunLayout, seed_run
from lt_lightning.validation import SEED_RANGE, check_seed

#: A run's controls are seeded this much above its own seed (never the run's own seed, distinct across runs).
CONTROL_SEED_OFFSET = 1000


@dataclass(frozen=True)
class Experiment:
    """IMP with ``seeds`` into ``out``, then ``controls`` of the tickets of ``rounds`` (``None``: every pruned
    round) of each run."""

    out: str
    seeds: tuple[int, ...]
    controls: tuple[str, ...]
    rounds: tuple[int, ...] | None

    @property
    def runs(self) -> list[str]:
        """The run folder of each seed, in the order of ``seeds``."""
        return [seed_run(self.out, seed) for seed in self.seeds]

    def imp_job(self, seed: int) -> Job:
        folder = seed_run(self.out, seed)
        run = RunLayout(folder)
        return Job(f"IMP seed {seed}", run.config_file, (run.history_file,), kind="IMP", resumable=True,
                   restart=(run.history_file, run.tickets))

    @property
    def imp_jobs(self) -> list[Job]:
        return [self.imp_job(seed) for seed in self.seeds]

    def control_seed(self, seed: int) -> int:
        return (seed + CONTROL_SEED_OFFSET) % SEED_RANGE

    def branches(self, seeds: Sequence[int] | None = None) -> dict[str, list[Branch]]:
        """The controls of the tickets of each run of ``seeds`` (default: all), by run folder (the IMP runs must be
        done)."""
        return {seed_run(self.out, seed): plan_branches(seed_run(self.out, seed), self.controls, self.rounds,
                                                        [self.control_seed(seed)])
                for seed in (self.seeds if seeds is None else seeds)}

    def write_branches(self, seeds: Sequence[int] | None = None) -> list[Job]:
        """Write the config of every control of the runs of ``seeds`` (default: all) not done; return every one's
        job."""
        jobs = []
        for run, branches in self.branches(seeds).items():
            write_configs(run, [b for b in branches if not b.job.done])
            jobs += [b.job for b in branches]
        return jobs


def plan_experiment(
    config: str | os.PathLike,
    seeds: Sequence[int],
    controls: Sequence[str] = DEFAULT_CONTROLS,
    rounds: Sequence[int] | None = None,
    out: str | os.PathLike | None = None,
) -> Experiment:
    """Check the experiment and write each seed's IMP config (those not done); nothing trains.

    ``out``: :func:`experiment_out`. Errors name the value and what is allowed; a folder holding a finished run of
    another config is refused.
    """
    loaded = read_config(config)
    if not any(config_is(spec, IMPCallback) for spec in config_callbacks(loaded)):
        raise ValueError(f"{os.fspath(config)!r} configures no IMPCallback: an experiment runs IMP once per seed; add"
                         " lt_lightning.IMPCallback (and RewindCallback) to trainer.callbacks.")
    seeds = _check_seeds(seeds)
    controls = check_controls(controls)
    rounds = None if rounds is None else tuple(dict.fromkeys(_check_rounds(loaded, rounds)))
    experiment = Experiment(experiment_out(config, out), seeds, controls, rounds)
    configs = {seed: imp_config(loaded, seed, seed_run(experiment.out, seed)) for seed in seeds}
    check_builds(configs[seeds[0]], repr(os.fspath(config)))  # every seed's differs only in seed and folders
    for seed in seeds:
        write_job(experiment.imp_job(seed), configs[seed])  # a finished run of another config is refused
    return experiment


def experiment_out(config: str | os.PathLike, out: str | os.PathLike | None = None) -> str:
    """The experiment's folder: ``out``, or ``<trainer.default_root_dir or lt_logs>/<the config file's name>``.

    >>> os.path.relpath(experiment_out("configs/imp.yaml", "runs/a"))
    'runs/a'
    """
    if out is None:
        stem = os.path.splitext(os.path.basename(os.fspath(config)))[0]
        out = os.path.join(read_config(config)["trainer"].get("default_root_dir") or "lt_logs", stem)
    return os.path.abspath(os.fspath(out))


def imp_config(config: dict[str, Any], seed: int, folder: str) -> dict[str, Any]:
    """One seed's IMP training: ``config`` with ``seed_everything: seed``, IMP's files in ``folder`` and everything
    Lightning writes (logs, its saved config, checkpoints) below ``folder/logs``, resumable."""
    out = copy.deepcopy(config)
    out["seed_everything"] = seed
    out.pop("ckpt_path", None)
    trainer = out["trainer"]
    logs = os.path.join(folder, LOGS_DIR)
    callbacks = []
    for spec in config_callbacks(out):
        if config_is(spec, IMPCallback):
            spec = {**spec, "init_args": {**(spec.get("init_args") or {}), "dirpath": folder}}
        elif config_is(spec, ModelCheckpoint) and (spec.get("init_args") or {}).get("dirpath"):
            spec = {**spec, "init_args": {**spec["init_args"], "dirpath": os.path.join(logs, "checkpoints")}}
        callbacks.append(spec)
    trainer["callbacks"] = callbacks
    trainer["default_root_dir"] = logs
    trainer["logger"] = logger_below(trainer.get("logger"), folder, f"seed_{seed}")
    return resumable(out, folder)


def run_experiment(experiment: Experiment, launcher: Launcher | None = None,
                   echo: Callable[[str], Any] = print) -> list[str]:
    """Run the IMP seeds not done, then the controls not done, through ``launcher`` (default ``local``); return
    the run folders. A run's controls start once its IMP run is done (on a concurrent launcher, while other seeds'
    IMP runs go on). Failures raise :class:`~lt_lightning.experiments.jobs.JobsFailed` naming every failed
    training once the others have run."""
    launcher = launcher or make_launcher("local")
    if not launcher.concurrent:
        run_jobs(experiment.imp_jobs, launcher, echo)
        run_jobs(experiment.write_branches(), launcher, echo)
        return experiment.runs
    failures: dict[Job, str] = {}
    counts: list[int] = []

    def seed_chain(seed: int) -> None:
        imp = experiment.imp_job(seed)
        try:
            run_jobs([imp], launcher, echo)
        except JobsFailed as failed:
            failures.update(failed.failures)
            counts.append(1)
            return
        controls = experiment.write_branches([seed])
        try:
            run_jobs(controls, launcher, echo)
        except JobsFailed as failed:
            failures.update(failed.failures)
        counts.append(1 + len(controls))

    with ThreadPoolExecutor(len(experiment.seeds)) as pool:
        for future in [pool.submit(seed_chain, seed) for seed in experiment.seeds]:
            future.result()
    if failures:
        raise JobsFailed(failures, sum(counts))
    return experiment.runs


def stages(experiment: Experiment) -> list[list[Job]]:
    """The trainings not done, stage by stage, for ``--dry-run``: the IMP runs, and the controls once every IMP run
    is done (their tickets do not exist before)."""
    imp = [job for job in experiment.imp_jobs if not job.done]
    if imp:
        return [imp, []]
    return [[], [job for job in experiment.write_branches() if not job.done]]


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    if not seeds:
        raise ValueError("no seeds given: an experiment runs IMP once per seed (e.g. --seeds 0 1 2).")
    for seed in seeds:
        check_seed("seed", seed)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {list(seeds)} repeat one: each seed is one run of the experiment; give distinct seeds.")
    return tuple(seeds)


def _check_rounds(config: dict[str, Any], rounds: Sequence[int]) -> list[int]:
    """The rounds whose tickets get controls, within the IMP config's rounds where the config fixes them."""
    args = next((spec.get("init_args") or {}) for spec in config_callbacks(config) if config_is(spec, IMPCallback))
    total = args.get("rounds", 5) if args.get("target_density") is None else None
    for round_ in rounds:
        if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 1 or (
                isinstance(total, int) and round_ > total):
            allowed = f"1 to {total}" if isinstance(total, int) else "integers >= 1"
            raise ValueError(f"round {round_!r} is not allowed: controls train pruned rounds' tickets, {allowed}"
                             " (round 0 is the dense network).")
    return list(rounds)
