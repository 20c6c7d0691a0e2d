r"""Entropic JKO steps: converged vs today's default, large grids, kernel products, prox.

Problem: Gradient-Work's ``sinus`` data (n = 15, bias), a grid of m x m positions in
[-2, 2]^2 with both signs (N = 2 m^2, one kernel block per sign, as the ``jko``
default), tau = 0.3, gamma = h^2 / 2 (h the spacing; the flagship's 0.01 at m = 30),
log domain, separable kernel.

Rows
----
jko step, today's default (baseline)
    Peyré's scaling iterations as the flagship ran them until now: a fixed 10
    iterations from b = 1 (``solver=sinkhorn max_inner=10 inner_tol=0
    warm_start=False masses=prox``), each calling the ``scipy`` prox.
jko step, converged (``solver=newton``, the default)
    Newton on the step's n-dimensional dual to ``inner_tol = 1e-9``, warm-started
    from the previous step's multiplier and Hessian. Target of issue 18: masses
    within 1e-6 (relative L1) of the converged step in at most 3x the baseline's
    time. ``cold``: the same from lambda = 0 without a Hessian (a first step).
jko step, sinkhorn warm-started to 1e-7
    Peyré's iterations started from the previous step's b, stopped on the marginal
    errors (m = 30, not ``quick``: thousands of iterations), plain and over-relaxed
    (``relaxation=1.8``).
    Every step row is timed on the same mid-flow step (step 6 of the converged flow,
    each variant warm-started by its own step 5), and its note gives the relative L1
    distance of its masses from that step iterated to rounding.
large grids
    The converged step at 200 x 200 and 300 x 300 (not ``quick``) with the peak of
    memory allocated during one step (tracemalloc: numpy's arrays), against today's
    default at 200 x 200 (one timed call). Where the time went at 200 x 200 before
    issue 18 (1.2 s per step on a quiet machine, 27 times 100 x 100's for 4 times
    the positions), by cProfile: (1) the scipy prox's Newton iterated at the
    rounding floor of its residual (the cancellation in ``A p`` between 80 000
    masses of both signs leaves ~1e-8 against its tolerance 1e-9): 78 iterations per
    prox instead of 3, about two thirds of the step; it now also stops once a
    Newton step changes no log-mass by more than its tolerance. (2) The kernel
    products: ``np.moveaxis`` then ``@`` on 4-D stacks made numpy run strided or
    many small products, 10 to 20 times below the rate of one BLAS product; each
    axis is now one product on a contiguous ``(m, L R)`` view. Where it goes now
    (converged step, 200 x 200, 0.13 s on one thread): 5 evaluations of the step's
    dual, each two log-domain kernel products (exp, one BLAS product and log per
    axis), three quarters of the step; warm steps reuse the previous Hessian, so
    the ``n`` stacked products of a Hessian are rarely paid.
kernel products
    One product with the kernel of both blocks, separable vs dense, plain and log
    domain, as a fraction of a measured float64 matmul ``(m, m) @ (m, m)``.
prox 30 x 30
    One KL prox at the flagship's first step: ``torch`` (the same dual Newton in
    torch float64 on CPU, one thread) against ``scipy``, with their agreement. Per
    Newton iteration it is a dozen small tensor operations, each with ~10 us of
    torch overhead, hence the ratio at this size; the same code runs on CUDA.

Every row runs on one BLAS thread (``threadpoolctl``; torch: one thread), as
``run.threads=0`` runs problems this small: on the shared 2-core machine, two
threads made these products of a few MFLOP 2 to 5 times slower, and noisier.
Times are best-of-k after a warm-up, over two passes (:mod:`bench.timing`).
"""

import time
import tracemalloc
from functools import partial

import numpy as np

from core.components import Problem
from core.params import validate_params

from .timing import best_of, best_of_passes, row

TODAY = {
    "solver": "sinkhorn",
    "max_inner": 10,
    "inner_tol": 0.0,
    "warm_start": False,
    "masses": "prox",
}
CONVERGED = {}
COLD = {"warm_start": False}
SINKHORN_WARM = {"solver": "sinkhorn", "max_inner": 5000, "inner_tol": 1e-7, "masses": "coupling"}
SINKHORN_RELAXED = {**SINKHORN_WARM, "relaxation": 1.8}
EXACT = {"inner_tol": 0.0, "max_inner": 30, "warm_start": False}


def _problem(m, extent=2.0, n=15):
    x = np.linspace(-0.5, 0.5, n)
    y = np.sin(10 * x - np.pi / 2) + 0.2 * x - 0.5
    t = np.linspace(-extent, extent, m)
    w, b = np.meshgrid(t, t, indexing="ij")
    G = np.stack([w.ravel(), b.ravel()])
    P = G.shape[1]
    return Problem(
        X=np.c_[x, np.ones(n)],
        Y=y,
        W0=np.hstack([G, G]),
        a0=np.r_[np.ones(P), -np.ones(P)],
        bias=True,
    )


