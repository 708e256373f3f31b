"""One command at a time in an experiment folder: ``FOLDER/.lt-lightning.lock`` names the holder while it works.

A second command on the same folder is refused, naming the holder, before it writes anything; a lock left by a
process that no longer runs on this machine (killed with SIGKILL, say) is taken over with a note.

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with folder_lock(folder, "lt-lightning experiment"):  # doctest: +ELLIPSIS
...     with folder_lock(folder, "another"):
...         pass
Traceback (most recent call last):
...
RuntimeError: ...is in use by another lt-lightning command (pid ...): wait for it to end...
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lt_lightning.layout import LOCK_FILE

_HOLDER = re.compile(r"^pid (\d+) on (\S+) ")


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold ``FOLDER/.lt-lightning.lock`` (created if need be) while the block runs; ``RuntimeError`` naming the
    holder if another live process holds it."""
    path = os.path.join(os.fspath(folder), LOCK_FILE)
    os.makedirs(os.fspath(folder), exist_ok=True)
    holder = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}\n"
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            held = _read(path)
            if attempt or not _gone(held):
                raise RuntimeError(f"{os.fspath(folder)!r} is in use by another lt-lightning command ({held}): wait"
                                   f" for it to end, or remove {path} if that process is gone.") from None
            print(f"lt-lightning: taking over {path}, left by a process that no longer runs ({held}).",
                  file=sys.stderr)
            os.remove(path)
    with os.fdopen(fd, "w") as f:
        f.write(holder)
    try:
        yield
    finally:
        os.remove(path)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip() or "no holder written yet"
    except OSError:
        return "gone meanwhile"


def _gone(held: str) -> bool:
    """Whether the holder named in a lock file is a process of this machine that has ended."""
    match = _HOLDER.match(held)
    if match is None or match.group(2) != socket.gethostname():
        return False  # another machine's (a shared file system): only its holder knows
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
