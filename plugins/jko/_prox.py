r"""The KL proximal operator of the energy: problem, result and shared plumbing.

Every prox plugin of the JKO family solves the same problem,

.. math::

    \mathrm{prox}^{\mathrm{KL}}_{\sigma F}(q) = \operatorname*{argmin}_{p \ge 0}\;
    \sigma F(p) + \mathrm{KL}(p \mid q), \qquad
    \mathrm{KL}(p \mid q) = \sum_j p_j \log\frac{p_j}{q_j} - p_j + q_j,

for the quadratic energy :class:`plugins.jko._energy.QuadraticEnergy` and
:math:`\sigma > 0`. The minimiser is unique (the objective is strictly convex), has
the support of ``q``, and is characterised there by the first-order condition

.. math::

    \sigma \nabla F(p) + \log(p / q) = 0, \qquad\text{i.e.}\qquad
    p = q \odot \exp(-\sigma \nabla F(p)).

With a linear energy (:math:`F(p) = \beta^\top p`) this is the Gibbs reweighting
:math:`p = q \odot e^{-\sigma \beta}`.

Solvers receive :math:`\log q` (the JKO iteration runs in the log domain, where
``q`` may underflow) and return both ``p`` and :math:`\log p`. A solver that
works with ``p`` itself fills :math:`\log p` on coordinates whose mass is
negligible (below ``1e-8`` of the largest) from the optimality condition,
:math:`\log p = \log q - \sigma \nabla F(p)`, which is exact given the residual
and is what the scalings of the JKO iteration need there.

References
----------
G. Peyré, "Entropic approximation of Wasserstein gradient flows", SIAM J. Imaging
Sci. 8(4), 2015, Sec. 3 (the proximal maps of the KL-JKO iteration).
"""

from dataclasses import dataclass, field

import numpy as np

from core.components import Prox
from core.errors import RelulabError
from core.params import Param

__all__ = [
    "ProxResult",
    "KLProx",
    "ProxSolverError",
    "prox_objective",
    "kkt_residual",
    "damped_dual_newton",
    "TINY_MASS",
]

#: Coordinates with mass below this fraction of the largest are "negligible": their
#: log-mass comes from the optimality condition (solvers working with ``p``).
TINY_MASS = 1e-8


class ProxSolverError(RelulabError):
    """A prox solver failed (every solver tried, with its status, is named)."""


@dataclass
class ProxResult:
    """What a prox solver returns.

    Attributes
    ----------
    p : ndarray, shape (N,)
        The prox point.
    log_p : ndarray, shape (N,)
        Its logarithm (``-inf`` off the support of ``q``).
    n_iter : int
        Solver iterations.
    converged : bool
        Whether the solver met its tolerance.
    kkt : float
        Largest :math:`|\\sigma \\nabla F(p) + \\log(p/q)|` over non-negligible masses.
    warm : object
        A warm start for the next call on a nearby ``q`` (solver specific; may be None).
    info : dict
        Solver diagnostics (status, solver used...).
    """

    p: np.ndarray
    log_p: np.ndarray
    n_iter: int = 0
    converged: bool = True
    kkt: float = 0.0
    warm: object = None
    info: dict = field(default_factory=dict)


def prox_objective(energy, log_q, sigma, p):
    r""":math:`\sigma F(p) + \mathrm{KL}(p \mid q)` (``q = exp(log_q)``)."""
    from scipy.special import xlogy  # imported on first use: keeps start-up light

    q = np.exp(log_q)
    finite = np.isfinite(log_q)
    kl = np.sum(
        xlogy(p, p)[finite] - (p * np.where(finite, log_q, 0.0))[finite] - p[finite] + q[finite]
    )
    return float(sigma * energy.value(p) + kl)


def kkt_residual(energy, log_q, sigma, p, log_p=None, rel_mass=TINY_MASS):
    r"""Largest first-order residual :math:`|\sigma \nabla F(p) + \log p - \log q|`.

    Parameters
    ----------
    energy : QuadraticEnergy
    log_q : ndarray, shape (N,)
    sigma : float
    p : ndarray, shape (N,)
    log_p : ndarray, shape (N,), optional
        Default ``log(p)``.
    rel_mass : float
        Only coordinates with ``p >= rel_mass * max(p)`` count.

    Returns
    -------
    float
    """
    if log_p is None:
        with np.errstate(divide="ignore"):
            log_p = np.log(p)
    keep = np.isfinite(log_q) & (p >= rel_mass * np.max(p, initial=0.0)) & (p > 0)
    if not np.any(keep):
        return 0.0
    g = sigma * energy.gradient(p) + log_p - log_q
    return float(np.max(np.abs(g[keep])))


