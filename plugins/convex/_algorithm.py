r"""Algorithm plugin ``convex``: train by solving the convex program, then read the network.

The run minimises the regularised training objective

.. math::

    \mathcal{L}(W, a) + \tfrac{\lambda}{2}\big(\|W\|_F^2 + \|a\|^2\big),

with :math:`\mathcal{L}` the model loss of :func:`core.model.loss` in the run's
convention (``model.loss``, constant :math:`c`) and :math:`\lambda` the parameter
``beta``: the objective ``gd`` minimises with ``weight_decay = beta`` (SGD's
weight decay adds :math:`\lambda\theta` to the gradient). It does so by solving
the convex program of :mod:`plugins.convex._program` with group-lasso weight
:math:`\lambda / (2c)` (``"half_sum"``: :math:`\lambda`; ``"mse"``:
:math:`\lambda n / 2`) over the chosen patterns and recovering the network from
its solution; the convex optimum times :math:`2c` is then the run's objective
(``convex_objective``), a lower bound of what any network reaches when the
patterns are exact.

Patterns (:mod:`plugins.convex._patterns`): ``exact`` (all of them; 1-D inputs
with a bias, or small ``n`` and ``d``), ``sampled`` (``n_patterns`` Gaussian
gates from the run's algorithm stream), or ``neurons`` (one group per neuron of
the initial network, with the sign of its output weight; each step re-solves with
the patterns of the network the last solve produced, until they are those of a
program already solved, a fixed point or a cycle: Gradient-Work's iteration).
``relaxation="gated"`` drops the cone constraints.

Gradient-Work's convex step (``vmerckle/Gradient-Work``, ``algos/algo_convex_cvxpy.py``)
minimises :math:`\|\hat y - y\|^2 / n + \beta_{GW} \sum_i \|W_i\|` with the cones: with
``model.loss="mse"`` that is this run's convex objective for ``beta`` =
:math:`\beta_{GW}` (:math:`2c \cdot \lambda/(2c) = \lambda`), so ``patterns="neurons"``,
``beta=beta_GW`` reproduces it. Its patterns are ``1[X W > 0]`` and its neurons
:math:`W_i/\|W_i\|` with :math:`a_i = \pm\|W_i\|`; relulab uses ``1[X W >= 0]`` (equal
off the data's hyperplanes) and the balanced neurons of
:func:`plugins.convex._program.recover_network` (the same function).

Steps: every step is one :meth:`core.components.Solver.step` of the solver
(``solver``; ``cvxpy`` solves in one step, an iterative solver's iterations are
the run's steps); the stopper ``solved`` ends the run once :attr:`Convex.done`
(the solve is finished, and in ``neurons`` mode the patterns repeat); further steps
change nothing.

State: ``W`` (d, m), ``a`` (m,) and ``active`` (m,) bool, the recovered network
padded with zero neurons (``active`` False) to the fixed width ``m = max(model.width,
number of groups of the first program)``, so that snapshots of different steps stack
(no solution has more neurons than groups, and in ``neurons`` mode the programs
only shrink). Before the first solve it is the zero network (``exact``,
``sampled``) or the initial one (``neurons``). Indicators that average over neurons
count the zero ones.

Scalars: ``convex_objective`` (the program's objective at the solver's point,
times :math:`2c`), ``nonconvex_objective`` (the run's regularised objective of the
recovered network; equal at an optimum with cones), ``n_neurons``,
``n_patterns``, ``n_groups``, ``solves`` (programs solved), ``converged`` (1.0
once done) and the solver's numbers prefixed ``solver_``, in the program's half-sum
convention (for ``cvxpy``: ``solver_objective``, ``solver_duality_gap``,
``solver_cone_violation``, ``solver_iterations``, ``solver_solver_code``,
``solver_status_code``; the solver's name and status are in the checkpoint's
solver state).
"""

import hashlib

import numpy as np

from core.components import Algorithm
from core.errors import ConfigError
from core.model import loss as model_loss
from core.params import Param

from ._patterns import MAX_CANDIDATES, exact_patterns, neuron_patterns, sampled_patterns
from ._program import (
    ConvexProgram,
    group_norms,
    loss_scale,
    nonconvex_objective,
    objective,
    program_beta,
    recover_network,
)

__all__ = ["Convex"]

OWNER = "algorithm (convex)"


