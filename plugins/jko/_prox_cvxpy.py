r"""KL prox as a conic program (exponential cone) with cvxpy.

The prox problem :math:`\min_{p \ge 0} \sigma F(p) + \mathrm{KL}(p \mid q)` is
written as

.. math::

    \min_{p}\; \sigma c \|A p - y\|^2 + \sigma \beta^\top p
    + \sum_j \big(-\mathrm{entr}(p_j)\big) - (\log q)^\top p - \mathbf{1}^\top p
    \;(+\textstyle\sum_j q_j),

which is the KL objective with :math:`p \log p - p \log q` split so that
:math:`\log q` enters linearly, as a cvxpy ``Parameter``: the problem is DPP,
compiled once per energy and re-solved for every new ``q`` (cvxpy caches the
canonicalisation), and a ``q`` that underflows in linear scale (a log-domain JKO
iteration) is passed exactly. :math:`-\mathrm{entr}` is canonicalised to
exponential cones.

Solvers: ``solver`` first, then the remaining installed solvers of ``fallback``
(open-source exponential-cone solvers: Clarabel, ECOS, SCS). The solver that
succeeded is recorded in the result's ``info["solver"]``. When none returns an
optimal status, :class:`plugins.jko._prox.ProxSolverError` names every solver tried
with its status or error; the prox never returns None.

The interior-point tolerances are set to ``tol * 1e-3``: with the default
``tol = 1e-9`` the first-order residual :math:`|\sigma\nabla F + \log(p/q)|` ends
near ``1e-8`` (Clarabel, the tests' problems; at gap ``1e-9`` it is ``4e-5``). The
exponential-cone solve costs 10 to 600 ms for a few dozen positions: the
reference for cross-checks, the slowest of the three prox plugins.
"""

import warnings

import numpy as np

from core.params import Param

from ._prox import KLProx, ProxResult, ProxSolverError, kkt_residual

__all__ = ["CvxpyProx"]

ACCEPTED = ("optimal", "optimal_inaccurate")


class CvxpyProx(KLProx):
    """KL prox of the energy as an exponential-cone program solved by cvxpy (Clarabel...)."""

    name = "cvxpy"
    requires = ("cvxpy",)
    extra = "convex"
    params = KLProx.params + (
        Param("solver", str, "CLARABEL", "cvxpy solver tried first"),
        Param(
            "fallback",
            list,
            ["CLARABEL", "ECOS", "SCS"],
            "solvers tried next, in order (those installed)",
            item_type=str,
        ),
        Param(
            "accept_inaccurate",
            bool,
            True,
            "accept the status optimal_inaccurate (recorded in info)",
        ),
    )

    def __init__(self, **params):
        super().__init__(**params)
        self._cache = None  # (energy id, sigma, N) -> (problem, variable, parameter)

    def _problem(self, energy, sigma):
        import cvxpy as cp

        key = (id(energy), float(sigma), energy.n_positions)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1:]
        N = energy.n_positions
        p = cp.Variable(N, nonneg=True)
        log_q = cp.Parameter(N)
        objective = -cp.sum(cp.entr(p)) - log_q @ p - cp.sum(p) + sigma * energy.beta @ p
        if not energy.is_linear:
            objective = objective + sigma * energy.c * cp.sum_squares(energy.A @ p - energy.y)
        problem = cp.Problem(cp.Minimize(objective))
        self._cache = (key, problem, p, log_q, energy)  # keep energy alive (its id)
        return problem, p, log_q, energy

    def _solvers(self):
        import cvxpy as cp

        installed = set(cp.installed_solvers())
        order = [self.solver] + [s for s in self.fallback if s != self.solver]
        chosen = [s for s in order if s.upper() in installed]
        if not chosen:
            raise ProxSolverError(
                f"prox 'cvxpy': none of the solvers {order} is installed "
                f"(installed: {sorted(installed)})"
            )
        return chosen

    def _solve(self, energy, log_q, sigma, warm):
        import cvxpy as cp

        problem, p_var, log_q_par, _ = self._problem(energy, sigma)
        log_q_par.value = log_q
        accepted = ACCEPTED if self.accept_inaccurate else ACCEPTED[:1]
        tried = []
        for solver in self._solvers():
            try:
                with warnings.catch_warnings():  # the status is recorded instead
                    warnings.simplefilter("ignore", UserWarning)
                    problem.solve(solver=solver, **self._options(solver))
            except cp.error.SolverError as exc:
                tried.append(f"{solver} (error: {' '.join(str(exc).split())})")
                continue
            status = problem.status
            if status in accepted and p_var.value is not None:
                p, log_p = self._finish(energy, log_q, sigma, np.asarray(p_var.value))
                kkt = kkt_residual(energy, log_q, sigma, p, log_p)
                stats = problem.solver_stats
                n_iter = int(stats.num_iters) if stats and stats.num_iters is not None else 0
                return ProxResult(
                    p=p,
                    log_p=log_p,
                    n_iter=n_iter,
                    converged=status == "optimal",
                    kkt=kkt,
                    info={"solver": solver, "status": status, "tried": tried},
                )
            tried.append(f"{solver} (status {status})")
        raise ProxSolverError("prox 'cvxpy' failed: " + "; ".join(tried))

    def _options(self, solver):
        """Solver settings: interior-point tolerances ``tol * 1e-3`` (floored at 1e-14).

        An interior-point gap of ``g`` leaves a first-order residual well above ``g``
        on the exponential cones (about ``3e-9`` at ``g = 1e-12`` on the tests'
        problems), hence the factor.
        """
        solver = solver.upper()
        eps = max(self.tol * 1e-3, 1e-14)
        if solver == "CLARABEL":
            return {
                "max_iter": self.max_iter,
                "tol_gap_abs": eps,
                "tol_gap_rel": eps,
                "tol_feas": eps,
            }
        if solver == "ECOS":
            return {"max_iters": self.max_iter, "abstol": eps, "reltol": eps, "feastol": eps}
        if solver == "SCS":
            return {"max_iters": max(self.max_iter, 100000), "eps_abs": eps, "eps_rel": eps}
        return {}
