r"""Entropic JKO step and Gibbs-kernel products: separable vs dense, on m x m grids.

Problem: Gradient-Work's ``sinus`` data (n = 15, bias), a grid of m x m positions in
[-2, 2]^2 with both signs (N = 2 m^2, one kernel block per sign, as the ``jko``
default), tau = 0.3, gamma = h^2 / 2 (h the spacing), prox ``scipy`` (Newton on the
dual), log domain, and a *fixed* 10 inner iterations per step (``inner_tol = 0``).
Grids m = 30, 50, 100 (``quick``: 30 and 50).

Rows
----
jko step
    Seconds per step, separable kernel with the dense kernel as baseline (ratio < 1:
    the separable step is faster). The dense kernel is run up to 50 x 50: at
    100 x 100 one sign's block has 10^4 x 10^4 entries, 0.8 GB per matrix, and the
    log-domain product keeps K and log K, 3.2 GB for both signs: above the plugin's
    2 GiB limit (``plugins.jko._kernel.MAX_DENSE_BYTES``) and more than a shared
    2-core box should hold, so that row is left out.
kernel products
    One product with the kernel of both blocks. Its flops: separable
    ``2 * 2 m^2 * 2 m = 8 m^3`` (two 1-D passes per block, two blocks), dense
    ``2 * 2 (m^2)^2 = 4 m^4``. The rate is compared with a measured float64 matmul of
    the shape of one separable pass, ``(m, m) @ (m, m)`` (``2 m^3`` flops); the
    dense product is a matrix-vector product, memory-bound, and is compared with
    the same matmul. ``log`` rows time ``log(K exp(u))`` as the iteration runs it
    (a shifted product with exact repair of underflowed entries), with the flops of
    the plain product; ``log, pure log-sum-exp`` rows time the textbook log-sum-exp
    over all ``m`` terms (the repair's fallback) for comparison.

Times are best-of-k after a warm-up, over two passes (:mod:`bench.timing`).
"""

from functools import partial

import numpy as np

from core.components import Problem
from core.params import validate_params

from .timing import best_of, best_of_passes, row

INNER = 10


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


def _jko(m, kernel):
    from plugins.jko import JKO

    h = 4.0 / (m - 1)
    params = validate_params(
        "algorithm (jko)",
        {"tau": 0.3, "gamma": 0.5 * h * h, "kernel": kernel, "inner_tol": 0.0, "max_inner": INNER},
        JKO.params,
    )
    algo = JKO(**params)
    algo.setup(_problem(m))
    return algo


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


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    grids = (30, 50) if quick else (30, 50, 100)
    dense_max = 50
    repeats = 2 if quick else 3
    rows = []
    for m in grids:
        N = 2 * m * m
        size = f"{m}x{m} grid x 2 signs, N={N}, n=15, {INNER} inner iterations"
        kinds = ["separable"] + (["dense"] if m <= dense_max else [])
        algos = {kind: _jko(m, kind) for kind in kinds}
        step_times = best_of_passes(
            {k: a.step for k, a in algos.items()}, repeats=repeats, warmup=1
        )
        base = step_times.get("dense")
        for kind in kinds:
            rows.append(
                row(
                    f"jko step {m}x{m}, {kind} kernel",
                    step_times[kind],
                    "s",
                    baseline=base if kind == "separable" else None,
                    note=size + ("; baseline: dense" if base and kind == "separable" else ""),
                )
            )
        if "dense" not in kinds:
            rows.append(
                row(
                    f"jko step {m}x{m}, dense kernel",
                    None,
                    "s",
                    note="skipped: K and log K of both signs need "
                    f"{16 * 2 * (m * m) ** 2 / 1e9:.1f} GB",
                )
            )

        matmul = _matmul_rate(m, repeats)
        rows.append(
            row(
                f"matmul ({m},{m})x({m},{m}) float64",
                matmul,
                "GFLOP/s",
                note="baseline of the kernel-product rates",
            )
        )
        rng = np.random.default_rng(1)
        u = np.log(rng.random(N)) + algos["separable"].log_p
        for kind, algo in algos.items():
            K = algo.kernel_
            flops = K.flops()
            products = {
                "plain": partial(K.apply, np.exp(u)),
                "log": partial(K.log_apply, u),
                "log, pure log-sum-exp": partial(_pure_lse(K), u),
            }
            times = best_of_passes(products, repeats=max(repeats, 5), warmup=1)
            for label, t in times.items():
                rate = flops / t / 1e9
                rows.append(
                    row(
                        f"K product {m}x{m}, {kind}, {label}",
                        rate,
                        "GFLOP/s",
                        baseline=matmul,
                        note=f"{1e3 * t:.3g} ms, {flops / 1e6:.3g} MFLOP per product;"
                        " ratio = fraction of matmul",
                    )
                )
    return rows


if __name__ == "__main__":  # python -m bench.bench_jko [--quick]
    import sys

    for r in run("--quick" in sys.argv):
        value = "" if r["value"] is None else f"{r['value']:.4g}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3g}"
        print(f"{r['name']:<48} {value:>10} {r['unit']:<8} {ratio:>8}  {r['note']}")
