"""Timing helpers shared by the benchmark modules."""

import time

__all__ = ["best_of", "best_of_passes", "row"]


def best_of(fn, repeats=5, warmup=1, clock=time.perf_counter):
    """Best time of ``fn()`` over ``repeats`` calls, after ``warmup`` calls.

    Parameters
    ----------
    fn : callable
        Called without arguments; it must finish its work before returning (call
        ``torch.cuda.synchronize()`` inside it for GPU work).
    repeats, warmup : int
    clock : callable
        Seconds now: wall clock by default; ``time.process_time`` (CPU time of the
        process) for single-thread work on a machine shared with other processes.

    Returns
    -------
    seconds : float
        The minimum over the timed calls (the least disturbed by other processes).
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best


def best_of_passes(fns, repeats=5, warmup=1, passes=2, clock=time.perf_counter):
    """Best times of several callables: each timed in a block, the blocks run ``passes`` times.

    Each block is :func:`best_of` (warm-up, then ``repeats`` calls); going over all the
    callables more than once lets a load spike on a shared machine spare one of the
    passes. Calls of different callables are not interleaved one by one: numpy's
    and torch's thread pools keep spinning after a call and would slow the other
    library's next call.

    Parameters
    ----------
    fns : dict of str -> callable
    repeats, warmup, passes : int
    clock : callable
        As for :func:`best_of`.

    Returns
    -------
    seconds : dict of str -> float
        The minimum over every timed call of each callable.
    """
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(passes):
        for name, fn in fns.items():
            best[name] = min(best[name], best_of(fn, repeats, warmup, clock))
    return best


def row(name, value, unit, baseline=None, ratio=None, note=""):
    """One result row in the format ``python -m bench`` prints.

    ``ratio`` defaults to ``value / baseline`` when a baseline is given.
    """
    if ratio is None and baseline:
        ratio = value / baseline
    return {
        "name": name,
        "value": value,
        "baseline": baseline,
        "ratio": ratio,
        "unit": unit,
        "note": note,
    }
