r"""CPU threads of a run (``run.threads``) and the start-up of a tiny torch run.

Threads
-------
torch, OpenBLAS and OpenMP default to one thread per core; on tiny matrices the
threads cost more than they save, the more so on a machine shared with other work.
:func:`core.threads.resolve_threads` gives a single run one thread below
:data:`core.threads.TINY_WORK` (``n m (d + k)``) and every usable core above.

tiny gd run, auto threads
    Steps per second of the ``gd`` plugin (torch, momentum, float64, ``step()`` then
    ``loss()`` as the loop calls them) at the size of ``configs/gd_sinus.py`` (n = 20,
    d = 2, m = 300), under :func:`core.threads.limit_threads` with the automatic
    count, against torch's default count (``torch.get_num_threads()`` at import, one
    per core). Ratio > 1: auto is faster. The same for ``gd_numpy`` (BLAS threads).
gd step, 1 thread
    Milliseconds of one step of ``gd`` and ``gd_numpy`` at growing sizes with one
    thread, against every usable core: ratio < 1 where one thread is faster. These
    rows are the measurement behind :data:`core.threads.TINY_WORK`.

Start-up
--------
start-up, tiny torch run
    Wall seconds of ``python runner.py configs/gd_sinus.py stoppers.max_steps.steps=1``
    (a fresh process: interpreter, imports, run folder, one step, final save), against
    the same command in a process that first builds one ``torch.optim`` optimizer, as
    ``gd`` did before it did its own updates.
torch.optim first optimizer
    Seconds to construct the first ``torch.optim.SGD`` in a fresh process (it imports
    torch's compiler stack), against the seconds of ``import torch`` before it.

Each subprocess is started once in quick mode, three times (best kept) otherwise.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from core.components import Problem
from core.params import validate_params
from core.threads import limit_threads, problem_work, resolve_threads, usable_cpus

from .timing import best_of_passes, row

ROOT = Path(__file__).resolve().parent.parent
LR = 1e-9  # the parameters barely move over the repeats

_BEFORE = """
import runpy, sys, time
start = time.perf_counter()
import torch
imported = time.perf_counter()
torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
built = time.perf_counter()
sys.stderr.write("BENCH_TIMES %r %r\\n" % (imported - start, built - imported))
sys.argv = ["runner.py"] + sys.argv[1:]
runpy.run_path("runner.py", run_name="__main__")
"""


def _problem(n, d, m, seed=0):
    rng = np.random.default_rng(seed)
    return Problem(
        X=rng.standard_normal((n, d)) / np.sqrt(d),
        Y=rng.standard_normal(n),
        W0=rng.standard_normal((d, m)),
        a0=rng.standard_normal(m) / m,
    )


def _steps(cls, problem, count):
    """A callable doing ``count`` steps of a fresh ``cls`` on ``problem``."""
    algorithm = cls(**validate_params("algorithm", {"lr": LR, "optimizer": "momentum"}, cls.params))
    algorithm.setup(problem)
    algorithm.loss()

    def steps():
        for _ in range(count):
            algorithm.step()
            algorithm.loss()

    return steps


def _under(threads, fn):
    def limited():
        with limit_threads(threads):
            fn()

    return limited


def _thread_rows(quick, default_threads):
    from plugins.gd import GD, GDNumpy

    rows = []
    repeats = 3 if quick else 5
    tiny = _problem(20, 2, 300)
    auto = resolve_threads(0, tiny)
    count = 100 if quick else 400
    for name, cls in (("gd", GD), ("gd_numpy", GDNumpy)):
        steps = _steps(cls, tiny, count)
        seconds = best_of_passes(
            {"auto": _under(auto, steps), "default": _under(default_threads, steps)}, repeats
        )
        rows.append(
            row(
                f"tiny gd run, auto threads ({name})",
                count / seconds["auto"],
                "steps/s",
                baseline=count / seconds["default"],
                note=f"n=20 d=2 m=300 momentum float64; auto {auto} vs default "
                f"{default_threads} threads; ratio > 1: auto faster",
            )
        )

    cpus = usable_cpus()
    sizes = [(20, 2, 300), (200, 50, 1000)]
    if not quick:
        sizes[1:1] = [(100, 10, 500), (200, 20, 1000)]
        sizes += [(400, 50, 1000), (500, 50, 1000), (500, 100, 2000), (1000, 200, 2000)]
    for n, d, m in sizes:
        problem = _problem(n, d, m)
        for name, cls in (("gd", GD), ("gd_numpy", GDNumpy)):
            one = _steps(cls, problem, 1)
            start = time.perf_counter()
            one()
            count = int(np.clip(0.02 / max(time.perf_counter() - start, 1e-6), 1, 200))
            steps = _steps(cls, problem, count)
            seconds = best_of_passes({1: _under(1, steps), cpus: _under(cpus, steps)}, repeats)
            rows.append(
                row(
                    f"gd step, 1 thread ({name}), work {problem_work(problem):.2g}",
                    1e3 * seconds[1] / count,
                    "ms",
                    baseline=1e3 * seconds[cpus] / count,
                    note=f"n={n} d={d} m={m} float64; baseline {cpus} threads; ratio < 1: "
                    "1 thread faster",
                )
            )
    return rows


def _wall(command, runs_dir, repeats):
    """Best wall seconds of ``command`` (+ run-dir options) and the child's stderr."""
    best, err = float("inf"), ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            command + ["run.display=off", "--runs-dir", str(runs_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - start
        if seconds < best:
            best, err = seconds, done.stderr
    return best, err


def _startup_rows(quick):
    repeats = 1 if quick else 3
    args = ["configs/gd_sinus.py", "stoppers.max_steps.steps=1"]
    with tempfile.TemporaryDirectory() as tmp:
        after, _ = _wall([sys.executable, "runner.py"] + args, tmp, repeats)
        before, err = _wall([sys.executable, "-c", _BEFORE] + args, tmp, repeats)
    line = next(x for x in err.splitlines() if x.startswith("BENCH_TIMES"))
    import_torch, first_optimizer = (float(x) for x in line.split()[1:])
    return [
        row(
            "start-up, tiny torch run",
            after,
            "s",
            baseline=before,
            note="runner.py configs/gd_sinus.py, 1 step; baseline: the same process "
            "building one torch.optim optimizer first (gd before its own updates)",
        ),
        row(
            "torch.optim first optimizer",
            first_optimizer,
            "s",
            baseline=import_torch,
            note="fresh process; baseline: import torch",
        ),
    ]


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    import torch

    return _thread_rows(quick, torch.get_num_threads()) + _startup_rows(quick)
