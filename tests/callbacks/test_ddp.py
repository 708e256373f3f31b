"""Multi-process: real DDP on CPU with 2 processes and gloo; sharded strategies refused before training."""

import os
import subprocess
import sys
import time

import pytest
import torch
from conformance.checks import assert_pruned_zero
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

from lt_lightning.callbacks._trainer import check_strategy
from lt_lightning.masks import Masks

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_imp.py")


@pytest.mark.ddp
def test_a_failure_while_pruning_on_rank_zero_stops_every_rank(tmp_path):
    # Without the rank-zero guard, rank one waits in the broadcast of the masks until the 30-minute DDP timeout.
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, SCRIPT, str(tmp_path), "fails_on_rank_zero"], env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode != 0 and time.monotonic() - started < 240
    assert "ValueError: injected failure while pruning" in result.stderr
    assert "IMPCallback failed on rank zero: ValueError: injected failure while pruning" in result.stderr  # rank one
    assert not (tmp_path / "rank0.pt").exists() and not (tmp_path / "rank1.pt").exists()


@pytest.mark.ddp
def test_ddp_masks_identical_on_all_ranks(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, SCRIPT, str(tmp_path), "rank_seeded"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    masks = [Masks.unpack(r["masks"]) for r in ranks]
    assert masks[0] == masks[1]
    assert masks[0].density() == pytest.approx(0.25, abs=1e-3)
    assert ranks[0]["history"] == ranks[1]["history"] and len(ranks[0]["history"]) == 3
    for name, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][name]), name
    # 1348 digits / 2 ranks / batch 32 = 22 steps per epoch; rounds of 44, then 41 steps after rewinding to 3.
    assert ranks[0]["global_step"] == 44 + 2 * 41
    # Only rank zero writes the history and tickets.
    assert sorted(os.listdir(tmp_path / "tickets")) == ["rewind_point.pt", "round_00.pt", "round_01.pt", "round_02.pt"]


class _Trainer:
    """Holds a real, unsharded-incompatible strategy object; these strategies cannot be built on a CPU Trainer."""

    def __init__(self, strategy):
        self.strategy = strategy


@pytest.mark.parametrize("strategy", [FSDPStrategy(), ModelParallelStrategy()], ids=["fsdp", "model_parallel"])
def test_sharded_strategies_are_refused_with_the_supported_list(strategy):
    with pytest.raises(ValueError, match=f"does not support strategy {type(strategy).__name__}; supported: single"):
        check_strategy(_Trainer(strategy), "IMPCallback")


@pytest.mark.ddp
def test_ddp_spawn_results_reach_the_launching_process(tmp_path):
    from lt_lightning import load_ticket
    from lt_lightning.records import read_history

    script = os.path.join(os.path.dirname(__file__), "ddp_spawn_imp.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, script, str(tmp_path)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    launcher = torch.load(tmp_path / "launcher.pt", weights_only=False)
    masks = Masks.unpack(launcher["masks"])
    assert masks == load_ticket(tmp_path / "tickets" / "round_02.pt").masks
    assert masks.density() == pytest.approx(0.25, abs=1e-3)
    on_disk = [r.to_dict() for r in read_history(tmp_path / "imp_history.json")]
    assert launcher["history"] == on_disk and len(on_disk) == 3
    assert_pruned_zero(launcher["state_dict"], masks)  # the launching process's model came back sparse
