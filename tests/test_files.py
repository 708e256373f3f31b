import os

import pytest
import torch

from lt_lightning.files import atomic_torch_save, atomic_write


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_leftovers(tmp_path):
    path = tmp_path / "ticket.pt"
    atomic_torch_save({"v": torch.ones(3)}, path)

    def half_then_die(f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # as a kill arriving mid-write would

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_die)
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(3))
    assert os.listdir(tmp_path) == ["ticket.pt"]
