import os
import signal
import subprocess
import sys

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


KILLED_MIDWAY = """
import sys, time
from lt_lightning.files import atomic_write
def stall(f):
    f.write(b"partial bytes"); f.flush(); print("writing", flush=True); time.sleep(60)
atomic_write(sys.argv[1], stall)
"""


def test_a_writer_killed_midway_leaves_a_temporary_file_that_the_next_write_removes(tmp_path):
    path = tmp_path / "ticket.pt"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_MIDWAY, str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writing = subprocess.Popen([sys.executable, "-c", KILLED_MIDWAY, str(path)], stdout=subprocess.PIPE, text=True)
    assert writing.stdout.readline() == "writing\n"  # a second writer, alive: its file must stay
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".tmp")]) == 2
    atomic_torch_save({"v": torch.ones(3)}, path)
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    writing.kill()
    writing.wait()
    assert len(left) == 1 and f".{writing.pid}." in left[0] and f".{writer.pid}." not in left[0]
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.ones(3))
