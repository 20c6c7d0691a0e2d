r"""Activation patterns of the data: exact, sampled, or those of a network's neurons.

A pattern is a boolean column ``1[X g >= 0]`` of length ``n`` for a gate vector
``g``; the convex program (:mod:`plugins.convex._program`) has one or two groups per
pattern. Every function returns a boolean ``(n, P)`` array without duplicate
columns and without the all-zero column (whose groups could only be zero).

exact
    Every pattern ``1[X g > 0]`` of an open cell of the hyperplane arrangement
    ``{g : x_i . g = 0}`` (for a gate off every hyperplane, ``>`` and ``>=``
    agree). A cell's closure is a pointed cone (after reducing ``X`` to the
    coordinates of its row space), so it has an extreme ray: a direction ``r``
    spanning the null space of ``r_X - 1`` independent rows ``S`` (``r_X`` the
    rank). The cell's signs agree with ``sign(X r)`` off the rows through ``r``,
    so the patterns are found by enumerating every such ``S`` and both ``+-r``, and
    every sign assignment on the rows through ``r``. In general position (every
    ``r_X`` rows independent) each assignment is a cell; otherwise (duplicate
    points, points on a common hyperplane through the origin) each candidate is
    kept only when a linear program finds a gate realising it. For 1-D inputs with
    a bias and distinct points this gives the ``2n - 1`` non-zero patterns of the
    ``n`` thresholds (prefixes and suffixes of the sorted points); in general
    position there are ``2 sum_{k < r_X} C(n - 1, k)`` cells, one fewer pattern
    when the all-negative cell exists (always with a bias column). The enumeration
    costs ``C(n, r_X - 1) 2^{r_X}`` candidates: above ``max_candidates`` (default
    ``10^6``, e.g. ``n = 100, d = 4`` is 6.5e5, ``n = 100, d = 5`` 1.25e8) it is
    refused with a :class:`core.errors.ConfigError` pointing to ``sampled``.
sampled
    ``1[X g >= 0]`` for Gaussian gates ``g ~ N(0, I_d)`` drawn from a given
    generator (the run's algorithm stream), duplicates and the all-zero pattern
    removed: the choice of pyscnn and of Pilanci & Ergen's experiments. Fewer
    than asked may remain.
neurons
    The patterns ``1[X w_j >= 0]`` of a network's neurons, one group per neuron
    with the sign of its output weight (Gradient-Work's convex iteration);
    repeated (pattern, sign) pairs are merged (two groups on one pattern and sign
    are one group of the group lasso: the triangle inequality makes merging them
    optimal), all-zero patterns dropped.

Examples
--------
>>> import numpy as np
>>> x = np.array([-1.0, 0.0, 2.0])
>>> X = np.stack([x, np.ones(3)], axis=1)  # 1-D inputs with a bias
>>> exact_patterns(X).shape  # 2n - 1 patterns
(3, 5)
"""

import itertools
from math import comb

import numpy as np

from core.errors import ConfigError

__all__ = [
    "MAX_CANDIDATES",
    "unique_masks",
    "gate_masks",
    "exact_patterns",
    "count_exact_candidates",
    "sampled_patterns",
    "neuron_patterns",
    "realisable",
]

MAX_CANDIDATES = 10**6
"""Largest ``C(n, r - 1) 2^r`` :func:`exact_patterns` enumerates by default."""

_CHUNK = 4096  # subsets per vectorised batch
_MAX_DEGENERATE_ROWS = 12  # at most 2^12 assignments on the rows through one ray


