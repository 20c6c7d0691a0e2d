r"""The Gaussian population loss of a two-layer ReLU network against a ReLU teacher.

Written once here and used by the algorithm ``population_gd``, the census and the
tests. Inputs :math:`x \sim N(0, I_d)`; student :math:`f_W(x) = \sum_i
\mathrm{relu}(w_i \cdot x)` with neurons the ``m`` columns of ``W`` (d, m); teacher
:math:`g(x) = \sum_j \mathrm{relu}(v_j \cdot x)` with the ``k`` columns of ``V``
(d, k). With the arc-cosine kernel (Cho & Saul 2009)

.. math::

    \kappa(w, v) = E[\mathrm{relu}(w \cdot x)\,\mathrm{relu}(v \cdot x)]
    = \frac{|w|\,|v|}{2\pi}\bigl(\sin t + (\pi - t)\cos t\bigr),
    \qquad t = \angle(w, v) \in [0, \pi],

the objective of Safran & Shamir (ICML 2018, Eq. 2) is

.. math::

    F(W) = \tfrac12 E\bigl[(f_W(x) - g(x))^2\bigr]
    = \tfrac12 \sum_{i,j} \kappa(w_i, w_j) - \sum_{i,j} \kappa(w_i, v_j)
      + \tfrac12 \sum_{i,j} \kappa(v_i, v_j).

Its gradient is :math:`\nabla_{w_i} F = \sum_j \gamma(w_i, w_j) - \sum_j \gamma(w_i,
v_j)` with :math:`\gamma(w, v) = \nabla_w \kappa(w, v) = (|v| \sin t\, \hat w + (\pi -
t) v) / (2\pi)`; its Hessian has diagonal blocks :math:`\tfrac12 I + \sum_{j \ne i}
h_1(w_i, w_j) - \sum_j h_1(w_i, v_j)` and off-diagonal blocks :math:`h_2(w_i, w_j)`
with, for :math:`u = \hat w`, :math:`c = \cos t`, :math:`r = \hat v - c u`,
:math:`q = u - c \hat v` and :math:`s = |r| = |q| = \sin t`,

.. math::

    h_1(w, v) = \partial_w \gamma = \frac{|v|}{2\pi |w|}
        \Bigl(s\,(I - u u^\top) + \frac{r r^\top}{s}\Bigr), \qquad
    h_2(w, v) = \partial_v \gamma = \frac{1}{2\pi}
        \Bigl((\pi - t) I + s\, u \hat v^\top + \frac{r q^\top}{s}\Bigr).

Degenerate cases, handled explicitly: at :math:`t = 0` or :math:`t = \pi` the terms
divided by ``s`` vanish (their norm is ``s``), so :math:`h_1 = 0` and :math:`h_2 =
\tfrac12 I` (``t = 0``) or ``0`` (``t = pi``); the Hessian computes ``r`` and
``q`` explicitly and ``t = atan2(s, c)``, accurate near both ends, and the gradient's
:math:`\sin t\,\hat w - t\,\hat v` combination is accurate there to second order. A
zero neuron (``|w_i| = 0``, where ``F`` is not differentiable) contributes nothing;
its gradient is 0 (``relu'(0) = 0``, as autograd has it), its Hessian block is the
self term :math:`\tfrac12 I` and its other blocks are 0. A zero teacher neuron
contributes nothing.

Every function takes stacks: ``W`` of shape (..., d, m) and ``V`` of shape (d, k) or
(..., d, k), computed in float64. The Hessian is ordered neuron by neuron: entry
``(i * d + a, j * d + b)`` is :math:`\partial^2 F / \partial W_{ai} \partial W_{bj}`
(``W.T.ravel()`` flattens a point the same way).

References
----------
Safran & Shamir, "Spurious local minima are common in two-layer ReLU neural
networks", ICML 2018; Safran, Yehudai & Shamir, "The effects of mild
over-parameterization on the optimization landscape of shallow ReLU neural
networks", COLT 2021 (code ``ItaySafran/Overparameterization``, whose ``grad`` and
``hess`` compute the same quantities for ``V = I``).
"""

import functools

import numpy as np

__all__ = [
    "kernel",
    "population_loss",
    "population_grad",
    "population_hessian",
    "descend",
]

