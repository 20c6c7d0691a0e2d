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
    "initial_first_layer",
    "pattern_bits",
    "hamming",
    "pattern_change",
    "corners",
    "live_neurons",
    "preact_norm",
    "neuron_shift",
    "loss_gradients",
    "spectral_norm",
    "gradient_change",
    "gradient_norm_sum",
    "ntk_gram",
    "ntk_gram_infinity",
    "lambda_0",
    "ntk_spectrum",
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


# -- training dynamics (Polaczyk & Cyranka, TMLR; Du, Zhai, Poczos & Singh, ICLR 2019) --
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def initial_first_layer(W, problem, dtype=None):
    """The initial first layer ``problem.W0`` as the run holds it, as float64.

    A float32 run starts from ``float32(W0)``, not from the float64 ``W0`` the
    problem keeps, so ``W0`` is rounded to ``W``'s dtype first: at step 0 every
    distance from the initial network is then exactly zero.

    Parameters
    ----------
    W : ndarray, shape (d, m)
        The current first layer (its dtype is the run's).
    problem : core.components.Problem
    dtype : numpy dtype, optional
        The run's dtype when ``W`` is already a float64 copy (default: ``W``'s).

    Returns
    -------
    W0 : ndarray of float64, shape (d, m)
    """
    W0 = np.asarray(problem.W0)
    dtype = np.dtype(dtype) if dtype is not None else np.asarray(W).dtype
    if np.issubdtype(dtype, np.floating) and dtype != W0.dtype:
        W0 = W0.astype(dtype)
    return np.asarray(W0, dtype=np.float64)


def pattern_bits(X, W):
    """Activation pattern ``1[X W > 0]`` packed eight entries a byte.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    W : ndarray, shape (d, m)

    Returns
    -------
    bits : ndarray of uint8, shape (n, ceil(m / 8))
        ``np.packbits`` of the boolean ``(n, m)`` pattern along the neurons.
    """
    return np.packbits(model.activation_pattern(X, W), axis=1)


def hamming(bits, other):
    """Number of entries where two packed patterns (:func:`pattern_bits`) differ.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> hamming(pattern_bits(X, np.eye(2)), pattern_bits(X, -np.eye(2)))
    2
    """
    return int(_POPCOUNT[np.bitwise_xor(bits, other)].sum(dtype=np.int64))


def pattern_change(W, a, problem, dtype=None):
    """Activation-pattern entries changed since the initial network.

    The pattern is the ``(n, m)`` boolean matrix ``1[x_i . w_r > 0]`` on the
    training inputs (relu(0) counts as inactive, as in torch); the initial one is
    that of :func:`initial_first_layer` (``dtype``: the run's, default ``W``'s).

    Returns
    -------
    dict
        ``hamming_init`` (int, entries that differ) and ``hamming_init_frac``
        (that count over ``n m``).
    """
    W0 = initial_first_layer(W, problem, dtype)
    W = as_network(W, a)[0]
    count = hamming(pattern_bits(problem.X, W), pattern_bits(problem.X, W0))
    return {"hamming_init": count, "hamming_init_frac": count / (problem.X.shape[0] * W.shape[1])}


def corners(W, a, problem, threshold=1e-8):
    """Pre-activations at a corner of the ReLU: ``|x_i . w_r| < threshold``.

    The "corners" of Polaczyk & Cyranka (TMLR), counted on the training inputs.

    Parameters
    ----------
    threshold : float
        1e-8 in the paper.

    Returns
    -------
    dict
        ``corners`` (int, entries of the ``(n, m)`` pre-activations below the
        threshold in absolute value) and ``corners_frac`` (over ``n m``).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> p = SimpleNamespace(X=np.array([[1.0, 1.0], [1.0, -1.0]]))
    >>> corners(np.array([[1.0, 2.0], [1.0, 0.0]]), np.ones(2), p)
    {'corners': 1, 'corners_frac': 0.25}
    """
    W = as_network(W, a)[0]
    Z = model.preactivations(problem.X, W)
    count = int(np.count_nonzero(np.abs(Z) < threshold))
    return {"corners": count, "corners_frac": count / Z.size}


def live_neurons(W, a, problem):
    """Neurons active (``x_i . w_r > 0``) on at least one training input.

    A neuron that is not live gets no gradient on the training data: it is dead.

    Returns
    -------
    dict
        ``live_neurons`` (int) and ``live_frac`` (over ``m``).
    """
    W = as_network(W, a)[0]
    live = int(np.count_nonzero(model.activation_pattern(problem.X, W).any(axis=0)))
    return {"live_neurons": live, "live_frac": live / W.shape[1]}


