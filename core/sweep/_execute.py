"""Running a sweep's points: local process pool, Dask distributed, or in this process.

Driver and workers
------------------
The driver (the process that calls :func:`run_sweep` / :func:`resume_sweep`) holds
``sweep.lock``, cuts the points still to do into batches, hands them to an
executor and keeps the status table and the display current by watching the
points' ``meta.json``. A worker runs a batch with :func:`run_batch`: one point
after another, each an ordinary run made by :func:`core.loop.start_run` in its
fixed folder, or continued by :func:`core.loop.resume_run`. Whatever a point
raises is recorded as that point's failure and the batch goes on.

Executors
---------
* ``jobs=N`` (default: the number of cores): a ``ProcessPoolExecutor`` of N
  *spawned* processes, BLAS limited to one thread each (unless the environment
  already says otherwise). If a worker process dies (out of memory, a segfault),
  the pool is rebuilt and the points not done are run again, at most
  ``MAX_ROUNDS`` times.
* ``dask="local"``: an embedded ``LocalCluster(n_workers=jobs, threads_per_worker=1)``.
* ``dask="tcp://host:port"``: a running Dask scheduler (a cluster, or Slurm / PBS
  through dask-jobqueue). Workers must see the sweep folder (shared file system)
  and have relulab and the plugins installed.
* ``jobs=0``: every point in this process, one after another, with the caller's
  registry (debugging, profiling).

Workers build their own registry (:func:`core.registry.get_registry`) with the
driver's ``RELULAB_PLUGINS``. Results do not depend on the executor: each point
is seeded from its config.

Stopping
--------
Ctrl-C (or SIGTERM to the driver) stops cleanly: the driver touches a stop file
(``.stop-<session>`` in the sweep folder) that batches check between points, and
sends SIGTERM to the pool workers running a point, which saves and ends
``interrupted``; points not started stay pending. A Dask worker cannot interrupt
a running point (it runs in a thread): it finishes it, unless Ctrl-C at a terminal
also stopped the ``LocalCluster``, in which case the point reads ``crashed``. A
second Ctrl-C aborts at once; killed points resume from their last checkpoint.
Pool workers whose driver died (``kill -9``) interrupt their point and exit by
themselves. A script calling :func:`run_sweep` with a pool needs the usual
``if __name__ == "__main__":`` guard (workers are spawned).
"""

import concurrent.futures
import contextlib
import importlib.util
import json
import multiprocessing
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import ConfigError, RunStoreError
from ..registry import get_registry
from ..store import atomic_write_json
from ._display import SweepDisplay, format_seconds
from ._folder import (
    DONE_STATUSES,
    SweepLock,
    count_statuses,
    create_sweep_dir,
    load_sweep,
    point_row,
    sweep_path,
    write_status,
    write_sweep_files,
)
from ._spec import config_hash, expand_sweep, first_difference, group_by_shape
from ._worker import init_pool_worker, raw_meta, run_batch

__all__ = ["run_sweep", "resume_sweep"]

BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
POLL_SECONDS = 0.2
STATUS_WRITE_SECONDS = 1.0
MAX_ROUNDS = 3
MAX_BATCH = 16


# -- executors ---------------------------------------------------------------------
def _outcome(future):
    """``(value, error)``; both None for a cancelled task."""
    try:
        return future.result(), None
    except concurrent.futures.CancelledError:
        return None, None
    except Exception as exc:
        return None, exc


@contextlib.contextmanager
def _single_threaded_blas():
    """One BLAS thread per worker process (unless the environment sets it)."""
    added = [name for name in BLAS_THREAD_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


class _Inline:
    """Runs each batch in this process when polled (``jobs=0``)."""

    stop_with_batch = True  # the run loop here consumes the driver's own Ctrl-C

    def __init__(self, registry):
        self.registry = registry
        self.workers = 1
        self.name = "this process"
        self._queue = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, jobs):
        self._queue = list(jobs)

    @staticmethod
    def lost_worker(error):
        return False

    def pending(self):
        return bool(self._queue)

    def poll(self, timeout):
        job = self._queue.pop(0)
        try:
            return [(job, run_batch(job, self.registry), None)]
        except Exception as exc:
            return [(job, None, exc)]

    def interrupt(self, pids):
        self._queue = []

    def wait_idle(self):
        pass

    def abort(self):
        self._queue = []