def damped_dual_newton(evaluate, newton_step, log_mass_change, lam, tol, max_iter):
    r"""Damped Newton with an Armijo line search on the prox's dual, for any array type.

    The iteration of :func:`plugins.jko._prox_scipy.dual_newton_prox` (numpy) and of
    the ``torch`` prox: only the arrays and the linear algebra differ, given as
    callables. Near the optimum, where the decrease of the dual is below rounding, a
    step is accepted when it reduces the residual. The iteration stops when the
    residual or the log-mass change of a step taken is at most ``tol`` (success),
    after ``max_iter`` steps, after three steps without halving the residual (its
    rounding floor), or when no step length down to ``1e-12`` decreases the dual.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(lam) -> (value, p, log_p, grad, residual)``: the dual's value
        (float), the prox point and its log at ``lam``, the dual's gradient and the
        largest first-order residual (float).
    newton_step : callable
        ``newton_step(p, grad) -> step``: :math:`-H^{-1} \nabla D` with the dual's
        Hessian :math:`A\,\mathrm{diag}(p) A^\top + \rho I`.
    log_mass_change : callable
        ``log_mass_change(step) -> float``: :math:`\max_j |(A^\top \mathrm{step})_j|`.
    lam : array, shape (n,)
        Starting multiplier.
    tol : float
    max_iter : int

    Returns
    -------
    lam : array, shape (n,)
    p, log_p : arrays, shape (N,)
    residual : float
    n_iter : int
    success : bool
    """
    eps = float(np.finfo(float).eps)
    value, p, log_p, grad, residual = evaluate(lam)
    n_iter, success, change = 0, False, float("inf")
    best, stalled = residual, 0
    while True:
        if residual <= tol or change <= tol:
            success = True
            break
        if n_iter >= max_iter or stalled >= 3:
            break
        step = newton_step(p, grad)
        change = log_mass_change(step)  # largest change of a log-mass
        slope = float(grad @ step)
        t, trial = 1.0, None
        while t > 1e-12:
            candidate = evaluate(lam + t * step)
            if np.isfinite(candidate[0]) and (
                candidate[0] <= value + 1e-4 * t * slope
                or (candidate[0] <= value + 8 * eps * abs(value) and candidate[4] < residual)
            ):
                trial = candidate
                break
            t *= 0.5
        if trial is None:  # no decrease left at machine precision
            break
        lam = lam + t * step
        value, p, log_p, grad, residual = trial
        n_iter += 1
        change *= t
        stalled = 0 if residual < 0.5 * best else stalled + 1
        best = min(best, residual)
    return lam, p, log_p, residual, n_iter, success


class KLProx(Prox):
    """Base of the KL-prox solvers: restrict to the support of ``q``, finish ``log p``.

    Subclasses implement ``_solve(energy, log_q, sigma, warm) -> ProxResult`` on a
    ``q`` with full support (every ``log_q`` finite).
    """

    params = (
        Param("tol", float, 1e-9, "solver tolerance (first-order residual)", low=0, low_open=True),
        Param("max_iter", int, 1000, "most solver iterations per prox", low=1),
    )

    def solve(self, energy, log_q, sigma, warm=None):
        r"""Solve :math:`\min_{p \ge 0} \sigma F(p) + \mathrm{KL}(p \mid q)`.

        Parameters
        ----------
        energy : QuadraticEnergy
            On ``N`` positions.
        log_q : ndarray, shape (N,)
            :math:`\log q`; ``-inf`` where ``q = 0`` (there ``p = 0``).
        sigma : float
            Weight of the energy, ``> 0``.
        warm : object, optional
            The ``warm`` of a previous result on the same energy.

        Returns
        -------
        ProxResult
        """
        log_q = np.asarray(log_q, dtype=np.float64)
        if np.any(np.isnan(log_q)) or np.any(log_q == np.inf):
            raise ProxSolverError(f"prox {self.name!r}: log q has NaN or +inf entries")
        support = np.isfinite(log_q)
        if support.all():
            return self._solve(energy, log_q, sigma, warm)
        N = log_q.shape[0]
        p = np.zeros(N)
        log_p = np.full(N, -np.inf)
        if not support.any():
            return ProxResult(p=p, log_p=log_p, info={"empty": True})
        sub = self._solve(energy.restrict(support), log_q[support], sigma, warm)
        p[support], log_p[support] = sub.p, sub.log_p
        sub.p, sub.log_p = p, log_p
        return sub

    def _solve(self, energy, log_q, sigma, warm):
        raise NotImplementedError

    @staticmethod
    def _finish(energy, log_q, sigma, p):
        """``(p, log p)`` from a solver's ``p``: negligible masses from optimality."""
        p = np.maximum(p, 0.0)
        tiny = p < TINY_MASS * np.max(p, initial=0.0)
        with np.errstate(divide="ignore"):
            log_p = np.log(p)
        if np.any(tiny):
            log_p[tiny] = (log_q - sigma * energy.gradient(p))[tiny]
            p = p.copy()
            p[tiny] = np.exp(log_p[tiny])
        return p, log_p
