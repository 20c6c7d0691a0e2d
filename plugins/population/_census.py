r"""The census of the end points of population gradient descent (Safran & Shamir).

A sweep of ``population_gd`` runs over seeds (``configs/population_census.py``)
ends each initialisation at a critical point. The ``census`` sweep analysis
(``postprocess.py SWEEP`` writes ``census.json`` and ``census.csv``, ``plot.py SWEEP``
draws ``census_*.png``) sorts them, per cell of swept values (teacher width ``k``,
student width ``n``...), following the procedure of
``ItaySafran/Overparameterization`` (``local_minima.py``, ``README.md``):

1. **Global or not.** For ``V = I_k`` and ``n = k``: global when
   :math:`\|W^\top W - I\|_F < 10^{-6}` (the authors' test). Otherwise: global when
   the student equals the teacher up to permuting neurons, split neurons included
   (every live student neuron points along a teacher neuron, and the student
   neurons along each teacher neuron add up to it, within 1e-6 Frobenius).
2. **Compact form** of a non-global point (:func:`compact_form`; ``d = k = n`` and an
   orthonormal teacher, the point read in the teacher's basis ``V^T W``): entries
   rounded to 4 decimals; a value that occurs at most once in every row and column
   is a *diagonal* value (occurring exactly twice, it is taken only when its
   absolute value exceeds that of the entry completing the 2 x 2 square, the
   authors' rule; on a tie the larger value); its positions give a permutation of
   the rows that puts them on the main diagonal; rows and columns together are
   then ordered by diagonal value so that equal values form consecutive blocks of
   sizes ``p``. ``vals[i, i]`` is block ``i``'s diagonal value, ``vals[i, j]`` the
   entry between blocks ``i`` and ``j``, ``vals[i, -1]`` the off-diagonal value
   inside block ``i`` (0 for a block of size 1): :func:`reconstruct` rebuilds the
   matrix from ``(vals, p)`` exactly. A point whose diagonal values do not form a
   permutation keeps its raw form.
3. **Merging.** Two points are the same when their ``p`` are equal and the
   reconstruction of the first is within 1e-6 (Frobenius) of the second brought
   into block order; raw points when equal within 1e-6 up to a permutation of
   neurons. Multiplicities count the runs.
4. **Each distinct point** (evaluated at its reconstruction, the authors' choice):
   the population loss, the gradient norm, the smallest Hessian eigenvalue (at
   most 1e-4: flagged ``strict = False``, not a strict minimum, so a saddle is never
   counted as a minimum), the sum of neuron norms (the paper's bound is ``k``), the
   largest reconstruction error over its runs and the largest gradient norm of its
   runs' actual end points.

A run that did not reach its gradient tolerance (``grad_norm`` above the
algorithm's ``tol``: stopped by ``max_steps`` or ``wall_time``) is counted as
``not_converged`` and left out of the points.
"""

import json

import numpy as np

from core.components import Indicator, SweepAnalysis

from ._objective import population_grad, population_hessian, population_loss

__all__ = [
    "compact_form",
    "reconstruct",
    "is_global",
    "classify_point",
    "census_of_points",
    "wilson_interval",
    "Census",
    "PopulationIndicator",
    "DECIMALS",
    "MERGE_TOL",
    "GLOBAL_TOL",
    "STRICT_EIG",
]

DECIMALS = 4
"""Rounding of the entries when reading the compact form."""
MERGE_TOL = 1e-6
"""Frobenius distance below which two points are the same."""
GLOBAL_TOL = 1e-6
"""Frobenius tolerance of the global-minimum test."""
STRICT_EIG = 1e-4
"""A smallest Hessian eigenvalue at most this is not a strict minimum."""


