r"""The convex program of two-layer ReLU training: interior_point and first_order vs Clarabel.

Problem (the issue's): ``X = randn(n, d) / sqrt(n)``, labels ``y = relu(X W*) a*`` of a
planted network (``max(2, d // 5)`` neurons, output weights +-1), ``P`` patterns
``1[X g >= 0]`` of Gaussian gates (duplicates and the empty pattern removed),
``beta = 1e-3 ||X^T y||_inf``; sizes ``(n, d, P)`` = (100, 10, 50), (300, 20, 100),
(1000, 50, 200) (``quick``: (60, 6, 30)). Both forms: ``exact`` (with the cone
constraints, ``2P`` groups) and ``gated`` (the relaxation, ``P`` groups).

Every solve runs in a fresh subprocess (``python -m bench.bench_convex --child``)
with one BLAS thread (Clarabel is single-threaded; several threads on a shared
2-core machine slow the small operations down), reading the problem from an
``.npz``; the child reports the CPU time of the solve (``time.process_time``: one
thread, so the time it takes on an otherwise idle core; the wall time, which on a
shared machine also counts other processes' turns, is in the notes), the rise of the process's
peak resident memory during it (``ru_maxrss``, the only measure that sees
Clarabel's Rust allocations) and, for the numpy solvers, the peak of
:mod:`tracemalloc` (numpy's arrays). The interior point is timed in a run without
:mod:`tracemalloc` (its bookkeeping of every allocation cost the interior point about
10 % at the largest size) and its peak taken from a second, traced run;
``first_order`` and ``working_set`` are timed traced.

Solvers
-------
Clarabel
    cvxpy's formulation with ``(d, P)`` variables and element-wise cone constraints,
    as :mod:`plugins.convex._solver_cvxpy` writes it; time includes cvxpy's
    compilation (Clarabel's own ``solve_time`` is in the note). Skipped at the
    largest size (the issue measured more than 180 s and 5.4 GB) unless the
    environment sets ``RELULAB_BENCH_CLARABEL_ALL=1``.
interior_point
    :class:`plugins.convex._first_order.ConicInteriorPoint` stepped until its
    certificate reaches 1e-7 or stalls; the times at which the certified relative
    gap first falls below 1e-4 and 1e-6 are what solves with ``tol=1e-4`` and
    ``tol=1e-6`` take (the iterates do not depend on ``tol``). Its last objective is
    the tight reference. Default ``schur="auto"``: PCG Newton solves where
    ``n^2 P d > 1e9`` (the largest size); there the exact form is also solved with
    ``schur="direct"`` (the ``n x n`` Schur complement formed every iteration), the
    baseline of its rows (Clarabel being skipped).
first_order
    :class:`plugins.convex._first_order.GroupLassoAPG` (FISTA gated, augmented
    Lagrangian exact) with a time budget (10 s; ``quick``: 1 s).

working_set
    :class:`plugins.convex._working_set.WorkingSetEngine` (the interior point on
    working sets of groups, each group left out checked exactly) to a certified
    ``1e-4`` over all groups; exact form only, not at the largest size (it loses
    to the interior point there: 313 of 400 groups are non-zero at the optimum).
pyscnn
    When the package ``scnn`` imports (``pip install --no-deps pyscnn`` and its
    non-torch dependencies: never let it replace torch): its augmented Lagrangian
    ``AL`` (exact) and ``RFISTA`` (gated) at their default tolerances, on the same
    patterns, ``lam = beta / n`` (its loss is the program divided by ``n``),
    float64, columns not rescaled; its objective is evaluated here (not certified).
``beta x100`` block
    The exact program with ``beta = 0.1 ||X^T y||_inf`` at (300, 20, 100): a sparse
    optimum (21 of 200 groups non-zero), where the working set could pay.

min-norm rows
    The skip program of Wang et al. (``plugins/convex/_min_norm.py``) on a
    phase-transition trial (planted ``w``, ``max(n, 50)`` gates and the all-ones
    pattern) at (n, d) = (100, 20), (200, 50), (400, 100) (``quick``: (40, 10)):
    the certified interior point of ``plugins/convex/_basis_pursuit.py`` against
    Clarabel (skipped at the largest size unless ``RELULAB_BENCH_CLARABEL_ALL=1``).

Rows
----
``<form> n,d,P: <solver> ...`` in seconds with Clarabel's time as baseline (ratio < 1:
faster), memory rows in MB with Clarabel's peak-RSS rise as baseline, and for a
first-order solve that does not certify within its budget the certified relative gap
it reached. Notes give the objective relative to the best known (the smallest
objective of a certified solve: ``(f - best) / best``; Clarabel's may be slightly
negative, its iterates meeting the constraints only to its tolerance), the certified
gap, iterations, and the cone violation. Full mode takes about 15 minutes on a
2-core machine at load 6-9 (the largest exact program alone 35 s of CPU, 80 s of
wall time; pyscnn's augmented Lagrangian there 23 s); 7 minutes at load 2 with the
PCG Schur solves (the largest exact program certified to 1e-6 after 18 s of CPU, its
``schur="direct"`` baseline after 30 s; both then run on to their stall near 1e-7).
"""

