"""Sweeps of many tiny runs: per-point cost, batched tasks vs one task per point.

Problem: a sweep of P points (``quick``: 24; full: 96), each a short ``gd_numpy``
run (sinus data, n = 10, width 8, 50 momentum steps, scalars every step,
checkpoints at the end only), over ``model.width`` and seeds, on a local pool of
two worker processes.

Rows
----
sweep vs a process per point
    Wall seconds per point of the sweep (default batching, pool start-up
    included) against ``python runner.py`` started once per point, the shell-loop
    way (the mean of 4 such processes): the ratio is what the persistent,
    batched workers save in interpreter and import start-up.
sweep, batched tasks
    The same sweep against one task per point (``batch_size=1``): the saving on
    task hand-out alone (the pool's processes live for the whole sweep either way).
point in-process
    Seconds per point of the same runs through :func:`core.loop.start_run` in this
    process, one after another, against the sweep's per-point time: two workers
    on two cores make the ideal ratio 2; what is missing is the pool's start-up,
    the driver's polling and the workers' contention on the file system (every
    run makes its files durable with fsync).
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.config import merge, resolve
from core.loop import start_run
from core.registry import get_registry
from core.sweep import run_sweep
from core.sweep._spec import expand_sweep

from .timing import row


def _config(runs_dir, points):
    from configs.base import config as base

    seeds = points // 4
    return merge(
        base,
        {
            "experiment": "bench_sweep",
            "data": {"name": "sinus", "n": 10},
            "model": {"width": 8},
            "algorithm": {"name": "gd_numpy", "optimizer": "momentum", "lr": 0.002},
            "stoppers": {"max_steps": {"steps": 50}},
            "loggers": {"scalars": {"every": 1}, "snapshots": {"every": 50}},
            "run": {"runs_dir": str(runs_dir), "display": "off"},
            "sweep": {"grid": {"model.width": [4, 8, 16, 32]}, "seeds": seeds},
        },
    )


def _sweep_seconds(config, registry, batch_size):
    start = time.perf_counter()
    run_sweep(config, "", registry, jobs=2, batch_size=batch_size)
    return time.perf_counter() - start


def _process_seconds(points, tmp):
    """Mean wall seconds of ``python runner.py`` for a few points, one process each."""
    root = Path(__file__).resolve().parent.parent
    seconds = []
    for point in points:
        config = {k: v for k, v in point.config.items()}
        path = Path(tmp) / f"point_{point.id}.py"
        path.write_text(f"config = {config!r}\n")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(root / "runner.py"), str(path), "--runs-dir", f"{tmp}/processes"],
            cwd=root,
            check=True,
            capture_output=True,
        )
        seconds.append(time.perf_counter() - start)
    return sum(seconds) / len(seconds)


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    points = 24 if quick else 96
    registry = get_registry()
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve(_config(tmp, points), registry)
        batched = min(_sweep_seconds(config, registry, None) for _ in range(2)) / points
        single = min(_sweep_seconds(config, registry, 1) for _ in range(2)) / points
        _, expanded = expand_sweep(config, registry)
        start = time.perf_counter()
        for point in expanded:
            start_run(point.config, "", registry, runs_dir=f"{tmp}/alone")
        alone = (time.perf_counter() - start) / points
        process = _process_seconds(expanded[:4], tmp)
    size = f"{points} points x 50 gd_numpy steps, 2 workers"
    return [
        row(
            "sweep vs a process per point",
            batched * 1e3,
            "ms/point",
            process * 1e3,
            note=f"{size}; baseline python runner.py per point (mean of 4)",
        ),
        row(
            "sweep, batched tasks",
            batched * 1e3,
            "ms/point",
            single * 1e3,
            note=f"{size}; baseline one task per point",
        ),
        row(
            "point in-process (start_run)",
            alone * 1e3,
            "ms/point",
            batched * 1e3,
            note="ratio = run's own time / batched sweep time per point (ideal 2)",
        ),
    ]
