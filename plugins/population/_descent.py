r"""Gradient descent on the population loss for a stack of points, with a Newton polish.

:func:`descend` runs Safran & Shamir's procedure, ``W <- W - lr grad F(W)`` until
:math:`\|\nabla F(W)\|_F \le` ``tol``, for a stack of initialisations at once (the
math is in :mod:`plugins.population._objective`). Each point leaves the stack as
soon as it converges, so a slow point never costs the fast ones.

Newton polish (optional, :class:`NewtonPolish`)
-----------------------------------------------
Near a strict minimum gradient descent converges linearly, with rate
:math:`1 - \mathrm{lr}\,\lambda_{\min}(H)`: at ``k = 20`` the smallest Hessian
eigenvalue of some minima is 4e-4 and the last decades to 1e-12 take 100 000
steps. With a polish, a point whose gradient norm is at most its threshold
(``below`` at first) tries Newton's method instead of its next gradient step:

1. the diagonal blocks of the closed-form Hessian (principal submatrices: one that is
   not positive definite refuses the try at once), then the full Hessian ``H``
   (:func:`~plugins.population._objective.hessian_stack`, batched over the points
   trying) and a Cholesky factorisation of ``H - margin I`` (LAPACK ``dpotrf``); it
   fails unless :math:`\lambda_{\min}(H) >` ``margin``, and the try is refused (a
   saddle, a flat or degenerate minimum is never chased by Newton);
2. steps ``W <- W - s (H - margin I)^{-1} grad F(W)``, ``s = 1`` or, with a fresh
   factorisation, ``1/2, 1/4, ...`` (``damping`` halvings), each accepted when it
   lowers the gradient norm or, with a fresh factorisation, when it lowers ``F`` by
   Armijo's sufficient decrease :math:`F(W - s\delta) \le F(W) - c\, s\, g \cdot
   \delta` (``c`` = ``armijo``; :math:`g \cdot \delta > 0` as ``H - margin I`` is
   positive definite); the factorisation is kept (a chord step) while the norm falls
   at least ``refresh``-fold per step, refreshed at the new point otherwise and after
   a damped step, until the norm is at most ``tol``; a step refused with a fresh
   factorisation ends the try.

Why both tests: near a minimum in a curved, flat valley (the gradient almost along
the Hessian's softest direction, the cubic terms dominating) the Newton step, of
length about ``|g| / lambda_min``, overshoots: it raises the gradient norm 28-fold,
and half or a quarter of it lowers ``F`` by 6e-5 to 1e-4 while raising the gradient
norm 2-7-fold. With the gradient norm alone the bench's slowest initialisation at
``k = 20`` was refused there at step 3 360 (gradient norm 1e-3, smallest Hessian
eigenvalue 3.7e-3) and took 9 400 more gradient steps to its next try; with Armijo's
test its Newton steps go down the valley and it ends at step 3 372, at the same
point. The gradient norm alone still decides near convergence, where ``F``'s
changes fall below its rounding.

A point whose try ends refused takes its gradient step and tries again once its
gradient norm is at most ``retry`` times smaller than at the refusal (so a point
near a saddle costs a few factorisations, not one per step). Every accepted
Newton step counts as one step of the point (``steps``), and the number of them is
returned apart (``newton_steps``). A try runs within one call: cut by the call's
``max_iterations``, it restarts from a fresh Hessian in the next call, so the run
loop's ``iterations`` per step can change Newton iterates at rounding level, never
the end point (and a resumed run repeats the uninterrupted one's calls exactly).

What it leaves unchanged: the descent's path until the polish (step ``lr``, the
initialisation), hence the basin each initialisation is in, and the critical point
it ends at: ``W - s (H - margin I)^{-1} g`` has the same fixed points (``g = 0``) as
gradient descent. Gradient descent stops within about ``tol / lambda_min`` of that
point; the polish lands within rounding of it (tested against gradient descent to
1e-12, and by ``bench/bench_census.py``: 50 initialisations at k = 10 and at k = 20,
end points within 3e-11 and 7e-10, every census class the same; over 200 more
initialisations at k = 10 and k = 20, 100 at k = 15, 60 at k = 25, 40 at k = 30 and
16 at k = 40, end points within 1.1e-9 of gradient descent's and every class the
same). Measured at k = 20 (the bench's 50 initialisations): mean 1670 steps instead
of 6560, the slowest 4 580 instead of 113 000, 1.5 factorisations and 8 Newton steps
per initialisation.
Its cost: a Hessian and a factorisation of a ``(k^2, k^2)`` matrix, about 1.1 ms at
``k = 20`` (both written into buffers kept from call to call: a fresh 1.3 MB array
costs its page faults, as much again), the price of a few hundred batched gradient
steps.

Where the time goes at k = 20 (polished, 50 initialisations, one thread, on an
AVX-512 Intel Xeon where numpy's ``arccos`` is vectorised): about 17 ms per
initialisation (about 40 ms on the AVX2 development machine, an AMD EPYC, with the
gradient-norm test alone), half of it in batched gradient steps of 30 to 50 points
(0.3 ms per step of 50: 6 us per point and step, the element passes over the
``(50, 20, 40)`` angle matrix about half of it), 23 % the polish (per factorisation:
the Hessian 0.55 ms and ``dpotrf`` 0.55 ms; chord steps of 0.1 ms, the triangular
solves reading a 1.3 MB factor), 8 % stacks of 8 to 29 points, 8 % the last five
initialisations (3 to 1 at a time, 21-45 us per gradient: about 20 numpy calls
whatever the size) and the rest the loop.
"""

