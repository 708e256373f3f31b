"""Writing experiment files atomically: a kill mid-write leaves the old file or none, never a truncated one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "a", "b.txt")
    >>> atomic_write(target, lambda f: f.write(b"hello")); open(target).read()
    'hello'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
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


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))