import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from .timing import row

SIZES = [(100, 10, 50), (300, 20, 100), (1000, 50, 200)]
QUICK_SIZES = [(60, 6, 30)]
# (1000, 50, 200) left out (3-4 minutes on a loaded machine); measured there before the
# matrix-free Schur solves: interior point 20.0 s CPU to 1e-4 (28 its), working_set
# 53.5 s (3 rounds, 139 its, 102/400 in); with them (schur="auto"): interior point
# 12.3 s to 1e-6 against 18.1 s with schur="direct"
SPARSE_SIZES = [(300, 20, 100)]
SPARSE_FACTOR = 100.0  # beta = 0.1 ||X^T y||_inf: 21 of 200 groups non-zero at (300, 20, 100)
CHECKPOINTS = (1e-4, 1e-6)
TIGHT = 1e-7  # the interior point's smallest tol: its reference objective
MIN_NORM_SIZES = [(100, 20), (200, 50), (400, 100)]
QUICK_MIN_NORM_SIZES = [(40, 10)]


def make_problem(n, d, P, seed=0, gates=False):
    """The issue's problem (module docstring).

    Returns
    -------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    masks : ndarray of bool, shape (n, P') with P' <= P
    beta : float
    gates : ndarray, shape (d, P')
        Only with ``gates=True``: the gate vectors of the masks (``masks = X @ gates
        >= 0``), for pyscnn.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / np.sqrt(n)
    m = max(2, d // 5)
    y = np.maximum(X @ rng.standard_normal((d, m)), 0.0) @ rng.choice([-1.0, 1.0], m)
    G = rng.standard_normal((d, 2 * P))
    masks = X @ G >= 0
    keep = masks.any(axis=0)
    masks, G = masks[:, keep], G[:, keep]
    _, first = np.unique(masks, axis=1, return_index=True)
    chosen = np.sort(first)[:P]
    masks, G = masks[:, chosen], G[:, chosen]
    beta = 1e-3 * float(np.max(np.abs(X.T @ y)))
    return (X, y, masks, beta, G) if gates else (X, y, masks, beta)


def make_min_norm_problem(n, d, seed=0):
    """A phase-transition trial: planted ``y = X w``, ``max(n, 50)`` gates, the all-ones pattern.

    Returns ``X`` (n, d), ``y`` (n,), ``masks`` (n, P) of bool.
    """
    from plugins.convex._data import planted_inputs, planted_vector
    from plugins.convex._min_norm import all_ones_attainable, all_ones_index
    from plugins.convex._patterns import sampled_patterns

    rng = np.random.default_rng(seed)
    X = planted_inputs(n, d, "gaussian", rng)
    w = planted_vector(X, "smallest_singular", rng)
    masks = sampled_patterns(X, max(n, 50), rng)
    if all_ones_attainable(X) and all_ones_index(masks) is None:
        masks = np.hstack([masks, np.ones((n, 1), dtype=bool)])
    return X, X @ w, masks


# ------------------------------------------------------------------------- the child


def _min_norm(X, y, masks, solver):
    from plugins.convex._min_norm import solve_min_norm, solve_min_norm_ipm

    clock = _Clock()
    if solver == "min_norm_ipm":
        sol = solve_min_norm_ipm(X, y, masks)
    else:
        sol = solve_min_norm(X, y, masks)
    return {
        "seconds": clock.cpu(),
        "wall": clock.wall(),
        "objective": float(sol["objective"]),
        "gap": float(sol["gap"] / sol["objective"]),
        "status": sol["status"],
        "iterations": int(sol["iterations"]),
    }


class _Clock:
    """CPU seconds of this process (``process_time``) and wall seconds since construction.

    The children run one thread, so CPU time is the time of the solve on an otherwise
    idle core; wall time on a shared machine also counts other processes' turns.
    """

    def __init__(self):
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def cpu(self):
        return time.process_time() - self.cpu0

    def wall(self):
        return time.perf_counter() - self.wall0


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _clarabel(X, y, masks, beta, cones):
    import cvxpy as cp

    n, d = X.shape
    P = masks.shape[1]
    M = masks.astype(float)
    S = 2.0 * M - 1.0
    V, W = cp.Variable((d, P)), cp.Variable((d, P))
    pred = cp.sum(cp.multiply(M, X @ V), axis=1) - cp.sum(cp.multiply(M, X @ W), axis=1)
    cost = 0.5 * cp.sum_squares(pred - y) + beta * (
        cp.sum(cp.norm(V, 2, axis=0)) + cp.sum(cp.norm(W, 2, axis=0))
    )
    constraints = [cp.multiply(S, X @ V) >= 0, cp.multiply(S, X @ W) >= 0] if cones else []
    problem = cp.Problem(cp.Minimize(cost), constraints)
    clock = _Clock()
    problem.solve(solver="CLARABEL")
    seconds, wall = clock.cpu(), clock.wall()
    violation = 0.0
    if cones:
        violation = max(0.0, -float(min((S * (X @ V.value)).min(), (S * (X @ W.value)).min())))
    return {
        "seconds": seconds,
        "wall": wall,
        "objective": float(problem.value),
        "status": problem.status,
        "iterations": int(problem.solver_stats.num_iters),
        "solve_time": float(problem.solver_stats.solve_time),
        "violation": violation,
    }


def _iterative(X, y, masks, beta, cones, method, budget, trace=True):
    from plugins.convex._first_order import ConicInteriorPoint, GroupLassoAPG, signed_masks
    from plugins.convex._program import ConvexSolverError
    from plugins.convex._working_set import WorkingSetEngine

    M, _ = signed_masks(masks, cones)
    if trace:
        tracemalloc.start()
    clock = _Clock()
    if method == "interior_point":
        engine = ConicInteriorPoint(X, y, M, beta, cones, tol=TIGHT)
    elif method == "interior_point_direct":  # the n x n Schur complement formed
        engine = ConicInteriorPoint(X, y, M, beta, cones, tol=TIGHT, schur="direct")
    elif method == "working_set":
        engine = WorkingSetEngine(X, y, M, beta, cones, tol=max(CHECKPOINTS))
    else:
        engine = GroupLassoAPG(X, y, M, beta, cones, tol=min(CHECKPOINTS))
    crossings, stalled = {}, None
    while not engine.done:
        try:
            engine.step()
        except ConvexSolverError as exc:  # the numerical limit, below 1e-6 in practice
            stalled = str(exc)
            break
        now = clock.cpu()
        rel = engine.gap / engine.objective
        ok = engine.violation <= engine.violation_tol * engine.scale_y
        for tol in CHECKPOINTS:
            if ok and rel <= tol and str(tol) not in crossings:
                crossings[str(tol)] = {
                    "seconds": now,
                    "wall": clock.wall(),
                    "objective": engine.objective,
                    "gap": rel,
                    "iterations": engine.iteration,
                    "violation": engine.violation,
                    "pcg": getattr(engine, "pcg_iterations", 0),
                }
        if budget and now > budget:
            break
    seconds, wall = clock.cpu(), clock.wall()
    trace_mb = None
    if trace:
        trace_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    out = {}
    if method == "working_set":
        out = {"working_set": int(engine.ws.sum()), "groups": int(engine.ws.size)}
        out["rounds"] = int(engine.rounds)
    return out | {
        "seconds": seconds,
        "wall": wall,
        "objective": engine.objective,
        "gap": engine.gap / engine.objective,
        "iterations": engine.iteration,
        "violation": engine.violation,
        "crossings": crossings,
        "trace_mb": trace_mb,
        "stalled": stalled,
    }


def _pyscnn(X, y, masks, gates, beta, cones):
    """pyscnn's augmented Lagrangian (``AL``, exact) or ``FISTA`` (gated), default settings.

    pyscnn minimises ``||r||^2 / (2n) + lam * sum ||.||``: ``lam = beta / n`` is this
    program divided by ``n``. Data columns are not rescaled (``unitize_data=False``:
    the same program), float64. Its objective and cone violation are evaluated here.
    """
    from scnn.metrics import Metrics
    from scnn.models import ConvexGatedReLU, ConvexReLU
    from scnn.optimize import optimize_model
    from scnn.regularizers import NeuronGL1
    from scnn.solvers import AL, RFISTA

    from plugins.convex._program import ConvexProgram, cone_violation, objective

    n = X.shape[0]
    model = ConvexReLU(gates) if cones else ConvexGatedReLU(gates)
    solver = AL(model) if cones else RFISTA(model)
    clock = _Clock()
    cvx, _ = optimize_model(
        model,
        solver,
        Metrics(),
        X,
        y,
        regularizer=NeuronGL1(beta / n),
        return_convex=True,
        unitize_data=False,
        dtype="float64",
    )
    seconds, wall = clock.cpu(), clock.wall()
    params = [np.asarray(p, dtype=float) for p in cvx.parameters]
    V = params[0][0].T
    Wn = params[1][0].T if len(params) > 1 else np.zeros_like(V)
    # pyscnn returns its gates reordered: the same set of patterns, in its order
    own = cvx.compute_activations(X) > 0
    if {c.tobytes() for c in own.T} != {c.tobytes() for c in masks.T}:
        raise RuntimeError("pyscnn solved over other patterns")
    program = ConvexProgram(X, y, own, beta, cones=cones)
    return {
        "seconds": seconds,
        "wall": wall,
        "objective": objective(program, V, Wn),
        "violation": cone_violation(program, V, Wn) if cones else 0.0,
    }


def child(spec):
    """Solve one program in this process; print one JSON line (module docstring)."""
    from core.threads import limit_threads

    with np.load(spec["npz"], allow_pickle=False) as data:
        X, y, masks, beta = data["X"], data["y"], data["masks"], float(data["beta"])
    # every BLAS library loaded before the limit (scipy's OpenBLAS is not numpy's: one
    # loaded inside limit_threads keeps its default threads)
    import scipy.linalg  # noqa: F401

    import plugins.convex  # noqa: F401

    with limit_threads(1):
        if spec["solver"].startswith("min_norm"):
            import cvxpy  # noqa: F401  (imported before the memory baseline)

            import plugins.convex._min_norm  # noqa: F401

            rss = _peak_rss_mb()
            out = _min_norm(X, y, masks, spec["solver"])
        elif spec["solver"] == "pyscnn":
            import scnn.optimize  # noqa: F401  (imported before the memory baseline)

            rss = _peak_rss_mb()
            with np.load(spec["npz"], allow_pickle=False) as data:
                gates = data["gates"]
            out = _pyscnn(X, y, masks, gates, beta, spec["cones"])
        elif spec["solver"] == "clarabel":
            import cvxpy  # noqa: F401  (imported before the memory baseline)

            rss = _peak_rss_mb()
            out = _clarabel(X, y, masks, beta, spec["cones"])
        else:
            import scipy.linalg  # noqa: F401  (imported before the memory baseline)

            import plugins.convex._first_order  # noqa: F401

            rss = _peak_rss_mb()
            out = _iterative(
                X, y, masks, beta, spec["cones"], spec["solver"], spec["budget"], spec["trace"]
            )
    out["rss_mb"] = _peak_rss_mb() - rss
    print(json.dumps(out))


def _run_child(npz, solver, cones, budget=0.0, trace=True):
    spec = {"npz": str(npz), "solver": solver, "cones": cones, "budget": budget, "trace": trace}
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_convex", "--child", json.dumps(spec)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{solver} child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------ the parent


def _interior_point(npz, cones):
    """The interior point timed untraced (tracemalloc's bookkeeping of every allocation
    cost it about 10 % at the largest size), its numpy peak from a second, traced run."""
    timed = _run_child(npz, "interior_point", cones, trace=False)
    timed["trace_mb"] = _run_child(npz, "interior_point", cones)["trace_mb"]
    return timed


def _rel(value, best):
    return (value - best) / best


def _rows_for(size, form, results, budget, label=None):
    n, d, P = size
    label = label or f"{form} n={n} d={d} P={P}"
    clar = results.get("clarabel")
    ipm = results["interior_point"]
    fo = results["first_order"]
    certified = [ipm["objective"]] + [c["objective"] for c in ipm["crossings"].values()]
    if clar is not None and clar["status"] == "optimal":
        certified.append(clar["objective"])
    best = min(certified)
    rows = []
    base_t = clar["seconds"] if clar else None
    base_mb = clar["rss_mb"] if clar and clar["rss_mb"] > 0 else None
    if clar:
        rows.append(
            row(
                f"{label}: Clarabel (cvxpy)",
                clar["seconds"],
                "s",
                note=f"f-best {_rel(clar['objective'], best):+.1e}, {clar['iterations']} its, "
                f"wall {clar['wall']:.3g} s, solve_time {clar['solve_time']:.3g} s, "
                f"viol {clar['violation']:.1e}, "
                f"RSS +{clar['rss_mb']:.0f} MB, {clar['status']}",
            )
        )
    else:
        rows.append(
            row(
                f"{label}: best known objective",
                best,
                "",
                note="interior_point at tol 1e-7 (Clarabel skipped: RELULAB_BENCH_CLARABEL_ALL=1)",
            )
        )
    direct = results.get("interior_point_direct")
    for tol in CHECKPOINTS:
        hit = ipm["crossings"].get(str(tol))
        if hit is None:
            continue
        slow = direct["crossings"].get(str(tol)) if direct else None
        if slow is not None:  # no Clarabel here: the formed Schur complement is the baseline
            rows.append(
                row(
                    f"{label}: interior_point schur=direct, certified {tol:g}",
                    slow["seconds"],
                    "s",
                    baseline=base_t,
                    note=f"f-best {_rel(slow['objective'], best):+.1e}, {slow['iterations']} its, "
                    f"wall {slow['wall']:.3g} s",
                )
            )
        pcg = f", {hit['pcg']} PCG its" if hit.get("pcg") else ""
        rows.append(
            row(
                f"{label}: interior_point, certified {tol:g}",
                hit["seconds"],
                "s",
                baseline=base_t or (slow["seconds"] if slow else None),
                note=f"f-best {_rel(hit['objective'], best):+.1e}, gap {hit['gap']:.1e}, "
                f"{hit['iterations']} its{pcg}, viol {hit['violation']:.1e}, "
                f"wall {hit['wall']:.3g} s"
                + ("; baseline: schur=direct" if slow and not base_t else ""),
            )
        )
    ws = results.get("working_set")
    if ws is not None:
        hit = ws["crossings"].get(str(CHECKPOINTS[0]))
        rows.append(
            row(
                f"{label}: working_set, certified {CHECKPOINTS[0]:g}",
                hit["seconds"] if hit else ws["seconds"],
                "s",
                baseline=base_t,
                note=f"f-best {_rel(ws['objective'], best):+.1e}, gap {ws['gap']:.1e}"
                f"{'' if hit else ' (NOT certified)'}, {ws['rounds']} rounds, "
                f"{ws['iterations']} its, {ws['working_set']}/{ws['groups']} groups in, "
                f"wall {ws['wall']:.3g} s, peak {ws['trace_mb']:.3g} MB",
            )
        )
    ext = results.get("pyscnn")
    if ext is not None:
        rows.append(
            row(
                f"{label}: pyscnn {'AL' if form == 'exact' else 'R-FISTA'} (default tol)",
                ext["seconds"],
                "s",
                baseline=base_t,
                note=f"f-best {_rel(ext['objective'], best):+.1e} (not certified), "
                f"viol {ext['violation']:.1e}, wall {ext['wall']:.3g} s",
            )
        )
    rows.append(
        row(
            f"{label}: interior_point peak memory",
            ipm["trace_mb"],
            "MB",
            baseline=base_mb,
            note=f"tracemalloc (numpy); RSS +{ipm['rss_mb']:.0f} MB; baseline: Clarabel RSS rise",
        )
    )
    fo_name = "first_order (FISTA)" if form == "gated" else "first_order (AL + FISTA)"
    hit = fo["crossings"].get(str(CHECKPOINTS[0]))
    if hit is not None:
        rows.append(
            row(
                f"{label}: {fo_name}, certified {CHECKPOINTS[0]:g}",
                hit["seconds"],
                "s",
                baseline=base_t,
                note=f"f-best {_rel(hit['objective'], best):+.1e}, {hit['iterations']} its, "
                f"peak {fo['trace_mb']:.3g} MB",
            )
        )
    else:
        rows.append(
            row(
                f"{label}: {fo_name}, |f-best|/best after {budget:g} s",
                max(abs(_rel(fo["objective"], best)), 1e-16),
                "",
                note=f"not certified to {CHECKPOINTS[0]:g}: certified gap {fo['gap']:.1e}"
                + (" (negative: an infeasible point)" if fo["gap"] < 0 else "")
                + f", viol {fo['violation']:.1e}, {fo['iterations']} its",
            )
        )
    return rows


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    sizes = QUICK_SIZES if quick else SIZES
    budget = 1.0 if quick else 10.0
    clarabel_all = os.environ.get("RELULAB_BENCH_CLARABEL_ALL") == "1"
    pyscnn = importlib.util.find_spec("scnn") is not None  # optional second baseline
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            X, y, masks, beta, gates = make_problem(*size, gates=True)
            npz = Path(tmp) / f"problem_{'_'.join(map(str, size))}.npz"
            np.savez(npz, X=X, y=y, masks=masks, beta=beta, gates=gates)
            for form, cones in (("exact", True), ("gated", False)):
                results = {
                    "interior_point": _interior_point(npz, cones),
                    "first_order": _run_child(npz, "first_order", cones, budget),
                }
                if size != SIZES[-1] or clarabel_all:
                    results["clarabel"] = _run_child(npz, "clarabel", cones)
                if cones and size != SIZES[-1]:
                    results["working_set"] = _run_child(npz, "working_set", cones)
                if cones and size[0] ** 2 * size[1] * size[2] > 1e9:  # where auto is pcg
                    results["interior_point_direct"] = _run_child(
                        npz, "interior_point_direct", cones, trace=False
                    )
                if pyscnn:
                    results["pyscnn"] = _run_child(npz, "pyscnn", cones)
                rows.extend(_rows_for(size, form, results, budget))
        for size in [] if quick else SPARSE_SIZES:
            # a sparse optimum (beta 100 times larger): where working sets pay
            X, y, masks, beta = make_problem(*size)
            npz = Path(tmp) / f"sparse_{'_'.join(map(str, size))}.npz"
            np.savez(npz, X=X, y=y, masks=masks, beta=SPARSE_FACTOR * beta)
            results = {
                "interior_point": _interior_point(npz, True),
                "first_order": _run_child(npz, "first_order", True, budget),
                "working_set": _run_child(npz, "working_set", True),
            }
            if size != SIZES[-1] or clarabel_all:
                results["clarabel"] = _run_child(npz, "clarabel", True)
            n, d, P = size
            label = f"exact n={n} d={d} P={P} beta x{SPARSE_FACTOR:g}"
            rows.extend(_rows_for(size, "exact", results, budget, label=label))
        for n, d in QUICK_MIN_NORM_SIZES if quick else MIN_NORM_SIZES:
            X, y, masks = make_min_norm_problem(n, d)
            npz = Path(tmp) / f"min_norm_{n}_{d}.npz"
            np.savez(npz, X=X, y=y, masks=masks, beta=0.0)
            ipm = _run_child(npz, "min_norm_ipm", False)
            clar = None
            if (n, d) != MIN_NORM_SIZES[-1] or clarabel_all:
                clar = _run_child(npz, "min_norm_clarabel", False)
            rows.extend(_min_norm_rows(n, d, masks.shape[1], ipm, clar))
    return rows


def _min_norm_rows(n, d, P, ipm, clar):
    """Rows of the skip min-norm program (Wang et al.): interior point vs Clarabel."""
    label = f"min-norm skip gated n={n} d={d} P={P}"
    rows = []
    if clar:
        rows.append(
            row(
                f"{label}: Clarabel (cvxpy)",
                clar["seconds"],
                "s",
                note=f"objective {clar['objective']:.10f}, {clar['iterations']} its, "
                f"{clar['status']}, RSS +{clar['rss_mb']:.0f} MB",
            )
        )
    agree = ""
    if clar:
        agree = f", vs Clarabel {_rel(ipm['objective'], clar['objective']):+.1e}"
    rows.append(
        row(
            f"{label}: min_norm interior point, certified 1e-8",
            ipm["seconds"],
            "s",
            baseline=clar["seconds"] if clar else None,
            note=f"objective {ipm['objective']:.10f}{agree}, gap {ipm['gap']:.1e}, "
            f"{ipm['iterations']} its, {ipm['status']}, RSS +{ipm['rss_mb']:.0f} MB",
        )
    )
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(json.loads(sys.argv[2]))
    else:
        sys.exit("usage: python -m bench.bench_convex --child SPEC_JSON (run: python -m bench)")
