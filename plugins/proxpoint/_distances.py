r"""Distance plugins of proximal-point steps: ``frobenius``, ``wasserstein``, ``sliced``.

Each compares the first layer ``W`` (d, m) with the previous outer iterate ``W_prev``
(d, m): ``d`` counts the input dimensions including the bias column, ``m`` the
neurons; column ``r`` is neuron ``r``'s position :math:`w_r`. All three are squared
distances (zero at ``W = W_prev``, with zero gradient there).

Measures of neurons
-------------------
``wasserstein`` and ``sliced`` compare the empirical measures of the neurons

.. math::

    \mu = \sum_r p_r \, \delta_{(w_r,\, s_r)}, \qquad
    \mu_\text{prev} = \sum_r p_r \, \delta_{(w^\text{prev}_r,\, s_r)},

where :math:`s_r` is the sign of the second-layer weight :math:`a_r` (for ``a`` of
shape (m, k), the sign pattern of row :math:`a_r`) of the network given as ``a``, and
transport between different signs costs :math:`+\infty`: a positive neuron is matched
only with positive ones. The cost is therefore a sum over the sign groups
:math:`G_s = \{r : s_r = s\}`,

.. math::

    W_2^2(\mu, \mu_\text{prev})
    = \sum_s \min_{\pi \in \Pi(p|_{G_s},\, p|_{G_s})}
      \sum_{r, q \in G_s} \pi_{rq} \, |w_r - w^\text{prev}_q|^2 .

The weights ``p`` sum to one:

- ``weights="uniform"`` (default): :math:`p_r = 1/m`, so the group of sign ``s`` has
  mass :math:`|G_s| / m`; the optimal plans are permutations (within signs) and
  :math:`W_2^2 = \frac1m \min_\sigma \sum_r |w_r - w^\text{prev}_{\sigma(r)}|^2`;
- ``weights="abs_a"``: :math:`p_r = |a_r| / \sum_q |a_q|` (Euclidean norm of row
  :math:`a_r` when ``a`` is (m, k)); neurons with :math:`a_r = 0` weigh nothing, and
  the distance is 0 when ``a`` is all zero.

``a`` is read, not differentiated: no gradient flows to ``a``.

Gradient-Work (``vmerckle/Gradient-Work``, ``algos/proxdistance.py``) splits the
neurons at the number of positive ``a``, assuming them sorted by sign (and silently
matching across signs when they are not), and gives each sign's measure mass 1: with
two equal halves its ``wasserstein`` is twice this one (its ``gamma`` is twice this
``gamma`` for the same step).

Normalisations
--------------
With uniform weights, ``wasserstein`` :math:`\le d \cdot` ``frobenius``, with equality
exactly when the identity is an optimal assignment (``frobenius`` divides by
:math:`d m`, Gradient-Work's normalisation; ``wasserstein`` by :math:`m`).
``sliced`` averages the 1-D costs over unit directions :math:`\theta`:
:math:`SW_2^2 = \frac{1}{P} \sum_{l=1}^P W_2^2(\theta_l \# \mu, \theta_l \# \mu_\text{prev})`
(sign groups and weights as above), which equals :math:`W_2^2` when ``d = 1``
(:math:`\theta = \pm 1`), is at most :math:`W_2^2` in any dimension (the optimal plan
of :math:`\mu` projected is a plan of the projections, and
:math:`\frac1P \sum_l \theta_l \theta_l^\top \preceq I`), and is about :math:`W_2^2 / d`
for neurons moving in no preferred direction (:math:`E[\theta \theta^\top] = I / d`).
"""

import numpy as np

from core.components import Distance
from core.params import Param

from ._assignment import CertifiedAssignment

__all__ = ["Frobenius", "Wasserstein", "SlicedWasserstein", "sign_groups", "neuron_weights"]

WEIGHTS = ("uniform", "abs_a")
_OT_HINT = 'pip install "relulab[torch,ot]"'
_EMD_MAX_ITER = 10_000_000