TWO_PI = 2.0 * np.pi
JOINT_BELOW = 3000
"""Stacks with (points x neurons^2) up to this take :func:`_descent_direction_joint`
(fewer array operations), larger ones :func:`_descent_direction` (half the
``arccos``); measured crossover about 2000-5000 at k = 10, 20."""


def _as_stack(W, V):
    W = np.asarray(W, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    if W.ndim < 2 or V.ndim < 2 or W.shape[-2] != V.shape[-2]:
        raise ValueError(
            f"W must have shape (..., d, m) and V shape (..., d, k) with the same d; "
            f"got W {W.shape} and V {V.shape}"
        )
    return W, V


def _unit(W):
    """Column norms (..., m) and unit columns (..., d, m), zero columns left at 0."""
    norms = np.sqrt(np.einsum("...am,...am->...m", W, W))
    safe = np.where(norms > 0, norms, 1.0)
    return norms, W / safe[..., None, :]


def _angles(C):
    """``(t, sin t)`` of clipped cosines ``C`` (any shape)."""
    C = np.clip(C, -1.0, 1.0)
    return np.arccos(C), np.sqrt(np.maximum(1.0 - C * C, 0.0))


def _pair_terms(UA, UB):
    """Cosines, angles and sines between the unit columns of ``UA`` and ``UB``."""
    C = np.clip(np.swapaxes(UA, -1, -2) @ UB, -1.0, 1.0)
    T, S = _angles(C)
    return C, T, S


def kernel(A, B):
    r"""The kernel matrix :math:`\kappa(a_i, b_j)` (module docstring) of two sets of neurons.

    Parameters
    ----------
    A : ndarray, shape (..., d, m)
    B : ndarray, shape (..., d, k)

    Returns
    -------
    K : ndarray, shape (..., m, k)

    Examples
    --------
    >>> import numpy as np
    >>> float(kernel(np.eye(2)[:, :1], np.eye(2)[:, :1])[0, 0])  # E[relu(x1)^2] = 1/2
    0.5
    >>> round(float(kernel(np.eye(2)[:, :1], np.eye(2)[:, 1:])[0, 0]), 12)  # 1 / (2 pi)
    0.159154943092
    """
    A, B = _as_stack(A, B)
    nA, UA = _unit(A)
    nB, UB = _unit(B)
    C, T, S = _pair_terms(UA, UB)
    return nA[..., :, None] * nB[..., None, :] * (S + (np.pi - T) * C) / TWO_PI


def population_loss(W, V):
    r"""The population loss :math:`F(W)` (module docstring), float64.

    Parameters
    ----------
    W : ndarray, shape (..., d, m)
        Student neurons as columns.
    V : ndarray, shape (d, k) or (..., d, k)
        Teacher neurons as columns.

    Returns
    -------
    F : float or ndarray, shape (...)

    Examples
    --------
    >>> import numpy as np
    >>> float(population_loss(np.eye(3), np.eye(3)))
    0.0
    >>> float(population_loss(np.zeros((3, 3)), np.eye(3))) == 0.5 * (3 / 2 + 6 / (2 * np.pi))
    True
    """
    W, V = _as_stack(W, V)
    total = (
        0.5 * kernel(W, W).sum(axis=(-1, -2))
        - kernel(W, V).sum(axis=(-1, -2))
        + 0.5 * kernel(V, V).sum(axis=(-1, -2))
    )
    return total if np.ndim(total) else float(total)


def _loss_and_grad(W, V):
    """Loss (...,) and gradient (..., d, m) sharing the angle computations."""
    nW, U = _unit(W)
    nV, UV = _unit(V)
    C, T, S = _pair_terms(U, U)
    m = W.shape[-1]
    eye = np.eye(m, dtype=bool)
    C = np.where(eye, 1.0, C)  # t = 0 between a neuron and itself, exactly
    T = np.where(eye, 0.0, T)
    S = np.where(eye, 0.0, S)
    CV, TV, SV = _pair_terms(U, UV)
    outer = nW[..., :, None] * nW[..., None, :]
    outer_v = nW[..., :, None] * nV[..., None, :]
    KWW = outer * (S + (np.pi - T) * C)
    KWV = outer_v * (SV + (np.pi - TV) * CV)
    _, _, SVV = _pair_terms(UV, UV)
    CVV = np.clip(np.swapaxes(UV, -1, -2) @ UV, -1.0, 1.0)
    KVV = nV[..., :, None] * nV[..., None, :] * (SVV + (np.pi - np.arccos(CVV)) * CVV)
    loss = (
        0.5 * KWW.sum(axis=(-1, -2)) - KWV.sum(axis=(-1, -2)) + 0.5 * KVV.sum(axis=(-1, -2))
    ) / TWO_PI
    radial = (S @ nW[..., :, None])[..., 0] - (SV @ nV[..., :, None])[..., 0]  # (..., m)
    G = U * radial[..., None, :] + W @ (np.pi - T) - V @ np.swapaxes(np.pi - TV, -1, -2)
    G = np.where((nW > 0)[..., None, :], G, 0.0) / TWO_PI
    return loss, G


def population_grad(W, V, return_loss=False):
    r"""The gradient :math:`\nabla F(W)` (module docstring), float64.

    Parameters
    ----------
    W : ndarray, shape (..., d, m)
    V : ndarray, shape (d, k) or (..., d, k)
    return_loss : bool
        Also return :math:`F(W)` (computed from the same angles).

    Returns
    -------
    G : ndarray, shape (..., d, m)
        Column ``i`` is :math:`\nabla_{w_i} F`; 0 for a zero neuron.
    F : float or ndarray, shape (...)
        Only with ``return_loss``.

    Examples
    --------
    >>> import numpy as np
    >>> float(np.abs(population_grad(np.eye(4), np.eye(4))).max()) < 1e-15
    True
    """
    W, V = _as_stack(W, V)
    loss, G = _loss_and_grad(W, V)
    if return_loss:
        return G, (loss if np.ndim(loss) else float(loss))
    return G


def _pair_geometry(UA, UB):
    """Exact pair geometry for the Hessian.

    Returns ``c`` (m, k), ``t`` (m, k), ``s`` (m, k), ``r`` (m, k, d) with
    ``r[i, j] = b_j - c_ij a_i`` and ``q`` (m, k, d) with ``q[i, j] = a_i - c_ij b_j``
    (unit columns ``a_i`` of ``UA``, ``b_j`` of ``UB``).
    """
    c = np.clip(UA.T @ UB, -1.0, 1.0)
    r = UB.T[None, :, :] - c[:, :, None] * UA.T[:, None, :]
    q = UA.T[:, None, :] - c[:, :, None] * UB.T[None, :, :]
    s = np.sqrt(np.einsum("ijd,ijd->ij", r, r))
    t = np.arctan2(s, c)
    return c, t, s, r, q


def _h1_sum(nA, UA, nB, UB, skip_self=False):
    r"""``sum_j h_1(a_i, b_j)`` for every ``i``: shape (m, d, d)."""
    d = UA.shape[0]
    _, _, s, r, _ = _pair_geometry(UA, UB)
    safe = np.where(nA > 0, nA, 1.0)
    weight = np.where(nA[:, None] > 0, nB[None, :] / (TWO_PI * safe[:, None]), 0.0)
    if skip_self:
        np.fill_diagonal(weight, 0.0)
    inv_s = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)
    radial = (weight * s).sum(axis=1)  # (m,)
    eye = np.eye(d)
    out = radial[:, None, None] * (eye[None] - np.einsum("ai,bi->iab", UA, UA))
    out += np.einsum("ij,ija,ijb->iab", weight * inv_s, r, r)
    return out