def unique_masks(masks, signs=None):
    """Drop all-zero columns and repeated columns (first occurrence kept, in order).

    Parameters
    ----------
    masks : ndarray of bool, shape (n, P)
    signs : ndarray of int, shape (P,), optional
        When given, a column repeats only with the same sign.

    Returns
    -------
    masks : ndarray of bool, shape (n, P')
    signs : ndarray of int, shape (P',), only when ``signs`` was given
    """
    masks = np.asarray(masks, dtype=bool)
    keys = np.packbits(masks, axis=0)
    if signs is not None:
        signs = np.asarray(signs, dtype=int)
        keys = np.vstack([keys, (signs > 0).astype(np.uint8)[None]])
    nonzero = masks.any(axis=0)
    _, first = np.unique(keys.T, axis=0, return_index=True)
    keep = np.zeros(masks.shape[1], dtype=bool)
    keep[first] = True
    keep &= nonzero
    if signs is None:
        return masks[:, keep]
    return masks[:, keep], signs[keep]


def gate_masks(X, G):
    """Patterns ``1[X g >= 0]`` of gate vectors, shape (n, p).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    G : ndarray, shape (d, p)
    """
    return X @ G >= 0


def _row_space(X):
    """``X`` in coordinates of its row space, shape (n, rank)."""
    if X.shape[0] == 0:
        return X[:, :0]
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(X.shape) * np.finfo(float).eps)) if s.size else 0
    return X @ Vt[:rank].T


def count_exact_candidates(n, rank):
    """``C(n, rank - 1) 2^rank``: the candidates :func:`exact_patterns` enumerates."""
    return comb(n, rank - 1) * 2**rank if rank > 0 else 0


def realisable(X, mask):
    """Whether some gate ``g`` has ``x_i . g > 0`` exactly on ``mask`` (a linear program).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    mask : ndarray of bool, shape (n,)
    """
    from scipy.optimize import linprog

    sign = np.where(mask, 1.0, -1.0)
    # sign_i x_i . g >= 1  <=>  -sign_i x_i . g <= -1 (the cell is open: scale the gate)
    res = linprog(
        np.zeros(X.shape[1]),
        A_ub=-(sign[:, None] * X),
        b_ub=-np.ones(X.shape[0]),
        bounds=[(None, None)] * X.shape[1],
        method="highs",
    )
    return res.status == 0


def exact_patterns(X, max_candidates=MAX_CANDIDATES):
    """Every activation pattern of the data (see the module docstring).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    max_candidates : int
        Refuse (ConfigError) when the enumeration would exceed this many candidates.

    Returns
    -------
    masks : ndarray of bool, shape (n, P)
        Distinct, non-zero patterns, in the order of ``np.unique`` on packed bits.
    """
    X = np.asarray(X, dtype=float)
    n = X.shape[0]
    zero_rows = ~np.any(X != 0, axis=1)  # x_i . g = 0 >= 0 for every gate
    Y = _row_space(X[~zero_rows])
    n_live, rank = Y.shape
    if rank == 0:
        masks = np.ones((n, 1), dtype=bool)
        return masks
    count = count_exact_candidates(n_live, rank)
    if count > max_candidates:
        raise ConfigError(
            f"exact patterns: {count:.3g} candidate patterns for n = {n_live}, rank {rank} "
            f"(above max_candidates = {max_candidates:.3g}); use patterns='sampled'"
        )
    scale = np.linalg.norm(Y, axis=1)
    found, degenerate = [], {}
    subsets = itertools.combinations(range(n_live), rank - 1)
    combos = np.array(list(itertools.product((False, True), repeat=rank - 1)), dtype=bool)
    combos = combos.reshape(2 ** (rank - 1), rank - 1)
    while chunk := list(itertools.islice(subsets, _CHUNK)):
        batch = np.array(chunk, dtype=np.intp).reshape(len(chunk), rank - 1)
        rays = _null_rays(Y, batch)  # (K, rank), unit, NaN where S is dependent
        ok = ~np.isnan(rays[:, 0])
        batch, rays = batch[ok], rays[ok]
        for ray_sign in (1.0, -1.0):
            Z = Y @ (ray_sign * rays).T  # (n_live, K)
            through = np.abs(Z) <= 1e-9 * scale[:, None]
            base = Z > 0
            general = through.sum(axis=0) == rank - 1
            if np.any(general):
                found.append(_assign(base[:, general].T, batch[general], combos))
            for k in np.flatnonzero(~general):
                key = (np.packbits(base[:, k]).tobytes(), np.packbits(through[:, k]).tobytes())
                degenerate.setdefault(key, (base[:, k], np.flatnonzero(through[:, k])))
    known = {row.tobytes() for block in found for row in block}
    for base, rows in degenerate.values():
        if rows.size > _MAX_DEGENERATE_ROWS:
            raise ConfigError(
                f"exact patterns: {rows.size} data points on one hyperplane through the "
                "origin (too degenerate to enumerate); use patterns='sampled'"
            )
        for bits in itertools.product((False, True), repeat=rows.size):
            candidate = base.copy()
            candidate[rows] = bits
            key = candidate.tobytes()
            if key not in known and realisable(Y, candidate):
                found.append(candidate[None])
            known.add(key)  # decided either way
    live = np.concatenate(found, axis=0) if found else np.zeros((0, n_live), dtype=bool)
    live = np.unique(live, axis=0)
    masks = np.ones((n, live.shape[0]), dtype=bool)  # zero rows: always active (>=)
    masks[~zero_rows] = live.T
    return unique_masks(masks)


