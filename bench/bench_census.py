"""The population-loss census: batched gradient descent with a Newton polish against one
initialisation at a time.

Problem: Safran & Shamir's census step (teacher ``V = I_k``, student ``n = k``, Xavier
``W0 ~ N(0, 1/k)``, step ``5 / k``, gradient descent until ``||grad F||_F <= 1e-12``)
for ``N`` initialisations at ``k = 10`` and ``k = 20`` (``quick``: N = 4; full: 50).
Times are CPU seconds of this process (``time.process_time``, one BLAS thread):
the machine may be shared, and every candidate runs on one core. The seed style's
two halves are timed between two runs of the polished batch (whose mean is
reported), so a change of load weighs on both.

Rows
----
census k=K, batched + Newton polish
    Milliseconds per initialisation of :func:`plugins.population.descend` on all N
    at once with the default :class:`plugins.population.NewtonPolish` (the census
    default: ``population_gd``'s ``newton_below = 1e-3``) against the baseline: the
    seed's style, a plain numpy loop per initialisation (gradient from
    ``arccos``/``sin`` of the cosine matrices, as the authors' ``local_minima.py``
    computes it) to the same tolerance by gradient descent alone. The note gives
    the largest difference between the end points of the two, whether the census
    classifies every initialisation the same (global, or the same non-global point:
    equal block sizes ``p`` and compact values within the census's merge tolerance
    1e-6), and the steps (mean, max; Newton steps among them).
census k=K, batched gradient descent only
    The same, without the polish (``newton_below = None``): the batching gain alone
    (the arccos count per step is the seed's; the slowest initialisation, up to
    113 000 steps at k = 20, runs alone at the end).
census k=K, stream of S slots + polish
    The polished descent through a batch of ``min(50, N / 2)`` slots, a waiting
    initialisation taking the place of each one that leaves (``descend(...,
    slots=...)``), against the one-batch time.
census sweep overhead k=10 [, tmpfs]
    Milliseconds per point of the shipped sweep (``configs/population_census.py``
    at ``k = 10``: N points, ensembles of up to ``sweep.ensemble`` (40) seeds, every
    run in its own folder under the repository's ``runs/``, or
    ``RELULAB_BENCH_RUNS_DIR`` (the store's cost is that of the file system runs go
    to: creating a file on the development VM's disk took 0.01 to 0.27 ms, varying
    from minute to minute, slowest in the minute after many files were deleted), in
    this process, ``jobs = 0``, wall time;
    median of three passes, each followed by its compute) minus the compute of the
    same points (their ensembles' :func:`descend` with the polish alone), against
    that compute: what
    the run store, loggers and lockstep loop cost per point. An ensemble's files
    reach the disk together (:mod:`core.durability`: one ``syncfs`` per group
    commit instead of about 20 fsyncs per run), written by a background thread of
    the group when its first writes prove slow. The passes' sweep folders are
    deleted only after the row's timings, and the disk is synced (``os.sync``)
    before them: a census keeps its runs, and deleting runs costs this disk too
    (ext4 mounted with ``discard`` trims the freed blocks at its next commits;
    deleting each pass's folder before the next made the next 0.3-0.5 ms per point
    slower, 8 passes each way, 2026-12-02). The ``tmpfs`` row (full mode, when
    ``/dev/shm`` is writable and ``RELULAB_BENCH_RUNS_DIR`` is not set) runs the same
    sweeps in memory: the store's own work without the disk's file creations (8 new
    files and folders per run, 5 renames and 2 links).
"""

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from core.config import REPO_ROOT, load
from core.registry import get_registry
from core.sweep import run_sweep
from core.sweep._spec import expand_sweep
from plugins.population import NewtonPolish, descend
from plugins.population._census import MERGE_TOL, classify_point

from .timing import row

TOL = 1e-12


def _seed_style_gradient(W):
    """The gradient for V = I the way a plain script computes it (W (k, k), columns neurons)."""
    norms = np.linalg.norm(W, axis=0)
    U = W / norms
    angles = np.arccos(np.clip(U.T @ U, -1.0, 1.0))
    teacher_angles = np.arccos(np.clip(U, -1.0, 1.0))
    radial = norms @ np.sin(angles) - np.sin(teacher_angles).sum(axis=0)
    return (U * radial + W @ (np.pi - angles) - (np.pi - teacher_angles)) / (2 * np.pi)


def _seed_style(W, step):
    """One initialisation to the tolerance, one plain numpy iteration at a time."""
    G = _seed_style_gradient(W)
    steps = 0
    while np.linalg.norm(G) > TOL:
        W = W - step * G
        G = _seed_style_gradient(W)
        steps += 1
    return W, steps


