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
  and resume from their final checkpoint, ending at once;
* power loss may lose or tear files written since the last commit, of runs not yet
  recorded as ended: a sweep resume continues them from their checkpoint, starts
  them again when ``meta.json`` is unreadable, or reports a damaged file by name
  (the point is then ``failed`` and runs again from scratch at the next resume).

A group commits at its end and, through :meth:`GroupCommit.commit_if_due`, at most
every ``interval`` seconds while runs go on (so runs ended early in a long ensemble
are recorded within that time, and periodic saves reach the disk).

The group is held in a :class:`contextvars.ContextVar`: it applies to the thread (or
task) that entered it, never to another thread of the process writing files.
"""

import contextlib
import contextvars
import ctypes
import os
import time

__all__ = ["GroupCommit", "group_commit", "current_group", "sync_file", "sync_folder"]

_GROUP = contextvars.ContextVar("relulab_group_commit", default=None)


def current_group():
    """The :class:`GroupCommit` active in this context, or None."""
    return _GROUP.get()


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


class GroupCommit:
    """Files written in this context become durable together (module docstring).

    Parameters
    ----------
    interval : float
        Seconds between commits that :meth:`commit_if_due` allows.
    """

    def __init__(self, interval=2.0):
        self.interval = float(interval)
        self.folders = {}  # st_dev -> a folder written to on that file system
        self.deferred = []
        self.dirty = False
        self.last_commit = time.perf_counter()
        self.commits = 0

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
        for folder in self.folders.values():
            path = folder
            while not os.path.exists(path) and os.path.dirname(path) != path:
                path = os.path.dirname(path)  # a folder removed since: its file system
            sync_file_system(path)

    def commit(self):
        """Sync, run the deferred actions in order, sync again.

        Every action runs even when an earlier one raised; the first exception is
        raised after the second sync.
        """
        first = None
        if self.dirty or self.deferred:
            self._sync()
            self.dirty = False
            actions, self.deferred = self.deferred, []
            for action in actions:
                try:
                    action()
                except Exception as exc:
                    first = first or exc
            if actions:
                self._sync()
                self.dirty = False
            self.commits += 1
        self.last_commit = time.perf_counter()
        if first is not None:
            raise first

    def commit_if_due(self):
        """:meth:`commit` when there is something to commit and ``interval`` has passed."""
        if (self.dirty or self.deferred) and (
            time.perf_counter() - self.last_commit >= self.interval
        ):
            self.commit()


@contextlib.contextmanager
def group_commit(interval=2.0):
    """Make the writes of the block durable together (module docstring).

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
    group = GroupCommit(interval)
    token = _GROUP.set(group)
    try:
        yield group
    finally:
        try:
            group.commit()  # in the group: the deferred writes are synced once, together
        finally:
            _GROUP.reset(token)
