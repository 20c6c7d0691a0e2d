"""How many CPU threads a run uses, and a context that applies it to torch and BLAS.

``run.threads`` (:data:`core.config.RUN_PARAMS`) is resolved by :func:`resolve_threads`
and applied around the algorithm's setup and steps by :func:`limit_threads`.

Why not the libraries' defaults: torch, OpenBLAS and OpenMP start one thread per core
and their idle threads spin, waiting for the next operation. On a tiny problem every
operation is a few microseconds of work for which the threads are woken, synchronised
and put back, and on a machine shared with other work they fight over the cores:
``configs/gd_sinus.py`` (n = 20, d = 2, m = 300) ran 1000 torch steps in 19.3 s with
torch's 2 threads on a loaded 2-core machine, 5.4 s with ``OMP_NUM_THREADS=1``.
"""

import contextlib
import contextvars
import importlib.util
import os
import sys
import threading

__all__ = ["TINY_WORK", "usable_cpus", "problem_work", "resolve_threads", "limit_threads"]

_ACTIVE = contextvars.ContextVar("relulab_limit_threads", default=None)
"""The ``n`` of the innermost :func:`limit_threads` block of this context."""

TINY_WORK = 25_000_000
"""Below this :func:`problem_work`, an automatic single run uses one thread.

Measured on the 2-core development machine, shared with other work (load 2 to 5): one
full-batch GD step (momentum, float64, ``step()`` then ``loss()`` as the loop calls
them), best of 30 to 60 rounds alternating one and two threads under
:func:`limit_threads`, in milliseconds:

==============  =====  ==============  ====================
n, d, m         work   ``gd`` 1t / 2t  ``gd_numpy`` 1t / 2t
==============  =====  ==============  ====================
20, 2, 300      1.8e4  0.33 / 0.40     0.060 / 0.060
100, 10, 500    5.5e5  0.66 / 0.80     0.36 / 0.32
200, 20, 1000   4.2e6  2.2 / 4.4       1.2 / 1.8
200, 50, 1000   1.0e7  3.3 / 5.1       2.0 / 2.0
400, 50, 1000   2.0e7  7.3 / 8.8       5.0 / 4.4
500, 50, 1000   2.6e7  8.9 / 6.0       5.1 / 4.6
500, 100, 2000  1.0e8  25 / 14         20 / 16
==============  =====  ==============  ====================

torch gains from a second thread from about 2.5e7 on (1.5x at 2.6e7, 1.75x at 1e8)
and loses below (0.5 to 0.8x); numpy is even between 1e7 and 2e7 and gains above.
Timings under load favour one thread more than an idle machine would; the best of
many rounds approaches the idle machine. ``python -m bench --only threads`` prints
the same comparison on the machine at hand. On an idle two-core Intel Xeon
(AVX-512, 2026-12-02) two threads were faster from 5.5e5 on for ``gd`` (1.16x; 1.45x
at 4.2e6, 1.55x at 1e7 to 2.6e7, 1.8x at 1e8) and from 1e7 on for ``gd_numpy``
(1.16x; 1.22x at 2e7); the threshold stays where a shared machine does not lose.
"""