import dataclasses

import numpy as np

from ._objective import (
    _as_stack,
    _gradient_rows,
    _scratch,
    _Teacher,
    hessian_diagonal_blocks,
    hessian_stack,
    population_loss,
    stack_gradient,
)

__all__ = ["NewtonPolish", "descend"]

HESSIAN_BYTES = 2**30
"""Most bytes of Hessians a polish builds at once: the points trying together get
theirs in one batch up to this, one at a time beyond (k >= 60 with several trying)."""


@dataclasses.dataclass(frozen=True)
class NewtonPolish:
    """Settings of the Newton polish of :func:`descend` (module docstring).

    Attributes
    ----------
    below : float
        First try once the gradient norm is at most this.
    margin : float
        Smallest Hessian eigenvalue required (Cholesky of ``H - margin I``).
    retry : float
        After a refused try, the next once the gradient norm fell this many times.
    refresh : float
        Keep a factorisation while each step divides the gradient norm by at least
        this; refactorise at the new point otherwise.
    damping : int
        With a fresh factorisation, also try the Newton step scaled by 1/2, 1/4, ...
        (this many halvings) before refusing.
    armijo : float or None
        With a fresh factorisation, a step that does not lower the gradient norm is
        still accepted when it lowers ``F`` by at least this fraction of the decrease
        its first-order model predicts (Armijo's condition); ``None``: the gradient
        norm alone decides.
    """

    below: float = 1e-3
    margin: float = 1e-6
    retry: float = 10.0
    refresh: float = 3.0
    damping: int = 3
    armijo: float | None = 1e-4

    def __post_init__(self):
        if not self.below > 0 or not self.margin >= 0:
            raise ValueError(f"NewtonPolish needs below > 0 and margin >= 0; got {self}")
        if not self.retry > 1 or not self.refresh > 1 or self.damping < 0:
            raise ValueError(f"NewtonPolish needs retry > 1 and refresh > 1; got {self}")
        if self.armijo is not None and not 0 < self.armijo < 1:
            raise ValueError(f"NewtonPolish needs 0 < armijo < 1 or None; got {self}")


