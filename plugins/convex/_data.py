r"""Data plugin ``planted_linear``: a planted linear neuron (Wang, Hua, Candes & Pilanci 2022).

.. math:: y = X w + \frac{\sigma}{\sqrt n}\,\xi, \qquad \xi \sim N(0, I_n),

with ``X = randn(n, d) / sqrt(n)`` and the authors' variants (code
``pilancilab/Neural-recovery``, ``ReLU_skip/*.py``):

``inputs``
    ``"gaussian"``; ``"cubed"`` (entries cubed); ``"whitened"`` (``X`` replaced by
    ``U`` of its thin SVD when ``n >= d``: orthonormal columns, else by ``Vh``:
    orthonormal rows); ``"cubed_whitened"`` (cubed, then whitened).
``planted``
    ``"smallest_singular"`` (default, the script's default ``--optw 1``): the right
    singular vector of ``X`` of its smallest singular value (the last row of ``Vh``
    of the thin SVD; for ``n < d`` a unit vector of the row space, since a null
    vector would give ``y = 0``); ``"gaussian"`` (``--optw 0``, the README's runs):
    ``N(0, I_d)`` normalised to unit norm.

Draw order from the run's data stream: ``X``, then ``w`` (``gaussian`` only), then
the noise (nothing when ``noise = 0``). No bias column (the planted neuron has
none). ``n_test > 0`` adds fresh inputs ``X_test`` (``randn(n_test, d) / sqrt(n)``,
cubed for the cubed variants; not whitened: whitening is a property of the
training matrix) with noiseless labels ``Y_test = X_test w``, drawn from their
own stream (the first child of the data stream's seed sequence), so the training
data do not depend on ``n_test``. The planted ``w`` is ``Data.extras["w_star"]``
(stored as ``extra.w_star``, given to the algorithm as ``Problem.extras``).
"""

import numpy as np

from core.components import Data, DataSet
from core.params import Param

__all__ = ["PlantedLinear", "planted_inputs", "planted_vector"]

INPUTS = ("gaussian", "cubed", "whitened", "cubed_whitened")
PLANTED = ("smallest_singular", "gaussian")


def planted_inputs(n, d, kind, rng):
    """Inputs of Wang et al., shape (n, d).

    Parameters
    ----------
    n, d : int
    kind : {"gaussian", "cubed", "whitened", "cubed_whitened"}
    rng : numpy.random.Generator

    Returns
    -------
    X : ndarray, shape (n, d)
        ``whitened`` variants: orthonormal columns (``n >= d``) or rows (``n < d``).
    """
    if kind not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}; got {kind!r}")
    X = rng.standard_normal((n, d)) / np.sqrt(n)
    if kind.startswith("cubed"):
        X = X**3
    if kind.endswith("whitened"):
        U, _, Vh = np.linalg.svd(X, full_matrices=False)
        X = U if n >= d else Vh
    return X


def planted_vector(X, kind, rng):
    """The planted unit vector ``w`` (d,): smallest right singular vector, or Gaussian."""
    if kind == "smallest_singular":
        return np.linalg.svd(X, full_matrices=False)[2][-1]
    if kind == "gaussian":
        w = rng.standard_normal(X.shape[1])
        return w / np.linalg.norm(w)
    raise ValueError(f"planted must be one of {PLANTED}; got {kind!r}")


class PlantedLinear(DataSet):
    """Planted linear neuron ``y = X w (+ noise)`` of Wang et al. (module docstring)."""

    name = "planted_linear"
    params = (
        Param("n", int, 100, "number of training points", low=1),
        Param("d", int, 20, "input dimension", low=1),
        Param("inputs", str, "gaussian", "input variant of Wang et al.", choices=INPUTS),
        Param(
            "planted",
            str,
            "smallest_singular",
            "w: smallest right singular vector of X (the authors' default) or Gaussian",
            choices=PLANTED,
        ),
        Param("noise", float, 0.0, "sigma: labels get sigma / sqrt(n) N(0, 1)", low=0),
        Param("n_test", int, 0, "fresh test points (X_test, Y_test = X_test w)", low=0),
    )

    def load(self, rng):
        X = planted_inputs(self.n, self.d, self.inputs, rng)
        w = planted_vector(X, self.planted, rng)
        y = X @ w
        if self.noise:
            y = y + self.noise / np.sqrt(self.n) * rng.standard_normal(self.n)
        X_test = Y_test = None
        if self.n_test:
            test_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
            X_test = test_rng.standard_normal((self.n_test, self.d)) / np.sqrt(self.n)
            if self.inputs.startswith("cubed"):
                X_test = X_test**3
            Y_test = X_test @ w
        return Data(X, y, X_test=X_test, Y_test=Y_test, extras={"w_star": w})
