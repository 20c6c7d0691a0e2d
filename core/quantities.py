"""Quantities of a network ``(W, a)`` on a problem, each written once.

A live metric (:mod:`plugins.metrics`, computed by the ``scalars`` logger while a run
trains) and a post-hoc indicator (:mod:`plugins.indicators`, computed by
``postprocess.py`` from the saved snapshots) of the same quantity both wrap the
function here, so they return the same keys and the same numbers on the same network.

Every quantity is a function ``f(W, a, problem, **options) -> dict`` where

* ``W`` has shape ``(d, m)`` and ``a`` shape ``(m,)`` or ``(m, k)``; both are read as
  float64 (a float32 network gives the numbers of its float64 copy);
* ``problem`` is a :class:`core.components.Problem` (the data ``X, Y``, the test set
  ``X_test, Y_test`` or None, the initial network ``W0, a0``, the output ``scaling``
  and the ``loss`` convention); :func:`core.analysis.saved_problem` builds one from a
  saved run;
* the keys are unique across quantities, so a logger can put several in one row of
  the scalars trace (``indicators.csv`` prefixes them with the indicator's name).

Values are Python floats and ints (NaN where the quantity is undefined: no test set,
a network whose shape differs from the initial one).
"""

import math

import numpy as np

from . import model

__all__ = [
    "as_network",
    "neuron_norms",
    "activation_points",
    "train_loss",
    "test_loss",
    "distance_from_init",
    "neuron_norm_stats",
    "n_patterns",
    "kinks_inside",
]


def as_network(W, a):
    """``(W, a)`` as float64 arrays.

    Parameters
    ----------
    W : array_like, shape (d, m)
    a : array_like, shape (m,) or (m, k)

    Returns
    -------
    W : ndarray of float64, shape (d, m)
    a : ndarray of float64, shape (m,) or (m, k)
    """
    return np.asarray(W, dtype=np.float64), np.asarray(a, dtype=np.float64)


# -- arrays --------------------------------------------------------------------------
def neuron_norms(W, a):
    """Size of each neuron, ``||w_r|| |a_r|`` (``||a_r||`` for several outputs).

    Parameters
    ----------
    W : ndarray, shape (d, m)
    a : ndarray, shape (m,) or (m, k)

    Returns
    -------
    norms : ndarray, shape (m,)

    Examples
    --------
    >>> neuron_norms(np.array([[3.0, 0.0], [4.0, 1.0]]), np.array([2.0, -1.0]))
    array([10.,  1.])
    """
    W, a = as_network(W, a)
    size_a = np.abs(a) if a.ndim == 1 else np.linalg.norm(a, axis=1)
    return np.linalg.norm(W, axis=0) * size_a


def activation_points(W):
    """Kink of each neuron for 1-D inputs with a bias: ``x_r = -b_r / w_r``.

    Neuron ``r`` computes ``relu(w_r x + b_r)`` with ``(w_r, b_r) = W[:, r]``; its
    activation changes at ``x_r``. A neuron with ``w_r = 0`` has no kink: ``inf``.

    Parameters
    ----------
    W : ndarray, shape (2, m)

    Returns
    -------
    x : ndarray, shape (m,)

    Examples
    --------
    >>> activation_points(np.array([[2.0, 0.0], [1.0, 1.0]]))
    array([-0.5,  inf])
    """
    w, b = np.asarray(W[0], dtype=np.float64), np.asarray(W[1], dtype=np.float64)
    out = np.full(w.shape, np.inf)
    np.divide(-b, w, out=out, where=w != 0)
    return out


# -- quantities ----------------------------------------------------------------------
def train_loss(W, a, problem):
    """Training loss :func:`core.model.loss` on ``(problem.X, problem.Y)``.

    Returns
    -------
    dict
        ``train_loss`` (float).
    """
    W, a = as_network(W, a)
    value = model.loss(problem.X, problem.Y, W, a, problem.scaling, problem.loss)
    return {"train_loss": float(value)}


