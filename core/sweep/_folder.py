"""The sweep folder: its files, the live status table, the lock, point states.

Layout of ``runs/<experiment>/<UTC stamp>-<short id>/``::

    sweep.json     the spec and the points (index, overrides, seed, run folder,
                   config hash); written once, last, so its presence marks a sweep
    config.py      copy of the config file's source
    config.json    the resolved config, sweep section included
    status.json    one row per point (status, reason, steps, final loss), kept
    status.csv     current while the sweep runs (atomic rewrites)
    sweep.lock     flock-ed by the process driving the sweep (core.locks.FolderLock);
                   it holds that process's pid and host while it runs
    .stop-<id>     present while that process asks its workers to stop
    runs/<id>/     one ordinary run per point (see core.store)

The run folders are the truth: ``status.*`` are a view rebuilt from them whenever
a sweep is (re)started, so a stale table after ``kill -9`` does no harm.
"""

import csv
import datetime as _dt
import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from ..errors import RunStoreError
from ..store import Run, atomic_write_bytes, atomic_write_json, find_latest

__all__ = [
    "DONE_STATUSES",
    "is_sweep_dir",
    "find_latest_sweep",
    "sweep_path",
    "load_sweep",
    "read_status",
    "point_row",
    "StatusTable",
]

SWEEP_FILE = "sweep.json"
DONE_STATUSES = ("finished", "diverged")
"""Statuses of a point that a resume leaves alone: both are a run's final answer."""


def is_sweep_dir(path):
    """Whether ``path`` is a sweep folder (holds ``sweep.json``)."""
    return (Path(path) / SWEEP_FILE).is_file()


def find_latest_sweep(runs_dir=None):
    """Newest sweep folder under ``runs_dir`` (default ``$RELULAB_RUNS_DIR`` or ``runs``)."""
    root = runs_dir or os.environ.get("RELULAB_RUNS_DIR", "runs")
    try:
        return find_latest(root, marker=SWEEP_FILE)
    except RunStoreError:
        raise RunStoreError(f"no sweeps under {root}") from None


def sweep_path(path, runs_dir=None):
    """A sweep folder from a path or ``"latest"``; raises if it is not a sweep."""
    if str(path) == "latest":
        return find_latest_sweep(runs_dir)
    path = Path(path)
    if not is_sweep_dir(path):
        raise RunStoreError(f"not a sweep folder (no {SWEEP_FILE}): {path}")
    return path


def load_sweep(path):
    """The contents of ``sweep.json`` (spec, keys, points...)."""
    return json.loads((Path(path) / SWEEP_FILE).read_text())


def utc_stamp(fmt="%Y%m%dT%H%M%SZ"):
    return _dt.datetime.now(_dt.UTC).strftime(fmt)


def create_sweep_dir(runs_dir, experiment):
    """Make ``runs_dir/experiment/<UTC stamp>-<id>/runs/`` and return the sweep folder."""
    path = Path(runs_dir) / experiment / f"{utc_stamp()}-{os.urandom(3).hex()}"
    (path / "runs").mkdir(parents=True)
    return path


def write_sweep_files(path, config, source, spec, points, config_path, config_hash):
    atomic_write_bytes(path / "config.py", source.encode(), shared=True)
    atomic_write_json(path / "config.json", config)
    atomic_write_json(
        path / SWEEP_FILE,
        {
            "format": 1,
            "experiment": config["experiment"],
            "created": utc_stamp("%Y-%m-%dT%H:%M:%SZ"),
            "config_file": str(config_path) if config_path else None,
            "config_hash": config_hash,
            "spec": spec,
            "keys": list(spec["grid"]) + list(spec["zip"]),
            "points": [p.to_json() for p in points],
        },
    )


def read_meta(run_path):
    """A run's meta as :class:`core.store.Run` reads it (crash detection), or None."""
    try:
        return Run(run_path).meta
    except (RunStoreError, OSError, ValueError):
        return None


def point_row(point, run_path, meta=None):
    """The status-table row of a point (``point`` is a sweep.json entry)."""
    meta = read_meta(run_path) if meta is None else meta
    row = {
        "point": point["index"],
        "id": point["id"],
        **point["overrides"],
        "seed": point["seed"],
        "status": "pending",
        "reason": None,
        "steps": None,
        "final_loss": None,
        "run": point["run"],
    }
    if meta:
        row.update(
            status=meta.get("status"),
            reason=meta.get("reason"),
            steps=meta.get("steps"),
            final_loss=meta.get("final_loss"),
        )
    return row


def cell(value):
    """A CSV cell: floats exactly (repr; numpy's too), None empty, lists and dicts as JSON.

    Examples
    --------
    >>> import numpy as np
    >>> [cell(v) for v in (0.1, np.float64(0.1), np.float32(0.5), float("nan"), None)]
    ['0.1', '0.1', '0.5', 'nan', '']
    """
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        value = float(value)  # numpy's repr is "np.float64(0.1)"
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def csv_text(rows, columns=None):
    """CSV text of dict rows (columns: union of the rows' keys in order)."""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def count_statuses(rows):
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def write_status(path, rows):
    """Rewrite ``status.json`` and ``status.csv`` atomically."""
    atomic_write_json(
        path / "status.json",
        {
            "updated": utc_stamp("%Y-%m-%dT%H:%M:%SZ"),
            "counts": count_statuses(rows),
            "points": rows,
        },
    )
    atomic_write_bytes(path / "status.csv", csv_text(rows).encode())