def sign_groups(a):
    """Group label of every neuron: neurons share a label when their ``a`` rows have the same signs.

    Parameters
    ----------
    a : ndarray, shape (m,) or (m, k)

    Returns
    -------
    labels : ndarray of int, shape (m,)
        0, 1, ... in the order of ``numpy.unique`` of the sign patterns.

    Examples
    --------
    >>> sign_groups(np.array([0.5, -2.0, 1.0, 0.0])).tolist()
    [2, 0, 2, 1]
    """
    a = np.asarray(a)
    m = a.shape[0]
    if m == 0:
        return np.zeros(0, dtype=np.intp)
    signs = np.sign(a.reshape(m, -1))
    if signs.shape[1] == 1:  # the common case, without numpy's slower unique of rows
        _, labels = np.unique(signs[:, 0], return_inverse=True)
    else:
        _, labels = np.unique(signs, axis=0, return_inverse=True)
    return labels.reshape(m).astype(np.intp)


def neuron_weights(a, weights):
    """The weights ``p`` (m,) of the neurons, summing to one (all zero when nothing weighs).

    Examples
    --------
    >>> neuron_weights(np.array([1.0, -3.0]), "abs_a").tolist()
    [0.25, 0.75]
    """
    a = np.asarray(a, dtype=np.float64)
    m = a.shape[0]
    if m == 0:
        return np.zeros(0)
    if weights == "uniform":
        return np.full(m, 1.0 / m)
    size = np.linalg.norm(a.reshape(m, -1), axis=1)
    total = size.sum()
    return size / total if total > 0 else np.zeros(m)


def _numpy(tensor):
    return tensor.detach().to("cpu").numpy()


def _zero(W):
    """A zero scalar tied to ``W``'s graph (its gradient is zero, not missing)."""
    return (W * 0).sum()


class _SignedMeasureDistance(Distance):
    """Shared plumbing: the sign groups and weights of the neurons of ``a``."""

    requires = ("torch", "ot")
    extra = "ot"
    install_hint = _OT_HINT

    def _groups(self, a):
        """``[(indices, weights within the group), ...]`` for the groups with mass."""
        a = _numpy(a) if hasattr(a, "detach") else np.asarray(a)
        labels = sign_groups(a)
        p = neuron_weights(a, self.weights)
        groups = []
        for label in np.unique(labels):
            idx = np.flatnonzero(labels == label)
            if p[idx].sum() > 0:
                groups.append((idx, p[idx]))
        return labels, groups


class Frobenius(Distance):
    r"""Squared Frobenius distance per entry: sum (W - W_prev)^2 / (d m).

    :math:`D(W, W_\text{prev}) = \|W - W_\text{prev}\|_F^2 / (d m)`, ``d`` the input
    dimensions including the bias, ``m`` the neurons: the mean squared change of an
    entry (Gradient-Work's ``frobenius``). Neurons are compared by index, so
    permuting the neurons of one network changes it (``wasserstein`` does not).
    """

    name = "frobenius"
    requires = ("torch",)
    extra = "torch"

    def value(self, W, W_prev, a):
        """``D`` as a torch scalar, differentiable in ``W``; 0 when ``m = 0``."""
        if W.numel() == 0:
            return _zero(W)
        return (W - W_prev).square().sum() / W.numel()


