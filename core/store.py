"""The run store: one directory per run, written crash-safely, read lazily.

Layout of ``runs/<experiment>/<UTC stamp>-<short id>/``::

    config.py         copy of the config file's source (hard-linked between the
                      points of an ensemble: atomic_write_bytes(shared=True))
    config.json       the resolved config (plain data)
    meta.json         status, reason, times, steps, seed, versions, git commit
    problem.npz       X, Y (and X_test, Y_test), W0, a0: what the run started from
    trace/            <chunk>.npz: rows appended in chunks, one file per save holding
                      every stream written then (arrays <stream>/<column>; traces
                      begun before 2026-12-02: <stream>.<chunk>.npz, one file per
                      stream), and chunks.json listing them (equal ones of an
                      ensemble's points: hard links)
    checkpoint.npz    algorithm + loop state for --resume (arrays + a JSON blob)
    plots/            figures written by plot.py

Every file is written to a temporary name, fsynced and renamed over its final
name, and the directory is fsynced, so ``kill -9`` at any moment leaves either
the old or the new file, never a torn one (inside
:func:`core.durability.group_commit` the fsyncs are replaced by one file-system
sync per group, see there). Files get the mode the umask gives (0644 under umask
022). A write refuses a target file or folder that is a symbolic link, so a run
folder from someone else cannot make us write elsewhere. Arrays are ``.npz`` read
with ``allow_pickle=False``; everything else is JSON. Nothing is pickled. A
missing or corrupt file raises :class:`RunStoreError` naming it.

A trace stream is a table of rows: ``scalars`` (one float per name per logged
step), ``snapshots`` (parameter arrays) and ``records`` (inner-loop rows). The
``i``-th flush writes chunk ``i`` of every stream that has rows (one file), then rewrites
``trace/chunks.json``, the manifest listing which streams each chunk index holds,
so a reader knows every chunk it must find and names a missing one. The
checkpoint records how many chunks it is consistent with, so a resume checks
those (:func:`verify_trace`), drops newer ones and replays them. Chunks the
manifest does not list (a flush killed before its manifest) are not read.
"""

import errno
import hashlib
import io
import json
import os
import socket
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .durability import current_group, sync_file, sync_folder, wait_for_writes
from .errors import RunStoreError
from .locks import is_locked
from .npz import npz_bytes

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_save_npz",
    "load_npz",
    "read_json",
    "pack_state",
    "unpack_state",
    "TraceWriter",
    "read_stream",
    "verify_trace",
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
_TEMP_ATTEMPTS = 100


def _show(path):
    """``path`` for a one-line message (NUL and line breaks escaped)."""
    return str(path).replace("\0", "\\0").replace("\n", "\\n").replace("\r", "\\r")


def _symlink_error(path):
    target = _show(os.readlink(path)) if os.path.islink(path) else "?"
    return RunStoreError(
        f"{_show(path)} is a symbolic link (to {target}); refusing to write through it: "
        "replace it by a real file or folder (reading the run is unaffected)"
    )


def _open_dir(path):
    """An fd of the folder ``path``, refusing a symbolic link (raises RunStoreError)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        if os.path.islink(path):
            raise _symlink_error(path) from None
        raise


def _create_temp(dir_fd, name):
    """Create ``.<name>.<random>.tmp`` in ``dir_fd`` (mode 0666 less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_TEMP_ATTEMPTS):
        tmp = f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            return tmp, os.open(tmp, flags, 0o666, dir_fd=dir_fd)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", name)


def _split(path):
    """``(folder, name)`` of a file's path, as :class:`pathlib.Path` reads them."""
    folder, name = os.path.split(os.fspath(path))
    if not name or name in (".", ".."):  # unusual spellings: pathlib's reading
        path = Path(path)
        return os.fspath(path.parent), path.name
    return folder or ".", name


