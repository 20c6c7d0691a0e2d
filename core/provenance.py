"""Where a run comes from: package versions, the git commit, host and times.

Recorded in every run's ``meta.json``. Versions are read once per process and git is
asked at most every :data:`GIT_CACHE_SECONDS` per checkout (a sweep starts many runs a
second).
"""

import datetime as _dt
import functools
import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["versions", "git_commit", "utc_now", "iso", "GIT_CACHE_SECONDS"]

GIT_CACHE_SECONDS = 30.0
"""How long :func:`git_commit` reuses its answer."""

_git_cache = {}


def utc_now():
    """The current time, timezone-aware UTC."""
    return _dt.datetime.now(_dt.UTC)


def iso(t):
    """``2026-12-01T21:23:24.123456Z``: how meta.json writes times."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def versions():
    """Versions of relulab, Python, numpy and torch (None when absent), read once."""
    return dict(_versions())


@functools.cache
def _versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        out["relulab"] = importlib.metadata.version("relulab")
    except importlib.metadata.PackageNotFoundError:
        out["relulab"] = "dev"
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            out["torch"] = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            out["torch"] = None
    else:
        out["torch"] = torch.__version__
    return out


@functools.lru_cache(maxsize=1)
def _checkout():
    """The project checkout's folder (resolved once: 70 us of system calls a run)."""
    return Path(__file__).resolve().parent.parent


def git_commit(path=None):
    """Commit hash of the project checkout (with ``+dirty``), or None.

    Asked of git at most every ``GIT_CACHE_SECONDS`` per checkout.
    """
    path = str(path or _checkout())
    now = time.monotonic()
    cached = _git_cache.get(path)
    if cached is None or now - cached[0] > GIT_CACHE_SECONDS:
        cached = _git_cache[path] = (now, _ask_git(path))
    return cached[1]


def _ask_git(path):
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode != 0:
            return None
        commit = out.stdout.strip()
        # --no-optional-locks: status would otherwise refresh the index under
        # .git/index.lock, which a process killed meanwhile (kill -9 of a sweep's
        # process group) leaves behind, refusing the researcher's next commit
        dirty = subprocess.run(
            [
                "git",
                "--no-optional-locks",
                "-C",
                str(path),
                "status",
                "--porcelain",
                "--untracked-files=no",
            ],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
