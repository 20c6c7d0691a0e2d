r"""The network as a signed measure over neuron positions, in one place.

A two-layer network ``(W, a)`` with one output is the signed measure
:math:`\mu = \sum_j a_j \delta_{w_j}`; measure-based algorithms (the JKO flow,
Wasserstein proximal point) keep the positions ``W`` and move nonnegative masses
``p`` carrying signs ``s``, so that ``a = s * p``.
"""

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

__all__ = ["SignedMeasure", "measure_from_network", "measure_from_problem"]


@dataclass
class SignedMeasure:
    """A signed measure on fixed positions: the network the JKO flow moves.

    Attributes
    ----------
    W : ndarray, shape (d, N)
        Positions (column ``j`` is neuron ``w_j``).
    s : ndarray, shape (N,)
        Signs, +1 or -1.
    p : ndarray, shape (N,)
        Masses, nonnegative.
    """

    W: np.ndarray
    s: np.ndarray
    p: np.ndarray

    @property
    def a(self):
        """Output weights ``s * p``, shape ``(N,)``."""
        return self.s * self.p

    def network(self):
        """The network ``(W, a)`` of this measure: ``W`` (d, N) and ``a = s * p`` (N,)."""
        return self.W, self.a


def measure_from_network(W, a, owner="algorithm"):
    """The signed measure of a one-output network.

    Parameters
    ----------
    W : ndarray, shape (d, N)
        Positions (neurons).
    a : ndarray, shape (N,) or (N, 1)
        Output weights; ``s = sign(a)`` (zero counts as +1), ``p = |a|``.
    owner : str
        Used in the error for more than one output.

    Returns
    -------
    SignedMeasure
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        if a.shape[1] != 1:
            raise ConfigError(f"{owner} needs one output; got a0 of shape {a.shape}")
        a = a[:, 0]
    s = np.where(a < 0, -1.0, 1.0)
    return SignedMeasure(W=np.asarray(W, dtype=np.float64), s=s, p=np.abs(a))


def measure_from_problem(problem, owner="algorithm"):
    """The initial measure of a :class:`core.components.Problem` (``W0``, ``a0``)."""
    return measure_from_network(problem.W0, problem.a0, owner)