class Wasserstein(_SignedMeasureDistance):
    r"""Squared 2-Wasserstein distance between the neurons of W and W_prev, signs apart.

    The exact optimal transport cost :math:`W_2^2(\mu, \mu_\text{prev})` of the module
    docstring (:mod:`plugins.proxpoint._distances`), computed by POT (``ot.emd2`` on
    ``ot.dist(..., metric="sqeuclidean")``, torch backend: the gradient is the optimal
    plan's, by the envelope theorem).

    Plan reuse (``reuse_plan``, uniform weights): the optimal plan is then a
    permutation within signs, and between consecutive inner iterations it rarely
    changes. The last permutation is kept while a Bellman-Ford certificate proves it
    optimal at the new ``W`` (:mod:`plugins.proxpoint._assignment`, a few
    :math:`O(m^2)` passes from the last dual potentials); the group is solved again
    (``scipy.optimize.linear_sum_assignment``) only when it is not. The value is the
    sum of the matched squared distances divided by ``m`` and its gradient flows
    through that sum: the same value and gradient as solving exactly each time
    (certified optimal within ``1e-12`` relative to the costs). With
    ``weights="abs_a"`` the plan is not a permutation and every call solves.

    ``scalars()`` gives ``exchanged``: the mass of the last optimal plan off its
    diagonal, :math:`1 - \sum_r \pi_{rr}`; for uniform weights the fraction of
    neurons the optimal assignment does not map to themselves (Gradient-Work's
    ``wasserstein_num``).
    """

    name = "wasserstein"
    params = (
        Param(
            "weights",
            str,
            "uniform",
            "neuron masses: 1/m each, or |a_r| normalised to total 1 (signs never mix)",
            choices=WEIGHTS,
        ),
        Param(
            "reuse_plan",
            bool,
            True,
            "keep the last optimal permutation while certified optimal (uniform weights)",
        ),
    )

    def setup(self, problem, rng):
        self.assignment_ = CertifiedAssignment()
        self._exchanged = 0.0

    def _reusing(self):
        return self.reuse_plan and self.weights == "uniform"

    def value(self, W, W_prev, a):
        """``W_2^2`` as a torch scalar, differentiable in ``W`` (``a`` is not differentiated)."""
        labels, groups = self._groups(a)
        if not groups:
            self._exchanged = 0.0
            return _zero(W)
        if self._reusing():
            return self._value_permutation(W, W_prev, labels)
        return self._value_emd(W, W_prev, groups)

    def _value_permutation(self, W, W_prev, labels):
        import torch

        perm = self.assignment_(_numpy(W).T, _numpy(W_prev).T, labels)
        m = perm.size
        self._exchanged = float(np.count_nonzero(perm != np.arange(m))) / m
        index = torch.as_tensor(perm, device=W.device)
        return (W - W_prev[:, index]).square().sum() / m

    def _value_emd(self, W, W_prev, groups):
        import ot
        import torch

        total = _zero(W)
        kept = 0.0
        for idx, p in groups:
            index = torch.as_tensor(idx, device=W.device)
            X, Y = W[:, index].T, W_prev[:, index].T
            if idx.size == 1:
                total = total + float(p[0]) * (X - Y).square().sum()
                kept += float(p[0])
                continue
            weights = torch.as_tensor(p, dtype=W.dtype, device=W.device)
            M = ot.dist(X, Y, metric="sqeuclidean")
            cost, log = ot.emd2(
                weights, weights, M, numItermax=_EMD_MAX_ITER, log=True, return_matrix=True
            )
            if log["result_code"] != 1:
                raise RuntimeError(f"distance (wasserstein): ot.emd2 failed: {log['warning']}")
            total = total + cost
            kept += float(torch.diagonal(log["G"]).sum())
        self._exchanged = max(0.0, 1.0 - kept / sum(float(p.sum()) for _, p in groups))
        return total

    def scalars(self):
        """``{"exchanged": ...}`` of the last value (0 before any)."""
        return {"exchanged": float(self._exchanged)}

    def state_dict(self):
        """The cached permutation and certificate potentials (plan reuse), arrays."""
        return {"assignment": self.assignment_.state_dict(), "exchanged": self._exchanged}

    def load_state_dict(self, state):
        if state:
            self.assignment_.load_state_dict(state["assignment"])
            self._exchanged = float(state["exchanged"])


