r"""Optimal assignments between equal-size point sets, reused while certified optimal.

Between two uniform empirical measures with the same number :math:`n` of atoms, the
squared 2-Wasserstein distance is an assignment problem (the vertices of the set of
transport plans with uniform marginals are the permutation matrices scaled by
:math:`1/n`, Birkhoff-von Neumann):

.. math::

    \min_{\sigma \in S_n} \sum_i C_{i \sigma(i)}, \qquad C_{ij} = |x_i - y_j|^2 .

Row constants do not change the minimiser, so :func:`assignment_costs` drops
:math:`|x_i|^2` and uses :math:`C_{ij} = |y_j|^2 - 2 x_i \cdot y_j`.

Certificate
-----------
A permutation :math:`\sigma` is optimal if and only if no cyclic exchange of
assignments lowers the cost: the exchange graph on the columns, with an edge
:math:`k \to j` of length

.. math::

    \ell_{kj} = C_{\sigma^{-1}(k)\, j} - C_{\sigma^{-1}(k)\, k}

(row :math:`\sigma^{-1}(k)` moves from column :math:`k` to column :math:`j`), has no
negative cycle; equivalently there are potentials :math:`v` with
:math:`v_j \le v_k + \ell_{kj}` for all :math:`k, j` (the dual variables of the
assignment linear program with :math:`u_i = C_{i\sigma(i)} - v_{\sigma(i)}`; R. K.
Ahuja, T. L. Magnanti, J. B. Orlin, *Network Flows*, 1993, negative cycle and reduced
cost optimality conditions, Theorems 9.1 and 9.3). :func:`certify_assignment` runs
Bellman-Ford relaxations, one :math:`O(n^2)` pass each, from the potentials of the
last certificate: while the points move a little, the old potentials need a few
passes at most, and a cycle in the predecessor graph proves a negative cycle, so the
permutation is improvable (B. V. Cherkassky, A. V. Goldberg, "Negative-cycle detection
algorithms", Math. Program. 85, 1999). Only then is the problem solved again
(:func:`solve_assignment`, :func:`scipy.optimize.linear_sum_assignment`).

A permutation certified with tolerance ``tol`` (every :math:`v_k + \ell_{kj} \ge v_j -
tol`) costs at most :math:`n \cdot tol` more than an optimal one.
"""

import math

import numpy as np

__all__ = [
    "assignment_costs",
    "solve_assignment",
    "certify_assignment",
    "CertifiedAssignment",
    "OPTIMAL",
    "IMPROVABLE",
    "UNDECIDED",
]

OPTIMAL, IMPROVABLE, UNDECIDED = "optimal", "improvable", "undecided"

RTOL = 1e-12
"""Tolerance of the certificate, relative to the size of the cost entries."""

CHECK_ROUNDS = 50
"""Most Bellman-Ford passes spent certifying a reused permutation before solving again."""


def assignment_costs(X, Y, out=None):
    r"""The assignment costs of ``X`` to ``Y`` and a tolerance for certificates.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        The points to assign (rows).
    Y : ndarray, shape (n, d)
        The points they are assigned to (columns).
    out : ndarray, shape (n, n), float64, C-contiguous, optional
        Memory to hold ``C`` (as its transpose), reused between calls: a fresh
        ``n x n`` array costs page faults comparable to the arithmetic.

    Returns
    -------
    C : ndarray, shape (n, n), float64
        :math:`C_{ij} = |y_j|^2 - 2 x_i \cdot y_j = |x_i - y_j|^2 - |x_i|^2`: the squared
        distances up to a constant per row, which no assignment changes.
    tol : float
        :data:`RTOL` times a bound on :math:`|C_{ij}|` (the rounding scale of ``C``).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    y2 = np.einsum("jd,jd->j", Y, Y)
    # Fortran order: the reductions over rows of certify_assignment read contiguous memory
    C = np.matmul(-2.0 * Y, X.T, out=out).T  # scaling Y by -2 is exact
    C += y2[None, :]
    if X.size and Y.size:
        x_max = math.sqrt(np.einsum("id,id->i", X, X).max())
        scale = y2.max() + 2.0 * x_max * math.sqrt(y2.max())
    else:
        scale = 0.0
    return C, RTOL * max(scale, np.finfo(np.float64).tiny)


def solve_assignment(C):
    """An optimal permutation for the costs ``C`` (n, n): ``perm[i]`` is row i's column."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(C)
    perm = np.empty(C.shape[0], dtype=np.intp)
    perm[rows] = cols
    return perm


