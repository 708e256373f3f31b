"""What a launcher costs per job, and how much faster ``make demo``'s experiment runs on two processes than in one.

- ``overhead``: one training of the demo's model and data (``examples/configs/mnist1d_demo.yaml`` without its IMP
  and rewind callbacks, checkpoints or logger) run as one job through each launcher, one job at a time: ``local``
  (in this process), ``processes`` (``--workers 1``: a process forked from the forkserver) and ``submitit``
  (its ``local`` cluster: a fresh Python process). Each job is timed from the launcher's start to its end, at
  ``--tiny`` steps (almost only the overhead: process start, imports, Trainer and data set-up) and at ``--steps``
  (one demo training, 800 steps); overhead = a tiny job's time, training = the long job's time less the tiny one's.
  Launchers and sizes are interleaved within each repetition.
- ``demo``: ``examples/mnist1d_demo.py`` (3 seeds, controls ``reinit shuffle_masks`` of rounds 2-5, the report),
  ``--workers 1`` (the ``local`` launcher) against ``--workers 2`` (``processes``), each in a fresh folder, wall
  time of the whole command. One pair per invocation (about 5 minutes on 2 cores), the order alternating.

Every result is appended to ``--cache`` (JSON lines); ``--table`` prints the summary from it.

    python benchmarks/launchers.py overhead --reps 3    # about 1 minute
    python benchmarks/launchers.py demo                 # one (local, processes) pair, about 5 minutes
    python benchmarks/launchers.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "examples", "configs", "mnist1d_demo.yaml")


def job_config(folder: str, steps: int) -> str:
    """The demo's training as a plain fit of ``steps`` steps, written in ``folder``."""
    with open(CONFIG) as f:
        config = yaml.safe_load(f)
    config["trainer"].update(max_epochs=None, max_steps=steps, logger=False, callbacks=[])
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def make(name: str):
    from lt_lightning.experiments.launchers import make_launcher

    options = {"processes": {"workers": 1}, "submitit": {"cluster": "local", "max_parallel": 1}}.get(name, {})
    return make_launcher(name, options)


def time_job(launcher, steps: int, root: str) -> float:
    from lt_lightning.experiments.jobs import Job

    job = Job(name=f"{launcher.name}-{steps}", config=job_config(tempfile.mkdtemp(dir=root), steps), outputs=())
    errors = []
    started = time.perf_counter()
    launcher.run([job], lambda job, error, seconds: errors.append(error))
    seconds = time.perf_counter() - started
    if errors != [None]:
        raise SystemExit(f"{launcher.name} job failed: {errors}")
    return seconds


def overhead(args: argparse.Namespace) -> None:
    from lt_lightning.experiments.configs import quiet_console

    quiet_console(1)
    names = ["local", "processes", "submitit"]
    launchers = {name: make(name) for name in names}
    with tempfile.TemporaryDirectory() as root:
        for launcher in launchers.values():  # warm-up: this process's imports and data, the forkserver's start
            time_job(launcher, args.tiny, root)
        for rep in range(args.reps):
            for name in names[rep % 3:] + names[:rep % 3]:
                for steps in (args.tiny, args.steps):
                    record = {"kind": "overhead", "launcher": name, "steps": steps,
                              "seconds": time_job(launchers[name], steps, root)}
                    append(args.cache, record)
                    print(record, flush=True)


def demo(args: argparse.Namespace) -> None:
    done = sum(1 for r in read(args.cache) if r["kind"] == "demo")
    order = [1, 2] if (done // 2) % 2 == 0 else [2, 1]
    for workers in order:
        out = tempfile.mkdtemp(prefix="lt-demo-")
        env = {**os.environ, "WANDB_MODE": "offline"}
        started = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(ROOT, "examples", "mnist1d_demo.py"), "--workers",
                        str(workers), "--out", out], check=True, env=env, stdout=subprocess.DEVNULL)
        record = {"kind": "demo", "workers": workers, "seconds": time.perf_counter() - started}
        shutil.rmtree(out, ignore_errors=True)
        append(args.cache, record)
        print(record, flush=True)


def append(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def table(path: str) -> None:
    records = read(path)
    rows = [r for r in records if r["kind"] == "overhead"]
    if rows:
        tiny, long = min(r["steps"] for r in rows), max(r["steps"] for r in rows)
        print(f"| launcher | job of {tiny} steps (s, median) | job of {long} steps (s) | training (s) |"
              f" overhead / training | n |\n|---|---|---|---|---|---|")
        for name in ("local", "processes", "submitit"):
            small = [r["seconds"] for r in rows if r["launcher"] == name and r["steps"] == tiny]
            big = [r["seconds"] for r in rows if r["launcher"] == name and r["steps"] == long]
            if small and big:
                o, b = statistics.median(small), statistics.median(big)
                print(f"| {name} | {o:.2f} ({min(small):.2f}-{max(small):.2f}) | {b:.2f} | {b - o:.2f} |"
                      f" {o / (b - o):.0%} | {len(small)} |")
    runs = [r for r in records if r["kind"] == "demo"]
    pairs = [(a["seconds"], b["seconds"]) for a, b in zip(runs[::2], runs[1::2])]
    if pairs:
        # Each invocation wrote one pair; order within it alternates.
        ratios = [(a if ra["workers"] == 1 else b) / (b if ra["workers"] == 1 else a)
                  for (a, b), ra in zip(pairs, runs[::2])]
        local = [r["seconds"] for r in runs if r["workers"] == 1]
        procs = [r["seconds"] for r in runs if r["workers"] == 2]
        print(f"\ndemo: local {statistics.median(local):.0f} s ({min(local):.0f}-{max(local):.0f}), processes x2"
              f" {statistics.median(procs):.0f} s ({min(procs):.0f}-{max(procs):.0f}); speed-up per pair"
              f" {statistics.fmean(ratios):.2f}x mean ({min(ratios):.2f}-{max(ratios):.2f}), {len(ratios)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", choices=["overhead", "demo"])
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lt_bench_launchers.jsonl"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tiny", type=int, default=5, help="steps of the tiny job")
    parser.add_argument("--steps", type=int, default=800, help="steps of a demo job (20 epochs)")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.what == "overhead":
        overhead(args)
    elif args.what == "demo":
        demo(args)
    if args.table or args.what is None:
        table(args.cache)


if __name__ == "__main__":
    main()
