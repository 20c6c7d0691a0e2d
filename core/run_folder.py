"""Run folders: making a new run's folder, and reopening a saved one to resume it.

A run's folder is written by one process at a time: the one holding ``RUN/run.lock``
(:class:`core.locks.FolderLock`), from the moment the folder is made (or reopened)
until the run's final save. Another process that wants to resume it is refused before
it reads anything but that lock and ``meta.json``, and writes nothing.

Resuming may change only what cannot change the problem or the meaning of the saved
state (:func:`check_resume_changes`): stoppers, loggers, savers, how the run is
displayed and threaded, the notes, and the algorithm parameters its plugin declares
``resume_safe``. The config is rewritten only once the resumed run has been set up.
"""

import os
import socket
from pathlib import Path

from .config import apply_overrides, resolve
from .errors import ConfigError, RunStoreError
from .locks import FolderLock, is_locked
from .problem import build_problem
from .provenance import git_commit, iso, utc_now, versions
from .store import (
    RUN_LOCK,
    RunStore,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    load_npz,
    pid_alive,
    read_json,
    verify_trace,
)

__all__ = [
    "RUN_LOCK",
    "RESUME_SAFE_SECTIONS",
    "RESUME_SAFE_KEYS",
    "Reopened",
    "create_run_folder",
    "reopen_run_folder",
    "check_resume_changes",
    "config_changes",
    "config_values",
]

RESUME_SAFE_SECTIONS = ("stoppers", "loggers", "savers")
"""Config sections a ``--resume`` may change freely."""

RESUME_SAFE_KEYS = (
    "notes",
    "run.runs_dir",
    "run.display",
    "run.refresh_per_second",
    "run.max_pending_mb",
    "run.threads",
)
"""Single config keys a ``--resume`` may change."""


def _run_lock(path):
    return FolderLock(Path(path) / RUN_LOCK, f"run {path}")


