"""Proximal-point steps on the first layer, with a choice of distance.

Modules
-------
_algorithm  algorithm plugin ``proxpoint``: W <- argmin L(W) + D(W, W_k) / gamma,
            solved by an inner loop of an optimizer plugin (:mod:`plugins.optimizers`),
            optionally with a learning-rate schedule plugin
_plots      plot plugin ``inner_loop``: objective, distance and learning rate of
            every inner iteration
_distances  distance plugins ``frobenius``, ``wasserstein`` (exact, signs apart, plan
            reuse) and ``sliced`` (squared sliced Wasserstein)
_assignment optimal assignments certified by Bellman-Ford, reused while optimal
"""

from core.hookspecs import hookimpl

# -- algorithm and plot ----------------------------------------------------------------
from ._algorithm import ProximalPoint
from ._plots import InnerLoop

__all__ = ["ProximalPoint", "InnerLoop"]


@hookimpl
def relulab_algorithms():
    return [ProximalPoint]


@hookimpl
def relulab_plots():
    return [InnerLoop]


# -- distances ---------------------------------------------------------------------
from ._distances import Frobenius, SlicedWasserstein, Wasserstein  # noqa: E402

__all__ += ["Frobenius", "Wasserstein", "SlicedWasserstein"]


@hookimpl
def relulab_distances():
    return [Frobenius, Wasserstein, SlicedWasserstein]
