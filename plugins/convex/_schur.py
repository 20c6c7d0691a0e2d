r"""Matrix-free solves with the interior point's Schur complement (exact form).

The Newton systems of :class:`plugins.convex._first_order.ConicInteriorPoint`
reduce, by the Woodbury identity, to the ``n x n`` system

.. math::

    N w = u, \qquad N = I + \sum_p D_p X C_p X^\top D_p,

one term per pattern ``p`` (``D_p = diag(|M_p|)``, ``X`` of shape ``(n, d)``, ``C_p``
the ``(d, d)`` positive semi-definite sum of the ``z`` blocks :math:`[B_j^{-1}]_{zz}`
of the pattern's groups). Forming ``N`` costs :math:`n^2 P d` multiply-adds (a
symmetric rank-``Pd`` update); a product :math:`N v` costs :math:`2 n d P` (two
``(n, d) x (d, P)`` matmuls and ``P`` ``d x d`` matvecs), about ``n / 2`` times less.

This module solves with ``N`` by preconditioned conjugate gradients (:func:`pcg`)
with a *split* preconditioner (:class:`SplitPreconditioner`): each :math:`C_p` is
factored by a greedy pivoted Cholesky (:func:`pivoted_cholesky`) until its largest
remaining diagonal entry, weighted by the mean squared norm of ``X u`` over unit
``u`` (``scale``), is at most ``tau``: :math:`C_p = L_p L_p^\top + E_p`,
:math:`E_p \succeq 0`; the remainder is replaced by one isotropic term
:math:`c_p I`, :math:`c_p = \mathrm{trace}(E_p) / d`:

.. math::

    \hat N = I + F_R F_R^\top + (X X^\top) \odot (|M|\,\mathrm{diag}(c)\,|M|^\top),
    \qquad F_R = [D_p X L_p]_p,

``R`` columns in all (the sum of the ranks), :math:`n d R + n^2 R / 2 + n^2 P / 2`
multiply-adds (one triangle, by symmetric rank-k updates in place) and an ``n x n``
Cholesky factorisation in place. Near the optimum of the ReLU
program each :math:`C_p` has one or two huge eigenvalues (the rays of its non-zero
groups) and a spectrum decaying over ten decades, so ``R`` is a tenth to a half of
``P d``. Early, every direction is above ``tau`` but the spectra are flat: when
``tau`` alone would keep more than ``max_rank_fraction * P d`` columns, a block's
factorisation also stops once its largest remaining diagonal entry is at most
``FLAT = 3`` times their mean (``kind = "flat"``: 0-200 columns in all, the
isotropic term doing the work). Measured at the bench's (n, d, P) = (1000, 50,
200), ``tau = 3``: flat for iterations 1-15 (20-30 CG iterations per solve), then
``R`` from 5500 down to 1000 (8-10 CG iterations) to a relative residual of 1e-10;
building :math:`\hat N` takes 35-110 ms against 330 ms for forming ``N``, a CG
iteration about 2.3 ms (a product 1.5 ms, two triangular solves 0.6 ms) on the AVX2
development machine (AMD EPYC); on an AVX-512 Intel Xeon 28, 48 and 110 ms at
``R`` = 55, 1570 and 4660 (35, 56 and 163 ms with the full products, a fresh
``n x n`` temporary for each and ``numpy.linalg.cholesky``'s copies), a CG iteration
about 1.7 ms.
:meth:`SplitPreconditioner.build` returns None (the caller forms ``N``) only when
even the flat factors need more than the budget. Eigen-directions in place of the
pivoted Cholesky columns (keep eigenvalues above ``tau``, the geometric mean of the
others as ``c_p``) need about 30 % fewer columns for the same CG count, but the
batched eigendecomposition costs 50-75 ms against 5-15 ms.

The direction an inexact ``w`` gives has the Newton residual :math:`A^\top (u - N
w)` exactly (the Woodbury identity), so the residual tolerance of :func:`pcg` is a
relative tolerance on the Newton system; the interior point's certificate is
computed from its iterate, never from the direction, so an inexact solve can cost
iterations but never a false certificate.

References
----------
M. R. Hestenes & E. Stiefel, "Methods of conjugate gradients for solving linear
systems", J. Res. Nat. Bur. Standards 49(6), 1952.
Z. Frangella, J. A. Tropp & M. Udell, "Randomized Nyström preconditioning", SIAM J.
Matrix Anal. Appl. 44(2), 2023 (the low-rank-plus-isotropic form; a sketch of the
whole ``N`` does not pay here: its effective dimension is above 900 of 1000).
H. Harbrecht, M. Peters & R. Schneider, "On the low-rank approximation by the
pivoted Cholesky decomposition", Appl. Numer. Math. 62(4), 2012.
"""

