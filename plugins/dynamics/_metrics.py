"""Training-dynamics metrics (``metric`` plugins computed by the ``scalars`` logger).

Each reads the current network once (``algorithm.state()``, one float64 view or
copy of ``W`` and ``a`` per call) and the run's problem, and wraps functions of
:mod:`core.quantities`, so an indicator of the same quantity would give the same
numbers. Gradients are the closed form of :mod:`core.model` on that network, so the
metrics work for any algorithm and never touch its caches.

State and resume
----------------
Four metrics compare with the previous *logged* evaluation (with ``every=1``, the
previous step; with ``every=k``, ``k`` steps back): ``activation_patterns``
(``hamming_prev``, ``patterns_visited``), ``loss_change`` and ``grad_change``. They
keep what they need in the metric instance and offer ``state_dict()`` /
``load_state_dict()`` (numpy arrays and JSON values), which the ``scalars`` logger
checkpoints with the run, so a resumed run logs exactly what an uninterrupted one
would. (A checkpoint written before the logger kept metric state restores none: the
first evaluation after such a resume logs NaN for ``hamming_prev``,
``rel_loss_change`` and ``grad_change``, and ``patterns_visited`` stays NaN.)
Quantities measured from the initial network (``hamming_init``, ``neuron_shift_*``,
``gram_change``) read it from the problem and are exact after a resume.
"""

import hashlib
import math

import numpy as np

from core import quantities
from core.components import Metric
from core.params import Param

__all__ = [
    "ActivationPatterns",
    "Corners",
    "LossChange",
    "GradChange",
    "NeuronShift",
    "PreactNorm",
    "LiveNeurons",
    "NtkGram",
]

_FRACTIONS = Param(
    "fractions", bool, False, "also log the counts divided by n m (keys ending in _frac)"
)


def _state(algorithm):
    """``(W, W64, a64)``: the state's ``W`` as held (for its dtype) and float64 copies."""
    state = algorithm.state()
    W, a = state["W"], state["a"]
    W64, a64 = quantities.as_network(W, a)
    return W, W64, a64


class ActivationPatterns(Metric):
    """Pattern changes: Hamming distance to the initial and previous pattern, patterns visited.

    The pattern is the ``(n, m)`` boolean matrix ``1[x_i . w_r > 0]`` on the training
    inputs (Polaczyk & Cyranka, TMLR, Fig. 3). Keys: ``hamming_init`` (entries that
    differ from the initial pattern), ``hamming_prev`` (from the previous logged
    evaluation; NaN at the first), ``patterns_visited`` (distinct patterns among the
    logged evaluations since step 0, told apart by a 128-bit BLAKE2 hash of the packed
    pattern; see the module docstring on resume); with ``fractions``, also
    ``hamming_init_frac`` and ``hamming_prev_frac`` (over ``n m``).
    """

    name = "activation_patterns"
    params = (_FRACTIONS,)

    def __init__(self, **params):
        super().__init__(**params)
        self._initial = None
        self._previous = None
        self._visited = set()
        self._complete = None

    def compute(self, algorithm, problem):
        W, W64, _ = _state(algorithm)
        bits = quantities.pattern_bits(problem.X, W64)
        W0 = None
        if self._initial is None:
            W0 = quantities.initial_first_layer(W, problem)
            self._initial = quantities.pattern_bits(problem.X, W0)
        if self._complete is None:  # first evaluation of this instance: at step 0?
            W0 = quantities.initial_first_layer(W, problem) if W0 is None else W0
            self._complete = bool(np.array_equal(W64, W0))
        size = problem.X.shape[0] * W64.shape[1]
        h_init = quantities.hamming(bits, self._initial)
        h_prev = math.nan if self._previous is None else quantities.hamming(bits, self._previous)
        self._previous = bits
        self._visited.add(hashlib.blake2b(bits.tobytes(), digest_size=16).hexdigest())
        out = {
            "hamming_init": h_init,
            "hamming_prev": h_prev,
            "patterns_visited": len(self._visited) if self._complete else math.nan,
        }
        if self.fractions:
            out["hamming_init_frac"] = h_init / size
            out["hamming_prev_frac"] = h_prev / size
        return out

    def state_dict(self):
        """The previous pattern (packed) and the hashes of the visited ones."""
        return {
            "previous": self._previous,
            "visited": sorted(self._visited),
            "complete": self._complete,
        }

    def load_state_dict(self, state):
        previous = state["previous"]
        self._previous = None if previous is None else np.asarray(previous, dtype=np.uint8)
        self._visited = set(state["visited"])
        self._complete = state["complete"]


class Corners(Metric):
    """Pre-activations at a ReLU corner, |x_i . w_r| < threshold (count; fraction with fractions).

    Keys ``corners`` and, with ``fractions``, ``corners_frac`` (over ``n m``):
    :func:`core.quantities.corners`. The threshold 1e-8 is Polaczyk & Cyranka's.
    The pre-activations are those of the run's parameters (float32 ones for a
    float32 run) computed in float64.
    """

    name = "corners"
    params = (
        Param("threshold", float, 1e-8, "|pre-activation| below this is a corner", low=0),
        _FRACTIONS,
    )

    def compute(self, algorithm, problem):
        _, W64, a64 = _state(algorithm)
        out = quantities.corners(W64, a64, problem, self.threshold)
        if not self.fractions:
            del out["corners_frac"]
        return out