def create_run_folder(
    config,
    source,
    arrays,
    problem,
    runs_dir=None,
    config_path=None,
    path=None,
    record_start=True,
):
    """Make a new run's folder, locked, with its config, problem and (``record_start``) meta.

    Parameters
    ----------
    config : dict
        Resolved config.
    source : str
        The config file's text (``config.py``).
    arrays : dict of ndarray
        The problem's arrays (``problem.npz``), built before the folder is made so
        that a data set that fails leaves no folder behind.
    problem : Problem
        Gives ``n``, ``d``, ``width`` and ``bias`` for ``meta.json``.
    runs_dir, config_path, path, record_start
        See :func:`core.loop.prepare_run`.

    Returns
    -------
    store : RunStore
    meta : dict
        Status ``running``: as written, or to be written (``record_start`` False).
    lock : FolderLock
        Held; released by the run's end.
    """
    now = utc_now()
    if path is not None:
        store = RunStore.create_at(path)
    else:
        runs_dir = runs_dir or config["run"]["runs_dir"]
        store = RunStore.create(
            runs_dir, config["experiment"], now.strftime("%Y%m%dT%H%M%SZ"), os.urandom(3).hex()
        )
    lock = _run_lock(store.path).acquire()
    try:
        atomic_write_bytes(store.path / "config.py", source.encode(), shared=True)
        atomic_write_json(store.path / "config.json", config)
        meta = {
            "status": "running",
            "reason": None,
            "experiment": config["experiment"],
            "run_id": store.path.name,
            "config_file": str(config_path) if config_path else None,
            "created": iso(now),
            "started": iso(now),
            "ended": None,
            "steps": 0,
            "wall_time": 0.0,
            "seed": config["seed"],
            "versions": versions(),
            "git_commit": git_commit(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "bias": bool(problem.bias),
            "n": problem.n,
            "d": problem.d,
            "width": problem.m,
            "algorithm": config["algorithm"]["name"],
            "config_values": config_values(config),
            "resumes": [],
        }
        atomic_save_npz(store.path / "problem.npz", arrays)
        if record_start:
            store.write_meta(meta)
    except BaseException:
        lock.release()
        raise
    return store, meta, lock


def _read_meta(path):
    if not (Path(path) / "meta.json").exists():
        raise RunStoreError(f"not a run directory (no meta.json): {path}")
    return read_json(Path(path) / "meta.json")


def _refuse_live(path, meta, had_lock):
    """Raise if the run is being written by a live process."""
    running = meta.get("status") == "running"
    if had_lock or not running or meta.get("host") != socket.gethostname():
        return  # with run.lock, holding it is the proof that nobody else writes
    pid = meta.get("pid")
    if pid != os.getpid() and pid_alive(pid):
        raise RunStoreError(
            f"run {path} is still running (pid {pid}); wait for it to end or stop it first"
        )


class Reopened:
    """A saved run reopened for resuming: everything :class:`core.loop.Execution` needs.

    Attributes
    ----------
    store : RunStore
    config : dict
        The config the resumed run uses (overrides applied).
    changes : dict
        ``{dotted key: [old, new]}`` for every value the overrides changed.
    problem : Problem
    checkpoint : dict or None
    meta : dict
        Updated for the resume (status ``running``, this pid), not yet written.
    lock : FolderLock
        Held.
    """

    def __init__(self, store, config, changes, problem, checkpoint, meta, lock):
        self.store, self.config, self.changes = store, config, changes
        self.problem, self.checkpoint, self.meta, self.lock = problem, checkpoint, meta, lock


def reopen_run_folder(path, registry, overrides=(), lock=None):
    """Lock a saved run and read what resuming it needs; write nothing yet.

    Liveness comes first: while another process holds ``run.lock`` (or, for a run
    made before run locks, while its recorded pid lives on this host) the run is
    refused after reading only the lock and ``meta.json``. Then the lock is taken,
    temporary files of killed writes are removed, the overrides are checked
    (:func:`check_resume_changes`) and the problem and checkpoint are read.

    ``lock``, when given, is the run's lock already held by the caller (a sweep
    worker that looked at the folder under it): it is used as is.

    Raises
    ------
    RunStoreError
        The run is in use, or a file it needs is missing or corrupt.
    ConfigError
        An override changes a key a resume may not change.
    """
    path = Path(path)
    if lock is None:
        meta = _read_meta(path)
        lock_path = path / RUN_LOCK
        had_lock = lock_path.exists()
        if had_lock and is_locked(lock_path):
            raise RunStoreError(
                f"run {path} is in use by another process; wait for it to end or stop it first"
            )
        _refuse_live(path, meta, had_lock)
        lock = _run_lock(path).acquire()
    try:
        meta = _read_meta(path)  # as the last holder left it
        store = RunStore.open(path)
        config = read_json(path / "config.json", advice="the run cannot be resumed")
        changes = {}
        if overrides:
            new = resolve(apply_overrides(config, overrides), registry)
            changes = check_resume_changes(_as_resolved_today(config, registry), new, registry)
            config = new
        problem_path = path / "problem.npz"
        if not problem_path.is_file():
            raise RunStoreError(
                f"run {path} has no problem.npz (its set-up failed before the "
                "problem was saved); it cannot be resumed: start a new run"
            )
        problem, _ = build_problem(config, registry, arrays=load_npz(problem_path))
        checkpoint = store.read_checkpoint()
        _verify_trace(store, checkpoint)
    except BaseException:
        lock.release()
        raise
    meta.update(
        status="running", reason=None, ended=None, pid=os.getpid(), host=socket.gethostname()
    )
    entry = {
        "at": iso(utc_now()),
        "from_step": checkpoint["loop"]["step"] if checkpoint else 0,
        "overrides": list(overrides),
    }
    if changes:
        entry["changes"] = changes
        meta["config_values"] = config_values(config)
    meta.setdefault("resumes", []).append(entry)
    return Reopened(store, config, changes, problem, checkpoint, meta, lock)


def _verify_trace(store, checkpoint):
    if checkpoint is not None:
        verify_trace(store.trace_dir, checkpoint["loop"]["n_chunks"])


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_values(config):
    """The resolved config as one flat dict ``{dotted key: value}`` (kept in ``meta.json``).

    Lets a runs index compare runs from ``meta.json`` alone (:mod:`core.runs_index`).

    Examples
    --------
    >>> config_values({"seed": 0, "model": {"width": 10}, "loggers": {"scalars": {}}})
    {'seed': 0, 'model.width': 10, 'loggers.scalars': {}}
    """
    return _flatten(config)


def config_changes(old, new):
    """``{dotted key: [old value, new value]}`` of two resolved configs (None: absent)."""
    a, b = _flatten(old), _flatten(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _as_resolved_today(config, registry):
    """A saved config resolved by today's plugins: parameters added since the run was
    made take their defaults, so they do not count as changes of a resume.

    Falls back to the config as saved when today's plugins no longer accept it.
    """
    try:
        return resolve(config, registry)
    except ConfigError:
        return config


def check_resume_changes(old, new, registry):
    """The changes from ``old`` to ``new`` if a resume may make them, else raise.

    Allowed: anything in ``stoppers``, ``loggers`` and ``savers``, the keys in
    :data:`RESUME_SAFE_KEYS`, and parameters of the same algorithm declared
    ``Param(..., resume_safe=True)``.

    Raises
    ------
    ConfigError
        Naming the first key that may not change, its two values, and what to do.
    """
    changes = config_changes(old, new)
    algorithm = old["algorithm"]["name"]
    safe = set()
    if new["algorithm"]["name"] == algorithm:
        cls = registry.get("algorithm", algorithm)
        safe = {p.name for p in cls.params if p.resume_safe}
    for key, (before, after) in changes.items():
        parts = key.split(".")
        if parts[0] in RESUME_SAFE_SECTIONS or key in RESUME_SAFE_KEYS:
            continue
        if parts[0] == "algorithm" and len(parts) > 1 and parts[1] in safe:
            continue
        hint = (
            f" (resume-safe parameters of {algorithm}: {', '.join(sorted(safe))})" if safe else ""
        )
        raise ConfigError(
            f"--resume cannot change {key} ({before!r} -> {after!r}): it would contradict the "
            f"run's problem or saved state; a resume may change stoppers, loggers, savers, "
            f"{', '.join(RESUME_SAFE_KEYS)}{hint}. Start a new run with the changed config"
        )
    return changes
