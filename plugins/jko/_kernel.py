r"""Gibbs kernels of the squared Euclidean cost: dense, separable, block diagonal.

For positions :math:`w_1, \dots, w_N \in \mathbb{R}^d` and the cost
:math:`C_{ij} = \|w_i - w_j\|^2` the Gibbs kernel is

.. math::

    K_{ij} = \exp(-C_{ij} / \gamma).

Every kernel here is symmetric and offers two products:

- ``apply(v)`` : :math:`K v` (plain domain);
- ``log_apply(u)`` : :math:`\log\big(K \exp(u)\big)`, computed with log-sum-exp
  from :math:`\log K = -C/\gamma`, so that neither :math:`K` nor the scalings
  underflow however small :math:`\gamma` is (Peyré 2015, Sec. 3.3; Schmitzer 2019).

On a regular grid the cost is a sum over axes, so the kernel is the Kronecker
product of 1-D kernels, :math:`K = K_1 \otimes \dots \otimes K_d`, and is applied
axis by axis without ever forming the ``N x N`` matrix: on an ``m x m`` grid
(``N = m^2``) one product costs ``4 m^3 = 4 N^{3/2}`` flops instead of ``2 N^2``.
The same holds for positions that are a *subset* of a grid (zero mass on the other
nodes) or that repeat grid nodes (the masses of copies add up on their node), so
:class:`SeparableKernel` takes an index map from positions to grid nodes.

:class:`BlockKernel` puts independent kernels on disjoint groups of positions (one
per output sign: no transport between positive and negative mass).

References
----------
G. Peyré, "Entropic approximation of Wasserstein gradient flows", SIAM J. Imaging
Sci. 8(4), 2015. B. Schmitzer, "Stabilized sparse scaling algorithms for entropy
regularized transport problems", SIAM J. Sci. Comput. 41(3), 2019.
"""

from dataclasses import dataclass

import numpy as np

from core.errors import ConfigError

__all__ = [
    "Grid",
    "detect_grid",
    "DenseKernel",
    "SeparableKernel",
    "BlockKernel",
    "make_kernel",
    "logsumexp",
    "log_matmul",
    "log_matmul_axis",
    "MAX_DENSE_BYTES",
]

#: Most memory for dense kernels (``K`` and ``log K``, all blocks together): 2 GiB.
MAX_DENSE_BYTES = 2 * 2**30


def logsumexp(T, axis=-1):
    """Stable ``log(sum(exp(T), axis))``; rows of ``-inf`` give ``-inf`` without warnings."""
    mx = np.max(T, axis=axis, keepdims=True)
    mx[~np.isfinite(mx)] = 0.0
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(T - mx), axis=axis, keepdims=True)) + mx
    return np.squeeze(out, axis=axis)


#: Below this a shifted product may have lost terms to underflow (see :func:`log_matmul`).
SAFE_SUM = 1e-280

_TINY = np.finfo(np.float64).tiny  # smallest normal double, 2.2e-308


def flush_subnormal(A):
    """Set entries below the smallest normal double to 0, in place; return ``A``.

    Subnormal operands make BLAS products 30 times slower on x86; dropping them
    changes a sum of nonnegative terms by less than ``2.2e-308`` per term.
    """
    A[A < _TINY] = 0.0
    return A