class SlicedWasserstein(_SignedMeasureDistance):
    r"""Squared sliced 2-Wasserstein distance between the neurons of W and W_prev, signs apart.

    :math:`SW_2^2 = \frac1P \sum_{l} \sum_s m_s\, W_2^2(\theta_l \# \mu_s,\,
    \theta_l \# \mu^\text{prev}_s)`, :math:`\mu_s` the probability measure of the
    neurons of sign ``s`` (weights as in ``wasserstein``), :math:`m_s` the group's
    mass, :math:`\theta_1, \dots, \theta_P` unit directions of
    :math:`\mathbb{R}^d` (``P = n_projections``), the points being the ``m`` neurons
    (columns of ``W``). With uniform weights the groups of ``W`` and ``W_prev`` have
    equal sizes and the optimal 1-D plan matches sorted projections, so

    .. math::

        SW_2^2 = \frac{1}{P m} \sum_{l=1}^P \sum_s \sum_{i=1}^{|G_s|}
        \big( (\theta_l \cdot w)_{s,(i)} - (\theta_l \cdot w^\text{prev})_{s,(i)} \big)^2,

    :math:`(\cdot)_{s,(i)}` the ``i``-th smallest projection in group ``s``, computed
    directly (the sorting order in numpy, the gradient through the matched
    differences: 4 to 6 times faster than POT on CPU); with ``weights="abs_a"`` the 1-D
    costs are POT's (``ot.sliced_wasserstein_distance`` with ``projections=`` and
    ``p=2``, its ``projected_emds``). Gradient-Work passes ``W`` (d, m) itself to POT,
    whose points are rows: it compares ``d`` points of :math:`\mathbb{R}^m`.

    The directions are standard normal vectors normalised to unit length, drawn from
    the generator given to ``setup`` (the run's seed): anew for each proximal
    problem (``resample="step"``: whenever ``W_prev`` changes, so an inner loop
    minimises one fixed function) or at every call (``"call"``, as POT with no
    seed). ``state_dict`` holds the generator's state and the current directions, so
    a resumed run draws the same ones.

    The square, not POT's :math:`SW_2`: :math:`SW_2 = (SW_2^2)^{1/2}` has an infinite
    derivative at ``W = W_prev``, where every inner loop starts (autograd gives NaN);
    Gradient-Work adds ``1e-10`` to ``W_prev`` to avoid it, which makes the proximal
    term a non-smooth norm with a gradient of size O(1) at its minimum.
    :math:`SW_2^2` is smooth there with zero gradient, like the other distances.
    """

    name = "sliced"
    params = (
        Param("n_projections", int, 1000, "number of random unit directions", low=1),
        Param(
            "weights",
            str,
            "uniform",
            "neuron masses: 1/m each, or |a_r| normalised to total 1 (signs never mix)",
            choices=WEIGHTS,
        ),
        Param(
            "resample",
            str,
            "step",
            "draw new directions for each proximal problem (W_prev) or at every call",
            choices=("step", "call"),
        ),
    )

    def setup(self, problem, rng):
        self._rng = rng
        self._projections = None
        self._key = None

    def _directions(self, W_prev):
        """``(d, n_projections)`` unit columns, drawn anew as ``resample`` says."""
        W_prev = _numpy(W_prev)
        same = (
            self._key is not None
            and self._key.shape == W_prev.shape
            and np.array_equal(self._key, W_prev)
        )
        if self.resample == "call" or not same or self._projections is None:
            theta = self._rng.standard_normal((W_prev.shape[0], self.n_projections))
            norms = np.linalg.norm(theta, axis=0)
            self._projections = theta / np.where(norms > 0, norms, 1.0)
            self._key = W_prev.copy()
        return self._projections

    def value(self, W, W_prev, a):
        """``SW_2^2`` as a torch scalar, differentiable in ``W`` (``a`` is not differentiated)."""
        _, groups = self._groups(a)
        if not groups or W.shape[0] == 0:
            return _zero(W)
        theta = self._directions(W_prev)
        total = _zero(W)
        for idx, p in groups:
            if self.weights == "uniform":
                total = total + self._sorted_cost(W, W_prev, idx, theta) / W.shape[1]
            else:
                total = total + float(p.sum()) * self._pot_cost(W, W_prev, idx, p, theta)
        return total

    @staticmethod
    def _sorted_cost(W, W_prev, idx, theta):
        """``sum_l sum_i ((theta_l.w)_(i) - (theta_l.w_prev)_(i))^2 / P`` over the group ``idx``."""
        import torch

        index = torch.as_tensor(idx, device=W.device)
        directions = torch.as_tensor(theta.T, dtype=W.dtype, device=W.device)  # (P, d)
        x = directions @ W[:, index]  # (P, n): row l holds theta_l . w_r
        y = directions @ W_prev[:, index]
        order = torch.as_tensor(np.argsort(_numpy(x), axis=1), device=W.device)
        y_sorted = torch.as_tensor(np.sort(_numpy(y), axis=1), device=W.device)
        return (x.gather(1, order) - y_sorted).square().sum() / theta.shape[1]

    @staticmethod
    def _pot_cost(W, W_prev, idx, p, theta):
        """POT's mean 1-D cost between the group's probability measures (weights ``p``)."""
        import ot
        import torch

        index = torch.as_tensor(idx, device=W.device)
        weights = torch.as_tensor(p / p.sum(), dtype=W.dtype, device=W.device)
        _, log = ot.sliced_wasserstein_distance(
            W[:, index].T,
            W_prev[:, index].T,
            weights,
            weights,
            projections=torch.as_tensor(theta, dtype=W.dtype, device=W.device),
            p=2,
            log=True,
        )
        return log["projected_emds"].mean()

    def state_dict(self):
        """The generator's state, the current directions and the ``W_prev`` they belong to."""
        state = {"rng": self._rng.bit_generator.state}
        if self._projections is not None:
            state.update(projections=self._projections, key=self._key)
        return state

    def load_state_dict(self, state):
        self._rng.bit_generator.state = state["rng"]
        self._projections = state.get("projections")
        self._key = state.get("key")
