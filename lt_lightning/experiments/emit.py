"""Jobs for launchers lt-lightning does not drive: a W&B sweep whose agent runs them, or a SLURM array script.

>>> from lt_lightning.experiments.jobs import Job
>>> jobs = [Job("a", "/x/a/branch.yaml", ()), Job("b", "/x/b/branch.yaml", ())]
>>> print(slurm_array(jobs, cpus_per_job=2))  # doctest: +ELLIPSIS
#!/bin/bash
#SBATCH --job-name=lt-lightning
#SBATCH --array=0-1
#SBATCH --output=/x/slurm-%A_%a.out
#SBATCH --cpus-per-task=2
...
CONFIGS=(/x/a/branch.yaml /x/b/branch.yaml)
exec lt-lightning fit --config "${CONFIGS[$SLURM_ARRAY_TASK_ID]}"
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

import yaml

from lt_lightning.experiments.jobs import Job

EMITS = ("wandb-sweep", "slurm-array")


def wandb_sweep(jobs: Sequence[Job], name: str = "lt-lightning") -> str:
    """A W&B sweep (``wandb sweep FILE``, then ``wandb agent ID`` on each machine): a grid over the jobs' configs,
    each run ``lt-lightning fit --config FILE`` once."""
    sweep = {"name": name, "method": "grid", "parameters": {"config": {"values": [j.config for j in jobs]}},
             "command": ["${env}", "lt-lightning", "fit", "${args}"]}
    return yaml.safe_dump(sweep, sort_keys=False)


def slurm_array(jobs: Sequence[Job], partition: str | None = None, time_min: int = 60, gpus_per_job: int = 0,
                cpus_per_job: int = 1) -> str:
    """An sbatch script: one array task per job, each ``lt-lightning fit --config FILE`` with that job's config."""
    folder = os.path.commonpath([j.folder for j in jobs]) if jobs else "."
    lines = ["#!/bin/bash", "#SBATCH --job-name=lt-lightning", f"#SBATCH --array=0-{len(jobs) - 1}",
             f"#SBATCH --output={os.path.join(folder, 'slurm-%A_%a.out')}", f"#SBATCH --cpus-per-task={cpus_per_job}",
             f"#SBATCH --time={time_min}"]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if gpus_per_job:
        lines.append(f"#SBATCH --gres=gpu:{gpus_per_job}")
    lines += [f"export OMP_NUM_THREADS={cpus_per_job}",
              "CONFIGS=(" + " ".join(shlex.quote(j.config) for j in jobs) + ")",
              'exec lt-lightning fit --config "${CONFIGS[$SLURM_ARRAY_TASK_ID]}"']
    return "\n".join(lines)


def emit(kind: str, jobs: Sequence[Job], **slurm: object) -> str:
    if kind == "wandb-sweep":
        return wandb_sweep(jobs)
    if kind == "slurm-array":
        return slurm_array(jobs, **slurm)  # type: ignore[arg-type]
    raise ValueError(f"--emit {kind!r} is not known; allowed: {list(EMITS)}.")