def log_matmul(U, L, K, block=1 << 20):
    r"""``log(exp(U) @ exp(L).T)`` along the last axis, by a shifted matmul with exact repair.

    With the row maxima :math:`s_i = \max_k U_{ik}` the product is computed as

    .. math:: V_{il} = s_i + \log \sum_k K_{lk}\, e^{U_{ik} - s_i},

    one matrix product (BLAS speed). All terms are nonnegative, so the sum is exact
    to ``m`` roundings except for terms lost to underflow or flushed as subnormal
    (each below ``2.2e-308``, see :func:`flush_subnormal`).
    Where the sum is at least :data:`SAFE_SUM` those are negligible (relative
    ``m * 1e-28``); the entries below it (far from the row's mass when ``gamma`` is
    small) are recomputed by log-sum-exp from ``L``. The result equals the
    log-sum-exp product to rounding, at matmul cost where nothing underflows.

    Parameters
    ----------
    U : ndarray, shape (..., m_in)
        Log-values (``-inf`` allowed).
    L : ndarray, shape (m_out, m_in)
        Log-kernel.
    K : ndarray, shape (m_out, m_in)
        ``exp(L)`` (subnormals flushed to 0).
    block : int
        Most elements of a temporary in the repair.

    Returns
    -------
    V : ndarray, shape (..., m_out)
    """
    s = np.max(U, axis=-1, keepdims=True)
    s[~np.isfinite(s)] = 0.0
    R = flush_subnormal(np.exp(U - s)) @ K.T
    with np.errstate(divide="ignore"):
        V = np.log(R) + s
    bad = R < SAFE_SUM
    empty = np.all(U == -np.inf, axis=-1)  # rows of zero mass: -inf exactly, nothing to repair
    if np.any(empty):
        bad &= ~empty[..., None]
    if np.any(bad):
        U2 = U.reshape(-1, U.shape[-1])
        V2 = V.reshape(-1, V.shape[-1])
        rows, cols = np.nonzero(bad.reshape(V2.shape))
        step = max(1, block // U.shape[-1])
        for start in range(0, rows.size, step):
            r, c = rows[start : start + step], cols[start : start + step]
            V2[r, c] = logsumexp(U2[r] + L[c])
        V = V2.reshape(V.shape)
    return V


def _left_matmul(K, V3):
    """``K @ V3[l]`` for every ``l``: ``V3`` of shape ``(L, m, R)``, contiguous result.

    Always one BLAS product: ``L`` small products (numpy's stacked ``matmul``, or a
    loop) run 10 to 20 times slower than one product of the same flops on this
    2-core machine under load (thread start-up per call), so the middle axis is
    brought to the front by a copy, ``K @ (m, L R)``, and moved back.
    """
    L, m, R = V3.shape
    if L == 1:
        return (K @ V3[0])[None]
    if R == 1:
        return (V3[:, :, 0] @ K.T)[:, :, None]
    front = np.ascontiguousarray(V3.transpose(1, 0, 2)).reshape(m, L * R)
    out = (K @ front).reshape(K.shape[0], L, R)
    return np.ascontiguousarray(out.transpose(1, 0, 2))


def log_matmul_axis(U3, L, K, block=1 << 20):
    r"""``log(K exp(U3))`` along the middle axis of ``U3`` ``(L, m, R)``, as :func:`log_matmul`.

    The shift is the maximum over the summed axis (per ``(l, r)``); entries whose
    shifted sum is below :data:`SAFE_SUM` are recomputed by log-sum-exp from ``L``.

    Parameters
    ----------
    U3 : ndarray, shape (L, m_in, R)
    L : ndarray, shape (m_out, m_in)
        Log-kernel.
    K : ndarray, shape (m_out, m_in)
        ``exp(L)`` (subnormals flushed to 0).

    Returns
    -------
    V : ndarray, shape (L, m_out, R)
    """
    if U3.shape[2] == 1:
        return log_matmul(U3[:, :, 0], L, K, block)[:, :, None]
    s = np.max(U3, axis=1, keepdims=True)
    empty = ~np.isfinite(s)
    s[empty] = 0.0
    E = flush_subnormal(np.exp(U3 - s))
    R = _left_matmul(K, E)
    with np.errstate(divide="ignore"):
        V = np.log(R) + s
    bad = R < SAFE_SUM
    if np.any(empty):
        bad &= ~empty
    if np.any(bad):
        ls, cs, rs = np.nonzero(bad)
        step = max(1, block // U3.shape[1])
        for start in range(0, ls.size, step):
            sl = slice(start, start + step)
            V[ls[sl], cs[sl], rs[sl]] = logsumexp(U3[ls[sl], :, rs[sl]] + L[cs[sl]])
    return V


# -- grids -----------------------------------------------------------------------------
@dataclass
class Grid:
    """A regular grid and the node of each position.

    Attributes
    ----------
    axes : list of ndarray
        Node coordinates per axis, ``axes[k]`` of shape ``(m_k,)``, evenly spaced.
    index : ndarray of int, shape (N,)
        Flat (C-order) node index of each position.
    """

    axes: list
    index: np.ndarray

    @property
    def shape(self):
        """``(m_1, ..., m_d)``."""
        return tuple(len(a) for a in self.axes)

    @property
    def n_nodes(self):
        """Number of grid nodes ``M = prod(m_k)``."""
        return int(np.prod(self.shape))

    @property
    def spacing(self):
        """Node spacing per axis (0 for an axis with one node)."""
        return [float(a[1] - a[0]) if len(a) > 1 else 0.0 for a in self.axes]

    @property
    def injective(self):
        """Whether no two positions share a node."""
        return len(np.unique(self.index)) == len(self.index)

    @property
    def bijective(self):
        """Whether the positions are exactly the nodes, once each."""
        return self.injective and len(self.index) == self.n_nodes


def detect_grid(points, rtol=1e-8):
    """Find the regular grid the positions lie on, or None.

    Per axis the spacing is the smallest gap between distinct coordinates; every
    coordinate must sit on ``low + k * spacing`` within ``rtol`` times the axis span.
    Positions may leave nodes empty and may repeat a node.

    Parameters
    ----------
    points : ndarray, shape (d, N)
    rtol : float

    Returns
    -------
    Grid or None
    """
    points = np.asarray(points, dtype=np.float64)
    axes, idx = [], []
    for x in points:
        lo, hi = float(x.min()), float(x.max())
        span = hi - lo
        tol = rtol * max(span, 1.0)
        if span <= tol:
            axes.append(np.array([lo]))
            idx.append(np.zeros(x.shape, dtype=np.int64))
            continue
        gaps = np.diff(np.sort(x))
        h = float(gaps[gaps > tol].min())
        k = np.rint((x - lo) / h).astype(np.int64)
        if np.max(np.abs(lo + k * h - x)) > tol:
            return None
        m = int(k.max()) + 1
        if m > 4 * x.size:  # far sparser than a grid: not one
            return None
        axes.append(lo + h * np.arange(m))
        idx.append(k)
    shape = tuple(len(a) for a in axes)
    return Grid(axes=axes, index=np.ravel_multi_index(tuple(idx), shape))


# -- kernels ---------------------------------------------------------------------------
class DenseKernel:
    r"""The Gibbs kernel as an explicit ``N x N`` matrix (any point set).

    Parameters
    ----------
    points : ndarray, shape (d, N)
    gamma : float
        Entropic regularisation, in units of squared distance.
    floor : float
        Entries of ``K`` below ``floor`` are raised to it (Gradient-Work floors its
        kernel at ``1e-6``: every position then reaches every other one); 0: exact.

    Notes
    -----
    One product costs ``2 N^2`` flops. The matrix and its logarithm (``16 N^2``
    bytes together) are formed on first use; :func:`make_kernel` refuses dense
    kernels above :data:`MAX_DENSE_BYTES` in all.
    """

    kind = "dense"

    def __init__(self, points, gamma, floor=0.0):
        self.points = np.asarray(points, dtype=np.float64)
        self.gamma = float(gamma)
        self.floor = float(floor)
        self.size = self.points.shape[1]
        self._log = None
        self._mat = None

    @property
    def nbytes(self):
        """Memory of ``K`` and ``log K`` together (bytes)."""
        return 16 * self.size**2

    @property
    def log_matrix(self):
        r""":math:`\log K = -C / \gamma`, shape ``(N, N)``."""
        if self._log is None:
            P = self.points
            sq = np.sum(P * P, axis=0)
            C = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (P.T @ P), 0.0)
            np.fill_diagonal(C, 0.0)
            self._log = -C / self.gamma
            if self.floor > 0:
                np.maximum(self._log, np.log(self.floor), out=self._log)
        return self._log

    @property
    def matrix(self):
        """:math:`K`, shape ``(N, N)``."""
        if self._mat is None:
            self._mat = flush_subnormal(np.exp(self.log_matrix))
        return self._mat

    def apply(self, v):
        """``K v`` for ``v`` of shape ``(..., N)`` (several vectors at once)."""
        return v @ self.matrix  # K is symmetric

    def log_apply(self, u):
        """``log(K exp(u))`` for ``u`` of shape ``(..., N)`` (:func:`log_matmul`)."""
        return log_matmul(u, self.log_matrix, self.matrix)

    def flops(self):
        """Flops of one product (a multiply-add counts 2)."""
        return 2 * self.size**2


class SeparableKernel:
    r"""The Gibbs kernel of positions on a regular grid, applied axis by axis.

    .. math:: K = K_1 \otimes \cdots \otimes K_d, \qquad
              (K_k)_{il} = \exp\big(-(x^k_i - x^k_l)^2 / \gamma\big).

    A product scatters the vector onto the grid nodes (adding the entries of
    positions that share a node), applies the 1-D kernels along each axis, and
    gathers the result back at the positions. Vectors may be stacked along leading
    axes and are then applied together (one matrix product per axis for all).

    Parameters
    ----------
    grid : Grid
        From :func:`detect_grid`.
    gamma : float

    Notes
    -----
    On a grid of shape ``(m_1, ..., m_d)`` with ``M`` nodes one product costs
    ``2 M sum_k m_k`` flops: ``4 m^3`` on an ``m x m`` grid.
    """

    kind = "separable"

    def __init__(self, grid, gamma):
        self.grid = grid
        self.gamma = float(gamma)
        self.size = len(grid.index)
        self.shape = grid.shape
        self._log1d = [-((a[:, None] - a[None, :]) ** 2) / self.gamma for a in grid.axes]
        self._mat1d = [flush_subnormal(np.exp(L)) for L in self._log1d]
        self._injective = grid.injective
        self._identity = grid.bijective and np.array_equal(grid.index, np.arange(self.size))

    # scatter / gather between positions (..., N) and grid nodes (..., *shape)
    def _scatter(self, v, fill):
        lead = v.shape[:-1]
        if self._identity:
            return v.reshape(lead + self.shape)
        if self._injective:
            out = np.full(lead + (self.grid.n_nodes,), fill)
            out[..., self.grid.index] = v
            return out.reshape(lead + self.shape)
        flat = v.reshape(-1, self.size)
        rows = [self._add_up(row, fill) for row in flat]
        return np.stack(rows).reshape(lead + self.shape)

    def _add_up(self, v, fill):
        """Sum (``fill = 0``) or log-sum-exp (``fill = -inf``) the entries per node."""
        index, M = self.grid.index, self.grid.n_nodes
        if fill == 0.0:
            return np.bincount(index, weights=v, minlength=M)
        mx = np.full(M, -np.inf)
        np.maximum.at(mx, index, v)
        shift = np.where(np.isfinite(mx), mx, 0.0)
        total = np.bincount(index, weights=np.exp(v - shift[index]), minlength=M)
        with np.errstate(divide="ignore"):
            return np.log(total) + shift

    def _gather(self, V):
        lead = V.shape[: V.ndim - len(self.shape)]
        flat = V.reshape(lead + (-1,))
        return flat if self._identity else flat[..., self.grid.index]

    def _product(self, V, log):
        """Apply the 1-D kernels along the grid axes of ``V`` ``(..., *shape)``.

        Each axis is a contiguous ``(L, m_k, R)`` view (``L``: the axes before,
        ``R``: the axes after) multiplied by ``K_k`` from the left as one BLAS
        product (:func:`_left_matmul`); a ``moveaxis`` before ``@`` (the former code)
        made numpy's stacked matmul run many small or strided products: 20 to 30
        times slower on 200 x 200 grids.
        """
        d = len(self.shape)
        V = np.ascontiguousarray(V)
        full = V.shape
        for k in range(d):
            axis = V.ndim - d + k
            L = int(np.prod(full[:axis], dtype=np.int64))
            R = int(np.prod(full[axis + 1 :], dtype=np.int64))
            V3 = V.reshape(L, full[axis], R)
            if log:
                out = log_matmul_axis(V3, self._log1d[k], self._mat1d[k])
            else:
                out = _left_matmul(self._mat1d[k], V3)
            V = out.reshape(full)
        return V

    def apply(self, v):
        """``K v`` for ``v`` of shape ``(..., N)``."""
        return np.ascontiguousarray(self._gather(self._product(self._scatter(v, 0.0), False)))

    def log_apply(self, u):
        """``log(K exp(u))`` for ``u`` of shape ``(..., N)``, axis by axis (:func:`log_matmul`)."""
        U = self._scatter(u, -np.inf)
        return np.ascontiguousarray(self._gather(self._product(U, True)))

    def flops(self):
        """Flops of one product (a multiply-add counts 2)."""
        return 2 * self.grid.n_nodes * sum(self.shape)


class BlockKernel:
    """Independent kernels on disjoint groups of positions (block-diagonal ``K``).

    Blocks that share one kernel object (groups with the same positions, such as
    the positive and negative copies of a grid) are applied together, as a stack.

    Parameters
    ----------
    size : int
        Total number of positions ``N``.
    blocks : list of (ndarray of int, kernel)
        The positions of each group and the kernel acting on them; every position
        belongs to exactly one group.
    """

    def __init__(self, size, blocks):
        self.size = int(size)
        self.blocks = list(blocks)
        seen = np.concatenate([idx for idx, _ in self.blocks]) if self.blocks else []
        if len(seen) != self.size or len(np.unique(seen)) != self.size:
            raise ValueError("blocks must partition the positions")
        batches = {}
        for idx, kernel in self.blocks:
            batches.setdefault(id(kernel), (kernel, []))[1].append(idx)
        self._batches = [(kernel, np.stack(ids)) for kernel, ids in batches.values()]
        self._single = len(self.blocks) == 1 and np.array_equal(
            self.blocks[0][0], np.arange(self.size)
        )

    @property
    def kinds(self):
        """The kind of each block's kernel (``"dense"`` or ``"separable"``)."""
        return [k.kind for _, k in self.blocks]

    def _map(self, method, v):
        if self._single:
            return getattr(self.blocks[0][1], method)(v)
        out = np.empty(v.shape[:-1] + (self.size,))
        for kernel, ids in self._batches:  # ids: (copies, group size)
            out[..., ids] = getattr(kernel, method)(v[..., ids])
        return out

    def apply(self, v):
        """``K v`` for ``v`` of shape ``(..., N)`` (several vectors at once)."""
        return self._map("apply", v)

    def log_apply(self, u):
        """``log(K exp(u))`` for ``u`` of shape ``(..., N)``."""
        return self._map("log_apply", u)

    def flops(self):
        """Flops of one product."""
        return sum(k.flops() for _, k in self.blocks)


def _build_one(points, gamma, kind, floor=0.0):
    if floor > 0:
        if kind == "separable":
            raise ConfigError(
                "algorithm (jko).kernel is 'separable' but a floored kernel "
                f"(kernel_floor={floor:g}) is not separable; use kernel='dense' or 'auto'"
            )
        return DenseKernel(points, gamma, floor)
    if kind in ("auto", "separable"):
        grid = detect_grid(points)
        if grid is not None:
            if kind == "separable":
                return SeparableKernel(grid, gamma)
            n = points.shape[1]
            if grid.n_nodes * sum(grid.shape) <= n * n:  # cheaper than dense
                return SeparableKernel(grid, gamma)
        elif kind == "separable":
            raise ConfigError(
                "algorithm (jko).kernel is 'separable' but the positions do not lie on a "
                "regular grid; use kernel='dense' or 'auto'"
            )
    return DenseKernel(points, gamma)


def make_kernel(points, gamma, groups=None, kind="auto", floor=0.0):
    """Build the kernel of positions split into groups that exchange no mass.

    Parameters
    ----------
    points : ndarray, shape (d, N)
    gamma : float
        Entropic regularisation, in units of squared distance.
    groups : list of ndarray of int, optional
        A partition of ``range(N)``; default one group.
    kind : {"auto", "separable", "dense"}
        ``"auto"``: separable where a group lies on a regular grid and that is
        cheaper than the dense product, else dense.
    floor : float
        Lower bound on the kernel's entries (dense kernels only); 0: exact kernel.

    Returns
    -------
    BlockKernel
    """
    if kind not in ("auto", "separable", "dense"):
        raise ConfigError(
            f"algorithm (jko).kernel must be one of {{'auto', 'separable', 'dense'}}; got {kind!r}"
        )
    points = np.asarray(points, dtype=np.float64)
    N = points.shape[1]
    if groups is None:
        groups = [np.arange(N)]
    blocks, built = [], []  # built: (positions, kernel), shared by identical groups
    for g in groups:
        if not len(g):
            continue
        g = np.asarray(g, dtype=np.int64)
        sub = points[:, g]
        kernel = next(
            (k for P, k in built if P.shape == sub.shape and np.array_equal(P, sub)), None
        )
        if kernel is None:
            kernel = _build_one(sub, gamma, kind, floor)
            built.append((sub, kernel))
        blocks.append((g, kernel))
    dense = sum(k.nbytes for _, k in built if k.kind == "dense")
    if dense > MAX_DENSE_BYTES:
        sizes = ", ".join(str(k.size) for _, k in built if k.kind == "dense")
        raise ConfigError(
            f"algorithm (jko): dense kernels on blocks of {sizes} positions need "
            f"{dense / 2**30:.1f} GiB (K and log K; limit {MAX_DENSE_BYTES / 2**30:.0f} GiB); "
            "use kernel='separable' on a regular grid"
        )
    return BlockKernel(N, blocks)