def preact_norm(W, a, problem):
    """Frobenius norm of the pre-activations, ``||X W||_F`` (the ``||W X||_F`` of the paper).

    Returns
    -------
    dict
        ``preact_norm`` (float).
    """
    W = as_network(W, a)[0]
    return {"preact_norm": float(np.linalg.norm(model.preactivations(problem.X, W)))}


def neuron_shift(W, a, problem, dtype=None):
    r"""How far the neurons moved from the initial network (:func:`initial_first_layer`).

    .. math:: \max_r \|w_r(t) - w_r(0)\|_2, \qquad \|W(t) - W(0)\|_F.

    In the NTK regime of Du et al. (ICLR 2019) the largest move shrinks like
    ``1/sqrt(m)``. ``neuron_shift_fro`` is :func:`distance_from_init`'s ``dist_W``
    but for the rounding of ``W0`` to the run's dtype (``dtype``, default ``W``'s;
    see :func:`initial_first_layer`).

    Returns
    -------
    dict
        ``neuron_shift_max`` and ``neuron_shift_fro`` (floats); NaN when the shape
        differs from the initial network's.
    """
    W0 = initial_first_layer(W, problem, dtype)
    W = as_network(W, a)[0]
    if W.shape != W0.shape:
        return {"neuron_shift_max": math.nan, "neuron_shift_fro": math.nan}
    moves = np.linalg.norm(W - W0, axis=0)
    return {
        "neuron_shift_max": float(moves.max(initial=0.0)),
        "neuron_shift_fro": float(np.sqrt(np.sum(moves * moves))),
    }


def loss_gradients(W, a, problem, layers=("W", "a")):
    """Closed-form gradient of the training loss (:func:`core.model.loss_and_grad`).

    Computed from the network and the problem alone (the run's ``scaling`` and
    ``loss``), whatever the algorithm; no weight decay, no optimizer.

    Parameters
    ----------
    W : ndarray, shape (d, m)
    a : ndarray, shape (m,) or (m, k)
    problem : core.components.Problem
    layers : tuple of {"W", "a"}
        The parameter tensors to return.

    Returns
    -------
    grads : dict of ndarray of float64
        ``"W"`` shape (d, m) and/or ``"a"`` shape of ``a``.
    """
    W, a = as_network(W, a)
    _, grad_W, grad_a = model.loss_and_grad(
        problem.X, problem.Y, W, a, problem.scaling, problem.loss
    )
    grads = {"W": grad_W, "a": grad_a}
    return {name: grads[name] for name in layers}


def spectral_norm(g):
    """Largest singular value of a matrix; the Euclidean norm of a vector.

    A second layer ``a`` of shape ``(m,)`` is torch's ``(1, m)`` weight, whose
    spectral norm is its Euclidean norm. A matrix ``(p, q)`` goes through the
    largest eigenvalue of its ``min(p, q)``-sided Gram matrix (``d x d`` for a
    first-layer gradient, not an SVD of ``d x m``).

    Examples
    --------
    >>> spectral_norm(np.array([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    4.0
    """
    g = np.asarray(g, dtype=np.float64)
    if g.ndim < 2 or 1 in g.shape:
        return float(np.linalg.norm(g))
    gram = g @ g.T if g.shape[0] <= g.shape[1] else g.T @ g
    return float(np.sqrt(max(np.linalg.eigvalsh(gram)[-1], 0.0)))


def gradient_change(grads, previous):
    r"""Relative change of the gradient, as Polaczyk & Cyranka (TMLR) measure it.

    .. math::

        \frac{\max_p \|g_t^p - g_{t-1}^p\|_2}{\max_p \|g_{t-1}^p\|_2}

    with the spectral norm (:func:`spectral_norm`), numerator and denominator each
    maximised over the parameter tensors ``p``.

    Parameters
    ----------
    grads, previous : dict of ndarray
        The gradients now and at the previous evaluation, same keys and shapes.

    Returns
    -------
    float
        NaN when the previous gradient is zero.

    Examples
    --------
    >>> gradient_change({"a": np.array([3.0, 4.0])}, {"a": np.array([0.0, 4.0])})
    0.75
    """
    top = max(spectral_norm(grads[p] - previous[p]) for p in grads)
    bottom = max(spectral_norm(previous[p]) for p in grads)
    return top / bottom if bottom > 0 else math.nan


