"""One `lt-lightning fit` of an IMP config on two "nodes" of one process each, under Lightning's SLURMEnvironment:
the environment variables set as srun would, DDP on CPU with gloo. Each node has its own working folder (its own
disk), so that what rank 1 writes shows."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from lt_lightning.masks import Masks
from lt_lightning.records import read_history
from lt_lightning.ticket import load_ticket

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = {
    "seed_everything": 0,
    "trainer": {"accelerator": "cpu", "devices": 1, "num_nodes": 2, "strategy": "ddp", "max_steps": 20,
                "val_check_interval": 10, "check_val_every_n_epoch": None, "limit_val_batches": 2,
                "log_every_n_steps": 5, "enable_checkpointing": False, "enable_model_summary": False,
                "enable_progress_bar": False, "deterministic": True,
                "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                           "init_args": {"save_dir": "logs", "name": "", "version": "run"}},
                "callbacks": [
                    {"class_path": "multinode_modules.SaveRankState"},
                    {"class_path": "lt_lightning.RewindCallback", "init_args": {"step": "2it"}},
                    {"class_path": "lt_lightning.IMPCallback",
                     "init_args": {"rounds": 2, "pruning_fraction": 0.5, "score": "global_rank_seeded",
                                   "dirpath": "run", "monitor": "val_acc", "mode": "max"}}]},
    "model": {"class_path": "lt_lightning.zoo.Classifier",
              "init_args": {"model": "mlp", "model_kwargs": {"in_features": 64, "hidden": [32, 16], "num_classes": 10},
                            "optimizer": "sgd", "lr": 0.1}},
    "data": {"class_path": "lt_lightning.zoo.DigitsDataModule", "init_args": {"batch_size": 32}},
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ddp
def test_imp_fit_on_two_slurm_nodes_computes_masks_once_and_writes_files_once(tmp_path):
    config = tmp_path / "imp.yaml"
    config.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_LOCALID": "0",
             "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "lt-imp", "SLURM_NODELIST": "localhost",
             "SLURM_JOB_NODELIST": "localhost", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LOCAL_RANK", "RANK", "WORLD_SIZE"))}
    nodes = [tmp_path / f"node{rank}" for rank in (0, 1)]
    processes = []
    for rank, node in enumerate(nodes):
        node.mkdir()
        env = {**base, **slurm, "SLURM_PROCID": str(rank), "SLURM_NODEID": str(rank), "WANDB_MODE": "offline",
               "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([HERE, *filter(None, [os.environ.get("PYTHONPATH")])])}
        processes.append(subprocess.Popen([sys.executable, "-m", "lt_lightning.cli", "fit", "--config", str(config)],
                                          cwd=node, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=240)[0])
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]

    ranks = [torch.load(node / f"rank{rank}.pt", weights_only=False) for rank, node in enumerate(nodes)]
    for rank, state in enumerate(ranks):
        assert (state["environment"], state["global_rank"], state["node_rank"], state["world_size"],
                state["num_nodes"]) == ("SLURMEnvironment", rank, rank, 2, 2)
    masks = [Masks.unpack(r["masks"]) for r in ranks]
    assert masks[0] == masks[1]  # scores seeded by the global rank: computed on rank zero, broadcast
    assert masks[0].density() < 0.3
    assert ranks[0]["history"] == ranks[1]["history"] and len(ranks[0]["history"]) == 3
    for name, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][name]), name
    # Files once, by global rank zero (node 0); node 1's folder holds only what the test's callback saved there.
    history = read_history(nodes[0] / "run" / "imp_history.json")
    assert [r.to_dict() for r in history] == [{**h, "wall_time_s": r.wall_time_s} for h, r in
                                              zip(ranks[0]["history"], history)]
    assert sorted(os.listdir(nodes[0] / "run" / "tickets")) == [
        "rewind_point.pt", "round_00.pt", "round_01.pt", "round_02.pt"]
    assert load_ticket(nodes[0] / "run" / "tickets" / "round_02.pt").masks == masks[0]
    assert os.path.isfile(nodes[0] / "logs" / "run" / "config.yaml")
    assert sorted(os.listdir(nodes[1])) == ["rank1.pt"], sorted(os.listdir(nodes[1]))
