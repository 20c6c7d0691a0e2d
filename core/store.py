"""The run store: one directory per run, written crash-safely, read lazily.

Layout of ``runs/<experiment>/<UTC stamp>-<short id>/``::

    config.py         copy of the config file's source
    config.json       the resolved config (plain data)
    meta.json         status, reason, times, steps, seed, versions, git commit
    problem.npz       X, Y (and X_test, Y_test), W0, a0: what the run started from
    trace/            <stream>.<chunk>.npz: rows appended in chunks
    checkpoint.npz    algorithm + loop state for --resume (arrays + a JSON blob)
    plots/            figures written by plot.py

Every file is written to a temporary name, fsynced and renamed over its final
name, and the directory is fsynced, so ``kill -9`` at any moment leaves either
the old or the new file, never a torn one. Arrays are ``.npz`` read with
``allow_pickle=False``; everything else is JSON. Nothing is pickled.

A trace stream is a table of rows: ``scalars`` (one float per name per logged
step), ``snapshots`` (parameter arrays) and ``records`` (inner-loop rows). Chunk
``i`` of every stream is written at the ``i``-th save; the checkpoint records how
many chunks it is consistent with, so a resume drops newer ones and replays them.
"""

import json
import os
import socket
import tempfile
from pathlib import Path

import numpy as np

from .errors import RunStoreError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_save_npz",
    "load_npz",
    "pack_state",
    "unpack_state",
    "TraceWriter",
    "read_stream",
    "RunStore",
    "Run",
    "Snapshots",
    "load_run",
    "find_latest",
    "resolve_target",
    "FINISHED_STATUSES",
]

FINISHED_STATUSES = ("finished", "diverged", "interrupted", "failed")
_JSON_KEY = "__json__"


# -- atomic files ----------------------------------------------------------------
def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path, write):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def atomic_save_npz(path, arrays):
    """Save a dict of arrays to ``path`` (.npz) atomically, uncompressed."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"array {key!r} has dtype object; refusing to pickle it")
    _atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_npz(path):
    """Load every array of an .npz file (``allow_pickle=False``) into a dict."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# -- nested state <-> arrays + JSON -----------------------------------------------
def pack_state(state):
    """Split a nested dict into flat arrays (``"a/b"`` keys) and a JSON tree.

    Array leaves go to the arrays dict; JSON leaves (numbers, strings, lists of
    them, None) stay in the tree. Keys must be strings without ``/``.
    """
    arrays = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                key = str(key)
                if "/" in key:
                    raise ValueError(f"state key {key!r} must not contain '/'")
                out[key] = walk(value, f"{prefix}{key}/")
            return out
        if isinstance(node, np.ndarray) or _is_tensor(node):
            arr = np.asarray(node.detach().cpu().numpy() if _is_tensor(node) else node)
            name = prefix[:-1]
            arrays[name] = arr
            return {"__array__": name}
        if isinstance(node, np.generic):
            return node.item()
        if isinstance(node, (list, tuple)):
            return [walk(v, f"{prefix}{i}/") for i, v in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store {type(node).__name__} at {prefix[:-1]!r} in a state")

    tree = walk(state, "")
    return arrays, tree


def _is_tensor(obj):
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def unpack_state(arrays, tree):
    """Inverse of :func:`pack_state`."""

    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"__array__"}:
                return arrays[node["__array__"]]
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(tree)


def save_state(path, state):
    """Write a nested state (arrays + JSON) to one .npz atomically."""
    arrays, tree = pack_state(state)
    if _JSON_KEY in arrays:
        raise ValueError(f"state key {_JSON_KEY!r} is reserved")
    blob = np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8)
    atomic_save_npz(path, {**arrays, _JSON_KEY: blob})


def load_state(path):
    """Read a state written by :func:`save_state`."""
    arrays = load_npz(path)
    tree = json.loads(arrays.pop(_JSON_KEY).tobytes().decode())
    return unpack_state(arrays, tree)


# -- trace -------------------------------------------------------------------------
def _chunk_name(stream, index):
    return f"{stream}.{index:06d}.npz"


def _chunk_files(trace_dir, stream=None):
    """``[(index, stream, path)]`` of the chunks present, sorted by index."""
    out = []
    trace_dir = Path(trace_dir)
    if not trace_dir.is_dir():
        return out
    for p in trace_dir.glob("*.npz"):
        parts = p.name.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        if stream is None or parts[0] == stream:
            out.append((int(parts[1]), parts[0], p))
    return sorted(out)