class _Pool:
    """A ``ProcessPoolExecutor`` of spawned workers, rebuilt after a worker died."""

    stop_with_batch = False  # a signalled worker stops its batch only


    def __init__(self, jobs):
        self.workers = jobs
        self.name = f"{jobs} local process{'es' if jobs > 1 else ''}"
        self.pool = None
        self.futures = {}
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        if self.workers > 1:
            self._stack.enter_context(_single_threaded_blas())
        return self

    def __exit__(self, *exc):
        self.wait_idle()
        self._stack.close()
        return False

    def wait_idle(self):
        """Shut the pool down and wait for its processes (a new one starts on submit)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def submit(self, jobs):
        self.wait_idle()
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=max(1, min(self.workers, len(jobs))),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_pool_worker, initargs=(os.getpid(),),
        )
        self.futures = {self.pool.submit(run_batch, job): job for job in jobs}

    def pending(self):
        return bool(self.futures)

    def poll(self, timeout):
        done, _ = concurrent.futures.wait(self.futures, timeout=timeout,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        out = []
        for future in done:
            value, error = _outcome(future)
            out.append((self.futures.pop(future), value, error))
        return out

    @staticmethod
    def lost_worker(error):
        return isinstance(error, BrokenProcessPool)

    def interrupt(self, pids):
        """Cancel batches not started; SIGTERM the workers running a point."""
        for future in self.futures:
            future.cancel()
        workers = {p.pid for p in (self.pool._processes or {}).values()} if self.pool else set()
        for pid in set(pids) & workers:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def abort(self):
        if self.pool is not None:
            for process in list((self.pool._processes or {}).values()):
                with contextlib.suppress(OSError):
                    process.kill()
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.futures = {}


class _Dask:
    """Batches as Dask tasks on an embedded ``LocalCluster`` or a running scheduler."""

    stop_with_batch = False  # a signalled worker stops its batch only


    def __init__(self, address, jobs):
        self.address = address
        self.jobs = jobs
        self.cluster = self.client = None
        self.futures = {}
        self.stopping = False

    def __enter__(self):
        from distributed import Client, LocalCluster

        if self.address == "local":
            self.cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1,
                                        processes=True, dashboard_address=":0")
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(self.address, timeout="30s")
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {self.address}: {exc}"
                                  ) from None
        self.workers = max(1, sum(self.client.nthreads().values()))
        where = "LocalCluster" if self.cluster else self.address
        self.name = f"Dask {where} ({self.workers} worker thread"
        self.name += "s)" if self.workers > 1 else ")"
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()
        return False

    def submit(self, jobs):
        tag = uuid.uuid4().hex[:8]
        self.futures = {}
        for k, job in enumerate(jobs):
            future = self.client.submit(run_batch, job, key=f"relulab-sweep-{tag}-{k}",
                                        pure=False)
            self.futures[future] = job

    def pending(self):
        return bool(self.futures)

    def poll(self, timeout):
        done = [f for f in self.futures if f.done()]
        if not done and self.stopping and not self.client.nthreads():
            # Ctrl-C at a terminal also stops the LocalCluster's workers: give up
            self.abort()
            return []
        if not done:
            time.sleep(timeout)
        return [(self.futures.pop(f), *_outcome(f)) for f in done]

    @staticmethod
    def lost_worker(error):
        return False  # Dask reschedules tasks of lost workers itself

    def interrupt(self, pids):
        """Batches see the stop file and stop after their current point."""
        self.stopping = True

    def wait_idle(self):
        pass

    def abort(self):
        with contextlib.suppress(Exception):
            self.client.cancel(list(self.futures))
        self.futures = {}


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


def _executor(jobs, dask, registry):
    if jobs is None:
        jobs = _cores()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigError(f"jobs must be an int >= 0 (0: in this process); got {jobs!r}")
    if dask is not None:
        if dask != "local" and "://" not in str(dask):
            raise ConfigError(f"dask must be 'local' or a scheduler address like "
                              f"tcp://host:8786; got {dask!r}")
        if importlib.util.find_spec("distributed") is None:
            raise ConfigError('dask sweeps need dask[distributed]: pip install "relulab[dask]"')
        if dask != "local":  # before any folder is made; refused: at once, not after 30 s
            try:
                _probe(str(dask))
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {dask}: {exc}") from None
        return _Dask(str(dask), max(jobs, 1))
    return _Inline(registry) if jobs == 0 else _Pool(jobs)


# -- driver ------------------------------------------------------------------------
class _Tracker:
    """The status table: rows from the run folders, refreshed as points progress."""

    def __init__(self, path, entries):
        self.path = Path(path)
        self.entries = {e["index"]: e for e in entries}
        self.rows = {i: point_row(e, self.path / e["run"]) for i, e in self.entries.items()}
        self.active = {}  # index -> meta.json mtime when handed out
        self.returned = set()
        self.reported = set()
        self._written = None

    def _run(self, index):
        return self.path / self.entries[index]["run"]

    def _mtime(self, index):
        try:
            return (self._run(index) / "meta.json").stat().st_mtime_ns
        except OSError:
            return None

    def _set(self, index, row):
        """Store a row; return the message to print if the point newly failed."""
        self.rows[index] = row
        if row["status"] != "failed" or index in self.reported:
            return []
        self.reported.add(index)
        entry = self.entries[index]
        label = ", ".join([f"{k}={v!r}" for k, v in entry["overrides"].items()]
                          + [f"seed {entry['seed']}"])
        return [f"point {entry['id']} ({label}) failed: {row['reason']}"]

    def refresh(self, index):
        return self._set(index, point_row(self.entries[index], self._run(index)))

    def hand_out(self, indices):
        for index in indices:
            self.active[index] = self._mtime(index)
            self.returned.discard(index)
            self.reported.discard(index)

    def poll(self):
        """Re-read the meta of handed-out points whose meta changed; new failures."""
        messages = []
        for index, seen in list(self.active.items()):
            mtime = self._mtime(index)
            if mtime is not None and mtime != seen:
                self.active[index] = mtime
                messages += self.refresh(index)
        return messages

    def result(self, result):
        index = result["index"]
        self.active.pop(index, None)
        self.returned.add(index)
        row = point_row(self.entries[index], self._run(index))
        row.update({k: result[k] for k in ("status", "reason", "steps", "final_loss")})
        return self._set(index, row)

    def lost(self, index, error):
        """A point whose batch ended (raised, was cancelled) without reporting it."""
        self.active.pop(index, None)
        messages = self.refresh(index)
        row = self.rows[index]
        if error is not None and row["status"] not in DONE_STATUSES + ("failed",):
            row.update(status="failed", reason=error)
            messages += self._set(index, row)
        return messages

    def running_pids(self):
        metas = [raw_meta(self._run(index)) for index in self.active]
        return [m.get("pid") for m in metas if m and m.get("status") == "running"]

    def counts(self):
        counts = {"done": 0, "running": 0, "failed": 0, "left": 0}
        for row in self.rows.values():
            status = row["status"]
            if status in DONE_STATUSES:
                counts["done"] += 1
            elif status in ("running", "failed"):
                counts[status] += 1
            else:
                counts["left"] += 1
        return counts

    def write(self, force=False):
        now = time.monotonic()
        if force or self._written is None or now - self._written >= STATUS_WRITE_SECONDS:
            write_status(self.path, [self.rows[i] for i in sorted(self.rows)])
            self._written = now


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


def _batches(groups, batch_size, workers):
    """Cut the points into batches, each a task for one worker.

    A group of points trained together (:func:`core.sweep.group_by_shape`) is a
    batch of its own, cut only above ``batch_size`` (default ``MAX_BATCH``)
    points. The other points are cut into batches of ``batch_size`` (default:
    about four batches per worker, at most ``MAX_BATCH``), so start-up is paid
    once per batch while the load stays balanced.
    """
    n_single = sum(len(group) == 1 for group in groups)
    size = batch_size or max(1, min(MAX_BATCH, n_single // (4 * workers)))
    ensemble_size = batch_size or MAX_BATCH
    batches, singles = [], []
    for group in groups:
        if len(group) == 1:
            singles.append(group[0])
            if len(singles) == size:
                batches.append(singles)
                singles = []
        else:
            batches.extend(group[i:i + ensemble_size]
                           for i in range(0, len(group), ensemble_size))
    if singles:
        batches.append(singles)
    return batches


class _Driver:
    """Runs the points of a sweep folder that are not done, with display and table."""

    def __init__(self, path, config, points, executor, source, config_path, batch_size,
                 registry):
        self.path = Path(path).resolve()
        self.points = points
        self.executor = executor
        self.batch_size = batch_size
        self.registry = registry
        self.stop_file = self.path / f".stop-{uuid.uuid4().hex[:12]}"
        self.job = {"sweep": str(self.path), "source": source,
                    "config_path": str(config_path) if config_path else None,
                    "plugins": os.environ.get("RELULAB_PLUGINS"),
                    "stop_file": str(self.stop_file)}
        self.display = SweepDisplay(config["run"]["display"],
                                    title=f"sweep {config['experiment']}", total=len(points))
        self.interrupted = False

    def run(self):
        with SweepLock(self.path), _term_as_interrupt():
            self.tracker = _Tracker(self.path, [p.to_json() for p in self.points])
            self._refuse_live_points()
            self.tracker.write(force=True)
            todo = [p for p in self.points
                    if self.tracker.rows[p.index]["status"] not in DONE_STATUSES]
            t0 = time.perf_counter()
            self.display.start(self.tracker.counts())
            try:
                if todo:
                    with self.executor:
                        self._rounds(todo)
            except KeyboardInterrupt:  # outside the collecting loop, e.g. at shut-down
                self.interrupted = True
                self.executor.abort()
            finally:
                self.display.stop()
                for index in list(self.tracker.active):
                    self.tracker.refresh(index)
                self.tracker.write(force=True)
                with contextlib.suppress(OSError):
                    self.stop_file.unlink()
            if self.display.mode != "off":
                self._summary(time.perf_counter() - t0, len(todo))

    def _refuse_live_points(self):
        host = socket.gethostname()
        for row in self.tracker.rows.values():
            meta = raw_meta(self.path / row["run"]) if row["status"] == "running" else None
            if meta and meta.get("host") == host:
                raise RunStoreError(
                    f"point {row['id']} of sweep {self.path} is still running (pid "
                    f"{meta.get('pid')}); wait for it to end or stop it, then resume")

    def _rounds(self, todo):
        """Hand out the points; after a worker process died, the rest in a new pool.

        When a pool worker dies, the pool kills the other workers too: their points
        end ``interrupted`` (and resume in the next round), while the point whose
        process died is left ``running`` (``crashed``). It is marked ``failed``, so that
        a point that kills its process (out of memory, a segfault) does not keep
        the others from running; a resume tries it again. Rounds in which no such
        point is found count towards ``MAX_ROUNDS``.
        """
        remaining, strikes = todo, 0
        while remaining:
            groups = group_by_shape(remaining, self.registry)
            batches = _batches(groups, self.batch_size, self.executor.workers)
            self.tracker.hand_out([p.index for p in remaining])
            self.executor.submit([
                {**self.job, "items": [{"index": p.index, "run": p.run, "config": p.config}
                                       for p in batch]}
                for batch in batches])
            if not self._collect() or self.interrupted:
                return
            self.executor.wait_idle()  # the broken pool's processes have all exited
            remaining = [p for p in remaining if self.tracker.rows[p.index]["status"]
                         not in DONE_STATUSES + ("failed",)]
            # the pool's processes are all gone: a run still "running" lost its process
            culprits = [p for p in remaining
                        if (raw_meta(self.path / p.run) or {}).get("status") == "running"]
            for point in culprits:
                self._fail(point, "the worker process running this point died (killed, out "
                                  "of memory or crashed)")
            remaining = [p for p in remaining if p not in culprits]
            strikes += not culprits
            if strikes >= MAX_ROUNDS:
                return
            if remaining:
                n = len(remaining)
                self.display.event(f"a worker process died; running the {n} point"
                                   f"{'s' if n > 1 else ''} not done in a new pool")

    def _fail(self, point, reason):
        """Record a failure in the point's own meta (and the table)."""
        meta = raw_meta(self.path / point.run)
        if meta is not None:
            meta.update(status="failed", reason=reason)
            atomic_write_json(self.path / point.run / "meta.json", meta)
        for message in self.tracker.refresh(point.index):
            self.display.event(message)

    def _stop(self, message):
        self.interrupted = True
        self.display.event(message)
        with contextlib.suppress(OSError):
            self.stop_file.touch()
        self.executor.interrupt(self.tracker.running_pids())

    def _collect(self):
        """Receive batch results until none is pending; Ctrl-C stops, twice aborts."""
        lost_worker = False
        while self.executor.pending():
            try:
                for job, out, error in self.executor.poll(POLL_SECONDS):
                    lost_worker |= self._receive(job, out, error)
                for message in self.tracker.poll():
                    self.display.event(message)
                self.display.update(self.tracker.counts())
                self.tracker.write()
            except KeyboardInterrupt:
                if self.interrupted:
                    self.display.event("aborting: killed points resume from their last "
                                       "checkpoint")
                    self.executor.abort()
                    break
                self._stop("interrupted: running points save and stop (Ctrl-C again to "
                           "abort)")
        return lost_worker

    def _receive(self, job, out, error):
        """Record one batch's outcome; return whether its worker process died."""
        messages = []
        if out is not None:
            for result in out["results"]:
                messages += self.tracker.result(result)
        lost = error is not None and self.executor.lost_worker(error)
        text = None if error is None or lost else f"{type(error).__name__}: {error}"
        for item in job["items"]:
            if item["index"] not in self.tracker.returned:
                messages += self.tracker.lost(item["index"], text)
        for message in messages:
            self.display.event(message)
        if out is not None and out["stopped"] and self.executor.stop_with_batch:
            if not self.interrupted:  # Ctrl-C in a point run by this very process
                self._stop("interrupted: stopping the sweep")
        return lost

    def _summary(self, seconds, n_todo):
        rows = self.tracker.rows.values()
        counts = count_statuses(rows)
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        how = f" on {self.executor.name}" if n_todo else ""
        self.display.event(f"sweep {self.path}: {len(rows)} points: {parts} "
                           f"({format_seconds(seconds)}{how})")
        failed = sum(row["status"] == "failed" for row in rows)
        if failed:
            self.display.event(f"{failed} point{'s' if failed > 1 else ''} failed; "
                               f"errors in {self.path / 'status.csv'}")
        left = len(rows) - counts.get("finished", 0) - counts.get("diverged", 0) - failed
        if self.interrupted and left:
            self.display.event(f"interrupted with {left} points not done; resume with: "
                               f"python runner.py --resume {self.path}")