def descend(
    W,
    V,
    lr,
    tol,
    max_iterations,
    slots=None,
    polish=None,
    next_try=None,
    full_output=False,
):
    r"""Gradient descent on :math:`F` for a stack of points, each leaving when it converges.

    Every point takes steps ``W <- W - lr * grad F(W)`` until its gradient's
    Frobenius norm is at most ``tol`` (checked before each step, so a converged
    point is not moved) or it has taken ``max_iterations`` steps. Points that
    converged leave the stack: the batched program only computes the others, so a
    slow point never costs the fast ones. With ``slots``, at most that many points
    are in the stack at a time and a waiting point takes the place of each one that
    leaves (a stream of initialisations through a batch of fixed size). With
    ``polish``, a point near a strict minimum finishes with Newton steps (module
    docstring). Point ``b`` follows the iterates of ``descend(W[b:b+1], V[b:b+1],
    ...)`` whatever its batchmates (the same operations on its slice of the stack,
    equal to rounding).

    Parameters
    ----------
    W : ndarray, shape (B, d, m)
        Starting points; not modified.
    V : ndarray, shape (B, d, k)
        Each point's teacher.
    lr : float or ndarray, shape (B,)
        Step sizes.
    tol : float
        Gradient-norm tolerance.
    max_iterations : int
        Most steps (gradient and Newton) any point takes in this call.
    slots : int, optional
        Most points computed at once (default: all ``B``).
    polish : NewtonPolish, optional
        Newton polish settings (default: none, plain gradient descent).
    next_try : float or ndarray, shape (B,), optional
        Each point's gradient norm for its next Newton try (default
        ``polish.below``): what a previous call returned, to continue exactly.
    full_output : bool
        Also return ``newton_steps`` and ``next_try``.

    Returns
    -------
    W : ndarray, shape (B, d, m)
        The end points.
    steps : ndarray of int, shape (B,)
        Steps each point took (gradient and Newton).
    grad_norm : ndarray, shape (B,)
        Frobenius norm of the gradient at the end point.
    newton_steps : ndarray of int, shape (B,)
        Only with ``full_output``: the accepted Newton steps among ``steps``.
    next_try : ndarray, shape (B,)
        Only with ``full_output``: each point's threshold for its next try
        (``inf`` without a polish).

    Examples
    --------
    >>> import numpy as np
    >>> W0 = np.stack([np.eye(3) + 0.1, np.eye(3) - 0.05])
    >>> W, steps, g = descend(W0, np.stack([np.eye(3)] * 2), 0.5, 1e-12, 10_000)
    >>> bool((g <= 1e-12).all()) and bool(np.allclose(W, np.eye(3), atol=1e-10))
    True
    >>> Wp, fewer, gp = descend(W0, np.stack([np.eye(3)] * 2), 0.5, 1e-12, 10_000,
    ...                         polish=NewtonPolish(below=1e-2))
    >>> bool((gp <= 1e-12).all()) and bool((fewer < steps).all())
    True
    >>> float(np.abs(Wp - W).max()) < 1e-11
    True
    """
    W, V = _as_stack(W, V)
    if W.ndim != 3 or V.ndim != 3 or V.shape[0] != W.shape[0]:
        raise ValueError(f"descend takes stacks W (B, d, m), V (B, d, k); got {W.shape}, {V.shape}")
    W = np.ascontiguousarray(W.transpose(0, 2, 1))  # iterates with neurons as rows (B, m, d)
    B = W.shape[0]
    lr = np.broadcast_to(np.asarray(lr, dtype=np.float64), (B,)).copy()
    steps = np.zeros(B, dtype=np.int64)
    newton_steps = np.zeros(B, dtype=np.int64)
    grad_norm = np.empty(B)
    tries = np.full(B, np.inf)  # gradient norm of each point's next Newton try
    if polish is not None:
        start = polish.below if next_try is None else next_try
        tries[:] = np.broadcast_to(np.asarray(start, dtype=np.float64), (B,))
    slots = B if slots is None else max(1, int(slots))
    tol2 = float(tol) ** 2
    # the stack: points `active`, their iterates Wa; a point's steps are `it - start`
    # (`start` lowered by the extra steps of its Newton tries); the fast path of an
    # iteration is one gradient, one test against `watch` (tolerance or next try) and
    # one update, the rest only when a point leaves, tries or reaches its cap
    active = np.arange(min(slots, B))
    queue = len(active)  # the next waiting point
    Wa, teacher, lra = W[active], _Teacher(V[active]), lr[active, None, None]
    start = np.zeros(len(active), dtype=np.int64)
    it = 0

    def watch(points):  # squared norms below which an iteration takes the slow path
        return np.maximum(tries[points] ** 2, tol2) if polish is not None else tol2

    watch2 = watch(active)
    cap = max_iterations  # the first iteration at which some point reaches its cap
    while len(active):
        G = _gradient_rows(Wa, teacher)
        g2 = np.einsum("bmd,bmd->b", G, G)
        if it >= cap or (g2 <= watch2).any():
            moving = (g2 > tol2) & (it - start < max_iterations)
            if not moving.all():
                left = ~moving
                done = active[left]
                W[done], grad_norm[done], steps[done] = (
                    Wa[left],
                    np.sqrt(g2[left]),
                    it - start[left],
                )
                active, Wa, G, g2 = active[moving], Wa[moving], G[moving], g2[moving]
                start, lra, teacher = start[moving], lra[moving], teacher.take(moving)
            trying = np.flatnonzero(g2 <= tries[active] ** 2) if polish is not None else ()
            if len(trying):
                budget = max_iterations - (it - start[trying])
                ends, taken, refused = _polish(
                    Wa[trying].transpose(0, 2, 1),
                    teacher.take(trying),
                    G[trying].transpose(0, 2, 1),
                    g2[trying],
                    tol2,
                    budget,
                    polish,
                )
                for slot, point, W_end, n, g_end in zip(
                    trying, active[trying], ends, taken, refused
                ):
                    if n:  # n Newton steps instead of this iteration's gradient step
                        Wa[slot] = W_end.T
                        G[slot] = 0.0
                        start[slot] -= n - 1
                        newton_steps[point] += n
                    if g_end is not None:  # refused: next try once the norm fell retry-fold
                        tries[point] = np.sqrt(g_end) / polish.retry
            if queue < B and len(active) < slots:  # waiting points enter after this step
                entering = np.arange(queue, min(B, queue + slots - len(active)))
                queue += len(entering)
            else:
                entering = ()
            watch2 = watch(active)
            cap = int((start + max_iterations).min()) if len(active) else 0
        else:
            entering = ()
        if len(active):
            G *= lra
            Wa -= G
        it += 1
        if len(entering):
            active = np.concatenate([active, entering])
            Wa = np.concatenate([Wa, W[entering]])
            start = np.concatenate([start, np.full(len(entering), it)])
            lra, teacher = lr[active, None, None], _Teacher(V[active])
            watch2 = watch(active)
            cap = int((start + max_iterations).min())
    W = np.ascontiguousarray(W.transpose(0, 2, 1))
    if full_output:
        return W, steps, grad_norm, newton_steps, tries
    return W, steps, grad_norm


