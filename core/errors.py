"""Errors a user can cause and fix: bad configs, unknown plugins, unreadable runs.

Every error here is printed by the command-line tools as one short message with exit
code 2 and no traceback (unless ``--debug``). Anything else is a bug and keeps its
traceback.
"""

import difflib

__all__ = ["RelulabError", "ConfigError", "PluginError", "RunStoreError", "closest"]


class RelulabError(Exception):
    """Base class of the errors a user can fix; the CLIs exit with code 2 on them."""

    exit_code = 2


class ConfigError(RelulabError):
    """A config file, override or value is invalid."""


class PluginError(RelulabError):
    """A plugin is unknown, unavailable, duplicated or failed to load."""


class RunStoreError(RelulabError):
    """A run directory is missing, incomplete or cannot be resumed."""


def closest(word, candidates):
    """Return the candidate closest to ``word`` (difflib ratio >= 0.6), or None."""
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1)
    return match[0] if match else None


def did_you_mean(word, candidates):
    """Return ``"; did you mean 'x'?"`` for the closest candidate, or an empty string."""
    match = closest(word, candidates)
    return f"; did you mean {match!r}?" if match else ""