def _write_all(fd, data):
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _atomic_write(path, write, link_from=None):
    """Write ``path`` through a temp file, fsync, rename and fsync of its folder.

    ``write``: the bytes to write, or a function writing them to the (binary) file
    object it is given. With ``link_from`` (a file's path), the file is a hard link
    to it instead (nothing written): made at ``path`` itself when the name is new (a
    link appears whole), else a temp link renamed over it; returns False, having done
    nothing, when the link cannot be made (another file system, links not
    supported), else True.

    Refuses (:class:`RunStoreError`) when ``path`` or its folder is a symbolic link;
    the folder is held open, so it cannot be swapped for a link in between.
    """
    folder, name = _split(path)
    dir_fd = _open_dir(folder)
    try:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        else:
            if stat.S_ISLNK(st.st_mode):
                raise _symlink_error(path)
        if link_from is not None and st is None:
            # a new name: the link appears whole at once, no temp name needed
            try:
                os.link(link_from, name, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:  # made meanwhile: replace it as below
                pass
            except OSError:
                return False
            else:
                sync_folder(dir_fd, folder)
                return True
        if link_from is not None:
            tmp = f".{name}.{os.urandom(4).hex()}.tmp"
            try:
                os.link(link_from, tmp, dst_dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                return False
        else:
            tmp, fd = _create_temp(dir_fd, name)
        try:
            if link_from is None:
                try:
                    if callable(write):
                        with os.fdopen(fd, "wb", closefd=False) as fh:
                            write(fh)
                    else:
                        _write_all(fd, write)
                    sync_file(fd)
                finally:
                    os.close(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
        sync_folder(dir_fd, folder)
        return True
    finally:
        os.close(dir_fd)


_SHARED = {}  # digest of bytes -> (path, identity) of a file written with them
_SHARED_SIZE = 64


def _identity(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _write(path, action, size):
    """Run ``action()`` (writing ``path``) now, or through the current group's writer.

    Inside :func:`core.durability.group_commit` the group decides (in its writer
    thread with ``background``); elsewhere the action runs now.
    """
    group = current_group()
    if group is None:
        action()
    else:
        group.write(path, action, size)


def atomic_write_bytes(path, data, shared=False):
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename).

    The file gets the mode the umask gives. Raises :class:`RunStoreError` when
    ``path`` or its folder is a symbolic link. Inside a background group
    (:mod:`core.durability`) the write happens in the group's writer thread, and its
    errors are raised by the group's later writes.

    With ``shared`` inside a group commit (:func:`core.durability.current_group`:
    the points of a sweep's ensemble), a file this process wrote earlier with the same
    bytes (``shared`` too), on the same file system and unchanged since (same inode,
    size and modification time), is hard-linked instead of written: the copies of a
    sweep's ``config.py`` in its points' folders are one file. Creating a file costs
    0.05 to 1 ms on the development VM's disk, a link 0.03 ms. Run files are only
    ever replaced by a rename, never modified in place, so linked copies stay equal.
    """
    data = bytes(data)
    key = hashlib.blake2b(data, digest_size=16).digest() if shared else None
    in_group = current_group() is not None

    def write():
        if key is not None and in_group and key in _SHARED:
            source, identity = _SHARED[key]
            try:
                same = _identity(os.stat(source, follow_symlinks=False)) == identity
            except OSError:
                same = False
            if same and _atomic_write(path, None, link_from=source):
                return
        _atomic_write(path, data)
        if key is not None:
            _remember(key, path)

    _write(path, write, len(data))


def _remember(key, path):
    """Note ``path`` as the file last written with the bytes of digest ``key``."""
    _SHARED.pop(key, None)
    if len(_SHARED) >= _SHARED_SIZE:
        _SHARED.pop(next(iter(_SHARED)), None)
    try:
        _SHARED[key] = (os.path.abspath(path), _identity(os.stat(path, follow_symlinks=False)))
    except OSError:
        pass


def atomic_write_json(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (indented_json(obj) + "\n").encode())


_ESCAPE = json.encoder.encode_basestring_ascii  # json's own (C) string encoder
_INF = float("inf")


def _float_text(value):
    if value != value:
        return "NaN"
    if value == _INF:
        return "Infinity"
    if value == -_INF:
        return "-Infinity"
    return float.__repr__(value)


def indented_json(obj):
    """``json.dumps(obj, indent=2, default=...)``, the same text, about twice as fast.

    The standard library encodes indented JSON in pure Python, through generators;
    a run writes its ``config.json`` and ``meta.json`` that way. Numpy scalars and
    arrays become numbers and lists, as :func:`atomic_write_json` always wrote them;
    NaN and infinities are written as :mod:`json` writes them; a circular reference
    or a value JSON cannot hold raises as :func:`json.dumps` does.

    Examples
    --------
    >>> print(indented_json({"a": [1, 2.5], "b": {}, "c": None}))
    {
      "a": [
        1,
        2.5
      ],
      "b": {},
      "c": null
    }
    """
    parts = []
    _encode(obj, parts, "\n", set())
    return "".join(parts)


def _encode(obj, parts, newline, open_ids):
    """Append the indented JSON of ``obj`` to ``parts`` (the checks in :mod:`json`'s order)."""
    if isinstance(obj, str):
        parts.append(_ESCAPE(obj))
    elif obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif isinstance(obj, int):
        parts.append(int.__repr__(obj))
    elif isinstance(obj, float):
        parts.append(_float_text(obj))
    elif isinstance(obj, (list, tuple, dict)):
        if not obj:
            parts.append("{}" if isinstance(obj, dict) else "[]")
            return
        marker = id(obj)
        if marker in open_ids:
            raise ValueError("Circular reference detected")
        open_ids.add(marker)
        inner = newline + "  "
        separator = "," + inner
        if isinstance(obj, dict):
            parts.append("{" + inner)
            for i, (key, value) in enumerate(obj.items()):
                if isinstance(key, str):
                    pass
                elif isinstance(key, float):
                    key = _float_text(key)
                elif key is True:
                    key = "true"
                elif key is False:
                    key = "false"
                elif key is None:
                    key = "null"
                elif isinstance(key, int):
                    key = int.__repr__(key)
                else:
                    raise TypeError(
                        f"keys must be str, int, float, bool or None, not {type(key).__name__}"
                    )
                if i:
                    parts.append(separator)
                parts.append(_ESCAPE(key))
                parts.append(": ")
                _encode(value, parts, inner, open_ids)
            parts.append(newline + "}")
        else:
            parts.append("[" + inner)
            for i, value in enumerate(obj):
                if i:
                    parts.append(separator)
                _encode(value, parts, inner, open_ids)
            parts.append(newline + "]")
        open_ids.discard(marker)
    else:
        marker = id(obj)
        if marker in open_ids:
            raise ValueError("Circular reference detected")
        open_ids.add(marker)
        _encode(_json_default(obj), parts, newline, open_ids)
        open_ids.discard(marker)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def atomic_save_npz(path, arrays):
    """Save a dict of arrays to ``path`` (.npz) atomically, uncompressed.

    The archive is :func:`core.npz.npz_bytes`'s (numpy's own writer for large
    arrays, or, in a background group, into memory first).
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"array {key!r} has dtype object; refusing to pickle it")
    data = npz_bytes(arrays)  # what numpy.savez writes, built faster (core.npz)
    group = current_group()
    if data is None and group is not None and group.background:  # held until written
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
    if data is None:  # large, ZIP64 or format 2: numpy's writer, streaming to the file
        _write(path, lambda: _atomic_write(path, lambda fh: np.savez(fh, **arrays)), 0)
    else:
        _write(path, lambda: _atomic_write(path, data), len(data))


RESTORE = "restore it from a copy"
"""What to do about a damaged file, unless the caller knows better."""

_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _describe(exc):
    text = str(exc) if not isinstance(exc, OSError) else (exc.strerror or str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _corrupt(path, exc, advice=RESTORE, what=""):
    return RunStoreError(f"{what}{_show(path)} is corrupt ({_describe(exc)}); {advice}")


def _check_regular(path, advice=RESTORE, what=""):
    """Raise RunStoreError unless ``path`` is a regular file (following links)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RunStoreError(f"{what}{_show(path)} is missing; {advice}") from None
    except OSError as exc:
        raise RunStoreError(f"cannot read {what}{_show(path)}: {_describe(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise RunStoreError(f"{what}{_show(path)} is not a regular file; {advice}")
    return st


def load_npz(path, advice=RESTORE):
    """Load every array of an .npz file (``allow_pickle=False``) into a dict.

    Parameters
    ----------
    path : path
    advice : str, optional
        What to do, said in the error about a missing or corrupt file.

    Raises
    ------
    RunStoreError
        Naming ``path`` when it is missing, not a regular file, or corrupt
        (truncated, bad CRC, not an .npz archive).
    """
    return _load_npz(path, advice)


def _load_npz(path, advice, what="", prefix=None):
    """As :func:`load_npz`; with ``prefix``, only the arrays named ``prefix...``,
    under their names without it (one stream of a layout-2 trace chunk)."""
    wait_for_writes(path)
    _check_regular(path, advice, what)
    try:
        f = np.load(path, allow_pickle=False)
    except PermissionError as exc:
        raise RunStoreError(f"cannot read {what}{_show(path)}: {_describe(exc)}") from None
    except _READ_ERRORS as exc:
        raise _corrupt(path, exc, advice, what) from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise _corrupt(path, ValueError("a single array, not an .npz archive"), advice, what)
    try:
        with f:
            if prefix is None:
                return {k: f[k] for k in f.files}
            return {k[len(prefix) :]: f[k] for k in f.files if k.startswith(prefix)}
    except _READ_ERRORS as exc:
        raise _corrupt(path, exc, advice, what) from None


def read_json(path, advice=RESTORE):
    """The JSON object in ``path``; RunStoreError naming it when missing or corrupt."""
    wait_for_writes(path)
    _check_regular(path, advice)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _corrupt(path, exc, advice) from None
    except OSError as exc:
        raise RunStoreError(f"cannot read {_show(path)}: {_describe(exc)}") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise _corrupt(path, exc, advice) from None
    if not isinstance(obj, dict):
        raise _corrupt(path, ValueError(f"a JSON {type(obj).__name__}, not an object"), advice)
    return obj


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


def load_state(path, advice=RESTORE):
    """Read a state written by :func:`save_state`.

    Raises
    ------
    RunStoreError
        Naming ``path`` when it is missing or corrupt; ``advice`` says what to do.
    """
    arrays = load_npz(path, advice)
    try:
        tree = json.loads(arrays.pop(_JSON_KEY).tobytes().decode())
        return unpack_state(arrays, tree)
    except KeyError as exc:
        raise _corrupt(path, KeyError(f"no array {exc.args[0]!r}"), advice) from None
    except (ValueError, TypeError) as exc:
        raise _corrupt(path, exc, advice) from None


# -- trace -------------------------------------------------------------------------
MANIFEST = "chunks.json"
"""The trace's manifest: which streams each chunk index holds, and the layout."""

LAYOUT = 2
"""The layout of a new trace: one file ``<chunk>.npz`` per save, holding every stream
written then (arrays ``<stream>/<column>``). Layout 1, one file
``<stream>.<chunk>.npz`` per stream and save, is that of traces begun before
2026-12-02: they are read, and resumed in it."""

_LAYOUTS = (1, 2)
_MAX_CHUNKS = 10**7  # far beyond any run (one file per flush); guards the reader


_PLAIN = frozenset((int, float))
_STREAM_ERROR = "stream name {stream!r} must be a non-empty string without . or /"


def _valid_stream(name):
    return (
        isinstance(name, str)
        and bool(name)
        and "." not in name
        and "/" not in name
        and "\0" not in name
    )


def _chunk_name(stream, index, layout=LAYOUT):
    """The file of ``stream``'s chunk ``index`` in a trace of ``layout``."""
    return f"{index:06d}.npz" if layout == 2 else f"{stream}.{index:06d}.npz"


def _parse_chunk_name(name):
    """``(index, stream)`` of a chunk file name (stream ``""``: a layout-2 file, holding
    several), or None."""
    parts = name.split(".")
    if len(parts) == 2 and parts[1] == "npz" and parts[0].isdigit():
        return int(parts[0]), ""
    if len(parts) != 3 or parts[2] != "npz" or not parts[1].isdigit() or not parts[0]:
        return None
    return int(parts[1]), parts[0]


def _chunk_files(trace_dir):
    """``[(index, stream, path)]`` of the chunk files present, sorted by index (stream
    ``""``: a layout-2 file, holding several)."""
    out = []
    trace_dir = Path(trace_dir)
    if not trace_dir.is_dir():
        return out
    for p in trace_dir.glob("*.npz"):
        parsed = _parse_chunk_name(p.name)
        if parsed:
            out.append((*parsed, p))
    return sorted(out)


def _stream_key(stream, column):
    """An array's name in a layout-2 chunk."""
    return f"{stream}/{column}"


def _to_ranges(indices):
    """``[[start, stop), ...]`` of sorted indices."""
    ranges = []
    for i in indices:
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def _is_index(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_manifest(trace_dir):
    """``(n_chunks, {stream: [index, ...]}, layout)`` from the manifest, or None.

    The manifest ``{"format": 2, "n_chunks": n, "streams": {"scalars": [[0, n]],
    "snapshots": [[0, 1], [3, 4]]}}`` lists each stream's chunk indices as
    ``[start, stop)`` ranges; every index below ``n_chunks`` holds some stream. Its
    ``format`` is the trace's layout (:data:`LAYOUT`).
    """
    path = Path(trace_dir) / MANIFEST
    if not os.path.lexists(path):
        return None
    advice = "delete it to read the chunks present without the completeness check"
    obj = read_json(path, advice)
    try:
        layout = obj.get("format")
        if layout not in _LAYOUTS:
            raise ValueError(f"unknown format {layout!r}")
        n_chunks = obj["n_chunks"]
        if not _is_index(n_chunks) or n_chunks > _MAX_CHUNKS:
            raise ValueError(f"n_chunks {n_chunks!r}")
        streams, covered = {}, set()
        for stream, ranges in obj["streams"].items():
            if not _valid_stream(stream):
                raise ValueError(f"stream name {stream!r}")
            indices = []
            for start, stop in ranges:
                if not (_is_index(start) and _is_index(stop)) or not (
                    (indices[-1] if indices else -1) < start < stop <= n_chunks
                ):
                    raise ValueError(f"bad range {[start, stop]!r} of {stream!r}")
                indices.extend(range(start, stop))
            streams[stream] = indices
            covered.update(indices)
        if len(covered) != n_chunks:
            gap = min(set(range(n_chunks)) - covered)
            raise ValueError(f"chunk index {gap} holds no stream")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _corrupt(path, exc, advice) from None
    return n_chunks, streams, layout


def _streams_in(path):
    """The streams a layout-2 chunk file holds (from its array names)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {n.split("/", 1)[0] for n in archive.namelist() if "/" in n}
    except (OSError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, exc, _READ_ADVICE, "trace chunk ") from None


def _scan_chunks(trace_dir):
    """``(n_chunks, {stream: [index, ...]}, layout)`` of the chunk files present.

    Layout 1 when a file of that layout is present (a trace begun before the
    manifest), else :data:`LAYOUT`, the streams of its files read from their names.
    """
    files = _chunk_files(trace_dir)
    layout = 1 if any(stream for _, stream, _ in files) else LAYOUT
    streams = {}
    for index, stream, path in files:
        if layout == 1 and stream:
            streams.setdefault(stream, []).append(index)
        elif layout == 2 and not stream:
            for name in sorted(_streams_in(path)):
                streams.setdefault(name, []).append(index)
    n_chunks = 1 + max((ix[-1] for ix in streams.values()), default=-1)
    return n_chunks, streams, layout


def _trace_listing(trace_dir, advice, need=0):
    """``(n_chunks, {stream: [index, ...]}, layout)`` the trace must hold.

    From the manifest; without one (a trace written before it, or whose manifest
    was deleted), from the files present, checking that chunk indices
    ``0..max(n_chunks, need) - 1`` each hold some stream (every flush writes at
    least one): a missing index is caught, a missing chunk of one stream beside
    others of its index is not.
    """
    listed = _read_manifest(trace_dir)
    if listed is not None:
        return listed
    n_chunks, streams, layout = _scan_chunks(trace_dir)
    covered = {i for indices in streams.values() for i in indices}
    gap = next((i for i in range(max(n_chunks, need)) if i not in covered), None)
    if gap is not None:
        pattern = Path(trace_dir) / (f"*.{gap:06d}.npz" if layout == 1 else _chunk_name("", gap))
        raise RunStoreError(f"trace chunk {_show(pattern)} is missing; {advice}")
    return n_chunks, streams, layout


_READ_ADVICE = "the trace is incomplete: restore the file from a copy, or rerun the run"


def _resume_advice(trace_dir):
    checkpoint = Path(trace_dir).parent / "checkpoint.npz"
    return (
        f"the run cannot be resumed whole: restore the file from a copy, or delete "
        f"{_show(checkpoint)} to rerun it from step 0"
    )


def _check_chunk(path, advice):
    """Check a chunk's zip structure and array headers without reading its data."""
    size = _check_regular(path, advice, "trace chunk ").st_size
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.header_offset + info.compress_size > size:
                    raise zipfile.BadZipFile(f"{info.filename} runs past the end of the file")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        continue
                    expected = member.tell() + int(np.prod(shape)) * dtype.itemsize
                    if info.file_size != expected:
                        raise ValueError(
                            f"{info.filename} holds {info.file_size} bytes, "
                            f"its header says {expected}"
                        )
    except PermissionError as exc:
        raise RunStoreError(f"cannot read trace chunk {_show(path)}: {_describe(exc)}") from None
    except _READ_ERRORS as exc:
        raise _corrupt(path, exc, advice, "trace chunk ") from None


def verify_trace(trace_dir, n_chunks):
    """Check that the trace holds chunks ``0..n_chunks-1`` of every stream, readable.

    Call it before resuming from a checkpoint consistent with ``n_chunks`` chunks.
    Each chunk listed (by the manifest, or the files present for a trace written
    before it) must be a regular file whose zip structure and array headers are
    whole; the data itself is checked (CRC) when it is read.

    Parameters
    ----------
    trace_dir : path
    n_chunks : int
        The checkpoint's chunk count (``checkpoint["loop"]["n_chunks"]``).

    Raises
    ------
    RunStoreError
        ``"trace chunk X is missing; the run cannot be resumed whole: ..."`` (or
        corrupt), or a manifest that lists fewer chunks than ``n_chunks``.
    """
    trace_dir = Path(trace_dir)
    if n_chunks <= 0:
        return
    advice = _resume_advice(trace_dir)
    listed_chunks, streams, layout = _trace_listing(trace_dir, advice, need=n_chunks)
    if listed_chunks < n_chunks:
        raise RunStoreError(
            f"trace manifest {_show(trace_dir / MANIFEST)} lists {listed_chunks} chunks and the "
            f"checkpoint needs {n_chunks}; {advice}"
        )
    files = {
        _chunk_name(stream, index, layout)
        for stream, indices in streams.items()
        for index in indices
        if index < n_chunks
    }
    for name in sorted(files):
        _check_chunk(trace_dir / name, advice)


class TraceWriter:
    """Buffers rows per stream and writes them as atomic chunks on ``flush``.

    Each flush writes its chunk (a new trace: one file holding every stream written,
    :data:`LAYOUT`; a trace begun in layout 1 goes on in it, one file per stream),
    then the manifest ``trace/chunks.json`` listing it. Refuses
    (:class:`RunStoreError`) a trace folder that is a symbolic link.

    Parameters
    ----------
    trace_dir : path
    next_chunk : int
        Index of the next chunk (the checkpoint's ``n_chunks`` on resume, after
        :func:`verify_trace`; then :meth:`drop_chunks_from` ``next_chunk``).
    new : bool
        ``trace_dir`` is the empty folder :meth:`RunStore.create_at` just made (a new
        run): it is neither checked nor listed, and holds no chunk to drop.
    """

    def __init__(self, trace_dir, next_chunk=0, new=False):
        self.trace_dir = Path(trace_dir)
        self.next_chunk = next_chunk
        self._blocks = {}
        self._runs = {}  # stream -> (keys, [row tuples]): plain rows not yet in _blocks
        self.pending_bytes = 0
        self._listed = None
        if new:  # (every write still refuses a trace folder that became a link)
            if next_chunk:
                raise ValueError("a new trace starts at chunk 0")
            self._listed = (0, {}, LAYOUT)
            return
        if self.trace_dir.is_symlink():
            raise _symlink_error(self.trace_dir)
        try:
            self.trace_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise RunStoreError(
                f"{_show(self.trace_dir)} is not a directory; move it away "
                "(a run's trace is a folder)"
            ) from None

    def append(self, stream, row):
        """Append one row: a dict of scalars or arrays (arrays are copied).

        Rows whose values are all plain Python ``int`` or ``float`` (the per-step
        scalars) are held as tuples, consecutive rows with the same keys together,
        and made into columns when the stream's blocks are next needed: the arrays
        are those the rows would give one by one (int64, float64), at a fraction of
        the per-row cost.
        """
        values = tuple(row.values())
        if _PLAIN.issuperset(map(type, values)):
            keys = tuple(row)
            run = self._runs.get(stream)
            if run is not None and run[0] == keys:
                run[1].append(values)
            else:
                if run is not None:
                    self._close_run(stream)
                elif stream not in self._blocks and not _valid_stream(stream):
                    raise ValueError(_STREAM_ERROR.format(stream=stream))
                self._runs[stream] = (keys, [values])
            self.pending_bytes += 8 * len(values)
            return
        self._close_run(stream)
        block = {k: np.array(v)[None] for k, v in row.items()}
        self._add(stream, block)

    def _close_run(self, stream):
        """Move ``stream``'s held plain rows, as one block of columns, to its blocks."""
        run = self._runs.pop(stream, None)
        if run is not None:
            keys, rows = run
            block = {k: np.array(column) for k, column in zip(keys, zip(*rows))}
            self._blocks.setdefault(stream, []).append(block)

    def append_columns(self, stream, columns):
        """Append several rows given as equal-length 1-D (or stacked) columns."""
        block = {k: np.array(v) for k, v in columns.items()}
        lengths = {v.shape[0] for v in block.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of {stream!r} have different lengths {sorted(lengths)}")
        self._add(stream, block)

    def _add(self, stream, block):
        self._close_run(stream)
        if stream not in self._blocks and not _valid_stream(stream):
            raise ValueError(_STREAM_ERROR.format(stream=stream))
        self._blocks.setdefault(stream, []).append(block)
        self.pending_bytes += sum(v.nbytes for v in block.values())

    def _listing_before(self, index):
        """The manifest's listing, cut to chunks below ``index``."""
        if self._listed is None:
            listed = _read_manifest(self.trace_dir)
            self._listed = listed if listed is not None else _scan_chunks(self.trace_dir)
        n_chunks, streams, layout = self._listed
        if n_chunks > index:
            streams = {s: [i for i in ix if i < index] for s, ix in streams.items()}
            streams = {s: ix for s, ix in streams.items() if ix}
            n_chunks = index
        self._listed = (n_chunks, streams, layout)
        return n_chunks, streams, layout

    def _write_manifest(self):
        n_chunks, streams, layout = self._listed
        obj = {
            "format": layout,
            "n_chunks": n_chunks,
            "streams": {s: _to_ranges(ix) for s, ix in sorted(streams.items())},
        }
        # shared: the runs of an ensemble that save at the same steps write equal
        # manifests, hard-linked in a group commit (atomic_write_bytes)
        atomic_write_bytes(
            self.trace_dir / MANIFEST,
            (json.dumps(obj, separators=(",", ":")) + "\n").encode(),
            shared=True,
        )

    def flush(self):
        """Write every non-empty stream as chunk ``next_chunk``; return whether any.

        The chunks are written first, then the manifest listing them: killed in
        between, the chunks are not read (and a resume drops them).
        """
        for stream in list(self._runs):
            self._close_run(stream)
        if not self._blocks:
            return False
        index = self.next_chunk
        n_chunks, streams, layout = self._listing_before(index)
        if n_chunks < index:
            raise RunStoreError(
                f"trace {_show(self.trace_dir)} holds {n_chunks} chunks: cannot write chunk "
                f"{index} (check it with verify_trace before resuming)"
            )
        if layout == 2:
            arrays = {}
            for stream, blocks in self._blocks.items():
                for column, values in _concat(blocks).items():
                    arrays[_stream_key(stream, column)] = values
            atomic_save_npz(self.trace_dir / _chunk_name("", index, layout), arrays)
        else:
            for stream, blocks in self._blocks.items():
                atomic_save_npz(self.trace_dir / _chunk_name(stream, index, 1), _concat(blocks))
        for stream in self._blocks:
            streams.setdefault(stream, []).append(index)
        self._listed = (index + 1, streams, layout)
        self._write_manifest()
        self._blocks = {}
        self.pending_bytes = 0
        self.next_chunk = index + 1
        return True

    def drop_chunks_from(self, index):
        """Delete chunks numbered ``index`` or more (written after a checkpoint).

        The manifest is cut first, then the chunk files go, newest first: killed in
        between, the newer chunks are no longer read and the next resume drops them
        again. Never deletes through a symbolic link (raises :class:`RunStoreError`).
        """
        dir_fd = _open_dir(self.trace_dir)
        try:
            names = os.listdir(dir_fd)
            if not names:  # a new run's empty trace: nothing to cut, no manifest yet
                self._listed = (0, {}, LAYOUT)
                return
            self._listing_before(index)
            self._write_manifest()
            wait_for_writes(self.trace_dir / MANIFEST)  # cut before any chunk goes
            doomed = []
            for name in names:
                parsed = _parse_chunk_name(name)
                if parsed and parsed[0] >= index:
                    doomed.append((parsed[0], name))
            for _, name in sorted(doomed, reverse=True):
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except FileNotFoundError:
                    pass
            sync_folder(dir_fd, self.trace_dir)
        finally:
            os.close(dir_fd)


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
    """Concatenate a stream's chunks (missing columns filled with NaN).

    Reads the chunks the manifest lists (for a trace written before it, the
    files present, their indices checked contiguous).

    Raises
    ------
    RunStoreError
        Naming a chunk that is missing or corrupt.
    """
    trace_dir = Path(trace_dir)
    advice = _READ_ADVICE
    n_chunks, streams, layout = _trace_listing(trace_dir, advice)
    if max_chunk is not None:
        n_chunks = min(n_chunks, max_chunk)
    prefix = _stream_key(stream, "") if layout == 2 else None
    blocks = []
    for index in streams.get(stream, ()):
        if index >= n_chunks:
            break
        path = trace_dir / _chunk_name(stream, index, layout)
        block = _load_npz(path, advice, "trace chunk ", prefix)
        if not block and layout == 2:  # listed, but the file holds none of its arrays
            raise _corrupt(path, ValueError(f"no {stream!r} arrays"), advice, "trace chunk ")
        blocks.append(block)
    return _concat(blocks) if blocks else {}


# -- run directory -----------------------------------------------------------------
RUN_LOCK = "run.lock"
"""The lock file a live run holds (:class:`core.locks.FolderLock`)."""

_CHECKPOINT_ADVICE = "delete it to rerun the run from step 0, or restore it from a copy"
_CONFIG_ADVICE = "restore it from a copy (config.py holds the source it was resolved from)"
_PROBLEM_ADVICE = "restore it from a copy, or rerun the run"


def _not_a_folder(path):
    """The nearest existing ancestor of ``path`` that is not a folder, or None."""
    for parent in Path(path).parents:
        if os.path.lexists(parent):
            return None if parent.is_dir() else parent
    return None


def _create_error(path, exc):
    """RunStoreError for a run directory ``path`` that could not be made."""
    head = f"cannot create the run directory {_show(path)}"
    if isinstance(exc, ValueError):
        return RunStoreError(
            f"{head}: the name holds a NUL character; choose another experiment name"
        )
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        if os.path.lexists(path):
            return RunStoreError(f"run directory already exists: {_show(path)}")
        blocker = _not_a_folder(path)
        if blocker is not None:
            return RunStoreError(
                f"{head}: {_show(blocker)} is not a directory; choose "
                "another runs directory (--runs-dir, run.runs_dir)"
            )
    if exc.errno == errno.ENAMETOOLONG:
        advice = "choose a shorter experiment name"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "choose a writable runs directory (--runs-dir, run.runs_dir)"
    else:
        advice = "choose another runs directory (--runs-dir, run.runs_dir)"
    return RunStoreError(f"{head}: {exc.strerror or exc}; {advice}")


def _real_folder(path):
    """``path``, or its target when ``path`` itself is a symbolic link."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


class RunStore:
    """Writes one run directory.

    Use :meth:`create` for a new run and :meth:`open` to resume one. Every
    error a user can fix (a runs directory that is read-only or a file, an
    experiment name too long, a corrupt file) is a :class:`RunStoreError` naming
    the path.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.trace_dir = self.path / "trace"
        self.meta_path = self.path / "meta.json"
        self.checkpoint_path = self.path / "checkpoint.npz"
        self.created = False  # made by create_at here: its trace/ is new and empty

    @classmethod
    def create(cls, runs_dir, experiment, stamp, run_id):
        """Make ``runs_dir/<experiment>/<stamp>-<run_id>/`` (see :meth:`create_at`)."""
        return cls.create_at(Path(runs_dir) / experiment / f"{stamp}-{run_id}")

    @classmethod
    def create_at(cls, path):
        """Make the run directory ``path`` (and its parents) with its ``trace/``.

        Raises
        ------
        RunStoreError
            ``path`` exists, or cannot be made (read-only place, a parent that is
            a file, a name too long or holding NUL); the message names it.
        """
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=False)
            (path / "trace").mkdir()
        except (OSError, ValueError) as exc:
            raise _create_error(path, exc) from None
        store = cls(path)
        store.created = True
        return store

    @classmethod
    def open(cls, path):
        """Open a run for writing again, removing temp files of interrupted writes.

        Call it holding the run's lock (:meth:`clean_temp_files`). A run folder
        named by a symbolic link is opened at its target; links inside it are never
        written through.
        """
        store = cls(_real_folder(path))
        if not store.meta_path.is_file():
            raise RunStoreError(f"not a run directory (no meta.json): {_show(path)}")
        store.clean_temp_files()
        return store

    def clean_temp_files(self):
        """Remove the temp files (``.*.tmp``) of writes a killed process left.

        Walks the run folder without following symbolic links. Call it only while
        holding the run's lock: the temp file of a live writer would go too.

        Returns
        -------
        removed : int
        """
        removed = 0
        for root, _, files in os.walk(self.path):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    try:
                        os.unlink(os.path.join(root, name))
                    except FileNotFoundError:
                        continue
                    removed += 1
        return removed

    def write_meta(self, meta):
        atomic_write_json(self.meta_path, meta)

    def read_meta(self):
        return read_json(self.meta_path)

    def write_checkpoint(self, state):
        save_state(self.checkpoint_path, state)

    def read_checkpoint(self):
        """The checkpoint's state, or None when the run has none.

        Raises
        ------
        RunStoreError
            Naming ``checkpoint.npz`` when it is corrupt (and what to do).
        """
        if not os.path.lexists(self.checkpoint_path):
            return None
        state = load_state(self.checkpoint_path, _CHECKPOINT_ADVICE)
        if not isinstance(state, dict) or not isinstance(state.get("loop"), dict):
            raise _corrupt(self.checkpoint_path, ValueError("no loop state"), _CHECKPOINT_ADVICE)
        return state


def pid_alive(pid):
    """Whether a process ``pid`` exists on this host."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, TypeError):
        return True
    return True


def _process_gone(path, meta):
    """Whether the process of a ``running`` run has ended without its final save.

    A run holding ``run.lock`` is alive on any host (the kernel releases the lock
    of a dead process); an older run without one is judged by its pid, on its
    own host only.
    """
    lock = Path(path) / RUN_LOCK
    if os.path.lexists(lock):
        return not is_locked(lock)
    if meta.get("host") == socket.gethostname():
        return not pid_alive(meta.get("pid"))
    return False


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
        self.path = _real_folder(path)
        if not (self.path / "meta.json").is_file():
            raise RunStoreError(f"not a run directory (no meta.json): {_show(path)}")
        self._cache = {}

    def __repr__(self):
        return f"Run({str(self.path)!r})"

    def _lazy(self, key, load):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    @property
    def config(self):
        return self._lazy("config", lambda: read_json(self.path / "config.json", _CONFIG_ADVICE))

    @property
    def meta(self):
        def load():
            meta = read_json(self.path / "meta.json")
            if meta.get("status") == "running" and _process_gone(self.path, meta):
                meta["status"] = "crashed"
                meta["reason"] = meta.get("reason") or "process ended without a final save"
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
        return self._lazy("problem", lambda: load_npz(self.path / "problem.npz", _PROBLEM_ADVICE))

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
    newest run or sweep). Directories are ordered by the UTC stamp of their names
    (whole seconds); folders made within the same second by the ``created`` time of
    their marker file (microseconds), then by name.
    """
    runs_dir = Path(runs_dir)
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    found = {p.parent: p for m in markers for p in runs_dir.glob(f"*/*/{m}")}
    if not found:
        raise RunStoreError(f"no runs under {runs_dir}")
    newest = max(p.name.split("-")[0] for p in found)
    tied = [p for p in found if p.name.split("-")[0] == newest]
    if len(tied) == 1:
        return tied[0]
    return max(tied, key=lambda p: (_created(found[p]), p.name))


def _created(marker_file):
    """The ``created`` time a run's or sweep's JSON file records ("" when unreadable)."""
    try:
        created = json.loads(Path(marker_file).read_text()).get("created")
    except (OSError, ValueError, AttributeError):
        return ""
    return created if isinstance(created, str) else ""


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
