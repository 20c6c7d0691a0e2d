r"""Convex training of regularised two-layer ReLU networks (Pilanci & Ergen 2020).

Squared loss plus weight decay over two-layer ReLU networks has the optimal value of
a group-lasso program over the data's activation patterns; solving it gives a
globally optimal network (with every pattern) and a certificate (its duality gap).

Modules
-------
_program        :class:`ConvexProgram` and its functions (objective, prediction,
                cone violation, duality gap, network recovery), written once
_patterns       exact, sampled and neuron patterns
_solver_cvxpy   solver plugin ``cvxpy``: the program as a cone program, with
                solver fallback (Clarabel, SCS, ECOS)
_first_order    solver plugins ``first_order`` and ``interior_point``: certified
                iterative solvers of the regularised program
_working_set    solver plugin ``working_set``: the interior point on working sets
                of groups, certified over all groups (exact cone test of each
                group left out)
_basis_pursuit  certified interior point for group basis pursuit (the gated
                min-norm programs)
_min_norm       algorithm ``min_norm`` (skip / plain / normalisation-layer min-norm
                programs, recovery of a planted neuron) and its indicator
_data           data plugin ``planted_linear``
_algorithm      algorithm plugin ``convex``: patterns -> program -> solver steps ->
                recovered network
_stoppers       stopper plugin ``solved``: stop when the algorithm is done

Everything imports without cvxpy (it is imported inside the solver's methods;
``CvxpySolver`` declares ``requires = ("cvxpy",)`` and the extra ``convex``).
"""

from core.hookspecs import hookimpl

from ._algorithm import Convex
from ._basis_pursuit import GroupBasisPursuit, solve_group_bp
from ._data import PlantedLinear
from ._first_order import FirstOrder, InteriorPoint
from ._min_norm import MinNorm, MinNormIndicator, solve_min_norm, solve_min_norm_ipm
from ._patterns import exact_patterns, neuron_patterns, sampled_patterns, unique_masks
from ._program import (
    ConvexProgram,
    ConvexSolverError,
    cone_violation,
    duality_gap,
    nonconvex_objective,
    objective,
    predict,
    program_beta,
    recover_network,
)
from ._solver_cvxpy import CvxpySolver
from ._stoppers import Solved
from ._working_set import WorkingSet

__all__ = [
    "Convex",
    "MinNorm",
    "MinNormIndicator",
    "GroupBasisPursuit",
    "solve_group_bp",
    "solve_min_norm",
    "solve_min_norm_ipm",
    "PlantedLinear",
    "ConvexProgram",
    "ConvexSolverError",
    "CvxpySolver",
    "FirstOrder",
    "InteriorPoint",
    "WorkingSet",
    "Solved",
    "objective",
    "predict",
    "cone_violation",
    "duality_gap",
    "recover_network",
    "nonconvex_objective",
    "program_beta",
    "exact_patterns",
    "sampled_patterns",
    "neuron_patterns",
    "unique_masks",
]

#: The solver plugins of this package; a new solver module adds its class here.
SOLVERS = [
    CvxpySolver,
    FirstOrder,
    InteriorPoint,
    WorkingSet,
]


@hookimpl
def relulab_algorithms():
    return [Convex, MinNorm]


@hookimpl
def relulab_datasets():
    return [PlantedLinear]


@hookimpl
def relulab_indicators():
    return [MinNormIndicator]


@hookimpl
def relulab_solvers():
    return list(SOLVERS)


@hookimpl
def relulab_stoppers():
    return [Solved]