def certify_assignment(C, perm, potentials, tol, max_rounds, work=None):
    r"""Decide whether ``perm`` is optimal for ``C`` by Bellman-Ford on its exchange graph.

    Parameters
    ----------
    C : ndarray, shape (n, n)
        Assignment costs (:func:`assignment_costs`).
    perm : ndarray of int, shape (n,)
        The permutation to check: row ``i`` goes to column ``perm[i]``.
    potentials : ndarray, shape (n,)
        Starting column potentials :math:`v` (those of the last certificate, or zeros).
    tol : float
        A relaxation counts only when it lowers a potential by more than ``tol``.
    max_rounds : int
        Most relaxation passes (each :math:`O(n^2)`).
    work : ndarray, shape (n, n), optional
        Scratch memory of ``C``'s layout, reused between calls.

    Returns
    -------
    status : str
        :data:`OPTIMAL` (the returned potentials satisfy every
        :math:`v_j \le v_k + \ell_{kj} + tol`, so ``perm`` is optimal within
        :math:`n \cdot tol`), :data:`IMPROVABLE` (a negative cycle was found) or
        :data:`UNDECIDED` (``max_rounds`` passes were not enough).
    potentials : ndarray, shape (n,)
        The potentials reached.
    """
    n = perm.size
    v = np.array(potentials, dtype=np.float64)
    if n <= 1:
        return OPTIMAL, v
    rows = np.arange(n)
    if work is None:
        work = np.empty_like(C)  # same memory order as C
    pred = np.full(n, -1, dtype=np.intp)
    for _ in range(max_rounds):
        # relaxation of every edge: min over rows i of v_sigma(i) + C_ij - C_i,sigma(i)
        u = C[rows, perm] - v[perm]
        np.subtract(C, u[:, None], out=work)
        best = work.argmin(axis=0)
        candidate = work[best, rows]
        lower = candidate < v - tol
        if not lower.any():
            return OPTIMAL, v
        v[lower] = candidate[lower]
        pred[lower] = perm[best[lower]]
        if _has_cycle(pred):
            return IMPROVABLE, v
    return UNDECIDED, v


def _has_cycle(pred):
    """Whether the predecessor graph (``pred[j]``, -1 for none) has a cycle.

    Pointer doubling: after ``ceil(log2(n + 1))`` squarings every chain that ends at a
    node without predecessor has reached the sink ``n``; one that has not is caught
    in a cycle.
    """
    n = pred.size
    nxt = np.append(np.where(pred < 0, n, pred), n)
    for _ in range(max(1, math.ceil(math.log2(n + 1)))):
        nxt = nxt[nxt]
    return bool((nxt[:n] != n).any())


class CertifiedAssignment:
    """Optimal assignment of neurons to the previous ones within groups, reused while optimal.

    Each call assigns the rows of ``X`` to the rows of ``Y`` (the neurons of the
    current and of the previous network) within each group of ``labels`` (neurons of
    one sign). The permutation of the previous call is kept while
    :func:`certify_assignment` proves it optimal; otherwise the group is solved again
    with :func:`solve_assignment`. When ``Y`` or ``labels`` change (a new proximal
    problem) the candidate is the identity, optimal at ``X = Y``.

    Attributes
    ----------
    perm : ndarray of int, shape (m,) or None
        The last permutation: neuron ``r`` goes to previous neuron ``perm[r]``, of
        the same group.
    n_solves, n_certified : int
        Groups solved again, and groups whose candidate was certified, so far.
    """

    def __init__(self, max_rounds=CHECK_ROUNDS):
        self.max_rounds = max_rounds
        self.perm = None
        self.potentials = None
        self._key = None
        self._buffers = {}
        self.n_solves = 0
        self.n_certified = 0

    def __call__(self, X, Y, labels):
        """The optimal permutation (m,) of ``X`` (m, d) to ``Y`` (m, d) within ``labels`` (m,)."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        labels = np.asarray(labels)
        m = labels.size
        if not self._same_problem(Y, labels):
            self._key = (Y.copy(), labels.copy())
            self._buffers = {}
            self.perm = np.arange(m, dtype=np.intp)
            self.potentials = np.zeros(m)
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            if idx.size > 1:
                self._assign_group(X[idx], Y[idx], idx)
        return self.perm.copy()

    def _same_problem(self, Y, labels):
        if self._key is None:
            return False
        Y0, labels0 = self._key
        return (
            Y0.shape == Y.shape
            and labels0.shape == labels.shape
            and np.array_equal(Y0, Y)
            and np.array_equal(labels0, labels)
        )

    def _assign_group(self, X, Y, idx):
        n = idx.size
        if n not in self._buffers:  # groups of one size share memory, kept for the problem
            self._buffers[n] = (np.empty((n, n)), np.empty((n, n)).T)  # C.T, work (F order)
        costs, work = self._buffers[n]
        C, tol = assignment_costs(X, Y, out=costs)
        local = np.searchsorted(idx, self.perm[idx])
        v = self.potentials[idx]
        status, v = certify_assignment(C, local, v, tol, self.max_rounds, work=work)
        if status == OPTIMAL:
            self.n_certified += 1
        else:
            self.n_solves += 1
            local = solve_assignment(C)
            # potentials for the next certificate (converge within n passes: no negative cycle)
            _, v = certify_assignment(C, local, v, tol, n + 1, work=work)
        self.perm[idx] = idx[local]
        self.potentials[idx] = v

    def state_dict(self):
        """The cached problem, permutation and potentials (arrays); ``{}`` before any call."""
        if self._key is None:
            return {}
        Y, labels = self._key
        return {"Y": Y, "labels": labels, "perm": self.perm, "potentials": self.potentials}

    def load_state_dict(self, state):
        if not state:
            self._key = self.perm = self.potentials = None
            return
        self._key = (np.asarray(state["Y"], dtype=np.float64), np.asarray(state["labels"]))
        self.perm = np.asarray(state["perm"], dtype=np.intp).copy()
        self.potentials = np.asarray(state["potentials"], dtype=np.float64).copy()