import numpy as np

__all__ = ["schur_matvec", "pattern_blocks", "pivoted_cholesky", "SplitPreconditioner", "pcg"]


def pattern_blocks(K, P):
    r"""``C_p = sum_s K_{p,s}^T K_{p,s}`` for every pattern: ``(P, d, d)``.

    Parameters
    ----------
    K : ndarray, shape (P, S, m, d)
        The ``z`` columns of :math:`L_j^{-1}` (:math:`B_j = L_j L_j^\top`) of the
        ``S`` groups of each pattern (zeros for missing slots):
        :math:`[B_j^{-1}]_{zz} = K_j^\top K_j`.
    P : int

    Returns
    -------
    ndarray, shape (P, d, d)
        ``P d^2 S m`` multiply-adds.
    """
    Kr = K.reshape(P, -1, K.shape[-1])
    return np.matmul(np.transpose(Kr, (0, 2, 1)), Kr)


def schur_matvec(X, patterns, C, v):
    r""":math:`N v = v + \sum_p D_p X C_p X^\top D_p v`.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    patterns : ndarray, shape (n, P)
        The 0 / 1 patterns ``|M_p|`` as floats.
    C : ndarray, shape (P, d, d)
    v : ndarray, shape (n,)

    Returns
    -------
    ndarray, shape (n,)
        ``2 n d P + P d^2`` multiply-adds.
    """
    U = (X * v[:, None]).T @ patterns  # (d, P)
    W = np.matmul(C, U.T[:, :, None])[:, :, 0].T  # (d, P)
    return v + np.einsum("np,np->n", patterns, X @ W)


def pivoted_cholesky(C, tol, max_rank=None, flat=None):
    r"""Greedy pivoted Cholesky factors of every block, each to a pivot below ``tol``.

    For each positive semi-definite ``C_p`` (d, d), ``k`` steps of the diagonally
    pivoted Cholesky factorisation give :math:`C_p = L_p L_p^\top + E_p` with
    :math:`E_p \succeq 0` (the Schur complement of the pivots) and
    :math:`\mathrm{trace}(E_p)` the sum of the remaining diagonal; a block stops
    when its largest remaining diagonal entry is at most ``tol`` (Harbrecht, Peters
    & Schneider 2012). All blocks advance together.

    Parameters
    ----------
    C : ndarray, shape (P, d, d)
    tol : float
    max_rank : int or None
        Stop as soon as the ranks sum to more than this (the factors are then
        partial).
    flat : float or None
        Also stop a block when its largest remaining diagonal entry is at most
        ``flat`` times their mean (the remainder is then nearly isotropic).

    Returns
    -------
    L : ndarray, shape (P, d, k)
        Columns past a block's rank are zero.
    ranks : ndarray of int, shape (P,)
    rest : ndarray, shape (P, d)
        The diagonal of :math:`E_p` (clipped at 0).
    """
    P, d, _ = C.shape
    ar = np.arange(P)
    rest = np.maximum(np.einsum("pii->pi", C), 0.0)
    L = np.zeros((P, d, d))
    active = np.ones(P, dtype=bool)
    ranks = np.zeros(P, dtype=int)
    k = 0
    while k < d:
        piv = np.argmax(rest, axis=1)
        top = rest[ar, piv]
        active &= top > tol
        if flat is not None:
            active &= top > flat * rest.mean(axis=1)
        if not active.any():
            break
        col = C[ar, :, piv] - np.einsum("pdk,pk->pd", L[:, :, :k], L[ar, piv, :k])
        col *= np.where(active, 1.0 / np.sqrt(np.where(active, top, 1.0)), 0.0)[:, None]
        L[:, :, k] = col
        rest = np.maximum(rest - col * col, 0.0)
        rest[ar[active], piv[active]] = 0.0
        ranks += active
        k += 1
        if max_rank is not None and ranks.sum() > max_rank:
            break
    return L[:, :, :k], ranks, rest


