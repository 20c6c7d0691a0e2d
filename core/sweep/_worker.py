"""The worker side of a sweep: run a batch of points, each in its fixed run folder.

:func:`run_batch` is the task every executor runs (in a pool process, on a Dask
worker, or in the driver itself). It runs its points with :func:`run_points`,
which decides from what each run folder holds whether to skip, start, restart or
resume the point, trains points of a batchable algorithm that differ only in their
seed together as one ensemble, and turns any exception into the point's ``failed``
status, so one bad point never takes its batch down.

A run folder is changed (marked ``crashed``, deleted to restart, resumed) only while
its ``run.lock`` is free: a point that another process runs is left alone and
reported as it stands (action ``busy``).

Everything a worker needs comes in the task's arguments (the driver's plugin
modules, the threads per point); the environment is never written.
"""

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from ..cli import StopSignals
from ..durability import group_commit, wait_for_writes
from ..errors import ConfigError, RunStoreError
from ..locks import FolderLock, is_locked
from ..loop import describe_error, execute, prepare_resume, prepare_run
from ..registry import get_registry
from ..run_folder import RUN_LOCK
from ..store import RunStore
from ..threads import limit_threads
from ._folder import DONE_STATUSES
from ._spec import together_key

__all__ = ["run_point", "run_points", "run_batch", "init_pool_worker", "dask_setup", "raw_meta"]

ORPHAN_GRACE_SECONDS = 30.0
"""How long a pool worker whose driver died lets its point save before exiting."""
WATCH_SECONDS = 0.2
"""How often a pool worker looks for its driver and for the batch's stop file."""


class _PoolWorker:
    """State of a pool worker process, shared with its watchdog thread."""

    lock = threading.Lock()
    busy = False  # inside run_batch, where SIGTERM is a stop request
    stop_file = None  # the running batch's stop file
    signalled = False  # the running batch was sent SIGTERM
    orphaned = False  # the driver died