def read_status(path):
    """The status table of a sweep, rebuilt from its run folders.

    Returns
    -------
    status : dict
        ``{"counts": {status: n}, "points": [row, ...]}``, one row per point with
        ``point, id, <swept keys>, seed, status, reason, steps, final_loss, run``;
        ``status`` is ``pending`` for a point that never started.
    """
    path = Path(path)
    rows = [point_row(p, path / p["run"]) for p in load_sweep(path)["points"]]
    return {"counts": count_statuses(rows), "points": rows}


class StatusTable:
    """The live status table of a sweep being run: one row per point.

    Rows are rebuilt from the run folders (:func:`point_row`), updated from what
    workers report and from the ``meta.json`` of points handed out (re-read when
    its modification time changes; a handed-out point whose folder exists without
    one, an ensemble member before its first save, reads ``running``), and written
    to ``status.json`` / ``status.csv`` at most every ``write_every`` seconds.

    Parameters
    ----------
    path : path
        The sweep folder.
    entries : list of dict
        The points as ``sweep.json`` lists them.
    write_every : float
    """

    def __init__(self, path, entries, write_every=1.0):
        self.path = Path(path)
        self.entries = {e["index"]: e for e in entries}
        self.rows = {i: point_row(e, self.path / e["run"]) for i, e in self.entries.items()}
        self.write_every = write_every
        self.active = {}  # index -> _stamp last seen, while handed out
        self._handed = {}  # index -> _stamp when handed out
        self._reported = set()
        self._written = None

    def run_path(self, index):
        return self.path / self.entries[index]["run"]

    def _stamp(self, index):
        """What a point's run changes as it writes: ``meta.json``'s modification
        time; before its first ``meta.json`` (an ensemble member), ``("folder",
        inode, ctime)`` of its run folder; None without a folder."""
        run = self.run_path(index)
        try:
            return (run / "meta.json").stat().st_mtime_ns
        except OSError:
            pass
        try:
            stat = run.stat()
        except OSError:
            return None
        return ("folder", stat.st_ino, stat.st_ctime_ns)

    def _set(self, index, row):
        """Store a row; return the message to print if the point newly failed."""
        self.rows[index] = row
        if row["status"] != "failed" or index in self._reported:
            return []
        self._reported.add(index)
        entry = self.entries[index]
        label = ", ".join(
            [f"{k}={v!r}" for k, v in entry["overrides"].items()] + [f"seed {entry['seed']}"]
        )
        return [f"point {entry['id']} ({label}) failed: {row['reason']}"]

    def refresh(self, index):
        """Re-read a point's row from its run folder; messages of a new failure."""
        return self._set(index, point_row(self.entries[index], self.run_path(index)))

    def hand_out(self, indices):
        """Points given to a worker: watch their run folders from now on."""
        for index in indices:
            self.active[index] = self._handed[index] = self._stamp(index)
            self._reported.discard(index)

    def touched(self, index):
        """Whether a point's run wrote (``meta.json``, or a new run folder) since it
        was handed out."""
        return index in self._handed and self._stamp(index) != self._handed[index]

    def poll(self):
        """Re-read the rows of handed-out points whose run wrote; new failures."""
        messages = []
        for index, seen in list(self.active.items()):
            stamp = self._stamp(index)
            if stamp is not None and stamp != seen:
                self.active[index] = stamp
                messages += self.refresh(index)
                if isinstance(stamp, tuple) and self.rows[index]["status"] == "pending":
                    self.rows[index]["status"] = "running"  # made, first save to come
        return messages

    def result(self, result):
        """A point's result as a worker reported it (:func:`core.sweep.run_batch`)."""
        index = result["index"]
        self.active.pop(index, None)
        # every field the run's meta.json would give comes with the result: not read
        row = point_row(self.entries[index], self.run_path(index), meta={})
        row.update({k: result[k] for k in ("status", "reason", "steps", "final_loss")})
        return self._set(index, row)

    def lost(self, index, error=None):
        """A handed-out point that no worker reported: its run folder says how it is.

        ``error`` (the reason its task failed) marks it ``failed`` in the table
        unless its run ended otherwise.
        """
        self.active.pop(index, None)
        messages = self.refresh(index)
        row = self.rows[index]
        if error is not None and row["status"] not in DONE_STATUSES + ("failed",):
            row.update(status="failed", reason=error)
            messages += self._set(index, row)
        return messages

    def counts(self):
        """``{"done", "running", "failed", "left"}`` for the display."""
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
        """Rewrite ``status.*`` if ``write_every`` seconds passed (or ``force``)."""
        now = time.monotonic()
        if force or self._written is None or now - self._written >= self.write_every:
            write_status(self.path, [self.rows[i] for i in sorted(self.rows)])
            self._written = now