def population_hessian(W, V):
    r"""The Hessian of :math:`F` at ``W`` (module docstring), float64.

    Parameters
    ----------
    W : ndarray, shape (d, m)
    V : ndarray, shape (d, k)

    Returns
    -------
    H : ndarray, shape (m * d, m * d)
        Symmetric; entry ``(i * d + a, j * d + b)`` is
        :math:`\partial^2 F / \partial W_{ai} \partial W_{bj}`.

    Examples
    --------
    >>> import numpy as np
    >>> H = population_hessian(np.eye(2), np.eye(2))
    >>> bool(np.allclose(H, H.T)) and float(np.linalg.eigvalsh(H).min()) > 0
    True
    """
    W, V = _as_stack(W, V)
    if W.ndim != 2 or V.ndim != 2:
        raise ValueError(f"population_hessian takes one point: W (d, m), V (d, k); got {W.shape}")
    d, m = W.shape
    nW, U = _unit(W)
    nV, UV = _unit(V)
    diag = 0.5 * np.eye(d)[None] + _h1_sum(nW, U, nW, U, skip_self=True)
    diag -= _h1_sum(nW, U, nV, UV)
    _, t, s, r, q = _pair_geometry(U, U)
    inv_s = np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)
    blocks = (np.pi - t)[:, :, None, None] * np.eye(d)[None, None]
    blocks += s[:, :, None, None] * np.einsum("ai,bj->ijab", U, U)
    blocks += inv_s[:, :, None, None] * np.einsum("ija,ijb->ijab", r, q)
    blocks /= TWO_PI
    live = nW > 0
    blocks *= (live[:, None] & live[None, :])[:, :, None, None]
    idx = np.arange(m)
    blocks[idx, idx] = diag
    H = blocks.transpose(0, 2, 1, 3).reshape(m * d, m * d)
    return 0.5 * (H + H.T)


