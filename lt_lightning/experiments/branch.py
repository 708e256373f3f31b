"""Controls of an IMP run's tickets, each trained as a fit of its own: what ``lt-lightning branch`` runs.

A *branch* is one training of one control (:mod:`lt_lightning.controls`) of one round's ticket with one seed. Its
config is the run's own ``config.yaml`` (the Trainer, model and data of the IMP run, as LightningCLI saved it) with
the IMP and rewind callbacks replaced by ``MaskingCallback(ticket=..., control=..., seed=...)`` and a
``RecordCallback``, ``seed_everything: seed``, and its logs under
``RUN_DIR/branches/<control>/round_NN/seed_S/``. A branch trains as long as one training of the run (the config's
``max_steps``/``max_epochs``: the length of round 0). Each is a :class:`~lt_lightning.experiments.jobs.Job`, a
plain ``lt-lightning fit --config .../branch.yaml`` that saves a checkpoint as it goes: :func:`run_branches` runs
them through a launcher (in this process, on worker processes, on SLURM), and a branch whose ``result.json``
exists is done.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from lt_lightning.callbacks import BaseMaskingCallback, IMPCallback, RewindCallback
from lt_lightning.controls import CONTROLS, init_file
from lt_lightning.experiments.configs import check_builds, config_callbacks, config_is, logger_into
from lt_lightning.experiments.jobs import Job, is_resume_checkpoint, resumable, run_jobs, write_job
from lt_lightning.experiments.launchers import Launcher, make_launcher
from lt_lightning.layout import BRANCH_CONFIG, RESULT_FILE, RUN_CONFIG, RunLayout
from lt_lightning.records import RoundRecord, load_history, read_result
from lt_lightning.ticket import load_ticket

DEFAULT_CONTROLS = ("reinit", "shuffle_masks")
# Lightning's seed_everything takes seeds in [0, 2**32) (it replaces others with a random seed, with a warning).
_MAX_SEED = 2**32


@dataclass(frozen=True)
class Branch:
    """One training: ``control`` of round ``round``'s ticket (file ``ticket``) with ``seed``, in folder ``dir``."""

    control: str
    round: int
    seed: int
    ticket: str
    dir: str

    @property
    def result(self) -> str:
        return os.path.join(self.dir, RESULT_FILE)

    @property
    def job(self) -> Job:
        """The training, resumable (a ``MaskingCallback`` and ``RecordCallback`` go on from a checkpoint)."""
        return Job(str(self), os.path.join(self.dir, BRANCH_CONFIG), (self.result,), kind="branch", resumable=True)

    def __str__(self) -> str:
        return f"{self.control} round {self.round:02d} seed {self.seed}"


def plan_branches(
    run_dir: str | os.PathLike,
    controls: Sequence[str] = DEFAULT_CONTROLS,
    rounds: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Branch]:
    """The branches of the IMP run in ``run_dir``: every round in ``rounds`` (default: every pruned round, 1 on)
    x ``controls`` x ``seeds`` (default: the run's ``seed_everything`` + 1), round by round.

    Checks everything a branch needs before any training, with errors naming the value: the run's history and
    config, the rounds and their tickets, the controls (and the rewind point ``shuffle_masks`` needs), the seeds
    (integers in [0, 2**32), other than the run's own seed: with it a control's "new" initialization and data order
    would be the ticket's).
    """
    run_dir = os.path.abspath(os.fspath(run_dir))
    history = load_history(run_dir)
    config = run_config(run_dir)
    check_controls(controls)
    run_seed = config.get("seed_everything")
    run_seed = run_seed if isinstance(run_seed, int) and not isinstance(run_seed, bool) else None
    seeds = list(dict.fromkeys(seeds)) if seeds is not None else [((run_seed or 0) + 1) % _MAX_SEED]
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _MAX_SEED:
            raise ValueError(f"seed {seed!r} is not allowed; seeds are integers in [0, 2**32).")
        if seed == run_seed:
            raise ValueError(f"seed {seed} is the IMP run's own seed_everything: a control trained with it would start"
                             " from the ticket's own initialization and see its data order. Use other seeds.")
    by_round = {r.round: r for r in history}
    rounds = list(dict.fromkeys(rounds)) if rounds is not None else [r for r in by_round if r > 0]
    branches = []
    for round_ in rounds:
        if round_ == 0:
            raise ValueError("round 0 is the dense network: its ticket keeps every weight, so its controls would all"
                             f" be dense trainings, not controls of a ticket. Give pruned rounds: {sorted(by_round)[1:]}.")
        if round_ not in by_round:
            raise ValueError(f"round {round_!r} is not in the run's history; its rounds are {sorted(by_round)}.")
        ticket = _ticket_file(run_dir, by_round[round_])
        loaded = load_ticket(ticket)
        for control in dict.fromkeys(controls):
            init_file(control, loaded, ticket)  # a control needing weights the ticket lacks fails here, not later
            branches += [Branch(control, round_, seed, ticket, RunLayout(run_dir).branch(control, round_, seed))
                         for seed in seeds]
    return branches