class TraceWriter:
    """Buffers rows per stream and writes them as atomic chunks on ``flush``.

    Parameters
    ----------
    trace_dir : path
    next_chunk : int
        Index of the next chunk (the checkpoint's ``n_chunks`` on resume).
    """

    def __init__(self, trace_dir, next_chunk=0):
        self.trace_dir = Path(trace_dir)
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        self.next_chunk = next_chunk
        self._blocks = {}
        self.pending_bytes = 0

    def append(self, stream, row):
        """Append one row: a dict of scalars or arrays (arrays are copied)."""
        block = {k: np.array(v)[None] for k, v in row.items()}
        self._add(stream, block)

    def append_columns(self, stream, columns):
        """Append several rows given as equal-length 1-D (or stacked) columns."""
        block = {k: np.array(v) for k, v in columns.items()}
        lengths = {v.shape[0] for v in block.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of {stream!r} have different lengths {sorted(lengths)}")
        self._add(stream, block)

    def _add(self, stream, block):
        self._blocks.setdefault(stream, []).append(block)
        self.pending_bytes += sum(v.nbytes for v in block.values())

    def flush(self):
        """Write every non-empty stream as chunk ``next_chunk``; return whether any."""
        if not self._blocks:
            return False
        index = self.next_chunk
        for stream, blocks in self._blocks.items():
            atomic_save_npz(self.trace_dir / _chunk_name(stream, index), _concat(blocks))
        self._blocks = {}
        self.pending_bytes = 0
        self.next_chunk = index + 1
        return True

    def drop_chunks_from(self, index):
        """Delete chunks numbered ``index`` or more (written after a checkpoint)."""
        for i, _, path in _chunk_files(self.trace_dir):
            if i >= index:
                path.unlink()
        _fsync_dir(self.trace_dir)


def _concat(blocks):
    keys = []
    for block in blocks:
        keys.extend(k for k in block if k not in keys)
    out = {}
    for key in keys:
        parts = []
        template = next(b[key] for b in blocks if key in b)
        for block in blocks:
            if key in block:
                parts.append(block[key])
            else:
                rows = len(next(iter(block.values())))
                filler = np.full((rows,) + template.shape[1:], np.nan)
                parts.append(filler.astype(np.result_type(template.dtype, np.float32)))
        out[key] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return out


def read_stream(trace_dir, stream, max_chunk=None):
    """Concatenate a stream's chunks (missing columns filled with NaN)."""
    blocks = []
    for index, _, path in _chunk_files(trace_dir, stream):
        if max_chunk is not None and index >= max_chunk:
            continue
        blocks.append(load_npz(path))
    return _concat(blocks) if blocks else {}


# -- run directory -----------------------------------------------------------------
class RunStore:
    """Writes one run directory.

    Use :meth:`create` for a new run and :meth:`open` to resume one.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.trace_dir = self.path / "trace"
        self.meta_path = self.path / "meta.json"
        self.checkpoint_path = self.path / "checkpoint.npz"

    @classmethod
    def create(cls, runs_dir, experiment, stamp, run_id):
        return cls.create_at(Path(runs_dir) / experiment / f"{stamp}-{run_id}")

    @classmethod
    def create_at(cls, path):
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise RunStoreError(f"run directory already exists: {path}") from None
        (path / "trace").mkdir()
        return cls(path)

    @classmethod
    def open(cls, path):
        """Open a run for writing again, removing temp files of interrupted writes."""
        store = cls(path)
        if not store.meta_path.is_file():
            raise RunStoreError(f"not a run directory (no meta.json): {path}")
        for tmp in store.path.rglob(".*.tmp"):
            tmp.unlink()
        return store

    def write_meta(self, meta):
        atomic_write_json(self.meta_path, meta)

    def read_meta(self):
        return json.loads(self.meta_path.read_text())

    def write_checkpoint(self, state):
        save_state(self.checkpoint_path, state)

    def read_checkpoint(self):
        if not self.checkpoint_path.is_file():
            return None
        return load_state(self.checkpoint_path)


def pid_alive(pid):
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, TypeError):
        return True
    return True


class Snapshots:
    """Parameter snapshots of a run: ``.steps`` and ``snap["W"]`` (stacked arrays).

    ``snap["W"]`` has shape ``(n_snapshots, d, m)``; iterate names with ``keys()``.
    """

    def __init__(self, columns):
        self._columns = {k: v for k, v in columns.items() if k != "step"}
        self.steps = columns.get("step", np.zeros(0, dtype=np.int64))

    def __getitem__(self, name):
        return self._columns[name]

    def __contains__(self, name):
        return name in self._columns

    def __len__(self):
        return len(self.steps)

    def keys(self):
        return self._columns.keys()

    def items(self):
        return self._columns.items()

    def at(self, i):
        """Dict of arrays of snapshot ``i`` (negative indices allowed)."""
        return {k: v[i] for k, v in self._columns.items()}


class Run:
    """A saved run, loaded lazily.

    Attributes
    ----------
    path : Path
    config : dict
        The resolved config.
    meta : dict
        Status, times, versions; a run whose process died without a final save
        reads as status ``"crashed"``.
    scalars : dict of ndarray
        Name -> values over the logged steps (``scalars["step"]`` holds the steps).
    snapshots : Snapshots
    records : dict of ndarray
        Inner-loop rows (``records["step"]`` is the outer step of each row).
    problem : dict of ndarray
        ``X``, ``Y``, ``W0``, ``a0`` (and ``X_test``, ``Y_test`` when present).
    """

    def __init__(self, path):
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            raise RunStoreError(f"not a run directory (no meta.json): {self.path}")
        self._cache = {}

    def __repr__(self):
        return f"Run({str(self.path)!r})"

    def _lazy(self, key, load):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    @property
    def config(self):
        return self._lazy("config", lambda: json.loads((self.path / "config.json").read_text()))

    @property
    def meta(self):
        def load():
            meta = json.loads((self.path / "meta.json").read_text())
            if meta.get("status") == "running" and meta.get("host") == socket.gethostname():
                if not pid_alive(meta.get("pid")):
                    meta["status"] = "crashed"
                    meta.setdefault("reason", "process ended without a final save")
            return meta

        return self._lazy("meta", load)

    @property
    def status(self):
        return self.meta.get("status")

    def stream(self, name):
        """All rows of a trace stream as columns."""
        return self._lazy(("stream", name), lambda: read_stream(self.path / "trace", name))

    @property
    def scalars(self):
        return self.stream("scalars")

    @property
    def snapshots(self):
        return self._lazy("snapshots", lambda: Snapshots(self.stream("snapshots")))

    @property
    def records(self):
        return self.stream("records")

    @property
    def problem(self):
        return self._lazy("problem", lambda: load_npz(self.path / "problem.npz"))

    @property
    def bias(self):
        return bool(self.meta.get("bias", False))

    def final_state(self):
        """The last parameter snapshot as a dict of arrays (None if there is none)."""
        snaps = self.snapshots
        return snaps.at(-1) if len(snaps) else None


def find_latest(runs_dir="runs", marker="meta.json"):
    """Newest directory ``runs_dir/<experiment>/<stamp>-<id>/`` holding ``marker``.

    ``marker`` may be a tuple of file names (``("meta.json", "sweep.json")``: the
    newest run or sweep). Directories are ordered by their UTC-stamped names.
    """
    runs_dir = Path(runs_dir)
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    candidates = {p.parent for m in markers for p in runs_dir.glob(f"*/*/{m}")}
    if not candidates:
        raise RunStoreError(f"no runs under {runs_dir}")
    return max(candidates, key=lambda p: (p.name, p.stat().st_mtime))


def resolve_target(path="latest", runs_dir=None):
    """Directory of a run or sweep: a path, or ``"latest"`` (the newest of either)."""
    if str(path) == "latest":
        root = runs_dir or os.environ.get("RELULAB_RUNS_DIR", "runs")
        return find_latest(root, marker=("meta.json", "sweep.json"))
    path = Path(path)
    if not path.exists():
        raise RunStoreError(f"no such run directory: {path}")
    return path


def load_run(path="latest", runs_dir=None):
    """Open a saved run.

    Parameters
    ----------
    path : str or Path
        A run directory, an experiment directory (its newest run), or
        ``"latest"`` (the newest run under ``runs_dir``).
    runs_dir : str or Path, optional
        Root of the run store for ``"latest"`` (default ``$RELULAB_RUNS_DIR`` or
        ``runs``).
    """
    if str(path) == "latest":
        root = runs_dir or os.environ.get("RELULAB_RUNS_DIR", "runs")
        return Run(find_latest(root))
    path = Path(path)
    if not path.exists():
        raise RunStoreError(f"no such run directory: {path}")
    if not (path / "meta.json").is_file():
        runs = sorted(p.parent for p in path.glob("*/meta.json"))
        if runs:
            return Run(max(runs, key=lambda p: p.name))
    return Run(path)
