r"""Solver plugin ``cvxpy``: the convex program as a second-order-cone program.

The program of :mod:`plugins.convex._program`,

.. math::

    \min_{v, w}\; \tfrac12 \Big\| \sum_i D_i X (v_i - w_i) - y \Big\|^2
    + \beta \sum_i \big(\|v_i\| + \|w_i\|\big)
    \quad\text{s.t.}\quad (2 D_i - I) X v_i \ge 0,\; (2 D_i - I) X w_i \ge 0,

is written with one ``(d, P_v)`` and one ``(d, P_w)`` cvxpy variable holding the
groups that exist, the data term as ``sum(multiply(masks, X @ V), axis=1)`` (no
``D_i X`` formed), the group norms as second-order cones, and the cone constraints
(``cones=True``) as one element-wise inequality per variable.

Solvers: ``solver`` first, then the installed solvers of ``fallback`` (the
open-source conic solvers Clarabel, SCS, ECOS). An answer is a status ``optimal``,
or ``optimal_inaccurate`` (unless ``accept_inaccurate`` is False) whose relative
duality gap and cone violation are at most ``accept_tol`` (recorded as such). When
no solver answers, :class:`plugins.convex._program.ConvexSolverError` names every
solver tried with its status or error; the solver never returns None.

One :meth:`CvxpySolver.step` is the whole solve; ``done`` is True afterwards. The
step returns floats (in the program's half-sum convention): ``objective``,
``duality_gap`` (:func:`plugins.convex._program.duality_gap` at the solver's cone
multipliers: zero at an optimum), ``cone_violation``, ``iterations``,
``solver_code`` (the answering solver's position in ``[solver] + fallback``: 0 is
the first choice; -1 for a program without groups, answered without a solver) and
``status_code`` (:data:`STATUS_CODES`: 0 optimal, 1 optimal_inaccurate). The names
are in :attr:`CvxpySolver.info` (``solver``, ``status``, ``tried``), which
``state_dict`` keeps.
"""

import warnings

import numpy as np

from core.components import Solver
from core.params import Param

from ._program import ConvexSolverError, cone_violation, duality_gap, objective

__all__ = ["CvxpySolver", "STATUS_CODES"]

STATUS_CODES = {"optimal": 0, "optimal_inaccurate": 1}
"""The ``status_code`` of an accepted cvxpy status."""


