"""When written files reach the disk: an fsync per file, or one file-system sync per group.

Every file of a run is written to a temporary name and renamed over its final name
(:mod:`core.store`), so ``kill -9`` at any moment leaves the old or the new file:
the kernel keeps what a process wrote when the process dies. Power loss is another
matter: data not yet on the disk is lost, and a renamed file whose data was not
flushed can come back empty. By default every write is therefore made durable on its
own (:func:`sync_file` before the rename, :func:`sync_folder` after it): about 20
fsyncs for a run that saves once, 0.5-1 ms each on an ext4 disk.

A sweep's ensemble (:func:`core.sweep.run_points`: tens of tiny runs trained together,
each saving once at its end) would spend more time in those fsyncs than in training.
Inside :func:`group_commit` the per-file syncs are skipped, and the files written so
far are made durable together by one ``syncfs`` of each file system written to
(:meth:`GroupCommit.commit`). What must not reach the disk before the files it
vouches for, a run's final ``meta.json`` (its status) and the release of its run
lock, is deferred (:meth:`GroupCommit.defer`) and done by the commit, after the
sync, followed by a second sync. So:

* a run whose ``meta.json`` says ``finished`` (or any other final status) has all
  its files on the disk, whatever happens;
* ``kill -9`` keeps every file written (renames included) and loses only the final
  ``meta.json`` of members that ended since the last commit: those read ``crashed``
  and resume from their final checkpoint, ending at once (a member whose first
  ``meta.json`` is that final one, :func:`core.loop.prepare_run`'s ``record_start``,
  has none and starts again from scratch);
* power loss may lose or tear files written since the last commit, of runs not yet
  recorded as ended: a sweep resume continues them from their checkpoint, starts
  them again when ``meta.json`` is unreadable, or reports a damaged file by name
  (the point is then ``failed`` and runs again from scratch at the next resume).

A group commits at its end and, through :meth:`GroupCommit.commit_if_due`, at most
every ``interval`` seconds while runs go on (so runs ended early in a long ensemble
are recorded within that time, and periodic saves reach the disk).

With ``background=True`` (:func:`core.sweep.run_points` asks for ``"auto"``: the
background once the group's first writes prove slow), the files of the group are
also *written* by a thread of the group, in the order they were submitted
(:meth:`GroupCommit.write`), while the caller goes on training: creating a file costs
0.05 to 1 ms on the development VM's disk, most of a tiny run's overhead.
Since the thread writes in order, a ``kill -9`` loses a suffix of the writes: the
folder is what a process killed earlier would have left, which the rules above
already cover. A read of a file with a write pending waits for it
(:func:`wait_for_writes`, called by :mod:`core.store`'s readers). A commit is the
thread's next task: after the writes submitted before it, it syncs, runs the
deferred actions there (their writes in that thread, in order: a run's lock is
released only after its final ``meta.json`` is written) and syncs again; the
group's last commit waits for it.
If a background write fails, the group writes nothing more: every later write
raises (:class:`~core.errors.RunStoreError` naming the failed file), so no member
that had not ended before the failure, and none whose end was not yet committed,
is recorded as ended; their ``meta.json`` still says ``running`` (read as
``crashed`` once the process is gone), or the caller marks them ``failed``.

The group is held in a :class:`contextvars.ContextVar`: it applies to the thread (or
task) that entered it, never to another thread of the process writing files.
"""

import collections
import contextlib
import contextvars
import ctypes
import functools
import os
import stat
import threading
import time

from .errors import RunStoreError

__all__ = [
    "GroupCommit",
    "group_commit",
    "current_group",
    "sync_file",
    "sync_folder",
    "wait_for_writes",
]

_GROUP = contextvars.ContextVar("relulab_group_commit", default=None)
_COMMIT = "<commit>"  # the path a commit's task is queued under (never a file's)


def current_group():
    """The :class:`GroupCommit` active in this context, or None."""
    return _GROUP.get()


def wait_for_writes(path):
    """Return once no background write of ``path`` is pending (see :class:`GroupCommit`)."""
    group = _GROUP.get()
    writer = group._writer if group is not None else None
    if writer is not None and threading.current_thread() is not writer.thread:
        writer.wait(_write_key(path))


@functools.lru_cache(maxsize=1024)
def _real_folder(folder):
    """``os.path.realpath`` of an absolute folder, the parent's answer reused: a new
    folder under a known one costs one ``lstat``, not one per component."""
    parent, name = os.path.split(folder)
    if name and parent != folder:
        try:
            if not stat.S_ISLNK(os.lstat(folder).st_mode):
                return os.path.join(_real_folder(parent), name)
        except OSError:  # missing: realpath's answer, as for a link
            pass
    return os.path.realpath(folder)