class _Teacher:
    """What every iteration needs of a stack of teachers ``V`` (B, d, k), computed once."""

    def __init__(self, V):
        self.V = V
        self.norms, self.units = _unit(V)
        self.minus_V, self.minus_norms = -V, -self.norms
        d, k = V.shape[-2:]
        # V = the first k columns of I_d for every point: cosines are entries of U
        self.identity = k <= d and bool(np.array_equal(V, np.broadcast_to(np.eye(d, k), V.shape)))
        self.k = k

    def take(self, keep):
        """The teachers of the points ``keep`` (a boolean mask or indices)."""
        out = object.__new__(_Teacher)
        out.V, out.norms, out.units = self.V[keep], self.norms[keep], self.units[keep]
        out.minus_V, out.minus_norms = self.minus_V[keep], self.minus_norms[keep]
        out.identity, out.k = self.identity, self.k
        return out


@functools.lru_cache(maxsize=64)
def _triangles(m):
    """Flat indices of the strict upper triangle of an (m, m) matrix and of its mirror."""
    i, j = np.triu_indices(m, 1)
    return i * m + j, j * m + i


def _descent_direction(W, teacher):
    """Gradient (B, d, m) of a stack, with as few array passes as the formula allows."""
    nW = np.sqrt(np.einsum("bdm,bdm->bm", W, W))
    zero = not nW.all()
    U = W / (np.where(nW > 0, nW, 1.0) if zero else nW)[:, None, :]
    B, m = nW.shape
    upper, lower = _triangles(m)
    # angles between distinct neurons, once per pair (C is symmetric); t_ii = 0 exactly
    c = np.clip((np.swapaxes(U, 1, 2) @ U).reshape(B, m * m)[:, upper], -1.0, 1.0)
    s = np.sqrt(1.0 - c * c)
    S = np.zeros((B, m * m))
    S[:, upper] = s
    S[:, lower] = s
    S = S.reshape(B, m, m)
    c = np.pi - np.arccos(c)
    P = np.full((B, m * m), np.pi)  # pi - t
    P[:, upper] = c
    P[:, lower] = c
    P = P.reshape(B, m, m)
    if teacher.identity:
        CV = np.clip(U[:, : teacher.k, :], -1.0, 1.0)  # CV[b, j, i] = cos(w_i, e_j)
        radial = (S @ nW[:, :, None])[:, :, 0] - np.sqrt(1.0 - CV * CV).sum(axis=1)
    else:
        CV = np.clip(np.swapaxes(teacher.units, 1, 2) @ U, -1.0, 1.0)  # (B, k, m)
        SV = np.sqrt(1.0 - CV * CV)
        radial = (S @ nW[:, :, None])[:, :, 0] - (teacher.norms[:, None, :] @ SV)[:, 0, :]
    G = W @ P
    G += U * radial[:, None, :]
    if teacher.identity:
        G[:, : teacher.k, :] += np.arccos(CV)
        G[:, : teacher.k, :] -= np.pi
    else:
        G -= teacher.V @ (np.pi - np.arccos(CV))
    if zero:
        G *= (nW > 0)[:, None, :]
    G *= 1.0 / TWO_PI
    return G


