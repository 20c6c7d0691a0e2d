"""What the command-line tools share: one-line error reports and exit codes."""

import sys
import traceback

from .errors import RelulabError

__all__ = ["report_error"]


def report_error(exc, debug=False):
    """Print ``exc`` as one line on stderr and return the exit code.

    User errors (:class:`core.errors.RelulabError`) exit with 2; anything else is a
    bug and exits with 1 with a hint to rerun with ``--debug``, which prints the
    traceback.
    """
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