def _jko(m, problem=None, kernel="separable", **options):
    from plugins.jko import JKO

    h = 4.0 / (m - 1)
    params = validate_params(
        "algorithm (jko)",
        {"tau": 0.3, "gamma": 0.5 * h * h, "kernel": kernel, **options},
        JKO.params,
    )
    algo = JKO(**params)
    algo.setup(problem if problem is not None else _problem(m))
    return algo


def _mid_flow(m, variants, steps=5):
    """Each variant ready to take step ``steps + 1`` of the converged flow, warm from its own.

    Returns the algorithms, a callable per variant that restores that state and
    steps, and the exact masses of that step.
    """
    problem = _problem(m)
    flow = _jko(m, problem)
    for _ in range(steps - 1):
        flow.step()
    before = flow.state_dict()
    flow.step()
    start = flow.state_dict()
    algos, calls = {}, {}
    for name, options in variants.items():
        algo = _jko(m, problem, **options)
        algo.load_state_dict(before if options.get("warm_start", True) else start)
        if options.get("warm_start", True):
            algo.step()  # its own warm start from step `steps`
        algo.log_p = start["log_p"].copy()
        state = algo.state_dict()

        def call(algo=algo, state=state):
            algo.load_state_dict(state)
            algo.step()

        algos[name], calls[name] = algo, call
    exact = _jko(m, problem, **EXACT)
    exact.load_state_dict(start)
    exact.step()
    return algos, calls, exact.p


def _rel_l1(p, ref):
    return float(np.sum(np.abs(p - ref)) / np.sum(ref))


def _step_rows(m, repeats, sinkhorn_warm):
    variants = {"today": TODAY, "converged": CONVERGED, "cold": COLD}
    slow = ("sinkhorn_warm", "sinkhorn_relaxed") if sinkhorn_warm else ()
    if sinkhorn_warm:
        variants["sinkhorn_warm"] = SINKHORN_WARM
        variants["sinkhorn_relaxed"] = SINKHORN_RELAXED
    algos, calls, exact = _mid_flow(m, variants)
    timed = {k: v for k, v in calls.items() if k not in slow}
    times = best_of_passes(timed, repeats=repeats, warmup=1)
    for name in slow:  # hundreds to thousands of iterations: one call
        times[name] = best_of(calls[name], repeats=1, warmup=0)
    base = times["today"]
    labels = {
        "today": "today's default (sinkhorn, 10 iterations from b=1)",
        "converged": "converged (newton, warm; the default)",
        "cold": "converged from cold (newton, lambda=0)",
        "sinkhorn_warm": "sinkhorn warm-started, marginal errors < 1e-7",
        "sinkhorn_relaxed": "sinkhorn warm, over-relaxed (omega=1.8), errors < 1e-7",
    }
    rows = []
    for name in variants:
        algo = algos[name]
        calls[name]()
        s = algo.scalars()
        note = (
            f"{m}x{m} x 2 signs, N={2 * m * m}; masses {_rel_l1(algo.p, exact):.1e} from the "
            f"converged step (relative L1); {s['inner_iters']} inner iterations, "
            f"marginal violation {s['violation']:.1e}"
        )
        if name == "today":
            note += "; baseline"
        rows.append(
            row(
                f"jko step {m}x{m}, {labels[name]}",
                times[name],
                "s",
                baseline=None if name == "today" else base,
                note=note,
            )
        )
    return rows