def descend(W, V, lr, tol, max_iterations, slots=None):
    r"""Gradient descent on :math:`F` for a stack of points, each leaving when it converges.

    Every point takes steps ``W <- W - lr * grad F(W)`` until its gradient's
    Frobenius norm is at most ``tol`` (checked before each step, so a converged
    point is not moved) or it has taken ``max_iterations`` steps. Points that
    converged leave the stack: the batched program only computes the others, so a
    slow point never costs the fast ones. With ``slots``, at most that many points
    are in the stack at a time and a waiting point takes the place of each one that
    leaves (a stream of initialisations through a batch of fixed size). Point ``b``
    follows the iterates of ``descend(W[b:b+1], V[b:b+1], ...)`` whatever its
    batchmates (the same operations on its slice of the stack, equal to rounding).

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
        Most steps any point takes in this call.
    slots : int, optional
        Most points computed at once (default: all ``B``).

    Returns
    -------
    W : ndarray, shape (B, d, m)
        The end points.
    steps : ndarray of int, shape (B,)
        Steps each point took.
    grad_norm : ndarray, shape (B,)
        Frobenius norm of the gradient at the end point.

    Examples
    --------
    >>> import numpy as np
    >>> W0 = np.stack([np.eye(3) + 0.1, np.eye(3) - 0.05])
    >>> W, steps, g = descend(W0, np.stack([np.eye(3)] * 2), 0.5, 1e-12, 10_000)
    >>> bool((g <= 1e-12).all()) and bool(np.allclose(W, np.eye(3), atol=1e-10))
    True
    """
    W, V = _as_stack(W, V)
    W = W.copy()
    if W.ndim != 3 or V.ndim != 3 or V.shape[0] != W.shape[0]:
        raise ValueError(f"descend takes stacks W (B, d, m), V (B, d, k); got {W.shape}, {V.shape}")
    B = W.shape[0]
    lr = np.broadcast_to(np.asarray(lr, dtype=np.float64), (B,)).copy()
    steps = np.zeros(B, dtype=np.int64)
    grad_norm = np.empty(B)
    slots = B if slots is None else max(1, int(slots))
    tol2 = float(tol) ** 2
    active = np.arange(min(slots, B))
    queue = len(active)  # the next waiting point
    start = np.zeros(len(active), dtype=np.int64)  # the iteration each point entered at
    Wa, teacher, lra = W[active], _Teacher(V[active]), lr[active, None, None]
    it = 0
    while len(active):
        if len(active) * Wa.shape[2] ** 2 <= JOINT_BELOW:
            G = _descent_direction_joint(Wa, teacher)
        else:
            G = _descent_direction(Wa, teacher)
        g2 = np.einsum("bdm,bdm->b", G, G)
        age = it - start  # steps taken
        moving = (g2 > tol2) & (age < max_iterations)
        if not moving.all():
            left = ~moving
            done = active[left]
            W[done], grad_norm[done], steps[done] = Wa[left], np.sqrt(g2[left]), age[left]
            active, Wa, G, start = active[moving], Wa[moving], G[moving], start[moving]
            lra, teacher = lra[moving], teacher.take(moving)
        if len(active):
            Wa = Wa - lra * G
        it += 1
        if queue < B and len(active) < slots:
            entering = np.arange(queue, min(B, queue + slots - len(active)))
            queue += len(entering)
            active = np.concatenate([active, entering])
            Wa = np.concatenate([Wa, W[entering]])
            start = np.concatenate([start, np.full(len(entering), it)])
            lra, teacher = lr[active, None, None], _Teacher(V[active])
    return W, steps, grad_norm


def _descent_direction_joint(W, teacher):
    """The gradient as one angle matrix against students and teachers together.

    Fewer array operations than :func:`_descent_direction` (for small stacks, where
    each operation's fixed cost dominates), at the price of every student pair's
    angle computed twice; ``t_ii`` comes out of ``arccos`` near 0, and its error
    cancels between ``sin t_ii`` and ``t_ii`` to third order.
    """
    nW = np.sqrt(np.einsum("bdm,bdm->bm", W, W))
    zero = not nW.all()
    U = W / (np.where(nW > 0, nW, 1.0) if zero else nW)[:, None, :]
    C = np.swapaxes(U, 1, 2) @ np.concatenate([U, teacher.units], axis=2)  # (B, m, m + k)
    np.clip(C, -1.0, 1.0, out=C)
    S = np.sqrt(1.0 - C * C)
    C = np.pi - np.arccos(C)
    weights = np.concatenate([nW, teacher.minus_norms], axis=1)  # (B, m + k)
    radial = (S @ weights[:, :, None])[:, :, 0]
    G = np.concatenate([W, teacher.minus_V], axis=2) @ np.swapaxes(C, 1, 2)
    G += U * radial[:, None, :]
    if zero:
        G *= (nW > 0)[:, None, :]
    G *= 1.0 / TWO_PI
    return G