class CvxpySolver(Solver):
    """The convex training program as a cone program solved by cvxpy (Clarabel, SCS, ECOS)."""

    name = "cvxpy"
    requires = ("cvxpy",)
    extra = "convex"
    params = (
        Param("solver", str, "CLARABEL", "cvxpy solver tried first"),
        Param(
            "fallback",
            list,
            ["CLARABEL", "SCS", "ECOS"],
            "solvers tried next, in order (those installed)",
            item_type=str,
        ),
        Param("eps", float, 1e-10, "the solvers' gap and feasibility tolerances", low=0),
        Param(
            "max_iter",
            int,
            None,
            "most solver iterations (None: 1000 for Clarabel and ECOS, 100000 for SCS)",
            low=1,
            nullable=True,
        ),
        Param(
            "accept_inaccurate",
            bool,
            True,
            "accept the status optimal_inaccurate when its residuals are small",
        ),
        Param(
            "accept_tol",
            float,
            1e-6,
            "largest relative duality gap and cone violation of an inaccurate answer",
            low=0,
        ),
        Param("verbose", bool, False, "print the solver's log"),
    )

    def start(self, program):
        """Set up for a :class:`plugins.convex._program.ConvexProgram` (nothing solved)."""
        self.program = program
        self._problem = None
        self.V, self.Wn = program.zeros()
        self.multipliers = None
        self.info = {"solver": None, "status": None, "tried": []}
        self._done = False
        self._last = {}

    @property
    def done(self):
        return self._done

    def solution(self):
        """``{"V": (d, P), "Wn": (d, P)}``: zero before the solve."""
        return {"V": self.V, "Wn": self.Wn}

    def _build(self):
        import cvxpy as cp

        prog = self.program
        X, M, S = prog.X, prog.masks.astype(float), prog.orientation
        parts, norms, constraints, variables = [], [], [], []
        for exists, sign in ((prog.has_v, 1.0), (prog.has_w, -1.0)):
            idx = np.flatnonzero(exists)
            if idx.size == 0:
                variables.append(None)
                continue
            U = cp.Variable((prog.d, idx.size))
            Z = X @ U
            parts.append(sign * cp.sum(cp.multiply(M[:, idx], Z), axis=1))
            norms.append(cp.sum(cp.norm(U, 2, axis=0)))
            if prog.cones:
                constraints.append(cp.multiply(S[:, idx], Z) >= 0)
            else:
                constraints.append(None)
            variables.append((U, idx, constraints[-1]))
        pred = parts[0] if len(parts) == 1 else parts[0] + parts[1]
        cost = 0.5 * cp.sum_squares(pred - prog.y)
        if prog.beta:
            cost = cost + prog.beta * sum(norms)
        problem = cp.Problem(cp.Minimize(cost), [c for c in constraints if c is not None])
        return problem, variables

    def _solvers(self):
        import cvxpy as cp

        installed = set(cp.installed_solvers())
        order = [self.solver] + [s for s in self.fallback if s.upper() != self.solver.upper()]
        chosen = [s.upper() for s in order if s.upper() in installed]
        if not chosen:
            raise ConvexSolverError(
                f"solver 'cvxpy': none of the solvers {order} is installed "
                f"(installed: {sorted(installed)})"
            )
        return [s.upper() for s in order], chosen

    def _options(self, solver):
        """Tolerances ``eps`` and iteration limits in each solver's own names."""
        if solver == "CLARABEL":
            return {
                "max_iter": self.max_iter or 1000,
                "tol_gap_abs": self.eps,
                "tol_gap_rel": self.eps,
                "tol_feas": self.eps,
            }
        if solver == "ECOS":
            return {"max_iters": self.max_iter or 1000, "abstol": self.eps, "reltol": self.eps}
        if solver == "SCS":
            return {"max_iters": self.max_iter or 100000, "eps_abs": self.eps, "eps_rel": 0}
        return {}

    def _read(self, variables):
        """The solution and multipliers as (d, P) / (n, P) arrays (absent groups zero)."""
        prog = self.program
        V, Wn = prog.zeros()
        lam, mu = np.zeros((prog.n, prog.n_patterns)), np.zeros((prog.n, prog.n_patterns))
        for entry, U_out, dual_out in zip(variables, (V, Wn), (lam, mu)):
            if entry is None:
                continue
            U, idx, constraint = entry
            U_out[:, idx] = np.asarray(U.value)
            if constraint is not None and constraint.dual_value is not None:
                dual_out[:, idx] = np.asarray(constraint.dual_value)
        return V, Wn, ((lam, mu) if prog.cones else None)

    def step(self):
        """Solve (the first call); later calls return the same numbers."""
        if self._done:
            return dict(self._last)
        if self.program.n_groups == 0:  # nothing to optimise: the zero network
            self.info = {"solver": None, "status": "optimal", "tried": []}
            self._last = {
                **self._numbers(self.V, self.Wn, None),
                "iterations": 0.0,
                "solver_code": -1.0,
                "status_code": 0.0,
            }
            self._done = True
            return dict(self._last)
        import cvxpy as cp

        if self._problem is None:
            self._problem = self._build()
        problem, variables = self._problem
        order, chosen = self._solvers()
        tried = [f"{s} (not installed)" for s in order if s not in chosen]
        for solver in chosen:
            try:
                with warnings.catch_warnings():  # the status is recorded instead
                    warnings.simplefilter("ignore", UserWarning)
                    problem.solve(solver=solver, verbose=self.verbose, **self._options(solver))
            except cp.error.SolverError as exc:
                tried.append(f"{solver} (error: {' '.join(str(exc).split())})")
                continue
            status = problem.status
            if status not in STATUS_CODES or any(
                e is not None and e[0].value is None for e in variables
            ):
                tried.append(f"{solver} (status {status})")
                continue
            V, Wn, multipliers = self._read(variables)
            numbers = self._numbers(V, Wn, multipliers)
            if status == "optimal_inaccurate":
                rel_gap = numbers["duality_gap"] / max(abs(numbers["objective"]), 1e-300)
                scale = float(np.abs(self.program.y).max(initial=0.0)) or 1.0
                rel_violation = numbers["cone_violation"] / scale
                if not self.accept_inaccurate or max(rel_gap, rel_violation) > self.accept_tol:
                    tried.append(
                        f"{solver} (status {status}, relative gap {rel_gap:.2e}, "
                        f"cone violation {rel_violation:.2e})"
                    )
                    continue
            stats = problem.solver_stats
            iters = stats.num_iters if stats is not None and stats.num_iters is not None else 0
            self.V, self.Wn, self.multipliers = V, Wn, multipliers
            self.info = {"solver": solver, "status": status, "tried": tried}
            self._last = {
                **numbers,
                "iterations": float(iters),
                "solver_code": float(order.index(solver)),
                "status_code": float(STATUS_CODES[status]),
            }
            self._done = True
            return dict(self._last)
        raise ConvexSolverError("solver 'cvxpy' failed: " + "; ".join(tried))

    def _numbers(self, V, Wn, multipliers):
        prog = self.program
        return {
            "objective": objective(prog, V, Wn),
            "duality_gap": max(duality_gap(prog, V, Wn, multipliers), 0.0),
            "cone_violation": cone_violation(prog, V, Wn) if prog.cones else 0.0,
        }

    def state_dict(self):
        state = {"done": self._done, "info": dict(self.info), "last": dict(self._last)}
        if self._done:
            state.update(V=self.V, Wn=self.Wn)
            if self.multipliers is not None:
                state.update(lam=self.multipliers[0], mu=self.multipliers[1])
        return state

    def load_state_dict(self, state):
        self._done = bool(state["done"])
        self.info = dict(state["info"])
        self.info["tried"] = list(self.info.get("tried") or [])
        self._last = {k: float(v) for k, v in state["last"].items()}
        if self._done:
            self.V = np.array(state["V"], dtype=float)
            self.Wn = np.array(state["Wn"], dtype=float)
            if "lam" in state:
                self.multipliers = (np.array(state["lam"]), np.array(state["mu"]))