def reconstruct(vals, p):
    """The k x k matrix of a compact form.

    Parameters
    ----------
    vals : array-like, shape (b, b + 1)
        ``vals[i, i]`` diagonal value of block ``i``; ``vals[i, j]`` (``j < b``, ``j != i``)
        the entries between blocks ``i`` (rows) and ``j`` (columns); ``vals[i, -1]``
        the off-diagonal entries inside block ``i``.
    p : array-like of int, shape (b,)
        Block sizes (``k = sum(p)``).

    Returns
    -------
    W : ndarray, shape (k, k)

    Examples
    --------
    >>> reconstruct([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [2, 1]).tolist()
    [[1.0, 3.0, 2.0], [3.0, 1.0, 2.0], [4.0, 4.0, 5.0]]
    """
    vals = np.asarray(vals, dtype=np.float64)
    p = np.asarray(p, dtype=int)
    b = len(p)
    if vals.shape != (b, b + 1) or (p < 1).any():
        raise ValueError(f"vals must have shape (b, b + 1) for b = len(p) = {b}; got {vals.shape}")
    block = np.repeat(np.arange(b), p)
    W = vals[block[:, None], block[None, :]]
    inner = vals[block, -1]
    same = block[:, None] == block[None, :]
    W = np.where(same, inner[:, None], W)
    np.fill_diagonal(W, vals[block, block])
    return W


def _diagonal_mask(R):
    """Positions of the diagonal values of a rounded square matrix ``R`` (bool (k, k))."""
    mask = np.zeros(R.shape, dtype=bool)
    for value in np.unique(R):
        at = R == value
        if at.sum(axis=0).max() > 1 or at.sum(axis=1).max() > 1:
            continue
        if at.sum() == 2:
            (r1, c1), (r2, c2) = np.argwhere(at)
            partner = R[r1, c2]
            if not (abs(value) > abs(partner) or (abs(value) == abs(partner) and value > partner)):
                continue
        mask |= at
    return mask


def compact_form(W, decimals=DECIMALS):
    """The authors' compact form of a square point (module docstring, step 2).

    Parameters
    ----------
    W : ndarray, shape (k, k)
        A point read in the teacher's basis (rows: coordinates, columns: neurons).
    decimals : int
        Rounding used to recognise equal entries.

    Returns
    -------
    form : tuple or None
        ``(vals, p, W_blocks)``: ``vals`` (b, b + 1), block sizes ``p`` (b,) and
        ``W_blocks`` (k, k), the point with its rows and columns permuted into
        block order (so ``reconstruct(vals, p)`` approximates ``W_blocks``). None
        when the diagonal values do not form a permutation.

    Examples
    --------
    >>> W = np.array([[0.1, 0.9, 0.2], [0.9, 0.1, 0.2], [0.3, 0.3, -0.5]])
    >>> vals, p, blocks = compact_form(W)
    >>> p.tolist(), vals.tolist()
    ([1, 2], [[-0.5, 0.3, 0.0], [0.2, 0.9, 0.1]])
    >>> bool(np.array_equal(reconstruct(vals, p), blocks))
    True
    """
    W = np.asarray(W, dtype=np.float64)
    k = W.shape[0]
    if W.ndim != 2 or W.shape[1] != k:
        return None
    R = np.round(W, decimals)
    mask = _diagonal_mask(R)
    if not (mask.sum(axis=0) == 1).all() or not (mask.sum(axis=1) == 1).all():
        return None
    rows = np.argmax(mask, axis=0)  # column i has its diagonal value in row rows[i]
    W1 = W[rows, :]
    key = np.round(np.diag(W1), decimals)
    order = np.argsort(key, kind="stable")
    W2 = W1[np.ix_(order, order)]
    _, p = np.unique(key[order], return_counts=True)
    starts = np.concatenate([[0], np.cumsum(p)[:-1]])
    b = len(p)
    vals = np.zeros((b, b + 1))
    vals[:, :b] = W2[np.ix_(starts, starts)]
    for i, (start, size) in enumerate(zip(starts, p)):
        if size > 1:
            vals[i, -1] = W2[start, start + 1]
    return vals, p.astype(int), W2


def _is_identity(V):
    d, k = V.shape
    return d == k and bool(np.array_equal(V, np.eye(k)))


