"""The Gaussian population loss of two-layer ReLU networks (Safran & Shamir's census).

Plugins
-------
data ``gaussian_teacher``
    A ReLU teacher ``sum_j relu(v_j . x)`` on ``x ~ N(0, I_d)`` (``V`` = identity,
    random orthonormal or given) as ground truth, plus a small sample for figures.
algorithm ``population_gd``
    Gradient descent on the closed-form population loss ``F(W)`` to a gradient
    norm of 1e-12, finished by Newton steps near a strict minimum (the Newton
    polish, optional), batchable: the seeds of one setting advance as one stack.
indicator ``population``
    Population loss, gradient norm and global-minimum test of a run's snapshots.
sweep_analysis ``census``
    The census of the end points of a sweep over seeds: global or not, distinct
    minima in the authors' compact form with multiplicities, Hessian spectra
    (``census.json``, ``census.csv`` and figures).

The math (loss, gradient, Hessian) is in :mod:`plugins.population._objective`,
the batched descent and its Newton polish in :mod:`plugins.population._descent`,
the census's in :mod:`plugins.population._census`.
"""

from core.hookspecs import hookimpl

from ._algorithm import PopulationGD
from ._census import Census, PopulationIndicator, compact_form, reconstruct
from ._data import GaussianTeacher, teacher_matrix
from ._descent import NewtonPolish, descend
from ._objective import (
    kernel,
    population_grad,
    population_hessian,
    population_loss,
)

__all__ = [
    "PopulationGD",
    "GaussianTeacher",
    "Census",
    "PopulationIndicator",
    "compact_form",
    "reconstruct",
    "teacher_matrix",
    "descend",
    "NewtonPolish",
    "kernel",
    "population_grad",
    "population_hessian",
    "population_loss",
]


@hookimpl
def relulab_algorithms():
    return [PopulationGD]


@hookimpl
def relulab_datasets():
    return [GaussianTeacher]


@hookimpl
def relulab_indicators():
    return [PopulationIndicator]


@hookimpl
def relulab_sweep_analyses():
    return [Census]