def _null_rays(Y, subsets):
    """Unit null vectors of the row subsets ``Y[S]`` (NaN rows where rank < r - 1).

    Parameters
    ----------
    Y : ndarray, shape (n, r)
    subsets : ndarray of int, shape (K, r - 1)

    Returns
    -------
    rays : ndarray, shape (K, r)
    """
    K, r = subsets.shape[0], Y.shape[1]
    if r == 1:
        return np.ones((K, 1))
    A = Y[subsets]  # (K, r - 1, r)
    _, s, Vt = np.linalg.svd(A, full_matrices=True)
    rays = Vt[:, -1, :].copy()
    dependent = s[:, -1] <= s[:, 0] * r * 1e-10
    rays[dependent] = np.nan
    return rays


def _assign(base, subsets, combos):
    """Every 0/1 assignment ``combos`` on the rows ``subsets`` of each ``base`` pattern.

    base (K, n), subsets (K, r - 1), combos (C, r - 1) -> (K * C, n).
    """
    K, C = base.shape[0], combos.shape[0]
    out = np.repeat(base[:, None, :], C, axis=1)  # (K, C, n)
    if subsets.shape[1]:
        index = np.broadcast_to(subsets[:, None, :], (K, C, subsets.shape[1]))
        values = np.broadcast_to(combos[None], (K, C, combos.shape[1]))
        np.put_along_axis(out, index, values, axis=2)
    return out.reshape(K * C, -1)


def sampled_patterns(X, n_patterns, rng):
    """Patterns of ``n_patterns`` Gaussian gates, duplicates and all-zero removed.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    n_patterns : int
    rng : numpy.random.Generator

    Returns
    -------
    masks : ndarray of bool, shape (n, P), ``P <= n_patterns``
    """
    G = rng.standard_normal((X.shape[1], n_patterns))
    return unique_masks(gate_masks(X, G))


def neuron_patterns(X, W, a):
    """Patterns and signs of a network's neurons (Gradient-Work's convex mode).

    Parameters
    ----------
    X : ndarray, shape (n, d)
    W : ndarray, shape (d, m)
    a : ndarray, shape (m,)
        Output weights; their signs (``+1`` for ``a_j >= 0``) give the groups.

    Returns
    -------
    masks : ndarray of bool, shape (n, P)
    signs : ndarray of int, shape (P,)
        ``+1`` (group ``v_i``) or ``-1`` (group ``w_i``).
    """
    signs = np.where(np.asarray(a) >= 0, 1, -1)
    return unique_masks(gate_masks(X, W), signs)