class SplitPreconditioner:
    r"""The split :math:`\hat N` of the module docstring, Cholesky-factored.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    patterns : ndarray, shape (n, P)
    tau : float
        Each :math:`C_p` (in units of ``1 / scale``) is factored by
        :func:`pivoted_cholesky` until its largest remaining diagonal entry is at
        most ``tau``; the remainder :math:`E_p` is replaced by :math:`c_p I` with
        :math:`c_p = \mathrm{trace}(E_p) / d`.
    max_rank_fraction : float
        Build nothing (``build`` returns None) when more than this fraction of the
        ``P d`` directions would be kept: forming ``N`` then costs little more.
    """

    #: ``flat`` of :func:`pivoted_cholesky` when ``tau`` alone keeps too many columns
    FLAT = 3.0
    #: largest block of F_R (bytes) formed at once
    CHUNK_BYTES = 32 * 2**20

    def __init__(self, X, patterns, tau=3.0, max_rank_fraction=0.6):
        import scipy.linalg  # imported on first use: keeps start-up light

        self._linalg = scipy.linalg  # (its blas and lapack modules come with it)
        self.X = X
        self.patterns = patterns
        self.tau = float(tau)
        self.max_rank_fraction = float(max_rank_fraction)
        n, d = X.shape
        self.scale = float(np.einsum("nd,nd->", X, X)) / d  # mean ||X u||^2, ||u|| = 1
        self.gram = self.patterns_t = None  # X X^T and patterns^T (P, n), on first build
        self.rank = 0

    def build(self, C):
        r"""Factor :math:`\hat N` for the blocks ``C`` (P, d, d); None if too many kept.

        Returns
        -------
        self or None
            ``rank`` (columns of ``F_R``; a lower bound when None) is set either way.
        """
        X, pats = self.X, self.patterns
        n, d = X.shape
        P = C.shape[0]
        budget = self.max_rank_fraction * P * d
        L, ranks, rest = pivoted_cholesky(C, self.tau / self.scale, budget)
        self.kind = "tau"
        if ranks.sum() > budget:
            L, ranks, rest = pivoted_cholesky(C, self.tau / self.scale, budget, self.FLAT)
            self.kind = "flat"
        self.rank = int(ranks.sum())
        if self.rank > budget:
            return None
        c = rest.sum(axis=1) / d  # (P,), >= 0
        p_idx, k_idx = np.nonzero(np.arange(L.shape[2])[None, :] < ranks[:, None])
        V = L[p_idx, :, k_idx]  # (R, d), grouped by pattern
        if self.gram is None:
            self.gram = X @ X.T
            self.patterns_t = np.ascontiguousarray(pats.T)  # row gathers below
        # Only the lower triangle of Nh (C order) is formed where it saves work: it is
        # the upper one of the Fortran-ordered Nh.T, all LAPACK reads below.
        # (|M| diag(c) |M|^T) by a symmetric rank-P update of (|M| sqrt(c)): half the
        # multiply-adds of the product
        half = self._linalg.blas.dsyrk(1.0, (pats * np.sqrt(c)).T, trans=1)  # Fortran-ordered
        Nh = np.multiply(self.gram, half.T)  # C-ordered, lower triangle valid
        chunk = max(1, self.CHUNK_BYTES // (8 * n))
        for first in range(0, len(p_idx), chunk):  # F_R F_R^T, F_R^T in (chunk, n) blocks
            rows = slice(first, first + chunk)
            Ft = V[rows] @ X.T
            Ft *= self.patterns_t[p_idx[rows]]  # contiguous row gathers
            # Nh += F F^T in place, one triangle (a symmetric rank-k update)
            self._linalg.blas.dsyrk(1.0, Ft.T, beta=1.0, c=Nh.T, trans=0, lower=0, overwrite_c=1)
        Nh[np.diag_indices_from(Nh)] += 1.0
        # factorised in place: Nh.T is Fortran-ordered, its upper triangle is Nh's
        # lower one; the factor is read in place by the solves
        factor, info = self._linalg.lapack.dpotrf(Nh.T, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            return None
        self.factor = (factor, False)
        return self

    def __call__(self, r):
        r""":math:`\hat N^{-1} r` for ``r`` (n,): two triangular solves, ``n^2`` multiply-adds."""
        return self._linalg.cho_solve(self.factor, r, check_finite=False)


def pcg(matvec, precondition, b, rtol, max_iter):
    """Preconditioned conjugate gradients for a symmetric positive definite system.

    Parameters
    ----------
    matvec, precondition : callable
        ``v -> N v`` and ``r -> N_hat^{-1} r`` on arrays of shape (n,).
    b : ndarray, shape (n,)
    rtol : float
        Stop when ``||b - N x|| <= rtol ||b||`` (the recursively updated residual).
    max_iter : int

    Returns
    -------
    x : ndarray, shape (n,)
    iterations : int
    converged : bool
    """
    x = np.zeros_like(b)
    r = b.copy()
    bound = rtol * float(np.linalg.norm(b))
    if float(np.linalg.norm(r)) <= bound:
        return x, 0, True
    z = precondition(r)
    p = z.copy()
    rz = float(r @ z)
    for it in range(1, max_iter + 1):
        q = matvec(p)
        pq = float(p @ q)
        if not pq > 0:
            return x, it, False
        a = rz / pq
        x += a * p
        r -= a * q
        if float(np.linalg.norm(r)) <= bound:
            return x, it, True
        z = precondition(r)
        rz_new = float(r @ z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, max_iter, False
