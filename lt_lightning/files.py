"""Writing experiment files atomically: a kill mid-write leaves the old file or none, never a truncated one."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable
from typing import IO, Any

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``. Temporary files of
    ``path`` that a killed writer on this machine left behind (``kill -9`` skips the cleanup) are removed first.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "a", "b.txt")
    >>> atomic_write(target, lambda f: f.write(b"hello")); open(target).read()
    'hello'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # The writer's host and process id in the name tell a killed writer's leftover from a write in progress.
    prefix = f".{os.path.basename(path)}.{socket.gethostname()}."
    _remove_leftovers(folder, prefix)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{prefix}{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # Atomic on POSIX and Windows within one file system: a killed process leaves the old file or the new one.
        # (No fsync: surviving a power cut is not the aim, and it costs milliseconds per file.)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _remove_leftovers(folder: str, prefix: str) -> None:
    if os.name == "nt":  # os.kill(pid, 0) is no liveness test there
        return
    for name in os.listdir(folder):
        pid = name[len(prefix):].split(".", 1)[0]
        if name.startswith(prefix) and name.endswith(".tmp") and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):  # another writer removed it first
                os.remove(os.path.join(folder, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))