def test_loss(W, a, problem):
    """Loss :func:`core.model.loss` on the held-out data (NaN when there is none).

    Returns
    -------
    dict
        ``test_loss`` (float).
    """
    if problem.X_test is None:
        return {"test_loss": math.nan}
    W, a = as_network(W, a)
    value = model.loss(problem.X_test, problem.Y_test, W, a, problem.scaling, problem.loss)
    return {"test_loss": float(value)}


test_loss.__test__ = False  # a quantity, not a test, wherever pytest finds it imported


def distance_from_init(W, a, problem, relative=False):
    """Distance of the network from the initial one ``(problem.W0, problem.a0)``.

    Parameters
    ----------
    W, a : ndarray
        The network.
    problem : core.components.Problem
    relative : bool
        Divide each distance by the size of the initial network (``||W0||_F``,
        ``||a0||``, ``max |W0|``); NaN when that size is zero.

    Returns
    -------
    dict
        ``dist_W`` (Frobenius norm of ``W - W0``), ``dist_a`` (Euclidean norm of
        ``a - a0``) and ``dist_W_max`` (largest ``|W - W0|`` entry); all NaN when
        the network's shape differs from the initial one's.
    """
    W, a = as_network(W, a)
    W0, a0 = as_network(problem.W0, problem.a0)
    if W.shape != W0.shape or a.size != a0.size:
        return dict.fromkeys(("dist_W", "dist_a", "dist_W_max"), math.nan)
    dW = W - W0
    out = {
        "dist_W": float(np.linalg.norm(dW)),
        "dist_a": float(np.linalg.norm(a.ravel() - a0.ravel())),
        "dist_W_max": float(np.abs(dW).max(initial=0.0)),
    }
    if relative:
        sizes = (np.linalg.norm(W0), np.linalg.norm(a0), np.abs(W0).max(initial=0.0))
        out = {k: v / float(s) if s > 0 else math.nan for (k, v), s in zip(out.items(), sizes)}
    return out


def neuron_norm_stats(W, a, problem=None):
    """Mean, largest and total neuron size ``||w_r|| |a_r|`` (:func:`neuron_norms`).

    ``problem`` is not used (every quantity takes it).

    Returns
    -------
    dict
        ``neuron_norm_mean``, ``neuron_norm_max``, ``neuron_norm_sum`` (floats).
    """
    norms = neuron_norms(W, a)
    return {
        "neuron_norm_mean": float(norms.mean()),
        "neuron_norm_max": float(norms.max()),
        "neuron_norm_sum": float(norms.sum()),
    }


def n_patterns(W, a, problem, data="train"):
    """Number of distinct neuron activation patterns (:func:`core.model.n_distinct_patterns`).

    Parameters
    ----------
    W, a : ndarray
        The network (``a`` is not used).
    problem : core.components.Problem
    data : {"train", "test"}
        The inputs the patterns are taken on: ``problem.X`` or ``problem.X_test``.

    Returns
    -------
    dict
        ``n_patterns`` (int) on the training data; ``n_patterns_test`` on the test
        data (NaN when there is none).
    """
    if data == "train":
        return {"n_patterns": model.n_distinct_patterns(problem.X, as_network(W, a)[0])}
    if data == "test":
        if problem.X_test is None:
            return {"n_patterns_test": math.nan}
        return {"n_patterns_test": model.n_distinct_patterns(problem.X_test, as_network(W, a)[0])}
    raise ValueError(f"data must be 'train' or 'test'; got {data!r}")


def kinks_inside(W, a, problem):
    """How many kinks :func:`activation_points` lie in the data range ``[min x, max x]``.

    For 1-D inputs with a bias: ``W`` has shape ``(2, m)`` and ``x = problem.X[:, 0]``.

    Returns
    -------
    dict
        ``kinks_inside`` (int).
    """
    x = np.asarray(problem.X[:, 0], dtype=np.float64)
    kinks = activation_points(W)
    return {"kinks_inside": int(np.count_nonzero((kinks >= x.min()) & (kinks <= x.max())))}
