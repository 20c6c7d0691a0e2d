"""The population-loss census: batched gradient descent against one initialisation at a time.

Problem: Safran & Shamir's census step (teacher ``V = I_k``, student ``n = k``, Xavier
``W0 ~ N(0, 1/k)``, step ``5 / k``, gradient descent until ``||grad F||_F <= 1e-12``)
for ``N`` initialisations at ``k = 10`` and ``k = 20`` (``quick``: N = 4; full: 50).

Rows
----
census GD k=K, batched
    Milliseconds per initialisation of :func:`plugins.population.descend` on all N
    at once (one stacked numpy program, each initialisation leaving the stack when
    it converges) against the baseline: the seed's style, a plain numpy loop per
    initialisation (gradient from ``arccos``/``sin`` of the cosine matrices, as the
    authors' ``local_minima.py`` computes it) to the same tolerance. The note gives
    the largest difference between the end points of the two (the same points up to
    rounding) and the step counts (mean, max; sum / max bounds what any batch can
    gain once only the slowest initialisation is left).
census GD k=K, stream of 50 slots
    The same initialisations through a batch of ``min(50, N / 2)`` slots, a waiting
    initialisation taking the place of each one that leaves (``descend(...,
    slots=...)``), against the one-batch time: the straggler tail is then shared.
census sweep overhead k=10
    Milliseconds per point of the shipped sweep (``configs/population_census.py``
    at ``k = 10``: N points, ensembles of up to 16 seeds, every run in its own
    folder, in this process, ``jobs = 0``) minus the compute of the same points
    (their ensembles' :func:`descend` alone), against that compute: what the run
    store, loggers and lockstep loop cost per point.
"""

import tempfile
import time

import numpy as np

from core.config import REPO_ROOT, load
from core.registry import get_registry
from core.sweep import run_sweep
from core.sweep._spec import expand_sweep
from plugins.population import descend

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


def _compare(k, n):
    W0 = _inits(k, n, 1000 + k)
    V = np.broadcast_to(np.eye(k), W0.shape)
    start = time.perf_counter()
    alone = [_seed_style(W, 5.0 / k) for W in W0]
    seed_seconds = (time.perf_counter() - start) / n
    start = time.perf_counter()
    W, steps, _ = descend(W0, V, 5.0 / k, TOL, 10**7)
    batch_seconds = (time.perf_counter() - start) / n
    slots = max(1, min(50, n // 2))
    start = time.perf_counter()
    W_stream, _, _ = descend(W0, V, 5.0 / k, TOL, 10**7, slots=slots)
    stream_seconds = (time.perf_counter() - start) / n
    ends = np.stack([w for w, _ in alone])
    diff = max(np.abs(W - ends).max(), np.abs(W_stream - ends).max())
    counts = np.array([s for _, s in alone])
    note = (
        f"N={n}; end points differ by <= {diff:.1e}; steps mean {counts.mean():.0f}, "
        f"max {counts.max()}, sum/max {counts.sum() / counts.max():.1f}; "
        f"batched steps equal {int((steps == counts).sum())}/{n}"
    )
    return [
        row(
            f"census GD k={k}, batched",
            batch_seconds * 1e3,
            "ms/init",
            seed_seconds * 1e3,
            note=note + "; baseline: seed style, one initialisation at a time",
        ),
        row(
            f"census GD k={k}, stream of {slots} slots",
            stream_seconds * 1e3,
            "ms/init",
            batch_seconds * 1e3,
            note=f"baseline: all {n} in one batch; vs seed style "
            f"{seed_seconds / stream_seconds:.1f}x faster",
        ),
    ]


def _sweep_overhead(n):
    registry = get_registry()
    with tempfile.TemporaryDirectory() as tmp:
        config, source, _ = load(
            REPO_ROOT / "configs" / "population_census.py",
            [
                f"run.runs_dir='{tmp}'",
                f"sweep.seeds={n}",
                "sweep.zip={'data.k': [10], 'model.width': [10]}",
            ],
            registry,
        )
        _, points = expand_sweep(config, registry)
        start = time.perf_counter()
        run_sweep(config, source, registry, jobs=0)
        sweep_seconds = (time.perf_counter() - start) / n
    # the same points' compute: their initial networks, in ensembles of 16
    from core.problem import build_problem

    problems = [build_problem(p.config, registry)[0] for p in points]
    start = time.perf_counter()
    for i in range(0, n, 16):
        chunk = problems[i : i + 16]
        W0 = np.stack([p.W0 for p in chunk])
        V = np.stack([p.extras["V"] for p in chunk])
        descend(W0, V, 0.5, TOL, 10**7)
    compute_seconds = (time.perf_counter() - start) / n
    overhead = max(sweep_seconds - compute_seconds, 1e-9)
    return row(
        "census sweep overhead k=10",
        overhead * 1e3,
        "ms/point",
        compute_seconds * 1e3,
        note=f"{n} points, jobs=0, ensembles of 16; sweep {sweep_seconds * 1e3:.1f} ms/point "
        "in all; baseline: the points' descent alone",
    )


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    n = 4 if quick else 50
    rows = []
    for k in (10, 20):
        rows.extend(_compare(k, n))
    rows.append(_sweep_overhead(8 if quick else 48))
    return rows
