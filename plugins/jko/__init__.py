r"""Entropic JKO flow of a shallow ReLU network's masses on a fixed grid.

The network is a signed measure on fixed neuron positions (a grid of the
(weight, bias) plane for 1-D inputs with a bias); a JKO step moves mass by the
entropic Wasserstein proximal step of the loss, computed with Peyré's KL-proximal
Sinkhorn iterations (G. Peyré, "Entropic approximation of Wasserstein gradient
flows", SIAM J. Imaging Sci. 8(4), 2015).

Modules
-------
_energy      the measure read off a Problem; the quadratic energy F, written once
_kernel      Gibbs kernels: dense, separable (grid, axis by axis), block per sign
_prox        the KL prox problem, its result, shared plumbing
_prox_scipy  prox plugin ``scipy``: Newton on the dual, or L-BFGS-B on p >= 0
_prox_cvxpy  prox plugin ``cvxpy``: exponential-cone program, solver fallback
_prox_torch  prox plugin ``torch``: Newton on the dual (or mirror descent), CPU or CUDA
_step_newton the whole step by Newton on its n-dimensional dual (``solver="newton"``)
_jko         algorithm plugin ``jko`` and :func:`entropic_jko_step` (scaling iterations)
_plots       plot plugins ``jko_mass`` (mass per sign over steps), ``jko_convergence``
"""

from core.hookspecs import hookimpl
from core.measure import SignedMeasure, measure_from_problem

from ._energy import QuadraticEnergy, energy_from_problem
from ._jko import JKO, build_prox, entropic_jko_step
from ._kernel import BlockKernel, DenseKernel, Grid, SeparableKernel, detect_grid, make_kernel
from ._plots import JKOConvergence, JKOMass
from ._prox import KLProx, ProxResult, ProxSolverError, kkt_residual, prox_objective
from ._prox_cvxpy import CvxpyProx
from ._prox_scipy import ScipyProx
from ._prox_torch import TorchProx
from ._step_newton import StepDual, newton_jko_step

__all__ = [
    "JKO",
    "entropic_jko_step",
    "newton_jko_step",
    "StepDual",
    "build_prox",
    "QuadraticEnergy",
    "SignedMeasure",
    "measure_from_problem",
    "energy_from_problem",
    "Grid",
    "detect_grid",
    "DenseKernel",
    "SeparableKernel",
    "BlockKernel",
    "make_kernel",
    "KLProx",
    "ProxResult",
    "ProxSolverError",
    "kkt_residual",
    "prox_objective",
    "ScipyProx",
    "CvxpyProx",
    "TorchProx",
    "JKOMass",
    "JKOConvergence",
]


@hookimpl
def relulab_algorithms():
    return [JKO]


@hookimpl
def relulab_proxes():
    return [ScipyProx, CvxpyProx, TorchProx]


@hookimpl
def relulab_plots():
    return [JKOMass, JKOConvergence]
