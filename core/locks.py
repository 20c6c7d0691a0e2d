"""Exclusive locks on run and sweep folders: one process writes a folder at a time.

A lock is an open file with an ``fcntl.flock`` exclusive lock on it. The kernel
releases it when its process ends, however it ends (``kill -9`` included), so a
lock is never stale on this host and nothing has to guess from a pid whether a
holder is still alive. The holder writes its pid, host and start time into the
file, for the message another process gets when it is refused; they stay there after
the release (they are read only while the file is locked; emptying the file cost a
run on ext4 about 0.13 ms, more than the rest of its lock).

A refused process has touched nothing: it opened (or created) the lock file,
failed to lock it, read who holds it and raised. :func:`is_locked` tests a lock by
taking it shared for an instant, so :meth:`FolderLock.acquire` keeps trying for
:data:`ACQUIRE_GRACE` seconds before it refuses.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> with FolderLock(folder / "run.lock", "run x") as lock:
...     lock.held
True
"""

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import RunStoreError

__all__ = ["FolderLock", "lock_holder", "is_locked", "ACQUIRE_GRACE"]

ACQUIRE_GRACE = 0.5
"""Seconds :meth:`FolderLock.acquire` retries a lock held by someone else.

:func:`is_locked` (``Run.meta``, sweep monitors) holds a lock for an instant
while it tests it; without the grace a process starting or resuming a run at
that instant would be refused.
"""


class FolderLock:
    """An exclusive, non-blocking lock on ``path`` (created if missing).

    Parameters
    ----------
    path : path
        The lock file (``RUN/run.lock``, ``SWEEP/sweep.lock``).
    what : str
        Named in the refusal (``"run runs/x/..."``).

    Raises
    ------
    RunStoreError
        On :meth:`acquire` when another process holds the lock; the message names
        its pid and host.
    """

    def __init__(self, path, what="folder"):
        self.path = Path(path)
        self.what = what
        self._fd = None

    @property
    def held(self):
        return self._fd is not None

    def acquire(self):
        """Take the lock or raise :class:`RunStoreError` naming the holder."""
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise RunStoreError(f"cannot open the lock file {self.path}: {exc.strerror}") from None
        try:
            locked = _lock_within(fd, ACQUIRE_GRACE)
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise RunStoreError(f"cannot lock {self.path}: {exc.strerror}") from None
            raise
        if not locked:
            os.close(fd)
            holder = lock_holder(self.path) or {}
            raise RunStoreError(
                f"{self.what} is in use by another process (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')}); wait for it to end or stop it first"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self):
        """Release the lock (the file stays, with the holder's details: removing it would
        race a new holder)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _lock_within(fd, grace):
    """Take an exclusive lock on ``fd``, retrying for ``grace`` seconds; whether taken."""
    deadline = time.monotonic() + grace
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(2 * delay, 0.05)


def lock_holder(path):
    """``{"pid", "host", "since"}`` written by the lock's holder (its last one when
    unlocked), or None."""
    try:
        text = Path(path).read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def is_locked(path):
    """Whether another process holds the lock at ``path`` now (False if no file).

    Tests by taking the lock shared for an instant: concurrent tests do not see
    each other as holders.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