def check_controls(controls: Sequence[str]) -> tuple[str, ...]:
    """The controls, each once; ``ValueError`` for none or an unknown one, listing the known controls."""
    if not controls:
        raise ValueError(f"no controls given; known controls: {sorted(CONTROLS)}.")
    for control in controls:
        if control not in CONTROLS:
            raise ValueError(f"unknown control {control!r}; known controls: {sorted(CONTROLS)}.")
    return tuple(dict.fromkeys(controls))


def run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The LightningCLI config saved in ``run_dir`` (``config.yaml``); ``ValueError`` naming the file if there is
    none, it is not YAML, or it configures no IMPCallback."""
    path = os.path.join(os.fspath(run_dir), RUN_CONFIG)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {RUN_CONFIG} in {os.fspath(run_dir)!r}: branches re-run the IMP run's"
                                " LightningCLI config (`lt-lightning fit --config ...` saves it in the log dir).")
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path!r} is not readable YAML ({err}).") from err
    if not isinstance(config, dict) or not any(config_is(c, IMPCallback) for c in config_callbacks(config)):
        raise ValueError(f"{path!r} configures no IMPCallback: it is not the config of an IMP run.")
    return config


def branch_config(run: dict[str, Any], branch: Branch, history: Sequence[RoundRecord]) -> dict[str, Any]:
    """The config of ``branch``: the run's config ``run`` with the IMP and rewind callbacks (and any other masking
    callback) replaced by a MaskingCallback of the branch's control and a RecordCallback of the run's monitored
    metric, ``seed_everything`` the branch's seed, and every output (logger, checkpoints) in the branch's folder."""
    config = copy.deepcopy(run)
    config["seed_everything"] = branch.seed
    if "ckpt_path" in config:
        config["ckpt_path"] = None  # the run may have been resumed; a branch starts afresh
    trainer = config.setdefault("trainer", {})
    callbacks, modes = [], None
    for spec in config_callbacks(config):
        if config_is(spec, IMPCallback):
            modes = (spec.get("init_args") or {}).get("modes")
        if config_is(spec, (IMPCallback, RewindCallback, BaseMaskingCallback)) or is_resume_checkpoint(spec):
            continue  # the run's resume checkpoint is its own; the branch gets one of its own below
        if config_is(spec, ModelCheckpoint) and (spec.get("init_args") or {}).get("dirpath"):
            spec = {**spec, "init_args": {**spec["init_args"], "dirpath": os.path.join(branch.dir, "checkpoints")}}
        callbacks.append(spec)
    callbacks.append({"class_path": "lt_lightning.MaskingCallback",
                      "init_args": {"ticket": branch.ticket, "control": branch.control, "seed": branch.seed}})
    callbacks.append({"class_path": "lt_lightning.RecordCallback",
                      "init_args": {"path": branch.result, "monitor": history[0].monitor, "mode": history[0].mode,
                                    "modes": modes}})
    trainer["callbacks"] = callbacks
    trainer["default_root_dir"] = branch.dir
    trainer["logger"] = logger_into(trainer.get("logger"), branch.dir, str(branch))
    return resumable(config, branch.dir)


def write_configs(run_dir: str | os.PathLike, branches: Sequence[Branch]) -> list[Job]:
    """Write each branch's ``branch.yaml``; return their jobs. A run config that ``fit`` would refuse fails first,
    before any is written."""
    run, history = run_config(run_dir), load_history(run_dir)
    configs = [branch_config(run, branch, history) for branch in branches]
    if configs:  # the branches differ in ticket, control, seed and folders only: one check tells for all
        check_builds(configs[0], f"the IMP run's {os.path.join(os.fspath(run_dir), RUN_CONFIG)!r}")
    for branch, config in zip(branches, configs):
        write_job(branch.job, config)
    return [b.job for b in branches]


def run_branches(
    run_dir: str | os.PathLike,
    branches: Sequence[Branch],
    launcher: Launcher | None = None,
    echo: Callable[[str], Any] = print,
) -> list[RoundRecord]:
    """Train the branches not done yet through ``launcher`` (default: ``local``, one after the other in this
    process), ``echo`` one line per branch, and return every branch's record.

    Failing branches raise :class:`~lt_lightning.experiments.jobs.JobsFailed` naming each, once the others have
    run; what was done stays done, so running again goes on (a killed branch from its last checkpoint).
    """
    write_configs(run_dir, [b for b in branches if not b.job.done])
    run_jobs([b.job for b in branches], launcher or make_launcher("local"), echo)
    return [read_result(b.result)[0] for b in branches]


def _ticket_file(run_dir: str, record: RoundRecord) -> str:
    """The round's ticket, in the run's ``tickets/`` folder (the history may hold a path relative to where the run
    was started)."""
    if record.ticket is None:
        raise ValueError(f"round {record.round} of {run_dir!r} saved no ticket (IMPCallback(save_tickets=False)?).")
    path = RunLayout(run_dir).ticket(record.round)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"round {record.round}'s ticket {path!r} does not exist.")
    return path