def raw_meta(path):
    """A run's ``meta.json`` as written (no crash detection), or None."""
    wait_for_writes(Path(path) / "meta.json")
    try:
        return json.loads((Path(path) / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _result(path, execution=None):
    """A point's outcome as its ``meta.json`` says: the meta an execution wrote at its
    end (not read back), else the file as read."""
    if execution is not None and execution.recorded:
        meta = execution.meta
    else:
        meta = raw_meta(path) or {}
    return {
        "status": meta.get("status", "pending"),
        "reason": meta.get("reason"),
        "steps": meta.get("steps"),
        "final_loss": meta.get("final_loss"),
    }


def _settle(path, error):
    """Mark a run of this process that raised outside the loop's own handling ``failed``.

    Only under its run lock: if another process took the run meanwhile, it is its.
    """
    try:
        lock = FolderLock(path / RUN_LOCK, f"run {path}").acquire()
    except RunStoreError:
        return
    with lock:
        meta = raw_meta(path)
        if meta and meta.get("status") == "running" and meta.get("pid") == os.getpid():
            meta.update(status="failed", reason=error)
            RunStore(path).write_meta(meta)


def _prepare_point(path, config, source, registry, config_path, threads, record_start=True):
    """Decide what a point needs and set it up: ``(action, execution or None)``.

    What the run folder holds decides:

    * ``finished`` or ``diverged``: ``skip`` (a run's final answer);
    * ``run.lock`` held by another process (the point runs elsewhere): ``busy``,
      and the folder is left alone;
    * ``interrupted``, or ``running`` left by a dead process, with a checkpoint:
      ``resume`` (:func:`core.loop.prepare_resume`: same folder, same trace);
    * nothing, a folder without ``meta.json`` (killed while being created, or an
      ensemble member killed before its first save), ``failed`` (its last step may
      have half-updated the state) or no checkpoint: ``start`` / ``restart`` from
      scratch (:func:`core.loop.prepare_run`).

    ``record_start``: see :func:`core.loop.prepare_run`.
    """
    exists = path.exists()  # (a new sweep's points: nothing to read)
    meta = raw_meta(path) if exists else None
    status = meta.get("status") if meta else None
    if status in DONE_STATUSES:
        return "skip", None
    kwargs = {"display": "off", "threads": threads}
    if exists:
        try:
            lock = FolderLock(path / RUN_LOCK, f"run {path}").acquire()
        except RunStoreError:
            return "busy", None
        handed = False
        try:
            resume = status in ("interrupted", "running") and all(
                (path / name).is_file() for name in ("checkpoint.npz", "problem.npz")
            )
            if resume:
                if status == "running":
                    meta.update(status="crashed", reason="process ended without a final save")
                    RunStore(path).write_meta(meta)
                # the run keeps the lock from here to its end
                execution = prepare_resume(path, registry, lock=lock, **kwargs)
                handed = True
                return "resume", execution
            shutil.rmtree(path)
        finally:
            if not handed:
                lock.release()
    execution = prepare_run(
        config,
        source,
        registry,
        config_path=config_path,
        path=path,
        record_start=record_start,
        **kwargs,
    )
    return ("start" if meta is None else "restart"), execution


BACKGROUND_WRITES = {"on": True, "off": False, "auto": "auto"}


def background_writes():
    """How an ensemble's files are written: ``RELULAB_BACKGROUND_WRITES`` = ``auto``
    (default: a background thread once the first writes prove slow), ``on`` or ``off``
    (:class:`core.durability.GroupCommit`)."""
    value = os.environ.get("RELULAB_BACKGROUND_WRITES", "auto").strip().lower() or "auto"
    if value not in BACKGROUND_WRITES:
        raise ConfigError(
            f"RELULAB_BACKGROUND_WRITES must be one of {', '.join(BACKGROUND_WRITES)}; "
            f"got {value!r}"
        )
    return BACKGROUND_WRITES[value]


def run_points(items, source="", registry=None, config_path=None, threads=None):
    """Bring points to an end in their run folders, trained together.

    Each point is prepared as :func:`_prepare_point` decides, then the prepared
    ones run in lockstep (:func:`core.loop.execute`): one ensemble when their
    algorithm is batchable, so pass only points with one
    :func:`core.sweep.together_key` (or a single point). With several points, a new
    run's ``meta.json`` is first written at its first save (``record_start`` of
    :func:`core.loop.prepare_run`): for tiny runs, at their end.

    Parameters
    ----------
    items : list of (path, config)
    source, registry, config_path
        As :func:`run_point`.
    threads : int, optional
        Threads of each run (:func:`core.loop.prepare_run`); sweep workers pass 1.

    Returns
    -------
    results : list of dict
        Per item: ``status, reason, steps, final_loss`` as in the run's meta, and
        ``action`` (``skip``, ``busy``, ``start``, ``restart`` or ``resume``). An exception
        is caught and returned as status ``failed`` with ``reason``
        ``"Type: message"``.
    """
    registry = registry or get_registry()
    prepared = []
    failure = None
    # several points: their files reach the disk together (core.durability), set up in
    # one thread limit (a run's own limit_threads with the same count is then free)
    together = len(items) > 1
    with (
        group_commit(background=background_writes()) if together else contextlib.nullcontext(),
        limit_threads(threads or 1) if together else contextlib.nullcontext(),
    ):
        for path, config in items:
            path = Path(path)
            action, execution, error = "start", None, None
            try:
                action, execution = _prepare_point(
                    path, config, source, registry, config_path, threads, not together
                )
            except RunStoreError as exc:
                if is_locked(path / RUN_LOCK):  # taken by another process meanwhile
                    action = "busy"
                else:
                    error = describe_error(exc)
                    _settle(path, error)
            except Exception as exc:
                error = describe_error(exc)
                _settle(path, error)
            prepared.append((path, action, execution, error))
        executions = [ex for _, _, ex, _ in prepared if ex is not None]
        try:
            execute(executions)
        except Exception as exc:  # outside the loop's own handling: fail what is left
            failure = describe_error(exc)
    if failure is not None:  # after the group's commit released the run locks
        for ex in executions:
            _settle(ex.path, failure)
    results = []
    for path, action, execution, error in prepared:
        if error is None and execution is not None and execution.error is not None:
            error = describe_error(execution.error)
            _settle(path, error)  # e.g. a failed final save left it "running"
        result = {**_result(path, execution), "action": action}
        if error is not None:
            result.update(status="failed", reason=result["reason"] or error)
        results.append(result)
    return results


def run_point(path, config, source="", registry=None, config_path=None):
    """Bring one point to an end in its run folder ``path``.

    What is there decides what happens:

    * ``finished`` or ``diverged``: left alone (a run's final answer);
    * ``interrupted``, or ``running`` left by a dead process, with a checkpoint:
      continued from the checkpoint (same folder, same trace);
    * nothing, a folder without ``meta.json`` (killed while being created),
      ``failed`` (its last step may have half-updated the state) or no checkpoint:
      (re)started from scratch.

    Returns
    -------
    result : dict
        ``status, reason, steps, final_loss`` as in the run's meta, and ``action``
        (``skip``, ``start``, ``restart`` or ``resume``). An exception is caught and
        returned as status ``failed`` with ``reason`` ``"Type: message"``.
    """
    return run_points([(path, config)], source, registry, config_path)[0]


def run_batch(job, registry=None):
    """Run a batch of points one after another (the task a worker executes).

    Parameters
    ----------
    job : dict
        ``sweep`` (the sweep folder), ``source`` (config text), ``config_path``,
        ``plugins`` (the driver's ``registry.plugin_modules``), ``threads``
        (threads per point, or None), ``stop_file`` (the batch stops before its
        next point once this file exists) and ``items``:
        ``[{"index", "run", "config"}]``, each with the ``"group"`` of points it
        trains with (a number, None: alone; without it, the batch compares the
        points' :func:`core.sweep.together_key`).
    registry : Registry, optional
        Default: this process's registry with the driver's plugin modules.

    Returns
    -------
    out : dict
        ``results``: one :func:`run_point` result (plus ``index``) per point run;
        ``stopped``: whether a stop request (signal, stop file, lost driver) or
        an interrupted point ended the batch early. Points after that are not run.

    Notes
    -----
    Consecutive points with one :func:`core.sweep.together_key` (a batchable
    algorithm, configs equal but for the seed; :func:`core.sweep.group_by_shape`
    keeps them contiguous) are trained together as one ensemble by
    :func:`run_points`; every other point runs on its own.
    """
    registry = registry or get_registry(plugins=job.get("plugins") or ())
    sweep = Path(job["sweep"])
    stop_file = job.get("stop_file")
    results, stopped = [], False
    with StopSignals(raise_on_repeat=False) as stop, _busy(stop_file):
        for group in _consecutive_groups(job["items"], registry):
            if stop.requested or _PoolWorker.orphaned or (stop_file and os.path.exists(stop_file)):
                stopped = True
                break
            outcome = run_points(
                [(sweep / item["run"], item["config"]) for item in group],
                job["source"],
                registry,
                job.get("config_path"),
                job.get("threads"),
            )
            results.extend(
                {"index": item["index"], **result} for item, result in zip(group, outcome)
            )
            if any(result["status"] == "interrupted" for result in outcome):
                stopped = True
                break
    if _PoolWorker.orphaned:
        os._exit(0)  # the driver is gone: nobody reads the result
    return {"results": results, "stopped": stopped}


@contextlib.contextmanager
def _busy(stop_file):
    """While a pool worker runs a batch, its watchdog may stop it with SIGTERM."""
    with _PoolWorker.lock:
        _PoolWorker.busy, _PoolWorker.signalled = True, False
        _PoolWorker.stop_file = stop_file
    try:
        yield
    finally:
        with _PoolWorker.lock:
            _PoolWorker.busy, _PoolWorker.stop_file = False, None


def _consecutive_groups(items, registry):
    """Split items into runs of consecutive points that train together."""
    groups, last = [], None
    for item in items:
        try:  # the driver's group when it sent one (its keys computed once per point)
            key = item["group"] if "group" in item else together_key(item["config"], registry)
        except Exception:  # an unknown plugin: the point runs alone and fails there
            key = None
        if key is not None and key == last:
            groups[-1].append(item)
        else:
            groups.append([item])
        last = key
    return groups


def init_pool_worker(driver_pid):
    """Pool worker set-up: ignore Ctrl-C while idle, start the watchdog thread.

    The watchdog stops the running point (SIGTERM to this process: the run loop
    saves and ends it ``interrupted``) when the batch's stop file appears, and
    when the driver died (``kill -9``), after which the process exits.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_watch, args=(driver_pid,), daemon=True, name="relulab-sweep-watchdog"
    ).start()


def _watch(driver_pid):
    while True:
        orphaned = os.getppid() != driver_pid
        with _PoolWorker.lock:
            _PoolWorker.orphaned = orphaned
            stop_file = _PoolWorker.stop_file
            wanted = orphaned or (stop_file is not None and os.path.exists(stop_file))
            if wanted and _PoolWorker.busy and not _PoolWorker.signalled:
                _PoolWorker.signalled = True
                os.kill(os.getpid(), signal.SIGTERM)  # StopSignals of run_batch takes it
        if orphaned:
            break
        time.sleep(WATCH_SECONDS)
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
    while _PoolWorker.busy and time.monotonic() < deadline:
        time.sleep(0.1)
    os._exit(1)


def dask_setup(worker):
    """Dask preload (``LocalCluster(preload=["core.sweep._worker"])``): ignore Ctrl-C.

    Ctrl-C at a terminal reaches every process of its group, so the workers of an
    embedded ``LocalCluster`` too; they leave stopping to the driver.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