class Convex(Algorithm):
    """Regularised training as a convex program over activation patterns (Pilanci & Ergen)."""

    name = "convex"
    params = (
        Param(
            "beta",
            float,
            1e-3,
            "weight decay lambda: the run minimises model loss + lambda/2 (|W|^2 + |a|^2), "
            "as gd with weight_decay = lambda",
            low=0,
        ),
        Param(
            "patterns",
            str,
            "exact",
            "activation patterns: all of them, Gaussian gates, or the neurons' (re-solved)",
            choices=("exact", "sampled", "neurons"),
        ),
        Param("n_patterns", int, 100, "Gaussian gates drawn (patterns=sampled)", low=1),
        Param(
            "max_candidates",
            int,
            MAX_CANDIDATES,
            "refuse exact patterns beyond this many candidates C(n, d-1) 2^d",
            low=1,
        ),
        Param(
            "relaxation",
            str,
            "none",
            "none: exact ReLU with cone constraints; gated: the gated relaxation (no cones)",
            choices=("none", "gated"),
        ),
        Param(
            "solver",
            str,
            "cvxpy",
            "solver of the program (a solver plugin: cvxpy, first_order)",
            plugin_kind="solver",
        ),
        Param(
            "solver_options",
            dict,
            {},
            "parameters of the solver plugin (see --help-plugin)",
            options_of="solver",
        ),
        Param(
            "tol",
            float,
            1e-8,
            "recovery: drop groups whose norm is at most tol times the largest",
            low=0,
        ),
    )

    def setup(self, problem):
        if problem.scaling != "standard":
            raise ConfigError(f"{OWNER} needs model.scaling='standard'; got {problem.scaling!r}")
        if problem.Y.ndim != 1:
            raise ConfigError(f"{OWNER} needs one output (Y of shape (n,)); got {problem.Y.shape}")
        self.problem = problem
        self.scale = loss_scale(problem.n, problem.loss)
        self.program_beta = program_beta(self.beta, problem.n, problem.loss)
        self.solver_ = problem.build(
            "solver", self.solver, self.solver_options, owner=f"{OWNER}.solver_options"
        )
        if self.patterns == "exact":
            masks, signs = exact_patterns(problem.X, self.max_candidates), None
        elif self.patterns == "sampled":
            masks, signs = sampled_patterns(problem.X, self.n_patterns, problem.rng), None
        else:
            masks, signs = neuron_patterns(problem.X, problem.W0, problem.a0)
        self._start(masks, signs)
        self.width = max(problem.m, self.program.n_groups)
        if self.patterns == "neurons":
            self._set_network(problem.W0, problem.a0)
        else:
            self._set_network(np.zeros((problem.d, 0)), np.zeros(0))
        self.solves = 0
        self.converged = False
        self.seen = []  # neurons: keys of the pattern sets solved so far
        self._last = {}

    def _start(self, masks, signs):
        self.program = ConvexProgram(
            self.problem.X,
            self.problem.Y,
            masks,
            self.program_beta,
            cones=self.relaxation == "none",
            signs=signs,
        )
        self.solver_.start(self.program)

    def _set_network(self, W, a):
        self.W, self.a = np.asarray(W, dtype=float), np.asarray(a, dtype=float)

    def _recover(self):
        solution = self.solver_.solution()
        V, Wn = solution["V"], solution["Wn"]
        largest = max(group_norms(V).max(initial=0.0), group_norms(Wn).max(initial=0.0))
        self._set_network(*recover_network(V, Wn, self.tol * largest))

    @property
    def done(self):
        """Whether the solve is finished (and, for ``neurons``, the patterns are fixed)."""
        return self.converged

    def step(self):
        if self.converged:  # nothing left to do: the network stays
            return
        if self.solver_.done:  # neurons: the next program
            self._start(*neuron_patterns(self.problem.X, self.W, self.a))
        self._last = {k: float(v) for k, v in self.solver_.step().items()}
        self._recover()
        if self.solver_.done:
            self.solves += 1
            self.converged = self.patterns != "neurons" or self._patterns_fixed()

    def _patterns_fixed(self):
        """Whether the recovered network's patterns were a solved program's (as sets).

        The current program's: a fixed point; an earlier one's: a cycle (with the
        cones the objective cannot increase along the iteration, so a cycle is at one
        objective value; the gated relaxation can cycle at different ones).
        """
        self.seen.append(_pattern_key(self.program.masks, self.program.signs))
        return _pattern_key(*neuron_patterns(self.problem.X, self.W, self.a)) in self.seen

    def loss(self):
        return model_loss(
            self.problem.X, self.problem.Y, self.W, self.a, "standard", self.problem.loss
        )

    def state(self):
        m = self.W.shape[1]
        W = np.zeros((self.problem.d, self.width))
        a = np.zeros(self.width)
        W[:, :m], a[:m] = self.W, self.a
        active = np.arange(self.width) < m
        return {"W": W, "a": a, "active": active}

    def scalars(self):
        solution = self.solver_.solution()
        p = self.problem
        out = {
            "convex_objective": self.scale * objective(self.program, solution["V"], solution["Wn"]),
            "nonconvex_objective": self.scale
            * nonconvex_objective(p.X, p.Y, self.W, self.a, self.program_beta),
            "n_neurons": float(self.W.shape[1]),
            "n_patterns": float(self.program.n_patterns),
            "n_groups": float(self.program.n_groups),
            "solves": float(self.solves),
            "converged": float(self.converged),
        }
        out.update({f"solver_{k}": v for k, v in self._last.items()})
        return out

    def state_dict(self):
        return {
            "masks": self.program.masks.copy(),
            "signs": None if self.program.signs is None else self.program.signs.copy(),
            "solver": self.solver_.state_dict(),
            "W": self.W.copy(),
            "a": self.a.copy(),
            "solves": self.solves,
            "converged": self.converged,
            "seen": list(self.seen),
            "last": dict(self._last),
        }

    def load_state_dict(self, state):
        signs = state["signs"]
        self._start(
            np.array(state["masks"], dtype=bool), None if signs is None else np.array(signs)
        )
        self.solver_.load_state_dict(state["solver"])
        self._set_network(state["W"], state["a"])
        self.solves = int(state["solves"])
        self.converged = bool(state["converged"])
        self.seen = list(state["seen"])
        self._last = {k: float(v) for k, v in state["last"].items()}


def _pattern_key(masks, signs):
    """A digest of a set of (pattern, sign) groups, independent of their order."""
    columns = np.vstack([np.packbits(masks, axis=0), (np.asarray(signs) > 0)[None]]).T
    rows = sorted(bytes(c) for c in columns.astype(np.uint8))
    return hashlib.sha256(b"".join(rows)).hexdigest()