def _polish(W, teacher, G, g2, tol2, budget, polish):
    """Newton steps for the points of a stack that try (module docstring).

    Parameters
    ----------
    W, G : ndarray, shape (P, d, m)
        The points and their gradients.
    teacher : _Teacher
        Their teachers.
    g2 : ndarray, shape (P,)
        Their squared gradient norms.
    tol2 : float
        Squared tolerance.
    budget : ndarray of int, shape (P,)
        Most Newton steps each may take (at least 1).
    polish : NewtonPolish

    Returns
    -------
    ends : ndarray, shape (P, d, m)
        The points after their accepted steps.
    taken : list of int
        Accepted steps of each.
    refused : list
        ``None`` for a point whose try was not refused, else its squared gradient
        norm at the refusal.
    """
    # LAPACK's Cholesky directly: scipy.linalg's wrappers cost more than a solve here
    from scipy.linalg.lapack import dpotrf, dpotrs

    P, d, m = W.shape
    diagonal = np.diag_indices(m * d)
    refresh2 = polish.refresh**2
    scales = 0.5 ** np.arange(polish.damping + 1)
    # a diagonal block with an eigenvalue <= margin refuses a point before its full Hessian
    blocks = hessian_diagonal_blocks(W, teacher.V)
    definite = []
    for p in range(P):
        try:
            np.linalg.cholesky(blocks[p] - polish.margin * np.eye(d))
            definite.append(p)
        except np.linalg.LinAlgError:
            pass
    # the Hessians of all points trying, batched, unless they would hold more than
    # HESSIAN_BYTES (8 k^4 bytes each: 0.8 GB at k = 100): then one at a time
    H_first = {}
    if definite and len(definite) * 8 * (m * d) ** 2 <= HESSIAN_BYTES:
        H = hessian_stack(
            W[definite],
            teacher.V[definite],
            blocks[definite],
            out=_scratch("polish_hessians", (len(definite), m * d, m * d)),
        )
        H_first = dict(zip(definite, H))
        del H
    definite = set(definite)
    ends = W.copy()
    taken, refused = [], []
    for p in range(P):
        Wp, Gp, gp2 = W[p : p + 1], G[p : p + 1], g2[p]
        if p not in definite:
            taken.append(0)
            refused.append(gp2)
            continue
        one = teacher.take([p])
        H, factor, fresh, n, stop = H_first.pop(p, None), None, False, 0, None
        while gp2 > tol2 and n < budget[p]:
            if factor is None:
                if H is None:
                    H = hessian_stack(Wp, one.V, out=_scratch("polish_hessian", (1, m * d, m * d)))
                    H = H[0]
                H[diagonal] -= polish.margin  # in place: this point's Hessian, used once
                # factorised in place: the transpose is Fortran-ordered (no copy), and
                # its lower triangle is H's upper one (H is symmetric up to rounding)
                factor, info = dpotrf(H.T, lower=1, clean=0, overwrite_a=1)
                if info:  # lambda_min(H) <= margin (or not finite)
                    stop = gp2
                    break
                H, fresh = None, True
            # neuron-major order: entry i * d + a is W[a, i]
            delta = dpotrs(factor, Gp[0].T.ravel(), lower=1)[0].reshape(m, d).T
            loss = None
            for scale in scales if fresh else scales[:1]:
                W_new = Wp - scale * delta
                G_new = stack_gradient(W_new, one)
                g_new2 = float(np.einsum("bdm,bdm->", G_new, G_new))
                if g_new2 < gp2:  # (NaN refused)
                    break
                if fresh and polish.armijo is not None:  # or F falls enough (Armijo)
                    if loss is None:
                        loss = population_loss(Wp[0], one.V[0])
                        slope = float(np.vdot(Gp, delta))  # g . delta > 0: H - margin I is PD
                    if population_loss(W_new[0], one.V[0]) <= loss - polish.armijo * scale * slope:
                        break
            else:
                if fresh:
                    stop = gp2
                    break
                factor = None  # a stale factorisation: refactorise here and try again
                continue
            if scale < 1.0 or g_new2 * refresh2 > gp2:
                factor = None
            Wp, Gp, gp2, fresh, n = W_new, G_new, g_new2, False, n + 1
        ends[p] = Wp[0]
        taken.append(n)
        refused.append(stop)
    return ends, taken, refused