def gradient_norm_sum(grads):
    """Sum over the parameter tensors of their Frobenius norms, ``sum_p ||g^p||_F``."""
    return float(sum(np.linalg.norm(g) for g in grads.values()))


def ntk_gram(X, W):
    r"""The Gram matrix of Du et al. (ICLR 2019) at first layer ``W``.

    .. math::

        H_{ij} = \frac{x_i \cdot x_j}{m} \sum_{r=1}^m
                 1\{w_r \cdot x_i \ge 0,\ w_r \cdot x_j \ge 0\},

    the kernel of gradient flow on ``W`` for the NTK scaling with ``a_r = \pm 1``
    (``du/dt = -H (u - y)`` for the loss ``sum / 2``). The co-activation counts are
    a product of 0/1 matrices in float32, exact up to ``m = 2^24``.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    W : ndarray, shape (d, m)

    Returns
    -------
    H : ndarray of float64, shape (n, n)
    """
    D = (model.preactivations(X, W) >= 0).astype(np.float32)
    counts = (D @ D.T).astype(np.float64)
    X = np.asarray(X, dtype=np.float64)
    return (X @ X.T) * counts / W.shape[1]


def ntk_gram_infinity(X):
    r"""The limit ``H^inf = E_w[H]`` for ``w ~ N(0, I)`` (Du et al., ICLR 2019).

    .. math::

        H^\infty_{ij} = x_i \cdot x_j \, \frac{\pi - \theta_{ij}}{2 \pi},
        \qquad \theta_{ij} = \arccos \frac{x_i \cdot x_j}{\|x_i\| \|x_j\|},

    since two half-spaces through 0 with normals at angle ``theta`` share a
    ``(pi - theta) / (2 pi)`` fraction of Gaussian directions. For unit inputs this
    is the paper's ``x_i.x_j (pi - arccos(x_i.x_j)) / (2 pi)``. A zero input has a
    zero row.

    Parameters
    ----------
    X : ndarray, shape (n, d)

    Returns
    -------
    H : ndarray of float64, shape (n, n)

    Examples
    --------
    >>> ntk_gram_infinity(np.array([[1.0, 0.0], [0.0, 1.0]]))
    array([[0.5, 0. ],
           [0. , 0.5]])
    """
    X = np.asarray(X, dtype=np.float64)
    G = X @ X.T
    norms = np.linalg.norm(X, axis=1)
    outer = np.outer(norms, norms)
    cos = np.divide(G, outer, out=np.zeros_like(G), where=outer > 0)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    return G * (np.pi - theta) / (2 * np.pi)


def lambda_0(X):
    """Smallest eigenvalue of :func:`ntk_gram_infinity`, the rate of Du et al.'s theorem.

    Positive when no two inputs are parallel (their Theorem 3.1). Gradient descent
    with step ``eta`` on the NTK-scaled network (loss ``sum / 2``, ``a_r = +-1``)
    then has ``L(t) <= L(0) exp(-lambda_0 eta t)`` for ``m`` large enough.

    Parameters
    ----------
    X : ndarray, shape (n, d)

    Returns
    -------
    float
    """
    return float(np.linalg.eigvalsh(ntk_gram_infinity(X))[0])


def ntk_spectrum(W, a, problem, reference=True, dtype=None):
    """Smallest eigenvalue of :func:`ntk_gram` now, and how far it moved.

    Parameters
    ----------
    reference : bool
        Also compute ``gram_change`` and ``gram_lambda_0`` (two more ``n x n``
        matrices; :class:`plugins.dynamics.NtkGram` caches them per run).

    Returns
    -------
    dict
        ``gram_lambda_min`` (``lambda_min(H(t))``); with ``reference``:
        ``gram_change`` (``||H(t) - H(0)||_2``, ``H(0)`` at
        :func:`initial_first_layer`) and ``gram_lambda_0``
        (:func:`lambda_0` of the training inputs).
    """
    W0 = initial_first_layer(W, problem, dtype)
    W = as_network(W, a)[0]
    H = ntk_gram(problem.X, W)
    out = {"gram_lambda_min": float(np.linalg.eigvalsh(H)[0])}
    if reference:
        H0 = ntk_gram(problem.X, W0)
        out["gram_change"] = float(np.linalg.norm(H - H0, 2))
        out["gram_lambda_0"] = lambda_0(problem.X)
    return out
