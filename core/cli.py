"""What the command-line tools share: one-line errors, run arguments, stop signals."""

import os
import signal
import sys
import threading
import traceback

from .errors import RelulabError

__all__ = ["report_error", "add_run_argument", "StopSignals"]


def add_run_argument(parser, what="run"):
    """Add the ``RUN`` positional (default ``latest``) and ``--runs-dir`` to a parser."""
    parser.add_argument("run", nargs="?", default="latest",
                        help=f"{what} directory, experiment directory or 'latest' (default)")
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


def report_error(exc, debug=False):
    """Print ``exc`` as one line on stderr and return the exit code.

    User errors (:class:`core.errors.RelulabError`) exit with 2; anything else is a
    bug and exits with 1 with a hint to rerun with ``--debug``, which prints the
    traceback.
    """
    if isinstance(exc, BrokenPipeError):  # output piped into head & co.: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if debug:
        traceback.print_exc()
    text = " ".join(str(exc).split())
    if isinstance(exc, RelulabError):
        print(f"error: {text}", file=sys.stderr)
        return exc.exit_code
    if not debug:
        print(f"error: {type(exc).__name__}: {text} (run with --debug for the traceback)",
              file=sys.stderr)
    return 1