def usable_cpus():
    """Number of CPUs this process may run on (its affinity mask, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def problem_work(problem):
    """Size of one gradient step of a problem: ``n * m * (d + k)``.

    The two matrix products of a step, ``X W`` and ``X^T B``, cost ``2 n d m``
    operations each, the products with ``a`` ``2 n m k``, the elementwise passes a
    few ``n m``: a step is about ``4 n m (d + k)`` floating-point operations.

    Parameters
    ----------
    problem : core.components.Problem

    Returns
    -------
    work : int
    """
    n, d = problem.X.shape
    W0, a0 = problem.W0, problem.a0
    m = W0.shape[1]
    k = 1 if a0.ndim == 1 else a0.shape[1]
    return n * m * (d + k)


def resolve_threads(setting, problem, worker=False):
    """Number of CPU threads a run uses.

    Parameters
    ----------
    setting : int
        ``run.threads``: a positive count is used as given; 0 chooses automatically.
    problem : core.components.Problem or None
        The run's problem; only its sizes are read, and only for ``setting=0`` outside
        a worker (a sweep worker may pass None before building it).
    worker : bool
        Whether the run is one of a sweep's, run by a worker process beside others.

    Returns
    -------
    threads : int
        With ``setting=0``: 1 in a sweep worker (the sweep's parallelism is its
        workers); for a single run, 1 when :func:`problem_work` is below
        :data:`TINY_WORK` (threads cost more than they save on tiny matrices), else
        :func:`usable_cpus`.

    Examples
    --------
    >>> import numpy as np
    >>> from core.components import Problem
    >>> tiny = Problem(X=np.ones((20, 2)), Y=np.ones(20), W0=np.ones((2, 300)), a0=np.ones(300))
    >>> resolve_threads(0, tiny), resolve_threads(3, tiny), resolve_threads(0, None, worker=True)
    (1, 3, 1)
    """
    setting = int(setting)
    if setting < 0:
        raise ValueError(f"threads must be >= 0 (0: automatic); got {setting}")
    if setting > 0:
        return setting
    if worker or problem_work(problem) < TINY_WORK:
        return 1
    return usable_cpus()


@contextlib.contextmanager
def limit_threads(n):
    """Run a block with ``n`` torch intra-op threads and ``n`` BLAS / OpenMP threads.

    On entry, the BLAS and OpenMP libraries already loaded, and scipy's (loaded here),
    are limited through threadpoolctl and, if torch is imported,
    ``torch.set_num_threads(n)`` is called. Nested in a block of this context with the
    same ``n``, it changes nothing (threadpoolctl's search of the loaded libraries
    costs about 2 ms, more than a tiny run's set-up: a sweep worker enters one block
    for a whole ensemble).
    torch is never imported here: if it is imported inside the block (an algorithm
    importing it in its ``setup``), its thread count is set as soon as its import
    completes. On exit both are restored: torch to the count it had on entry (or
    right after its import within the block), the libraries to their previous limits.

    Parameters
    ----------
    n : int
        Threads, >= 1.

    Yields
    ------
    n : int

    Examples
    --------
    >>> from threadpoolctl import threadpool_info
    >>> with limit_threads(1):
    ...     all(pool["num_threads"] == 1 for pool in threadpool_info())
    True
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1; got {n}")
    if _ACTIVE.get() == n:  # inside a block with the same limit: nothing to change
        yield n
        return
    # scipy.linalg brings its own OpenBLAS, apart from numpy's; threadpoolctl limits only
    # the libraries already loaded, and one loaded inside the block would keep its
    # default threads (measured: a min-norm solve at (n, d) = (400, 100) took 10.3 s
    # instead of 1.0 s on a loaded 2-core machine). scipy is a core dependency.
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    torch = _imported_torch()
    before = torch.get_num_threads() if torch is not None else None  # before OpenMP's limit
    libraries = threadpool_limits(limits=n)
    torch_threads = _TorchThreads(n, before)
    token = _ACTIVE.set(n)
    try:
        yield n
    finally:
        _ACTIVE.reset(token)
        try:
            torch_threads.restore()
        finally:
            libraries.restore_original_limits()


def _imported_torch():
    module = sys.modules.get("torch")
    return module if module is not None and hasattr(module, "set_num_threads") else None


class _TorchThreads:
    """Sets torch's intra-op threads now, or when torch's import completes; restores them."""

    def __init__(self, n, before=None):
        self.n = n
        self.previous = before
        self.hook = None
        torch = _imported_torch()
        if torch is not None:
            self._set(torch)
        else:
            self.hook = _AfterImport("torch", self._apply)
            sys.meta_path.insert(0, self.hook)

    def _apply(self, torch):
        self.previous = torch.get_num_threads()
        self._set(torch)

    def _set(self, torch):
        # Always call set_num_threads: it also limits torch's own MKL, which the
        # OpenMP limit (threadpoolctl) leaves alone even when get_num_threads()
        # already reads n.
        torch.set_num_threads(self.n)

    def restore(self):
        if self.hook is not None:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self.hook)
        torch = _imported_torch()
        if torch is not None and self.previous is not None:
            torch.set_num_threads(self.previous)


class _AfterImport:
    """A ``sys.meta_path`` finder that calls ``callback(module)`` once ``name`` is imported.

    It finds nothing itself: it asks the other finders for the module's spec and wraps
    that spec's loader's ``exec_module`` (on the loader object of this one import), so
    the module is loaded exactly as it would have been.
    """

    def __init__(self, name, callback):
        self.name, self.callback = name, callback
        self._busy = threading.local()

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.on = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module, callback = loader.exec_module, self.callback

        def exec_then_call(module):
            try:
                exec_module(module)
            finally:
                with contextlib.suppress(AttributeError):
                    del loader.exec_module
            callback(module)

        loader.exec_module = exec_then_call
        return spec
