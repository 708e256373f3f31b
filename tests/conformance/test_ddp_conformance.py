"""Every masking method of ``METHODS`` under real DDP (2 CPU processes, gloo, one launch for all): both ranks end
with the same masks and the same weights."""

import os
import subprocess
import sys

import pytest
import torch

from conformance.methods import METHODS
from lt_lightning.masks import Masks

SCRIPT = os.path.join(os.path.dirname(__file__), "ddp_conformance.py")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.mark.ddp
@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_masks_and_weights_identical_on_both_ranks(ranks, method):
    first, second = (r[method.name] for r in ranks)
    masks = Masks.unpack(first["masks"])
    assert masks == Masks.unpack(second["masks"])
    assert masks.density() == pytest.approx(method.density, abs=method.tolerance)
    assert first["global_step"] == second["global_step"] > 0
    for name, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][name]), name
