"""Running a sweep's points on a ``concurrent.futures.Executor``.

Driver and workers
------------------
The driver (the process that calls :func:`run_sweep` / :func:`resume_sweep`) holds
``sweep.lock`` (:class:`core.locks.FolderLock`) for as long as it runs: a second
driver of the same sweep is refused before it touches anything. It cuts the points
still to do into batches, submits each batch as one call of
:func:`core.sweep.run_batch` to an executor, and keeps the status table and the
display current from the results and the points' ``meta.json``. Whatever a point
raises is recorded as that point's failure and the sweep goes on.

Executors
---------
Every engine is a standard ``concurrent.futures.Executor``; the driver only submits,
waits (``concurrent.futures.wait``) and shuts down.

* ``jobs=N`` (default: the number of cores): a ``ProcessPoolExecutor`` of N
  *spawned* processes (:class:`WorkerPool`). If a worker process dies (out of
  memory, a segfault), the pool breaks: the point that process ran is marked
  ``failed`` and the points not done run in a new pool.
* ``dask="local"``: an embedded ``LocalCluster(n_workers=jobs, threads_per_worker=1)``,
  through ``client.get_executor()``.
* ``dask="tcp://host:port"``: a running Dask scheduler (a cluster, or Slurm / PBS
  through dask-jobqueue). Workers must see the sweep folder (shared file system)
  and have relulab and the plugins installed.
* ``jobs=0``: every batch in this process when submitted (:class:`InlineExecutor`),
  with the caller's registry (debugging, profiling).

A batch carries everything a worker needs: the driver's plugin modules
(``registry.plugin_modules``) and the threads of each point (one for pool workers
when ``jobs > 1`` and for Dask workers). Results do not depend on the executor: each
point is seeded from its config.

Stopping
--------
Ctrl-C (or SIGTERM to the driver) stops cleanly: the driver submits nothing more
and creates a stop file (``.stop-<session>`` in the sweep folder). Batches check it
between points; a pool worker's watchdog also checks it while a point runs and
then sends its own process SIGTERM, so the point saves and ends ``interrupted``. A
Dask worker cannot interrupt a running point (it runs in a thread): it finishes
it; the workers of an embedded ``LocalCluster`` ignore the terminal's Ctrl-C and
leave stopping to the driver. A second Ctrl-C aborts at once (pool workers are
killed, Dask tasks cancelled); killed points resume from their last checkpoint.
Pool workers whose driver died (``kill -9``) interrupt their point and exit by
themselves. A script calling :func:`run_sweep` with a pool needs the usual
``if __name__ == "__main__":`` guard (workers are spawned).
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import ConfigError, RunStoreError
from ..locks import FolderLock, is_locked, lock_holder
from ..registry import get_registry
from ..run_folder import RUN_LOCK
from ..store import atomic_write_json
from ._display import SweepDisplay, format_seconds
from ._folder import (
    DONE_STATUSES,
    StatusTable,
    count_statuses,
    create_sweep_dir,
    load_sweep,
    sweep_path,
    write_sweep_files,
)
from ._spec import config_hash, expand_sweep, first_difference, keyed_groups
from ._worker import init_pool_worker, raw_meta, run_batch

__all__ = ["run_sweep", "resume_sweep", "InlineExecutor", "WorkerPool"]

POLL_SECONDS = 0.2
STATUS_WRITE_SECONDS = 1.0
MAX_BATCH = 16
MAX_BLIND_RESTARTS = 2
"""New pools after a worker died without a point to blame (killed while idle)."""
WORKER_DIED = "the worker process running this point died (killed, out of memory or crashed)"


# -- executors ---------------------------------------------------------------------
class InlineExecutor(concurrent.futures.Executor):
    """Runs each call in this process, when it is submitted (``jobs=0``).

    ``KeyboardInterrupt`` is not caught: it reaches the caller of :meth:`submit`.
    """

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class WorkerPool(concurrent.futures.ProcessPoolExecutor):
    """A process pool of spawned sweep workers.

    Workers ignore Ctrl-C while idle and watch for their driver's death and for a
    batch's stop file (:func:`core.sweep._worker.init_pool_worker`).
    """

    def __init__(self, workers):
        super().__init__(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_pool_worker,
            initargs=(os.getpid(),),
        )

    def kill_workers(self):
        """Kill the worker processes now (``ProcessPoolExecutor.kill_workers``, Python 3.14)."""
        processes = list((self._processes or {}).values())
        for process in processes:
            with contextlib.suppress(OSError):
                process.kill()
        for process in processes:
            process.join(timeout=5)


@dataclasses.dataclass
class _Engine:
    """Where the points run.

    Attributes
    ----------
    name : str
        For the summary line (``2 local processes``).
    workers : int
        Points that can run at once (batches are sized and submitted from it).
    new_executor : callable
        ``new_executor(n_batches)``: a new ``concurrent.futures.Executor``.
    threads : int or None
        Threads of each point (``None``: the run's own setting).
    inline : bool
        Batches run in this process, whose run loop takes the driver's Ctrl-C.
    interrupts : bool
        A stop request interrupts running points (not on Dask: they finish).
    close : callable
        Closes what the engine opened (a Dask client and cluster).
    """

    name: str
    workers: int
    new_executor: Callable[[int], concurrent.futures.Executor]
    threads: int | None = None
    inline: bool = False
    interrupts: bool = True
    close: Callable[[], None] = lambda: None


def _inline_engine():
    return _Engine("this process", 1, lambda n: InlineExecutor(), inline=True)


def _pool_engine(jobs):
    name = f"{jobs} local process{'es' if jobs > 1 else ''}"
    threads = 1 if jobs > 1 else None
    return _Engine(name, jobs, lambda n: WorkerPool(max(1, min(jobs, n))), threads)


def _dask_engine(address, jobs):
    from distributed import Client, LocalCluster

    cluster = None
    if address == "local":
        cluster = LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            preload=["core.sweep._worker"],  # dask_setup: workers ignore the terminal's Ctrl-C
        )
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout="30s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from None

    def close():
        for closable in (client, cluster):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()

    workers = max(1, sum(client.nthreads().values()))
    name = f"Dask {'LocalCluster' if cluster else address} ({workers} worker thread"
    name += "s)" if workers > 1 else ")"

    def new_executor(n_batches):
        return client.get_executor(pure=False)

    return _Engine(name, workers, new_executor, threads=1, interrupts=False, close=close)


def _probe(address, timeout=5.0):
    """Open and close a TCP connection to a ``tcp://host:port`` scheduler address.

    Raises OSError (connection refused, unknown host, timeout); other schemes
    (``tls://``, ``ucx://``) are left to Dask.
    """
    scheme, _, rest = address.partition("://")
    if scheme != "tcp":
        return
    host, _, port = rest.rpartition(":")
    try:
        port = int(port.split("/")[0])
    except ValueError:
        raise OSError(f"no port in {address!r}") from None
    with socket.create_connection((host.strip("[]"), port), timeout=timeout):
        pass


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _engine_factory(jobs, dask):
    """Check ``jobs`` and ``dask``; return a function starting the engine."""
    if jobs is None:
        jobs = _cores()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigError(f"jobs must be an int >= 0 (0: in this process); got {jobs!r}")
    if dask is None:
        return _inline_engine if jobs == 0 else lambda: _pool_engine(jobs)
    if dask != "local" and "://" not in str(dask):
        raise ConfigError(
            f"dask must be 'local' or a scheduler address like tcp://host:8786; got {dask!r}"
        )
    if importlib.util.find_spec("distributed") is None:
        raise ConfigError('dask sweeps need dask[distributed]: pip install "relulab[dask]"')
    if dask != "local":  # before any folder is made; refused: at once, not after 30 s
        try:
            _probe(str(dask))
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {dask}: {exc}") from None
    return lambda: _dask_engine(str(dask), max(jobs, 1))


# -- driver ------------------------------------------------------------------------
@contextlib.contextmanager
def _term_as_interrupt():
    """SIGTERM to the driver stops the sweep like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _batches(groups, batch_size, workers, ensemble=None):
    """Cut the points into batches, each a task for one worker.

    A group of points trained together (:func:`core.sweep.group_by_shape`) is a
    batch of its own, cut only above ``ensemble`` (the sweep's ``ensemble`` key),
    else ``batch_size``, else ``MAX_BATCH`` points. The other points are cut into
    batches of ``batch_size`` (default: about four batches per worker, at most
    ``MAX_BATCH``), so start-up is paid
    once per batch while the load stays balanced.
    """
    n_single = sum(len(group) == 1 for group in groups)
    size = batch_size or max(1, min(MAX_BATCH, n_single // (4 * workers)))
    ensemble_size = ensemble or batch_size or MAX_BATCH
    batches, singles = [], []
    for group in groups:
        if len(group) == 1:
            singles.append(group[0])
            if len(singles) == size:
                batches.append(singles)
                singles = []
        else:
            batches.extend(
                group[i : i + ensemble_size] for i in range(0, len(group), ensemble_size)
            )
    if singles:
        batches.append(singles)
    return batches


class _Abort(Exception):
    """A second Ctrl-C: stop waiting for the workers."""


class _Driver:
    """Runs the points of a sweep folder that are not done, with display and table.

    The caller holds ``sweep.lock``.
    """

    def __init__(
        self, path, config, points, start_engine, source, config_path, batch_size, registry
    ):
        self.path = Path(path).resolve()
        self.points = points
        self.start_engine = start_engine
        self.engine = None
        self.batch_size = batch_size
        self.ensemble = config.get("sweep", {}).get("ensemble")
        self.registry = registry
        self.stop_file = self.path / f".stop-{uuid.uuid4().hex[:12]}"
        self.job = {
            "sweep": str(self.path),
            "source": source,
            "config_path": str(config_path) if config_path else None,
            "plugins": tuple(registry.plugin_modules),
            "stop_file": str(self.stop_file),
        }
        self.display = SweepDisplay(
            config["run"]["display"], title=f"sweep {config['experiment']}", total=len(points)
        )
        self.stopping = False

    def run(self):
        self.table = StatusTable(
            self.path, [p.to_json() for p in self.points], STATUS_WRITE_SECONDS
        )
        self._refuse_live_points()
        todo = [p for p in self.points if self.table.rows[p.index]["status"] not in DONE_STATUSES]
        self.table.write(force=True)
        t0 = time.perf_counter()
        self.display.start(self.table.counts())
        try:
            with _term_as_interrupt():
                if todo:
                    self.engine = self.start_engine()
                    self.job["threads"] = self.engine.threads
                    self._run_points(todo)
        except (KeyboardInterrupt, _Abort):
            self.stopping = True
        finally:
            if self.engine is not None:
                with contextlib.suppress(KeyboardInterrupt):
                    self.engine.close()
            self.display.stop()
            for index in list(self.table.active):
                self.table.lost(index)
            self.table.write(force=True)
            with contextlib.suppress(OSError):
                self.stop_file.unlink()
        if self.display.mode != "off":
            self._summary(time.perf_counter() - t0, len(todo))

    def _refuse_live_points(self):
        """Refuse to run when a point not done is run by another process."""
        for index, row in self.table.rows.items():
            lock = self.table.run_path(index) / RUN_LOCK
            if row["status"] not in DONE_STATUSES and is_locked(lock):
                holder = lock_holder(lock) or {}
                raise RunStoreError(
                    f"point {row['id']} of sweep {self.path} is still running (pid "
                    f"{holder.get('pid', '?')} on {holder.get('host', '?')}); wait for it "
                    "to end or stop it, then resume"
                )

    def _run_points(self, todo):
        """Run the batches; after a worker process died, the points not done in a new pool."""
        groups, keys = keyed_groups(todo, self.registry)
        # a worker trains together the points of one group (a number: the keys, computed
        # once here, need not travel); None: a point that trains alone
        group_of = {
            p.index: None if keys[p.index] is None else number
            for number, group in enumerate(groups)
            for p in group
        }
        queue = collections.deque(
            {
                **self.job,
                "items": [
                    {"index": p.index, "run": p.run, "config": p.config, "group": group_of[p.index]}
                    for p in batch
                ],
            }
            for batch in _batches(groups, self.batch_size, self.engine.workers, self.ensemble)
        )
        blind_restarts = 0
        while queue:
            broken = self._drain(queue)
            if not broken or self.stopping:
                return
            rest, culprits = self._after_broken_pool(broken)
            blind_restarts += not culprits
            if blind_restarts > MAX_BLIND_RESTARTS:
                return
            queue.extendleft(reversed(rest))
            n = sum(len(job["items"]) for job in queue)
            if n:
                self.display.event(
                    f"a worker process died; running the {n} point"
                    f"{'s' if n > 1 else ''} not done in a new pool"
                )

    def _drain(self, queue):
        """Submit queued batches to a new executor and collect them until none is left.

        At most two batches per worker are pending at a time, so a stop request
        leaves the rest queued. Returns the batches lost with a broken process pool.
        """
        executor = self.engine.new_executor(len(queue))
        pending, broken, aborted = {}, [], False
        try:
            while (queue and not self.stopping and not broken) or pending:
                try:
                    self._submit(executor, queue, pending, broken)
                    done, _ = concurrent.futures.wait(
                        pending,
                        timeout=POLL_SECONDS,
                        return_when=concurrent.futures.FIRST_COMPLETED,
                    )
                    for future in done:
                        broken += self._receive(pending.pop(future), future)
                    self._refresh()
                except KeyboardInterrupt:
                    if self.stopping:
                        aborted = True
                        self._abort(executor)
                        raise _Abort from None
                    self._stop()
        finally:
            if not aborted:
                executor.shutdown(wait=True)  # a broken pool's processes have all exited
        return broken

    def _submit(self, executor, queue, pending, broken):
        while (
            queue and not self.stopping and not broken and (len(pending) < 2 * self.engine.workers)
        ):
            job = queue.popleft()
            self.table.hand_out([item["index"] for item in job["items"]])
            if self.engine.inline:  # the caller's registry, as it is
                future = executor.submit(run_batch, job, self.registry)
            else:
                future = executor.submit(run_batch, job)
            pending[future] = job
            if future.done():  # run by this process: record it before the next one
                break

    def _receive(self, job, future):
        """Record a batch's outcome; return ``[job]`` if its worker process died."""
        try:
            out, error = future.result(), None
        except concurrent.futures.CancelledError:
            out, error = None, None
        except BrokenProcessPool:
            return [job]
        except Exception as exc:
            out, error = None, f"{type(exc).__name__}: {exc}"
        messages = []
        reported = set()
        for result in (out or {}).get("results", ()):
            messages += self.table.result(result)
            reported.add(result["index"])
        for item in job["items"]:
            if item["index"] not in reported:
                messages += self.table.lost(item["index"], error)
        for message in messages:
            self.display.event(message)
        if out is not None and out["stopped"] and self.engine.inline and not self.stopping:
            self._stop("interrupted: stopping the sweep")  # Ctrl-C in a point run here
        return []

    def _after_broken_pool(self, broken):
        """Sort the points of batches lost with a broken pool (its processes are gone).

        A point whose run this session started and left ``running`` with its run
        lock free lost its process: it is marked ``failed``, so that a point that
        kills its process (out of memory, a segfault) does not keep the others
        from running (a resume tries it again). The other workers were stopped by
        the pool, their points ``interrupted``; those and points not started yet
        are returned, in their batches, to run again.
        """
        rest, culprits = [], []
        for job in broken:
            items = []
            for item in job["items"]:
                index = item["index"]
                run = self.table.run_path(index)
                status = (raw_meta(run) or {}).get("status")
                touched = self.table.touched(index)
                # started here: "running", or a run folder without meta.json yet (an
                # ensemble member before its first save)
                started = status == "running" or (status is None and run.is_dir())
                if touched and started and self._fail(index, WORKER_DIED):
                    culprits.append(index)
                elif status in DONE_STATUSES or (touched and status == "failed"):
                    self._show(self.table.lost(index))
                else:
                    items.append(item)
            if items:
                rest.append({**job, "items": items})
        return rest, culprits

    def _fail(self, index, reason):
        """Mark a point ``failed`` in its meta (and the table) if its run lock is free.

        A run folder without ``meta.json`` (an ensemble member killed before its
        first save) gets one that says only that.
        """
        run = self.table.run_path(index)
        try:
            lock = FolderLock(run / RUN_LOCK, f"run {run}").acquire()
        except RunStoreError:
            return False
        with lock:
            meta = raw_meta(run) or {"run_id": run.name}
            meta.update(status="failed", reason=reason)
            atomic_write_json(run / "meta.json", meta)
        self._show(self.table.lost(index))
        return True

    def _show(self, messages):
        for message in messages:
            self.display.event(message)

    def _refresh(self):
        self._show(self.table.poll())
        self.display.update(self.table.counts())
        self.table.write()

    def _stop(self, message=None):
        self.stopping = True
        if message is None:
            how = "save and stop" if self.engine.interrupts else "finish, then stop"
            message = f"interrupted: running points {how} (Ctrl-C again to abort)"
        self.display.event(message)
        with contextlib.suppress(OSError):
            self.stop_file.touch()

    def _abort(self, executor):
        self.display.event("aborting: killed points resume from their last checkpoint")
        if isinstance(executor, WorkerPool):
            executor.kill_workers()
            executor.shutdown(wait=False, cancel_futures=True)
        else:
            executor.shutdown(wait=False)

    def _summary(self, seconds, n_todo):
        rows = self.table.rows.values()
        counts = count_statuses(rows)
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        how = f" on {self.engine.name}" if n_todo and self.engine else ""
        self.display.event(
            f"sweep {self.path}: {len(rows)} points: {parts} ({format_seconds(seconds)}{how})"
        )
        failed = sum(row["status"] == "failed" for row in rows)
        if failed:
            self.display.event(
                f"{failed} point{'s' if failed > 1 else ''} failed; "
                f"errors in {self.path / 'status.csv'}"
            )
        left = len(rows) - counts.get("finished", 0) - counts.get("diverged", 0) - failed
        if self.stopping and left:
            self.display.event(
                f"interrupted with {left} points not done; resume with: "
                f"python runner.py --resume {self.path}"
            )


def _sweep_lock(path):
    return FolderLock(Path(path) / "sweep.lock", f"sweep {path}")


def run_sweep(
    config,
    source="",
    registry=None,
    runs_dir=None,
    jobs=None,
    dask=None,
    config_path=None,
    batch_size=None,
):
    """Run every point of a config's sweep in a new sweep folder.

    Parameters
    ----------
    config : dict
        Resolved config with a ``sweep`` section (see :mod:`core.sweep`).
    source : str
        The config file's text, copied to ``config.py`` of the sweep and its runs.
    registry : Registry, optional
        Validates every point before anything runs (and runs them when ``jobs=0``);
        workers register its ``plugin_modules`` besides the installed plugins.
    runs_dir : path, optional
        Root of the run store (default ``config["run"]["runs_dir"]``).
    jobs : int, optional
        Local worker processes (default: number of cores), Dask ``LocalCluster``
        workers with ``dask="local"``; ``0`` runs the points in this process.
    dask : str, optional
        ``"local"`` or a scheduler address ``"tcp://host:port"``.
    config_path : str, optional
        Recorded in ``sweep.json`` and each run's meta.
    batch_size : int, optional
        Points per task (default: about four tasks per worker, at most 16 points).

    Returns
    -------
    path : Path
        The sweep folder ``runs_dir/<experiment>/<UTC stamp>-<id>/``.

    Raises
    ------
    ConfigError, PluginError
        The sweep or one of its points is invalid: nothing is created or run.
    """
    registry = registry or get_registry()
    spec, points = expand_sweep(config, registry)
    start_engine = _engine_factory(jobs, dask)
    path = create_sweep_dir(runs_dir or config["run"]["runs_dir"], config["experiment"])
    with _sweep_lock(path):
        write_sweep_files(path, config, source, spec, points, config_path, config_hash(config))
        _Driver(path, config, points, start_engine, source, config_path, batch_size, registry).run()
    return path


def _check_unchanged(path, sweep, stored, config, registry):
    """Points of a sweep folder, if its config still gives the recorded points."""
    advice = "start a new sweep instead of resuming this one"
    if config is not None and config_hash(config) != sweep["config_hash"]:
        raise ConfigError(
            f"sweep {path} was made from another config "
            f"({first_difference(stored, config)}); {advice}"
        )
    if config_hash(stored) != sweep["config_hash"]:
        raise ConfigError(
            f"{path / 'config.json'} no longer matches sweep.json (was it edited?); {advice}"
        )
    _, points = expand_sweep(stored, registry)
    recorded = sweep["points"]
    for point, entry in zip(points, recorded):
        run_config = path / entry["run"] / "config.json"
        old = json.loads(run_config.read_text()) if run_config.is_file() else None
        if point.hash != entry["config_hash"] or point.run != entry["run"]:
            diff = first_difference(old, point.config) if old else None
            raise ConfigError(
                f"sweep {path}: point {entry['id']} now resolves to another config "
                f"({diff or 'plugin parameters or defaults changed'}); {advice}"
            )
        if old is not None and config_hash(old) != point.hash:
            raise ConfigError(
                f"sweep {path}: the run of point {entry['id']} was changed "
                f"({first_difference(point.config, old)}; resumed with overrides?); {advice}"
            )
    if len(points) != len(recorded):
        raise ConfigError(
            f"sweep {path} now has {len(points)} points instead of {len(recorded)}; {advice}"
        )
    return points


def resume_sweep(
    path, registry=None, jobs=None, dask=None, config=None, runs_dir=None, batch_size=None
):
    """Finish a sweep: skip done points, continue interrupted ones, start the rest.

    A point is done when its run is ``finished`` or ``diverged``. ``interrupted``
    and ``crashed`` runs continue from their checkpoint; ``failed`` runs and points
    never started run from scratch, in their own folders: a point never gets a
    second folder. See :func:`core.sweep.run_point`.

    Parameters
    ----------
    path : path or "latest"
        A sweep folder, or the newest one under ``runs_dir``.
    registry, jobs, dask, batch_size
        As :func:`run_sweep`.
    config : dict, optional
        A resolved config the sweep must have been made from (e.g. the file given
        again on the command line).
    runs_dir : path, optional
        Where to look for ``"latest"``.

    Returns
    -------
    path : Path

    Raises
    ------
    ConfigError
        The sweep's config changed: ``config`` differs, its ``config.json`` was
        edited, a point's run was changed, or resolving it now gives other points
        (plugin defaults changed). The message names the first difference.
    RunStoreError
        Not a sweep folder; another process drives it (``sweep.lock`` is held) or
        runs one of its points not done (its ``run.lock`` is held). A refused
        resume writes nothing.
    """
    registry = registry or get_registry()
    path = sweep_path(path, runs_dir)
    start_engine = _engine_factory(jobs, dask)
    with _sweep_lock(path):
        sweep = load_sweep(path)
        stored = json.loads((path / "config.json").read_text())
        points = _check_unchanged(path, sweep, stored, config, registry)
        source = (path / "config.py").read_text()
        _Driver(
            path,
            stored,
            points,
            start_engine,
            source,
            sweep.get("config_file"),
            batch_size,
            registry,
        ).run()
    return path