def is_global(W, V, tol=GLOBAL_TOL):
    """Whether ``W`` (d, n) is a global minimum for the teacher ``V`` (d, k).

    ``V = I_k`` and ``n = k``: :math:`\\|W^\\top W - I\\|_F < tol` (the authors' test).
    Otherwise every student neuron of norm above ``tol`` must point along a teacher
    neuron (cosine above ``1 - tol``) and the student neurons along each teacher
    neuron must add up to it within ``tol`` (Frobenius over the teacher).

    Examples
    --------
    >>> is_global(np.eye(3)[:, [2, 0, 1]], np.eye(3))
    True
    >>> V = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    >>> is_global(np.array([[0.25, 0.75, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]), V)
    True
    """
    W = np.asarray(W, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    if _is_identity(V) and W.shape == V.shape:
        return bool(np.linalg.norm(W.T @ W - np.eye(W.shape[1])) < tol)
    nW = np.linalg.norm(W, axis=0)
    nV = np.linalg.norm(V, axis=0)
    live = nW > tol
    cos = (W[:, live] / nW[live]).T @ (V / np.where(nV > 0, nV, 1.0))
    best = np.argmax(cos, axis=1) if live.any() else np.zeros(0, dtype=int)
    if live.any() and cos[np.arange(len(best)), best].min() < 1.0 - tol:
        return False
    sums = np.zeros_like(V)
    np.add.at(sums.T, best, W[:, live].T)
    return bool(np.linalg.norm(sums - V) < tol)


def _orthonormal_square(V):
    d, k = V.shape
    return d == k and bool(np.allclose(V.T @ V, np.eye(k), atol=1e-12))


def classify_point(W, V, decimals=DECIMALS):
    """Global test and form of one end point.

    Parameters
    ----------
    W : ndarray, shape (d, n)
    V : ndarray, shape (d, k)

    Returns
    -------
    point : dict
        ``global`` (bool); for a non-global point, ``form``: ``"compact"`` with
        ``vals``, ``p`` and ``blocks`` (the point in block order, in the teacher's
        basis, whose teacher is then ``I_k``), or ``"raw"`` with ``blocks`` the point
        itself and ``teacher`` ``V``.
    """
    W = np.asarray(W, dtype=np.float64)
    V = np.asarray(V, dtype=np.float64)
    if is_global(W, V):
        return {"global": True}
    if W.shape == V.shape and _orthonormal_square(V):
        form = compact_form(V.T @ W, decimals)
        if form is not None:
            vals, p, blocks = form
            return {
                "global": False,
                "form": "compact",
                "vals": vals,
                "p": p,
                "blocks": blocks,
                "teacher": np.eye(V.shape[1]),
            }
    return {"global": False, "form": "raw", "blocks": W, "teacher": V}


def _same(entry, point, tol):
    """Whether ``point`` (from :func:`classify_point`) is the distinct point ``entry``."""
    if entry["form"] != point["form"]:
        return None
    if entry["form"] == "compact":
        if not np.array_equal(entry["p"], point["p"]):
            return None
        dist = float(np.linalg.norm(entry["reference"] - point["blocks"]))
        return dist if dist < tol else None
    if entry["reference"].shape != point["blocks"].shape or not np.array_equal(
        entry["teacher"], point["teacher"]
    ):
        return None
    from scipy.optimize import linear_sum_assignment

    A, B = entry["reference"], point["blocks"]
    cost = ((A[:, :, None] - B[:, None, :]) ** 2).sum(axis=0)
    rows, cols = linear_sum_assignment(cost)
    dist = float(np.sqrt(cost[rows, cols].sum()))
    return dist if dist < tol else None


def _smallest_eigenvalue(H):
    """Smallest eigenvalue of a symmetric matrix (dense up to 3000, else Lanczos)."""
    if H.shape[0] <= 3000:
        return float(np.linalg.eigvalsh(H)[0])
    from scipy.sparse.linalg import eigsh

    return float(eigsh(H, k=1, which="SA", return_eigenvectors=False)[0])


def census_of_points(points, decimals=DECIMALS, merge_tol=MERGE_TOL, strict_eig=STRICT_EIG):
    """Distinct points among end points, with multiplicities and their numbers.

    Parameters
    ----------
    points : list of dict
        Per run: ``W`` (d, n) its end point, ``V`` (d, k) its teacher, ``id`` (a
        label), ``converged`` (bool) and ``grad_norm`` (its end point's gradient
        norm).
    decimals, merge_tol, strict_eig : see the module constants.

    Returns
    -------
    summary : dict
        ``runs``, ``converged``, ``not_converged``, ``global``, ``non_global_minima``
        (non-global strict minima), ``saddles`` (non-global, not strict),
        ``distinct_minima``, ``distinct_saddles``, ``fraction_non_global`` (of all
        runs) with its Wilson 95 % interval ``fraction_low``, ``fraction_high``, and
        ``points``: one dict per distinct point (``kind`` ``"global"``,
        ``"minimum"`` or ``"saddle"``, ``form``, ``p``, ``vals``, ``multiplicity``,
        ``runs``, ``loss``, ``grad_norm``, ``end_grad_norm``, ``min_eig``,
        ``strict``, ``norm_sum``, ``norm_sum_above_k``, ``reconstruction_error``).
    """
    distinct = []
    global_entry = None
    not_converged = []
    for run in points:
        if not run["converged"]:
            not_converged.append(run["id"])
            continue
        W, V = np.asarray(run["W"], dtype=np.float64), np.asarray(run["V"], dtype=np.float64)
        point = classify_point(W, V, decimals)
        if point["global"]:
            if global_entry is None:
                global_entry = {"form": "global", "runs": [], "end_grad": 0.0, "W": W, "V": V}
            global_entry["runs"].append(run["id"])
            global_entry["end_grad"] = max(global_entry["end_grad"], run["grad_norm"])
            continue
        for entry in distinct:
            dist = _same(entry, point, merge_tol)
            if dist is not None:
                entry["runs"].append(run["id"])
                entry["error"] = max(entry["error"], dist)
                entry["end_grad"] = max(entry["end_grad"], run["grad_norm"])
                break
        else:
            entry = dict(point, runs=[run["id"]], end_grad=run["grad_norm"])
            if point["form"] == "compact":
                entry["reference"] = reconstruct(point["vals"], point["p"])
                entry["error"] = float(np.linalg.norm(entry["reference"] - point["blocks"]))
            else:
                entry["reference"] = point["blocks"]
                entry["error"] = 0.0
            distinct.append(entry)
    rows = []
    if global_entry is not None:
        rows.append(_describe(global_entry, global_entry["W"], global_entry["V"], strict_eig))
    for entry in distinct:
        rows.append(_describe(entry, entry["reference"], entry["teacher"], strict_eig))
    rows.sort(key=lambda r: (r["kind"] != "global", -r["multiplicity"]))
    n_runs = len(points)
    minima = sum(r["multiplicity"] for r in rows if r["kind"] == "minimum")
    low, high = wilson_interval(minima, n_runs)
    return {
        "runs": n_runs,
        "converged": n_runs - len(not_converged),
        "not_converged": len(not_converged),
        "not_converged_runs": not_converged,
        "global": sum(r["multiplicity"] for r in rows if r["kind"] == "global"),
        "non_global_minima": minima,
        "saddles": sum(r["multiplicity"] for r in rows if r["kind"] == "saddle"),
        "distinct_minima": sum(r["kind"] == "minimum" for r in rows),
        "distinct_saddles": sum(r["kind"] == "saddle" for r in rows),
        "fraction_non_global": minima / n_runs if n_runs else float("nan"),
        "fraction_low": low,
        "fraction_high": high,
        "points": rows,
    }


def _describe(entry, W, V, strict_eig):
    """The numbers of one distinct point, evaluated at ``W`` (its reconstruction)."""
    G, loss = population_grad(W, V, return_loss=True)
    min_eig = _smallest_eigenvalue(population_hessian(W, V))
    is_global_point = entry["form"] == "global"
    strict = min_eig > strict_eig
    k = V.shape[1]
    norm_sum = float(np.linalg.norm(W, axis=0).sum())
    return {
        "kind": "global" if is_global_point else ("minimum" if strict else "saddle"),
        "form": entry["form"],
        "p": [int(x) for x in entry["p"]] if "p" in entry else None,
        "vals": np.asarray(entry["vals"]).tolist() if "vals" in entry else None,
        "multiplicity": len(entry["runs"]),
        "runs": list(entry["runs"]),
        "loss": float(loss),
        "grad_norm": float(np.linalg.norm(G)),
        "end_grad_norm": float(entry["end_grad"]),
        "min_eig": min_eig,
        "strict": bool(strict),
        "norm_sum": norm_sum,
        "norm_sum_above_k": bool(norm_sum > k),
        "reconstruction_error": float(entry.get("error", 0.0)),
    }


def wilson_interval(successes, trials, z=1.959963984540054):
    """Wilson score interval of a binomial proportion (95 % by default).

    Examples
    --------
    >>> low, high = wilson_interval(0, 10)
    >>> low, round(high, 4)
    (0.0, 0.2775)
    """
    if trials == 0:
        return float("nan"), float("nan")
    phat = successes / trials
    denom = 1.0 + z * z / trials
    centre = (phat + z * z / (2 * trials)) / denom
    half = z * np.sqrt(phat * (1 - phat) / trials + z * z / (4 * trials * trials)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _end_point(run):
    """``(W, V, grad_norm, converged)`` of a finished ``population_gd`` run.

    ``W`` is the last snapshot (else the checkpoint's state); ``grad_norm`` the last
    logged one (else recomputed); converged when it is at most the run's ``tol``.
    """
    if len(run.snapshots) and "W" in run.snapshots:
        W = run.snapshots.at(-1)["W"]
    else:
        from core.store import RunStore

        W = RunStore(run.path).read_checkpoint()["algorithm"]["W"]
    W = np.asarray(W, dtype=np.float64)
    V = np.asarray(run.problem["extra.V"], dtype=np.float64)
    tol = run.config["algorithm"].get("tol", 0.0)
    grad = run.scalars.get("grad_norm")
    if grad is not None and len(grad):
        grad_norm = float(grad[-1])
    else:
        grad_norm = float(np.linalg.norm(population_grad(W, V)))
    return W, V, grad_norm, bool(grad_norm <= tol)


class Census(SweepAnalysis):
    """Census of the end points of population_gd runs: global or not, distinct minima, Hessians."""

    name = "census"

    def applies(self, sweep):
        return sweep.algorithm == "population_gd" and bool(sweep.runs())

    def cells(self, sweep):
        """One census per cell of swept values: ``[(values, summary)]`` (k, n, d added)."""
        out = []
        for values, runs in sweep.cells():
            points = []
            shape = None
            for run in runs:
                W, V, grad_norm, converged = _end_point(run)
                shape = (V.shape[1], W.shape[1], W.shape[0])
                points.append(
                    {
                        "id": run.path.name,
                        "W": W,
                        "V": V,
                        "grad_norm": grad_norm,
                        "converged": converged,
                    }
                )
            summary = census_of_points(points)
            k, n, d = shape
            out.append((values, {"cell": sweep.label(values), "k": k, "n": n, "d": d, **summary}))
        out.sort(key=lambda item: (item[1]["n"] - item[1]["k"], item[1]["k"], item[1]["cell"]))
        return out

    def tables(self, sweep):
        cells = self.cells(sweep)
        rows = []
        for _, cell in cells:
            for point in cell["points"]:
                rows.append(
                    {
                        "cell": cell["cell"],
                        "k": cell["k"],
                        "n": cell["n"],
                        "d": cell["d"],
                        **{key: point[key] for key in point if key not in ("runs", "p", "vals")},
                        "p": " ".join(str(x) for x in point["p"]) if point["p"] else "",
                        "vals": json.dumps(point["vals"]) if point["vals"] is not None else "",
                    }
                )
        settings = {
            "decimals": DECIMALS,
            "merge_tol": MERGE_TOL,
            "global_tol": GLOBAL_TOL,
            "strict_eig": STRICT_EIG,
        }
        document = {"settings": settings, "cells": [cell for _, cell in cells]}
        return {"census.json": document, "census.csv": rows}

    def draw(self, sweep):
        from matplotlib.figure import Figure

        cells = [cell for _, cell in self.cells(sweep)]
        series = {}
        for cell in cells:
            series.setdefault(cell["n"] - cell["k"], []).append(cell)
        fraction = Figure(figsize=(6.5, 4), layout="constrained")
        ax = fraction.add_subplot()
        count = Figure(figsize=(6.5, 4), layout="constrained")
        bx = count.add_subplot()
        for excess, group in sorted(series.items()):
            group.sort(key=lambda c: c["k"])
            ks = np.array([c["k"] for c in group])
            frac = np.array([c["fraction_non_global"] for c in group])
            low = np.array([c["fraction_low"] for c in group])
            high = np.array([c["fraction_high"] for c in group])
            label = "n = k" if excess == 0 else f"n = k + {excess}"
            bars = [np.maximum(frac - low, 0.0), np.maximum(high - frac, 0.0)]
            ax.errorbar(ks, frac, yerr=bars, marker="o", capsize=3, label=label)
            bx.plot(ks, [c["distinct_minima"] for c in group], marker="o", label=label)
        runs = sorted({c["runs"] for c in cells})
        ax.set_xlabel("k (teacher neurons)")
        ax.set_ylabel("fraction ending at a non-global minimum")
        ax.set_title(
            f"non-global minima, Wilson 95 % intervals ({'/'.join(map(str, runs))} runs per k)",
            fontsize=9,
        )
        ax.set_ylim(-0.02, 1.02)
        bx.set_xlabel("k (teacher neurons)")
        bx.set_ylabel("distinct non-global minima")
        bx.set_title("distinct non-global minima found", fontsize=9)
        for axis in (ax, bx):
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        figures = {"census_non_global_fraction": fraction, "census_distinct_minima": count}
        chosen = _norm_cells(cells)
        if chosen:
            norms = Figure(figsize=(4.0 * len(chosen), 3.6), layout="constrained")
            axes = np.atleast_1d(norms.subplots(1, len(chosen), squeeze=False)[0])
            for axis, cell in zip(axes, chosen):
                values, weights = [], []
                for point in cell["points"]:
                    if point["kind"] == "minimum":
                        values.append(point["norm_sum"])
                        weights.append(point["multiplicity"])
                if values:
                    axis.hist(values, bins=8, weights=weights)
                axis.axvline(cell["k"], color="0.4", linestyle="--", linewidth=0.8)
                axis.ticklabel_format(useOffset=False)
                axis.set_title(f"k = {cell['k']}, n = {cell['n']}", fontsize=9)
                axis.set_xlabel("sum of neuron norms")
            axes[0].set_ylabel("runs at non-global minima")
            figures["census_norm_sums"] = norms
        return figures


def _norm_cells(cells, preferred=(20, 50, 100)):
    """Cells of the neuron-norm figure: the paper's k = 20, 50, 100 when swept, else the
    three largest k (student width n = k first)."""
    with_minima = [c for c in cells if c["non_global_minima"]]
    square = [c for c in with_minima if c["n"] == c["k"]] or with_minima
    picked = [c for c in square if c["k"] in preferred]
    if not picked:
        picked = sorted(square, key=lambda c: c["k"])[-3:]
    return sorted(picked, key=lambda c: c["k"])[:3]


class PopulationIndicator(Indicator):
    """Population loss, gradient norm and global-minimum test of each snapshot."""

    name = "population"

    def applies(self, run):
        snaps = run.snapshots
        return "extra.V" in run.problem and len(snaps) > 0 and "W" in snaps

    def per_snapshot(self, run, W, a):
        V = np.asarray(run.problem["extra.V"], dtype=np.float64)
        W = np.asarray(W, dtype=np.float64)
        if not np.allclose(a, 1.0):
            return {}
        return {
            "loss": population_loss(W, V),
            "grad_norm": float(np.linalg.norm(population_grad(W, V))),
            "global": float(is_global(W, V)),
        }

    def summary(self, run):
        final = run.snapshots.at(-1)
        return self.per_snapshot(run, final["W"], final["a"])
