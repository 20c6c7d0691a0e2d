r"""Proximal-point steps with each distance plugin: seconds per outer step, plan reuse.

Problem: a toy quadratic loss of the neurons, so that the distance dominates,

.. math::

    J_k(W) = \frac{1}{2m} \|W - T\|_F^2 + \frac{1}{\gamma} D(W, W_k),

``W`` (d, m) with d = 3 (two inputs and a bias), second-layer signs alternating
(+, -, +, ...: the groups are not contiguous), ``W_0`` standard normal and targets
``T = W_0 + 0.5 N(0, I)``, gamma = 0.2 (one proximal step moves a neuron about 1/11 of
the way to its target, so a few optimal assignments change per step). Each outer step
is a *fixed* 20 inner iterations of plain gradient descent from ``W_k`` (learning rate
``0.5 m / (1 + 2 / gamma)``, float64), ``D`` evaluated at every inner iterate; 3 outer
steps, m = 100, 300, 1000 (``quick``: 2 outer steps of 5 iterations, m = 50, 100).

Rows
----
seconds per outer step, for each distance
    ``frobenius``; ``sliced`` (1000 directions, drawn once per outer step);
    ``wasserstein`` solved exactly at every inner iteration (``reuse_plan=False``:
    ``ot.emd2`` per sign group) and with plan reuse (``reuse_plan=True``, the
    default: the last permutation kept while a Bellman-Ford certificate proves it
    optimal), which has the exact one as baseline (ratio < 1: faster). Its note
    gives the inner iterations whose group had to be solved again and the largest
    differences from the exact run over the whole trajectory: of the distance at
    every inner iterate and of the final ``W``; above 1e-8 the benchmark fails.
    A row times ``scipy.optimize.linear_sum_assignment`` re-solving every iteration,
    to separate what the faster solver and what the reuse give.

One thread (:func:`core.threads.limit_threads`), as a run of this size gets
(``run.threads = 0``). Times are the best over two passes of k calls (:mod:`bench.timing`;
full mode: k = 3, k = 1 for ``sliced`` and the exact solve, whose trajectory takes
seconds at m = 1000); each timed call runs the whole trajectory with a fresh distance,
divided by the outer steps.
"""

from functools import partial

import numpy as np

from core.params import validate_params
from core.threads import limit_threads

from .timing import best_of_passes, row

D_IN = 3
GAMMA = 0.2
TOLERANCE = 1e-8
EXACT = "wasserstein exact (ot.emd2 every iteration)"
SLOW = ("sliced", EXACT)


def _toy(m, seed=0):
    rng = np.random.default_rng(seed)
    W0 = rng.standard_normal((D_IN, m))
    T = W0 + 0.5 * rng.standard_normal((D_IN, m))
    a = np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
    return W0, T, a


def _distance(name, **options):
    from plugins.proxpoint import Frobenius, SlicedWasserstein, Wasserstein

    cls = {"frobenius": Frobenius, "wasserstein": Wasserstein, "sliced": SlicedWasserstein}[name]
    distance = cls(**validate_params(f"distance ({name})", options, cls.params))
    distance.setup(None, np.random.default_rng(0))
    return distance


class _LSAEveryTime:
    """Reference: the permutation solved by linear_sum_assignment at every call."""

    def setup(self, problem, rng):
        pass

    def value(self, W, W_prev, a):
        import torch

        from plugins.proxpoint._assignment import assignment_costs, solve_assignment
        from plugins.proxpoint._distances import sign_groups

        labels = sign_groups(a.numpy())
        X, Y = W.detach().numpy().T, W_prev.numpy().T
        perm = np.arange(labels.size)
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            perm[idx] = idx[solve_assignment(assignment_costs(X[idx], Y[idx])[0])]
        return (W - W_prev[:, torch.as_tensor(perm)]).square().sum() / labels.size


def _trajectory(make_distance, W0, T, a, outer, inner):
    """Run the toy proximal-point loop; returns the final W and every inner distance."""
    import torch

    m = W0.shape[1]
    lr = 0.5 * m / (1 + 2 / GAMMA)
    distance = make_distance()
    W = torch.tensor(W0, requires_grad=True)
    target, a = torch.tensor(T), torch.tensor(a)
    values = []
    for _ in range(outer):
        W_prev = W.detach().clone()
        for _ in range(inner):
            D = distance.value(W, W_prev, a)
            J = 0.5 * (W - target).square().sum() / m + D / GAMMA
            (grad,) = torch.autograd.grad(J, W)
            with torch.no_grad():
                W -= lr * grad
            values.append(float(D.detach()))
    return W.detach().numpy(), np.array(values), distance


def run(quick):
    """Rows for ``python -m bench`` (see :mod:`bench.__main__`)."""
    with limit_threads(1):
        return _rows(quick)


def _rows(quick):
    sizes = (50, 100) if quick else (100, 300, 1000)
    outer, inner = (2, 5) if quick else (3, 20)
    # full: a trajectory of the slow candidates (SLOW) takes seconds at m = 1000
    repeats, slow_repeats = (2, 2) if quick else (3, 1)
    rows = []
    for m in sizes:
        W0, T, a = _toy(m)
        makers = {
            "frobenius": lambda: _distance("frobenius"),
            "sliced": lambda: _distance("sliced"),
            EXACT: lambda: _distance("wasserstein", reuse_plan=False),
            "wasserstein, linear_sum_assignment every iteration": _LSAEveryTime,
            "wasserstein plan reuse": lambda: _distance("wasserstein", reuse_plan=True),
        }
        exact_W, exact_D, _ = _trajectory(makers[EXACT], W0, T, a, outer, inner)
        reuse_W, reuse_D, reused = _trajectory(
            makers["wasserstein plan reuse"], W0, T, a, outer, inner
        )
        gap_D = float(np.abs(reuse_D - exact_D).max())
        gap_W = float(np.abs(reuse_W - exact_W).max())
        if not (gap_D <= TOLERANCE and gap_W <= TOLERANCE):
            raise AssertionError(
                f"m={m}: plan reuse differs from the exact solve by {gap_D:.3g} (distance), "
                f"{gap_W:.3g} (final W)"
            )
        fns = {
            name: partial(_trajectory, make, W0, T, a, outer, inner)
            for name, make in makers.items()
        }
        warmup = 1 if quick else 0  # the trajectories above imported and warmed up
        slow = {name: fns.pop(name) for name in SLOW}
        seconds = best_of_passes(slow, repeats=slow_repeats, warmup=warmup)
        seconds.update(best_of_passes(fns, repeats=repeats, warmup=warmup))
        size = f"m={m} d={D_IN}, {outer} outer x {inner} inner"
        exact = seconds[EXACT] / outer
        assignment = reused.assignment_
        calls = assignment.n_solves + assignment.n_certified
        for name in makers:
            t = seconds[name]
            note = size
            baseline = None
            if name.startswith("wasserstein") and "exact" not in name:
                baseline = 1e3 * exact
            if name == "wasserstein plan reuse":
                note = (
                    f"{size}; {assignment.n_solves} of {calls} group checks re-solved; "
                    f"max |D - D_exact| = {gap_D:.1e}, max |W - W_exact| = {gap_W:.1e}"
                )
            rows.append(
                row(f"proxpoint outer step, {name}", 1e3 * t / outer, "ms", baseline, note=note)
            )
    return rows
