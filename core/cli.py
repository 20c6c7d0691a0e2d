"""What the command-line tools share: one-line errors, run arguments, stop signals."""

import errno
import os
import signal
import sys
import threading
import traceback
from pathlib import Path

from .errors import RelulabError, RunStoreError

__all__ = ["report_error", "user_path_error", "add_run_argument", "StopSignals"]


def add_run_argument(parser, what="run"):
    """Add the ``RUN`` positional (default ``latest``) and ``--runs-dir`` to a parser."""
    parser.add_argument(
        "run",
        nargs="?",
        default="latest",
        help=f"{what} directory, experiment directory or 'latest' (default)",
    )
    parser.add_argument("--runs-dir", help="root of the run store for 'latest'")


class StopSignals:
    """Context manager turning SIGINT / SIGTERM into a stop request.

    ``requested`` becomes the signal's name (``"SIGINT"``, ``"SIGTERM"``); with
    ``raise_on_repeat`` a second SIGINT raises KeyboardInterrupt (the user insists).
    Handlers are installed only in the main thread and restored on exit.
    """

    def __init__(self, raise_on_repeat=True):
        self.raise_on_repeat = raise_on_repeat
        self.requested = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raise_on_repeat and self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


# What the file system answers when a path the user chose cannot serve (a runs dir that
# is a file, read-only or full): the user fixes those, as a bad config.
USER_ERRNOS = frozenset(
    {
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
    }
)


def user_path_error(exc, paths):
    """``exc`` as a :class:`core.errors.RunStoreError` if it is the file system refusing
    a path under one of ``paths`` (the runs dir or run the user named), else ``exc``.

    Only refusals a user fixes count (:data:`USER_ERRNOS`: not a directory, permission
    denied, read-only file system, no space left...); any other ``OSError``, or one
    about a path elsewhere, stays a bug.

    Examples
    --------
    >>> err = PermissionError(errno.EACCES, "Permission denied", "/data/runs/exp")
    >>> user_path_error(err, ["/data/runs"])
    RunStoreError('cannot write under /data/runs: Permission denied: /data/runs/exp')
    >>> user_path_error(err, ["/elsewhere"]) is err
    True
    """
    if not isinstance(exc, OSError) or exc.errno not in USER_ERRNOS or not exc.filename:
        return exc
    where = Path(os.path.abspath(os.fsdecode(exc.filename)))
    for root in paths:
        root = Path(os.path.abspath(os.fsdecode(root)))
        if where == root or root in where.parents:
            return RunStoreError(f"cannot write under {root}: {exc.strerror}: {where}")
    return exc


def report_error(exc, debug=False, paths=()):
    """Print ``exc`` as one line on stderr and return the exit code.

    User errors (:class:`core.errors.RelulabError`) exit with 2; anything else is a
    bug and exits with 1 with a hint to rerun with ``--debug``, which prints the
    traceback. ``paths`` are the directories the user named (runs dir, run): the file
    system refusing one of them is a user error too (see :func:`user_path_error`).
    """
    if isinstance(exc, BrokenPipeError):  # output piped into head & co.: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if debug:
        traceback.print_exc()
    exc = user_path_error(exc, paths)
    text = " ".join(str(exc).split())
    if isinstance(exc, RelulabError):
        print(f"error: {text}", file=sys.stderr)
        return exc.exit_code
    if not debug:
        print(
            f"error: {type(exc).__name__}: {text} (run with --debug for the traceback)",
            file=sys.stderr,
        )
    return 1