def _write_key(path):
    """The key of a file's pending writes: its folder's real path and its name, so a
    read through a symbolic link (or ``..``) waits for a write made by another spelling
    of the path. Folders are resolved once each (cached)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(_real_folder(folder), name)


def sync_file(fd):
    """``fsync`` a file just written, unless a group commit will sync it."""
    if _GROUP.get() is None:
        os.fsync(fd)


def sync_folder(dir_fd, folder):
    """``fsync`` a folder whose entries changed (best effort), or note it in the group.

    Parameters
    ----------
    dir_fd : int
        An open descriptor of the folder.
    folder : str or Path
        Its path (what a group commit syncs later, the descriptor being closed).
    """
    group = _GROUP.get()
    if group is not None:
        group.touch(dir_fd, folder)
        return
    try:
        os.fsync(dir_fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass


def _syncfs_function():
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux: os.sync flushes every file system
        return None


_SYNCFS = _syncfs_function()


def sync_file_system(path):
    """Flush the cached writes of the file system holding ``path``.

    Linux ``syncfs(2)``; elsewhere, or when ``path`` cannot be opened, ``os.sync()``.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        os.sync()
        return
    try:
        if _SYNCFS is None or _SYNCFS(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


class _Writer:
    """A thread running a group's file writes in submission order (:meth:`GroupCommit.write`).

    Parameters
    ----------
    group : GroupCommit
        Set as the thread's group, so the writes skip their own fsyncs.
    max_bytes : int
        Most bytes of writes queued at once: :meth:`submit` waits beyond.
    """

    def __init__(self, group, max_bytes):
        self.group, self.max_bytes = group, max_bytes
        self.tasks = collections.deque()  # (path, action, size, always), the first running
        self.pending = collections.Counter()  # path -> its tasks queued or running
        self.bytes = 0
        self.error = None  # (path, exception) of the first write that failed
        self.closing = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="relulab-writer", daemon=True)
        self.thread.start()

    def check(self):
        """Raise :class:`RunStoreError` if a write of the group failed."""
        if self.error is not None:
            path, exc = self.error
            raise RunStoreError(
                f"an earlier write of this group failed ({path}: {type(exc).__name__}: {exc}); "
                "nothing more is written"
            ) from exc

    def submit(self, path, action, size, always=False):
        """Queue ``action`` (writing ``path``); with ``always``, run it even after a
        failed write (a commit: its actions then see the failure in their writes)."""
        with self.cond:
            if not always:
                self.check()
            while self.tasks and self.bytes + size > self.max_bytes:
                self.cond.wait()
            self.tasks.append((path, action, size, always))
            self.pending[path] += 1
            self.bytes += size
            self.cond.notify_all()

    def _run(self):
        _GROUP.set(self.group)
        while True:
            with self.cond:
                while not self.tasks and not self.closing:
                    self.cond.wait()
                if not self.tasks:
                    return
                path, action, size, always = self.tasks[0]
                skip = self.error is not None and not always
            try:
                if not skip:
                    action()
            except BaseException as exc:
                with self.cond:
                    self.error = self.error or (path, exc)
            finally:
                with self.cond:
                    self.tasks.popleft()
                    self.bytes -= size
                    self.pending[path] -= 1
                    if not self.pending[path]:
                        del self.pending[path]
                    self.cond.notify_all()

    def wait(self, path=None):
        """Return once no write (of ``path``, or at all) is queued or running."""
        with self.cond:
            while self.pending.get(path) if path is not None else self.tasks:
                self.cond.wait()

    def close(self):
        """Finish the queued writes and end the thread."""
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join()