def _peak_bytes(fn):
    """Peak bytes allocated (tracemalloc, numpy's arrays included) during ``fn()``."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _large_rows(repeats):
    rows = []
    base = None
    for m in (200, 300):
        variants = {"converged": CONVERGED}
        if m == 200:
            variants["today"] = TODAY
        algos, calls, exact = _mid_flow(m, variants, steps=3)
        t = best_of(calls["converged"], repeats=repeats, warmup=1)
        peak = _peak_bytes(calls["converged"])
        s = algos["converged"].scalars()
        if m == 200:
            start = time.perf_counter()
            calls["today"]()
            base = time.perf_counter() - start
            rows.append(
                row(
                    "jko step 200x200, today's default (sinkhorn, 10 iterations)",
                    base,
                    "s",
                    note=f"one call; masses {_rel_l1(algos['today'].p, exact):.1e} from the "
                    "converged step; baseline of the large-grid rows",
                )
            )
        rows.append(
            row(
                f"jko step {m}x{m}, converged (newton, warm)",
                t,
                "s",
                baseline=base,
                note=f"N={2 * m * m}; {s['inner_iters']} Newton iterations, masses "
                f"{_rel_l1(algos['converged'].p, exact):.1e} from the converged step; "
                f"peak memory during a step {peak / 2**20:.0f} MiB",
            )
        )
    return rows


def _matmul_rate(m, repeats):
    rng = np.random.default_rng(0)
    A, B = rng.random((m, m)), rng.random((m, m))
    return 2.0 * m**3 / best_of(lambda: A @ B, repeats=max(repeats, 20), warmup=3) / 1e9


def _pure_lse(kernel):
    """``log(K exp(u))`` by log-sum-exp over every term (no shifted product)."""
    from plugins.jko._kernel import logsumexp

    def apply(u):
        out = np.empty_like(u)
        for idx, k in kernel.blocks:
            if k.kind == "dense":
                out[idx] = np.concatenate(
                    [logsumexp(k.log_matrix[s : s + 512] + u[idx]) for s in range(0, k.size, 512)]
                )
                continue
            U = k._scatter(u[idx], -np.inf)
            for axis, Lk in enumerate(k._log1d):
                moved = np.moveaxis(U, axis, -1)
                U = np.moveaxis(logsumexp(moved[..., None, :] + Lk), -1, axis)
            out[idx] = k._gather(U)
        return out

    return apply


def _kernel_rows(m, repeats, dense):
    rows = []
    matmul = _matmul_rate(m, repeats)
    rows.append(
        row(
            f"matmul ({m},{m})x({m},{m}) float64",
            matmul,
            "GFLOP/s",
            note="baseline of the kernel-product rates",
        )
    )
    kinds = ["separable"] + (["dense"] if dense else [])
    N = 2 * m * m
    rng = np.random.default_rng(1)
    u = np.log(rng.random(N))
    for kind in kinds:
        K = _jko(m, kernel=kind).kernel_
        flops = K.flops()
        products = {
            "plain": partial(K.apply, np.exp(u)),
            "log": partial(K.log_apply, u),
            "log, pure log-sum-exp": partial(_pure_lse(K), u),
        }
        times = best_of_passes(products, repeats=max(repeats, 5), warmup=1)
        for label, t in times.items():
            rows.append(
                row(
                    f"K product {m}x{m}, {kind}, {label}",
                    flops / t / 1e9,
                    "GFLOP/s",
                    baseline=matmul,
                    note=f"{1e3 * t:.3g} ms, {flops / 1e6:.3g} MFLOP per product;"
                    " ratio = fraction of matmul",
                )
            )
    return rows


def _prox_rows(repeats):
    """scipy vs torch dual Newton on the flagship's first prox (K b with b = 1)."""
    from plugins.jko import build_prox

    try:
        import torch  # noqa: F401
    except ImportError:
        return [row("prox 30x30, torch", None, "s", note="skipped: torch not installed")]
    import torch

    algo = _jko(30)
    log_Kb = algo.kernel_.log_apply(np.zeros_like(algo.log_p))
    proxes = {name: build_prox(name) for name in ("scipy", "torch")}
    solves = {k: partial(P.solve, algo.energy, log_Kb, algo.sigma) for k, P in proxes.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as run.threads=0 does for a run this small
    try:
        times = best_of_passes(solves, repeats=max(repeats, 5), warmup=1)
        results = {k: f() for k, f in solves.items()}
    finally:
        torch.set_num_threads(threads)
    agree = float(
        np.max(np.abs(results["torch"].p - results["scipy"].p)) / results["scipy"].p.max()
    )
    return [
        row("prox 30x30 (first flagship step), scipy dual Newton", times["scipy"], "s"),
        row(
            "prox 30x30 (first flagship step), torch dual Newton (CPU, float64)",
            times["torch"],
            "s",
            baseline=times["scipy"],
            note=f"max |p_torch - p_scipy| / max p = {agree:.1e}; "
            f"{results['torch'].n_iter} vs {results['scipy'].n_iter} Newton iterations; "
            "one thread each",
        ),
    ]


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`), on one BLAS thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _run(quick)


def _run(quick):
    repeats = 2 if quick else 3
    rows = []
    for m in (30,) if quick else (30, 100):
        rows += _step_rows(m, repeats, sinkhorn_warm=m == 30 and not quick)
    if not quick:
        rows += _large_rows(repeats)
    for m in (30,) if quick else (30, 100):
        rows += _kernel_rows(m, repeats, dense=m <= 50)
    rows += _prox_rows(repeats)
    return rows


if __name__ == "__main__":  # python -m bench.bench_jko [--quick]
    import sys

    for r in run("--quick" in sys.argv):
        value = "" if r["value"] is None else f"{r['value']:.4g}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g}"
        print(f"{r['name']:<64} {value:>10} {r['unit']:<8} {ratio:>8}  {r['note']}")
