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

import math
import threading

import numpy as np

__all__ = [
    "kernel",
    "population_loss",
    "population_grad",
    "population_hessian",
]

TWO_PI = 2.0 * np.pi


def _as_stack(W, V):
    W = np.asarray(W, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    if W.ndim < 2 or V.ndim < 2 or W.shape[-2] != V.shape[-2]:
        raise ValueError(
            f"W must have shape (..., d, m) and V shape (..., d, k) with the same d; "
            f"got W {W.shape} and V {V.shape}"
        )
    return W, V


_SCRATCH = threading.local()
SCRATCH_BYTES = 2**25
"""Largest intermediate array (bytes) kept from call to call by :func:`_scratch`."""


def _scratch(name, shape):
    """A float64 array of ``shape`` for intermediate results, reused from call to call.

    One array per ``name`` and thread, kept while its shape stays the same and it
    holds at most :data:`SCRATCH_BYTES`; larger ones are fresh each call. Only for
    arrays that do not outlive the call that fills them.
    """
    if 8 * math.prod(shape) > SCRATCH_BYTES:
        return np.empty(shape)
    cache = _SCRATCH.__dict__
    array = cache.get(name)
    if array is None or array.shape != shape:
        array = cache[name] = np.empty(shape)
    return array


def _unit(W):
    """Column norms (..., m) and unit columns (..., d, m), zero columns left at 0."""
    norms = np.sqrt(np.einsum("...am,...am->...m", W, W))
    safe = np.where(norms > 0, norms, 1.0)
    return norms, W / safe[..., None, :]


def _pair_terms(UA, UB):
    """Cosines (clipped to [-1, 1]), angles and sines between the unit columns of
    ``UA`` and ``UB``."""
    C = _clip_cosines(np.swapaxes(UA, -1, -2) @ UB)  # a fresh product: clipped in place
    return C, np.arccos(C), np.sqrt(np.maximum(1.0 - C * C, 0.0))


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
    # F = 1/2 s^T kappa(N, N) s over all neurons N = [W, V], s = (1, .., 1, -1, .., -1):
    # one angle matrix instead of three kernels
    batch = np.broadcast_shapes(W.shape[:-2], V.shape[:-2])
    m = W.shape[-1]
    N = np.concatenate(
        [np.broadcast_to(W, batch + W.shape[-2:]), np.broadcast_to(V, batch + V.shape[-2:])],
        axis=-1,
    )
    norms, U = _unit(N)
    C, T, S = _pair_terms(U, U)
    signed = norms.copy()
    signed[..., m:] *= -1.0
    total = np.einsum("...i,...ij,...j->...", signed, S + (np.pi - T) * C, signed) / (2 * TWO_PI)
    return total if np.ndim(total) else float(total)


def _gradient(W, V):
    """The gradient (..., d, m) of a stack (the column form of the module docstring)."""
    nW, U = _unit(W)
    nV, UV = _unit(V)
    _, T, S = _pair_terms(U, U)
    m = W.shape[-1]
    eye = np.eye(m, dtype=bool)
    T = np.where(eye, 0.0, T)  # t = 0 between a neuron and itself, exactly
    S = np.where(eye, 0.0, S)
    _, TV, SV = _pair_terms(U, UV)
    radial = (S @ nW[..., :, None])[..., 0] - (SV @ nV[..., :, None])[..., 0]  # (..., m)
    G = U * radial[..., None, :] + W @ (np.pi - T) - V @ np.swapaxes(np.pi - TV, -1, -2)
    return np.where((nW > 0)[..., None, :], G, 0.0) / TWO_PI


def population_grad(W, V, return_loss=False):
    r"""The gradient :math:`\nabla F(W)` (module docstring), float64.

    Parameters
    ----------
    W : ndarray, shape (..., d, m)
    V : ndarray, shape (d, k) or (..., d, k)
    return_loss : bool
        Also return :math:`F(W)` (:func:`population_loss`).

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
    G = _gradient(W, V)
    if return_loss:
        return G, population_loss(W, V)
    return G


def _pair_geometry(UA, UB):
    """Exact pair geometry of two stacks of unit columns, for the Hessian.

    Parameters
    ----------
    UA : ndarray, shape (B, d, m)
    UB : ndarray, shape (B, d, n)

    Returns
    -------
    c, t, s : ndarray, shape (B, m, n)
        Cosines, angles ``atan2(s, c)`` and sines of every pair ``(a_i, b_j)``.
    r : ndarray, shape (B, m, n, d)
        ``r[b, i, j] = b_j - c_ij a_i`` (computed explicitly: ``|r| = s`` stays
        accurate near ``t = 0`` and ``t = pi``).
    A, Bt : ndarray, shapes (B, m, 1, d) and (B, 1, n, d)
        The rows ``a_i`` and ``b_j`` broadcast for ``q = a_i - c_ij b_j``.
    """
    c = np.clip(np.swapaxes(UA, -1, -2) @ UB, -1.0, 1.0)
    A = np.swapaxes(UA, -1, -2)[:, :, None, :]
    Bt = np.swapaxes(UB, -1, -2)[:, None, :, :]
    r = Bt - c[..., None] * A
    s = np.sqrt(np.einsum("bijd,bijd->bij", r, r))
    t = np.arctan2(s, c)
    return c, t, s, r, A, Bt


def _inverse(s):
    """``1 / s`` where ``s > 0``, else 0 (the terms divided by ``s`` vanish there)."""
    return np.where(s > 0, 1.0 / np.where(s > 0, s, 1.0), 0.0)


def _h1_sum(nA, UA, nB, UB, skip_self=False):
    r"""``sum_j h_1(a_i, b_j)`` for every ``i`` of a stack: shape (B, m, d, d)."""
    d = UA.shape[-2]
    _, _, s, r, _, _ = _pair_geometry(UA, UB)
    safe = np.where(nA > 0, nA, 1.0)
    weight = np.where(nA[:, :, None] > 0, nB[:, None, :] / (TWO_PI * safe[:, :, None]), 0.0)
    if skip_self:
        weight *= 1.0 - np.eye(weight.shape[-1])
    radial = (weight * s).sum(axis=-1)  # (B, m)
    Ut = np.swapaxes(UA, -1, -2)  # (B, m, d)
    out = radial[..., None, None] * (np.eye(d) - Ut[..., :, None] * Ut[..., None, :])
    out += np.swapaxes((weight * _inverse(s))[..., None] * r, -1, -2) @ r
    return out


def population_hessian(W, V):
    r"""The Hessian of :math:`F` at ``W`` (module docstring), float64, for a stack of points.

    Parameters
    ----------
    W : ndarray, shape (..., d, m)
    V : ndarray, shape (d, k) or (..., d, k)

    Returns
    -------
    H : ndarray, shape (..., m * d, m * d)
        Symmetric; entry ``(i * d + a, j * d + b)`` is
        :math:`\partial^2 F / \partial W_{ai} \partial W_{bj}`. Each point's
        Hessian is computed on its own slice of the stack (the same operations
        whatever the stack holds).

    Examples
    --------
    >>> import numpy as np
    >>> H = population_hessian(np.eye(2), np.eye(2))
    >>> bool(np.allclose(H, H.T)) and float(np.linalg.eigvalsh(H).min()) > 0
    True
    >>> population_hessian(np.ones((5, 3, 2)), np.eye(3)).shape
    (5, 6, 6)
    """
    W, V = _as_stack(W, V)
    lead = W.shape[:-2]
    d, m = W.shape[-2:]
    V = np.broadcast_to(V, lead + V.shape[-2:])
    H = hessian_stack(W.reshape((-1, d, m)), V.reshape((-1,) + V.shape[-2:]))
    H = 0.5 * (H + np.swapaxes(H, -1, -2))
    return H.reshape(lead + (m * d, m * d))


def hessian_stack(W, V, diagonal=None, out=None):
    r"""The Hessians of a stack before symmetrising (:func:`population_hessian`'s work).

    Each off-diagonal block is :math:`\tfrac{1}{2\pi}((\pi - t) I + s\, u \hat
    v^\top + r q^\top / s)` (module docstring): the two rank-one terms of every
    block come out of one batched ``(d, 2) @ (2, d)`` product, block by block, and
    one transposing copy puts the blocks in the Hessian's neuron-major order (at
    ``k = 20``, one point: 0.3 ms into reused buffers, against 0.7-1.2 ms for
    broadcasting the terms into place in fresh arrays).

    Parameters
    ----------
    W : ndarray, shape (B, d, m)
    V : ndarray, shape (B, d, k)
    diagonal : ndarray, shape (B, m, d, d), optional
        :func:`hessian_diagonal_blocks` of the stack, when already computed.
    out : ndarray, shape (B, m * d, m * d), optional
        C-contiguous float64 array to write the Hessians into (a buffer the caller
        reuses: a fresh 1.3 MB array per call at ``k = 20`` costs its page faults,
        about as much as the arithmetic).

    Returns
    -------
    H : ndarray, shape (B, m * d, m * d)
        ``out`` when given. Symmetric up to rounding (each entry computed from its
        own pair's geometry); a Cholesky factorisation reads one triangle only.
    """
    B, d, m = W.shape
    nW, U = _unit(W)
    diag = hessian_diagonal_blocks(W, V) if diagonal is None else diagonal
    c, t, s, r, A, Bt = _pair_geometry(U, U)
    Ut = np.swapaxes(U, -1, -2)  # (B, m, d)
    # block (i, j) = left[i, j] @ right[i, j], scaled by 1 / (2 pi) on the left:
    # columns (r_ij / s_ij, s_ij u_i) against rows (q_ij, u_j), q_ij = u_i - c_ij u_j
    left = _scratch("hessian_left", (B, m, m, d, 2))
    right = _scratch("hessian_right", (B, m, m, 2, d))
    np.multiply((_inverse(s) / TWO_PI)[..., None], r, out=left[..., 0])
    np.multiply((s / TWO_PI)[..., None], Ut[:, :, None, :], out=left[..., 1])
    np.subtract(A, c[..., None] * Bt, out=right[..., 0, :])
    right[..., 1, :] = Ut[:, None, :, :]
    blocks = np.matmul(left, right, out=_scratch("hessian_blocks", (B, m, m, d, d)))
    axis_d = np.arange(d)
    blocks[..., axis_d, axis_d] += ((np.pi - t) / TWO_PI)[..., None]
    live = nW > 0
    if not live.all():
        blocks *= (live[:, :, None] & live[:, None, :])[..., None, None]
    axis_m = np.arange(m)
    blocks[:, axis_m, axis_m] = diag
    if out is None:
        out = np.empty((B, m * d, m * d))
    elif out.shape != (B, m * d, m * d) or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous of shape {(B, m * d, m * d)}")
    np.copyto(out.reshape(B, m, d, m, d), blocks.transpose(0, 1, 3, 2, 4))
    return out


def hessian_diagonal_blocks(W, V):
    r"""The diagonal blocks of the Hessians of a stack (neuron ``i`` against itself).

    Parameters
    ----------
    W : ndarray, shape (B, d, m)
    V : ndarray, shape (B, d, k)

    Returns
    -------
    D : ndarray, shape (B, m, d, d)
        ``D[b, i]`` is :math:`\partial^2 F / \partial w_i^2` (module docstring). Each
        is a principal submatrix of the Hessian: one that is not positive definite
        proves the Hessian is not either (a cheap test before the full matrix).
    """
    d = W.shape[1]
    nW, U = _unit(W)
    nV, UV = _unit(V)
    diag = 0.5 * np.eye(d) + _h1_sum(nW, U, nW, U, skip_self=True)
    diag -= _h1_sum(nW, U, nV, UV)
    return diag


class _Teacher:
    """What every iteration needs of a stack of teachers ``V`` (B, d, k), computed once."""

    def __init__(self, V):
        self.V = V
        self.norms, self.units = _unit(V)
        self.k = V.shape[-1]
        self.rows = None  # the buffers of _gradient_rows (_RowWork)

    def take(self, keep):
        """The teachers of the points ``keep`` (a boolean mask or indices)."""
        out = object.__new__(_Teacher)
        out.V, out.norms, out.units = self.V[keep], self.norms[keep], self.units[keep]
        out.k, out.rows = self.k, None
        return out


def _clip_cosines(C):
    """Clip cosines to [-1, 1] in place and return them: two ufunc calls on a small
    array (``np.clip``'s Python wrapper costs more than the clipping of a few hundred
    entries), one pass of ``np.clip`` on a large one (half the time at 24 000)."""
    if C.size < 2000:
        np.maximum(C, -1.0, out=C)
        return np.minimum(C, 1.0, out=C)
    return np.clip(C, -1.0, 1.0, out=C)


class _RowWork:
    """The arrays of :func:`_gradient_rows` for one stack shape, kept on its teacher.

    The stacked rows ``[u_1 .. u_m ; v_1 / |v_1| .. v_k / |v_k|]``, ``[w ; -v]`` and
    the column ``[|w| ; -|v|]`` have their teacher parts written once; the angle
    matrices are overwritten by every call. Fresh arrays of these sizes cost their
    page faults again and again (a 130-320 kB array can come back from the allocator
    as new pages): at ``B = 50``, ``k = 20`` up to twice the time of a gradient.
    """

    def __init__(self, shape, teacher):
        B, m, d = self.shape = shape
        width = m + teacher.k
        self.units = np.empty((B, width, d))
        self.units[:, m:] = teacher.units.transpose(0, 2, 1)
        self.signed = np.empty((B, width, d))
        np.negative(teacher.V.transpose(0, 2, 1), out=self.signed[:, m:])
        self.weights = np.empty((B, width, 1))
        np.negative(teacher.norms, out=self.weights[:, m:, 0])
        self.norms = np.empty((B, m))
        self.cosines = np.empty((B, m, width))
        self.sines = np.empty((B, m, width))
        self.radial = np.empty((B, m, 1))
        self.ratio = np.empty((B, m))


def _gradient_rows(Wt, teacher):
    r"""The gradient of a stack with neurons as rows: ``Wt`` (B, m, d) to (B, m, d).

    One angle matrix between the students and all neurons, students and teachers
    together (module docstring):

    .. math::

        2\pi\,\nabla_{w_i} F = \Bigl(\sum_j |w_j| \sin t_{ij} - \sum_j |v_j|
        \sin t(w_i, v_j)\Bigr) \hat w_i + \sum_j (\pi - t_{ij})\, w_j
        - \sum_j (\pi - t(w_i, v_j))\, v_j,

    that is three products, ``C = U [U; \hat V]^T`` (B, m, m + k), ``S [|w|; -|v|]``
    and ``(\pi - T) [W; -V]``, and six element passes over ``C`` (clip, square,
    ``1 -``, ``sqrt``, ``arccos``, ``pi -``); the radial term enters the last product
    through the diagonal of ``pi - T`` (:math:`r_i \hat w_i = (r_i / |w_i|)\, w_i`), not
    as a broadcast pass over (B, m, d), whose 20-entry inner loops are slow. Every
    operand is contiguous with neurons as rows: at ``B = 50``, ``k = 20`` a gradient
    takes about 0.29 ms on one core of an AVX-512 Intel Xeon, against 0.32-0.34 ms for
    the forms it replaced (the angle matrix on neuron columns, strided views whose
    element loops run 2-3 times slower; each student pair's angle computed once and
    scattered into both triangles). Every student pair's angle
    is computed twice: ``t_ii`` comes out of ``arccos`` near 0, and its error cancels
    between ``\sin t_{ii}`` and ``t_{ii}`` to third order. A zero neuron's gradient
    is 0 and it adds nothing to the others'.

    Point ``b``'s result depends on ``Wt[b]`` alone (each operation acts slice by
    slice), so a stack gives what its points give one at a time.
    """
    B, m, d = Wt.shape
    work = teacher.rows
    if work is None or work.shape != Wt.shape:
        work = teacher.rows = _RowWork(Wt.shape, teacher)
    nW = np.sqrt(np.einsum("bmd,bmd->bm", Wt, Wt, out=work.norms), out=work.norms)
    zero = not nW.all()
    safe = np.where(nW > 0, nW, 1.0) if zero else nW
    U = np.divide(Wt, safe[:, :, None], out=work.units[:, :m])
    C = _clip_cosines(np.matmul(U, work.units.transpose(0, 2, 1), out=work.cosines))
    S = np.square(C, out=work.sines)
    np.subtract(1.0, S, out=S)
    np.sqrt(S, out=S)
    work.weights[:, :m, 0] = nW
    radial = np.matmul(S, work.weights, out=work.radial)  # (B, m, 1)
    np.arccos(C, out=C)
    P = np.subtract(np.pi, C, out=C)
    # the radial term r_i u_i = (r_i / |w_i|) w_i joins the product through P's diagonal
    radial_over_norm = np.divide(radial[:, :, 0], safe if zero else nW, out=work.ratio)
    diagonal = P.reshape(B, -1)[:, :: m + teacher.k + 1]  # P[b, i, i], a view
    diagonal += radial_over_norm
    work.signed[:, :m] = Wt
    G = np.matmul(P, work.signed)
    if zero:
        G *= (nW > 0)[:, :, None]
    G *= 1.0 / TWO_PI
    return G


def stack_gradient(W, teacher):
    """The gradient (B, d, m) of a stack against its teachers (a :class:`_Teacher`).

    Computed on a contiguous copy with neurons as rows (:func:`_gradient_rows`), so it
    equals, bit for bit, what :func:`~plugins.population._descent.descend` computes on
    its iterates, which it keeps in that layout.
    """
    rows = np.ascontiguousarray(np.swapaxes(W, -1, -2))
    return _gradient_rows(rows, teacher).transpose(0, 2, 1)