class GroupCommit:
    """Files written in this context become durable together (module docstring).

    Parameters
    ----------
    interval : float
        Seconds between commits that :meth:`commit_if_due` allows.
    background : bool or "auto"
        Write the files in a thread of the group (:meth:`write`). ``"auto"``
        decides from the median time of the first :attr:`PROBE_WRITES` writes (done
        in the caller's thread): the background when it exceeds :attr:`SLOW_WRITE`.
        Handing a write to the thread costs the caller about 0.2 ms (the GIL passed
        back and forth), more than a whole write to a quick disk or tmpfs: measured
        on the development VM, the census sweep's per-point overhead rose from 7 to
        9 ms on tmpfs in the background, and fell from 18-32 to 15-18 ms on its disk
        (file creation 0.5-1 ms there).
    """

    #: most bytes of background writes queued at once
    MAX_QUEUED_BYTES = 256 * 2**20
    #: ``background="auto"``: the writes timed before deciding, and the median time
    #: (seconds) above which the rest go to the background
    PROBE_WRITES = 12
    SLOW_WRITE = 2.5e-4

    def __init__(self, interval=2.0, background=False):
        if background not in (True, False, "auto"):
            raise ValueError(f"background must be True, False or 'auto'; got {background!r}")
        self.interval = float(interval)
        self.background = background is True
        self._probe = [] if background == "auto" else None  # write times, while deciding
        self.folders = {}  # st_dev -> a folder written to on that file system
        self.deferred = []
        self.dirty = False
        self.last_commit = time.perf_counter()
        self.commits = 0
        self._writer = None
        self.failed_action = None  # the first exception of a deferred action

    def write(self, path, action, size=0):
        """Run ``action()``, which writes the file ``path``: now, or in the group's thread.

        In the background (``background``), the action runs in the group's writer
        thread after every write submitted before it; ``size`` (bytes it holds)
        bounds the queue. Raises :class:`RunStoreError` once a background write of
        the group has failed.
        """
        writer = self._writer
        if writer is not None:
            writer.check()
            if threading.current_thread() is writer.thread:  # a deferred action's write
                action()
                return
        if self._probe is not None:  # "auto": time the first writes, then decide
            start = time.perf_counter()
            action()
            self._probe.append(time.perf_counter() - start)
            if len(self._probe) >= self.PROBE_WRITES:
                self._probe.sort()
                self.background = self._probe[len(self._probe) // 2] > self.SLOW_WRITE
                self._probe = None
            return
        if not self.background:
            action()
            return
        if writer is None:
            writer = self._writer = _Writer(self, self.MAX_QUEUED_BYTES)
        self.dirty = True  # the next commit syncs it
        writer.submit(_write_key(path), action, size)

    def drain(self):
        """Return once every background write submitted so far is done."""
        writer = self._writer
        if writer is not None and threading.current_thread() is not writer.thread:
            writer.wait()

    def touch(self, dir_fd, folder):
        """Note a folder whose files or entries changed (called by :func:`sync_folder`)."""
        self.dirty = True
        device = os.fstat(dir_fd).st_dev
        if device not in self.folders:
            self.folders[device] = os.path.abspath(folder)

    def defer(self, action):
        """Run ``action()`` at the next commit, once the files written so far are durable."""
        self.deferred.append(action)

    def _sync(self):
        for folder in list(self.folders.values()):
            path = folder
            while not os.path.exists(path) and os.path.dirname(path) != path:
                path = os.path.dirname(path)  # a folder removed since: its file system
            sync_file_system(path)

    def commit(self, wait=True):
        """Finish the pending writes, sync, run the deferred actions in order, sync again.

        Every action runs even when an earlier one raised; the first exception is
        raised after the second sync. In the background the commit is the writer
        thread's next task (the actions run there, after the writes submitted
        before them); ``wait`` returns only once it is done, raising as above.
        """
        if self.dirty or self.deferred:
            actions, self.deferred = self.deferred, []
            self.dirty = False
            if self._writer is None:
                self._commit_now(actions)
            else:
                self._writer.submit(_COMMIT, lambda: self._commit_now(actions), 0, always=True)
            self.commits += 1
        self.last_commit = time.perf_counter()
        if wait:
            self.drain()
            first, self.failed_action = self.failed_action, None
            if first is not None:
                raise first

    def _commit_now(self, actions):
        """Sync, run ``actions`` in order, sync again (:meth:`commit`)."""
        self._sync()
        for action in actions:
            try:
                action()
            except Exception as exc:
                self.failed_action = self.failed_action or exc
        if actions:
            self._sync()
            if self._writer is None:  # (in the background, new writes may be queued)
                self.dirty = False

    def commit_if_due(self):
        """:meth:`commit` when there is something to commit and ``interval`` has passed.

        In the background it first waits for the previous commit to be done, so the
        writes reach the disk at most about two intervals after they were made.
        """
        if (self.dirty or self.deferred) and (
            time.perf_counter() - self.last_commit >= self.interval
        ):
            if self._writer is not None:  # the writer at most one interval behind
                self._writer.wait(_COMMIT)
            self.commit(wait=False)

    def close(self):
        """End the group's writer thread (after :meth:`commit`)."""
        if self._writer is not None:
            self._writer.close()


@contextlib.contextmanager
def group_commit(interval=2.0, background=False):
    """Make the writes of the block durable together (module docstring).

    ``background``: see :class:`GroupCommit`.

    Nested inside another group, the outer group stays in charge. The group commits
    when the block ends, also when it ends with an exception; the deferred
    actions then still run (a run's final record is never left undone by a failure
    elsewhere).

    Yields
    ------
    group : GroupCommit
    """
    outer = _GROUP.get()
    if outer is not None:
        yield outer
        return
    group = GroupCommit(interval, background)
    token = _GROUP.set(group)
    try:
        yield group
    finally:
        try:
            group.commit()  # in the group: the deferred writes are synced once, together
        finally:
            try:
                group.close()
            finally:
                _GROUP.reset(token)