class LossChange(Metric):
    """Relative loss change |L_t - L_prev| / L_prev since the previous logged evaluation.

    Key ``rel_loss_change``: NaN at the first evaluation and when ``L_prev`` is 0.
    ``L`` is ``algorithm.loss()``, the run's loss.
    """

    name = "loss_change"

    def __init__(self, **params):
        super().__init__(**params)
        self._previous = None

    def compute(self, algorithm, problem):
        value = float(algorithm.loss())
        previous, self._previous = self._previous, value
        if previous is None or previous == 0 or not math.isfinite(previous):
            return {"rel_loss_change": math.nan}
        return {"rel_loss_change": abs(value - previous) / previous}

    def state_dict(self):
        return {"previous": self._previous}

    def load_state_dict(self, state):
        self._previous = state["previous"]


class GradChange(Metric):
    """Gradient change max_p ||g_t^p - g_prev^p||_2 / max_p ||g_prev^p||_2 and sum_p ||g^p||_F.

    Polaczyk & Cyranka's (TMLR) measure: spectral norms (a vector's Euclidean
    norm), numerator and denominator each maximised over the parameter tensors
    ``p`` (:func:`core.quantities.gradient_change`). The gradient is the
    closed-form gradient of the training loss (:func:`core.quantities.loss_gradients`),
    whatever the algorithm (no weight decay). ``layers="trained"`` takes ``W`` only
    when the algorithm has ``train == "first"`` (``gd``, ``gd_numpy``: the second
    layer is fixed), else ``W`` and ``a``. Keys ``grad_change`` (NaN at the first
    evaluation) and ``grad_norm_sum``.
    """

    name = "grad_change"
    params = (
        Param(
            "layers",
            str,
            "trained",
            "parameter tensors: those the algorithm trains, W only, or W and a",
            choices=("trained", "W", "both"),
        ),
    )

    def __init__(self, **params):
        super().__init__(**params)
        self._previous = None

    def _layers(self, algorithm):
        if self.layers == "W":
            return ("W",)
        if self.layers == "both":
            return ("W", "a")
        return ("W",) if getattr(algorithm, "train", "both") == "first" else ("W", "a")

    def compute(self, algorithm, problem):
        _, W64, a64 = _state(algorithm)
        grads = quantities.loss_gradients(W64, a64, problem, self._layers(algorithm))
        previous, self._previous = self._previous, grads
        change = math.nan if previous is None else quantities.gradient_change(grads, previous)
        return {"grad_change": change, "grad_norm_sum": quantities.gradient_norm_sum(grads)}

    def state_dict(self):
        return {"previous": self._previous}

    def load_state_dict(self, state):
        previous = state["previous"]
        self._previous = (
            None
            if previous is None
            else {k: np.asarray(v, dtype=np.float64) for k, v in previous.items()}
        )


class NeuronShift(Metric):
    """Largest neuron move max_r ||w_r(t) - w_r(0)|| and ||W(t) - W(0)||_F.

    Keys ``neuron_shift_max`` and ``neuron_shift_fro``
    (:func:`core.quantities.neuron_shift`); in the NTK regime the largest move
    shrinks like ``1/sqrt(m)`` (Du et al., ICLR 2019).
    """

    name = "neuron_shift"

    def compute(self, algorithm, problem):
        W, W64, a64 = _state(algorithm)
        return quantities.neuron_shift(W64, a64, problem, dtype=W.dtype)


class PreactNorm(Metric):
    """Frobenius norm of the pre-activations ||X W||_F (key preact_norm)."""

    name = "preact_norm"

    def compute(self, algorithm, problem):
        _, W64, a64 = _state(algorithm)
        return quantities.preact_norm(W64, a64, problem)


class LiveNeurons(Metric):
    """Neurons active on at least one training input (keys live_neurons, live_frac).

    A neuron inactive on every input gets no gradient: once all are dead, the
    network is constant and training stops moving it (the collapse of the Du et
    al. report's variant, ``configs/du_width.py``).
    """

    name = "live_neurons"

    def compute(self, algorithm, problem):
        _, W64, a64 = _state(algorithm)
        return quantities.live_neurons(W64, a64, problem)


class NtkGram(Metric):
    """Smallest eigenvalue of the Gram matrix H(t) of Du et al., its move from H(0), and lambda_0.

    Keys ``gram_lambda_min`` (``lambda_min(H(t))``, :func:`core.quantities.ntk_gram`)
    and, with ``reference``, ``gram_change`` (``||H(t) - H(0)||_2``) and
    ``gram_lambda_0`` (``lambda_min(H^inf)``, :func:`core.quantities.lambda_0`).
    ``H(0)`` and ``lambda_0`` depend on the problem only: computed at the first
    evaluation and kept. Costs ``n^2 m`` for the co-activation counts and ``n^3``
    for the eigenvalues per evaluation: log it sparsely for large ``n``.
    """

    name = "ntk_gram"
    params = (Param("reference", bool, True, "also log gram_change and gram_lambda_0"),)

    def __init__(self, **params):
        super().__init__(**params)
        self._reference = None

    def compute(self, algorithm, problem):
        W, W64, _ = _state(algorithm)
        H = quantities.ntk_gram(problem.X, W64)
        out = {"gram_lambda_min": float(np.linalg.eigvalsh(H)[0])}
        if self.reference:
            if self._reference is None:
                H0 = quantities.ntk_gram(problem.X, quantities.initial_first_layer(W, problem))
                self._reference = (H0, quantities.lambda_0(problem.X))
            H0, lam0 = self._reference
            out["gram_change"] = float(np.linalg.norm(H - H0, 2))
            out["gram_lambda_0"] = lam0
        return out