def run_sweep(config, source="", registry=None, runs_dir=None, jobs=None, dask=None,
              config_path=None, batch_size=None):
    """Run every point of a config's sweep in a new sweep folder.

    Parameters
    ----------
    config : dict
        Resolved config with a ``sweep`` section (see :mod:`core.sweep`).
    source : str
        The config file's text, copied to ``config.py`` of the sweep and its runs.
    registry : Registry, optional
        Validates every point before anything runs (and runs them when ``jobs=0``).
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
    executor = _executor(jobs, dask, registry)
    path = create_sweep_dir(runs_dir or config["run"]["runs_dir"], config["experiment"])
    write_sweep_files(path, config, source, spec, points, config_path, config_hash(config))
    _Driver(path, config, points, executor, source, config_path, batch_size, registry).run()
    return path


def _check_unchanged(path, sweep, stored, config, registry):
    """Points of a sweep folder, if its config still gives the recorded points."""
    advice = "start a new sweep instead of resuming this one"
    if config is not None and config_hash(config) != sweep["config_hash"]:
        raise ConfigError(f"sweep {path} was made from another config "
                          f"({first_difference(stored, config)}); {advice}")
    if config_hash(stored) != sweep["config_hash"]:
        raise ConfigError(f"{path / 'config.json'} no longer matches sweep.json "
                          f"(was it edited?); {advice}")
    _, points = expand_sweep(stored, registry)
    recorded = sweep["points"]
    for point, entry in zip(points, recorded):
        run_config = path / entry["run"] / "config.json"
        old = json.loads(run_config.read_text()) if run_config.is_file() else None
        if point.hash != entry["config_hash"] or point.run != entry["run"]:
            diff = first_difference(old, point.config) if old else None
            raise ConfigError(
                f"sweep {path}: point {entry['id']} now resolves to another config "
                f"({diff or 'plugin parameters or defaults changed'}); {advice}")
        if old is not None and config_hash(old) != point.hash:
            raise ConfigError(
                f"sweep {path}: the run of point {entry['id']} was changed "
                f"({first_difference(point.config, old)}; resumed with overrides?); {advice}")
    if len(points) != len(recorded):
        raise ConfigError(f"sweep {path} now has {len(points)} points instead of "
                          f"{len(recorded)}; {advice}")
    return points


def resume_sweep(path, registry=None, jobs=None, dask=None, config=None, runs_dir=None,
                 batch_size=None):
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
        Not a sweep folder, or it is being run by a live process.
    """
    registry = registry or get_registry()
    path = sweep_path(path, runs_dir)
    sweep = load_sweep(path)
    stored = json.loads((path / "config.json").read_text())
    points = _check_unchanged(path, sweep, stored, config, registry)
    executor = _executor(jobs, dask, registry)
    source = (path / "config.py").read_text()
    _Driver(path, stored, points, executor, source, sweep.get("config_file"), batch_size,
            registry).run()
    return path