def _inits(k, n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k, k)) / np.sqrt(k)


def _cpu(fn):
    """``(result, CPU seconds)`` of ``fn()``."""
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def _same_class(a, b):
    """Whether the census puts two end points (from :func:`classify_point`) in one class."""
    if a["global"] or b["global"]:
        return a["global"] == b["global"]
    if a["form"] != b["form"]:
        return False
    if a["form"] == "compact":
        return a["p"].tolist() == b["p"].tolist() and bool(
            np.abs(a["vals"] - b["vals"]).max() < MERGE_TOL
        )
    return bool(np.linalg.norm(a["blocks"] - b["blocks"]) < MERGE_TOL)


def _agreement(W, ends, V):
    """``(largest entry difference, initialisations classified alike)``."""
    same = sum(_same_class(classify_point(w, V), classify_point(e, V)) for w, e in zip(W, ends))
    return float(np.abs(W - ends).max()), same


def _compare(k, n):
    from core.threads import limit_threads

    W0 = _inits(k, n, 1000 + k)
    V = np.broadcast_to(np.eye(k), W0.shape)
    polish = NewtonPolish()
    slots = max(1, min(50, n // 2))
    half = n // 2

    def polished():
        return descend(W0, V, 5.0 / k, TOL, 10**7, polish=polish, full_output=True)

    # the seed style's two halves interleaved with two polished runs (their mean), so
    # a change of the machine's load weighs on both sides
    with limit_threads(1):
        first, seed_first = _cpu(lambda: [_seed_style(W, 5.0 / k) for W in W0[:half]])
        out, polish_first = _cpu(polished)
        (W_gd, steps_gd, _), gd_seconds = _cpu(lambda: descend(W0, V, 5.0 / k, TOL, 10**7))
        second, seed_second = _cpu(lambda: [_seed_style(W, 5.0 / k) for W in W0[half:]])
        _, polish_second = _cpu(polished)
        (W_stream, _, _), stream_seconds = _cpu(
            lambda: descend(W0, V, 5.0 / k, TOL, 10**7, slots=slots, polish=polish)
        )
    alone = first + second
    seed_seconds = seed_first + seed_second
    polish_seconds = 0.5 * (polish_first + polish_second)
    W, steps, g, newton, _ = out
    ends = np.stack([w for w, _ in alone])
    counts = np.array([s for _, s in alone])
    teacher = np.eye(k)
    diff, same = _agreement(W, ends, teacher)
    diff_gd, same_gd = _agreement(W_gd, ends, teacher)
    diff_stream, same_stream = _agreement(W_stream, ends, teacher)
    per = 1e3 / n
    return [
        row(
            f"census k={k}, batched + Newton polish",
            polish_seconds * per,
            "ms/init",
            seed_seconds * per,
            note=f"N={n}; {seed_seconds / polish_seconds:.1f}x faster; end points differ by "
            f"<= {diff:.1e}, census classes equal {same}/{n}; steps mean {steps.mean():.0f}, "
            f"max {steps.max()} (Newton {newton.mean():.1f} per init) vs seed style mean "
            f"{counts.mean():.0f}, max {counts.max()}; baseline: seed style, one "
            "initialisation at a time, gradient descent only",
        ),
        row(
            f"census k={k}, batched gradient descent only",
            gd_seconds * per,
            "ms/init",
            seed_seconds * per,
            note=f"{seed_seconds / gd_seconds:.1f}x faster; end points differ by "
            f"<= {diff_gd:.1e}, classes equal {same_gd}/{n}; batched steps equal "
            f"{int((steps_gd == counts).sum())}/{n}; sum/max of steps "
            f"{counts.sum() / counts.max():.1f} bounds what a batch can gain; baseline: "
            "seed style",
        ),
        row(
            f"census k={k}, stream of {slots} slots + polish",
            stream_seconds * per,
            "ms/init",
            polish_seconds * per,
            note=f"baseline: all {n} in one batch with the polish; vs seed style "
            f"{seed_seconds / stream_seconds:.1f}x faster; end points differ by "
            f"<= {diff_stream:.1e}, classes equal {same_stream}/{n}",
        ),
    ]


def _file_creation(folder, count=20):
    """Seconds per new entry to make ``count`` folders in ``folder`` with two 1 kB files
    in each, as runs do: what a run's entries cost on that file system now (new
    folders' first files cost more than further files in one folder: 0.15 against
    0.02 ms in one minute). They stay (deleted with the bench's other folders, after
    the timings)."""
    tmp = tempfile.mkdtemp(dir=folder, prefix=".bench-files-")
    start = time.perf_counter()
    for i in range(count):
        sub = os.path.join(tmp, f"r{i}")
        os.mkdir(sub)
        for name in ("a", "b"):
            with open(os.path.join(sub, name), "wb") as fh:
                fh.write(b"x" * 1024)
    return (time.perf_counter() - start) / (3 * count)


def _sweep_overhead(n, passes, runs_dir=None, label=""):
    # where runs go: the store's cost is its file system's
    runs_dir = Path(runs_dir or os.environ.get("RELULAB_BENCH_RUNS_DIR") or REPO_ROOT / "runs")
    runs_dir.mkdir(exist_ok=True)
    before = set(runs_dir.glob(".bench-*"))
    try:
        return _timed_sweeps(n, passes, runs_dir, label)
    finally:  # the sweeps' folders go only now: deleting them costs the disk too
        for folder in set(runs_dir.glob(".bench-*")) - before:
            shutil.rmtree(folder, ignore_errors=True)


def _timed_sweeps(n, passes, runs_dir, label):
    from core.problem import build_problem
    from core.threads import limit_threads

    registry = get_registry()

    def sweep(seeds):
        tmp = tempfile.mkdtemp(dir=runs_dir, prefix=".bench-census-")
        config, source, _ = load(
            REPO_ROOT / "configs" / "population_census.py",
            [
                f"run.runs_dir='{tmp}'",
                f"sweep.seeds={seeds}",
                "sweep.zip={'data.k': [10], 'model.width': [10]}",
            ],
            registry,
        )
        _, points = expand_sweep(config, registry)
        start = time.perf_counter()
        run_sweep(config, source, registry, jobs=0)
        return time.perf_counter() - start, points, config["sweep"].get("ensemble") or 16

    def compute(points, ensemble):
        """The same points' compute: their initial networks, in the sweep's ensembles."""
        problems = [build_problem(p.config, registry)[0] for p in points]
        with limit_threads(1):  # as the sweep's runs (one thread each: tiny problems)
            start = time.perf_counter()
            for i in range(0, n, ensemble):
                chunk = problems[i : i + ensemble]
                W0 = np.stack([p.W0 for p in chunk])
                V = np.stack([p.extras["V"] for p in chunk])
                descend(W0, V, 0.5, TOL, 10**7, polish=NewtonPolish())
            return time.perf_counter() - start

    warm_up, _, _ = sweep(2)  # the process's first sweep imports what it uses
    # the disk's pending work (earlier rows' deleted folders: ext4 mounted with
    # discard trims their blocks at its next commits) is done before the timings
    os.sync()
    sweeps, computes, creates = [], [], [_file_creation(runs_dir)]
    for _ in range(passes):  # interleaved: a drift of the machine's speed weighs on both
        seconds, points, ensemble = sweep(n)
        sweeps.append(seconds / n)
        computes.append(compute(points, ensemble) / n)
        creates.append(_file_creation(runs_dir))
    sweep_seconds, compute_seconds = float(np.median(sweeps)), float(np.median(computes))
    overheads = sorted(s - c for s, c in zip(sweeps, computes))
    overhead = max(float(np.median(overheads)), 1e-9)
    return row(
        "census sweep overhead k=10" + label,
        overhead * 1e3,
        "ms/point",
        compute_seconds * 1e3,
        note=f"{n} points, jobs=0, ensembles of up to {ensemble}, runs in {runs_dir}; "
        f"median of {passes} passes (overheads {', '.join(f'{o * 1e3:.1f}' for o in overheads)} "
        f"ms); a new folder or small file there took {min(creates) * 1e3:.2f}-"
        f"{max(creates) * 1e3:.2f} ms around the passes; "
        f"sweep {sweep_seconds * 1e3:.1f} ms/point in all, after a 2-point sweep "
        f"({warm_up:.2f} s: the imports of a process's first sweep); baseline: the points' "
        "descent alone",
    )


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    n = 4 if quick else 50
    rows = []
    for k in (10, 20):
        rows.extend(_compare(k, n))
    rows.append(_sweep_overhead(8, 1) if quick else _sweep_overhead(80, 3))
    memory = Path("/dev/shm")
    if not quick and not os.environ.get("RELULAB_BENCH_RUNS_DIR") and _writable(memory):
        # the same in memory: the store's own work, without the disk's file creations
        rows.append(_sweep_overhead(80, 3, memory, label=", tmpfs"))
    return rows


def _writable(folder):
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
