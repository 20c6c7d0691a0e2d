r"""KL prox with scipy: Newton on the dual (default) or bound-constrained L-BFGS-B.

Dual (``formulation="dual"``, the default)
    With :math:`z = Ap` and a multiplier :math:`\lambda \in \mathbb{R}^n`, the
    Fenchel dual of :math:`\min_{p \ge 0} \sigma F(p) + \mathrm{KL}(p \mid q)` is the
    smooth, strongly convex problem in ``n`` (the number of data points) variables

    .. math::

        \min_\lambda\; D(\lambda) = \sum_j q_j e^{-\sigma \beta_j - (A^\top \lambda)_j}
        + \lambda^\top y + \frac{\|\lambda\|^2}{4 \sigma c},

    and the prox point is :math:`p(\lambda) = q \odot \exp(-\sigma\beta - A^\top\lambda)`.
    The gradient is :math:`y - A p + \lambda / (2\sigma c)`, the Hessian
    :math:`A\,\mathrm{diag}(p) A^\top + I / (2 \sigma c)` (``n x n``, Cholesky by
    ``scipy.linalg``); damped Newton with an Armijo line search converges
    quadratically (near the optimum, where the decrease of ``D`` is below rounding,
    a step is accepted when it reduces the residual). ``p`` is exactly of Gibbs form,
    so the first-order residual :math:`\sigma\nabla F(p) + \log(p/q)` equals
    :math:`-2\sigma c\, A^\top \nabla D(\lambda)` on every coordinate however small its
    mass, and :math:`\log p` is exact where ``p`` underflows. Cost per Newton step
    ``O(n^2 N)``; 2 to 10 steps from :math:`\lambda = 0`. A linear energy
    (``c = 0`` or ``A = 0``) has the closed form :math:`q e^{-\sigma\beta}`.

Primal (``formulation="primal"``)
    L-BFGS-B on :math:`\Phi(p) = \sigma F(p) + \mathrm{KL}(p \mid q)` with its
    analytic gradient :math:`\sigma \nabla F(p) + \log(p/q)` and bounds
    :math:`p \ge 0`, in the diagonally preconditioned variable
    :math:`z = p / \sqrt{q}`, where the Hessian is

    .. math::

        \nabla^2_z \Phi = \mathrm{diag}(q / p) + \sigma\, D \nabla^2 F D, \qquad
        D = \mathrm{diag}(\sqrt q),

    the identity at :math:`p = q` plus a term of rank ``n``; in ``p`` itself the
    curvature :math:`1/p_j` spans as many orders of magnitude as ``q``, and in
    :math:`\log p` it is :math:`p_j`, vanishing on small masses, which L-BFGS then
    never moves. L-BFGS-B stops on the projected gradient in ``z``,
    :math:`\sqrt{q_j}` times the first-order residual, so coordinates of relatively
    small mass are only loosely controlled (their log-mass is finished from the
    optimality condition, see :mod:`plugins.jko._prox`). The rank-``n`` term grows
    with :math:`\sigma`: at :math:`\sigma \sim 10^2` this takes hundreds of
    iterations, at :math:`10^4` it stalls far from the optimum, where the dual
    Newton takes a few milliseconds. It is kept as the textbook solver of the
    problem and for cross-checks.

References
----------
G. Peyré, "Entropic approximation of Wasserstein gradient flows", SIAM J. Imaging
Sci. 8(4), 2015. R. H. Byrd, P. Lu, J. Nocedal, C. Zhu, "A limited memory algorithm
for bound constrained optimization", SIAM J. Sci. Comput. 16(5), 1995.
"""

import numpy as np

from core.params import Param

from ._prox import KLProx, ProxResult, damped_dual_newton, kkt_residual

__all__ = ["ScipyProx", "lbfgsb_prox", "dual_newton_prox"]


def lbfgsb_prox(energy, log_q, sigma, tol=1e-9, max_iter=1000, p0=None):
    r"""Primal KL prox by L-BFGS-B in :math:`z = p / \sqrt{q}` (bounds ``z >= 0``).

    Parameters
    ----------
    energy : QuadraticEnergy
    log_q : ndarray, shape (N,)
        Finite.
    sigma : float
    tol : float
        Projected-gradient tolerance in units of the first-order residual of the
        heaviest coordinate.
    max_iter : int
    p0 : ndarray, shape (N,), optional
        Starting point (default ``q``).

    Returns
    -------
    p : ndarray, shape (N,)
    info : dict
        ``n_iter``, ``status`` (scipy's message), ``success``.
    """
    import scipy.optimize  # imported on first use: keeps start-up light

    q = np.exp(log_q)
    sq = np.sqrt(q)
    z0 = sq if p0 is None else np.maximum(p0, 0.0) / sq
    tiny = np.finfo(float).tiny

    def fun(z):
        p = sq * z
        value, grad = energy.value_and_gradient(p)
        logp = np.log(np.maximum(p, tiny))
        kl = np.sum(p * (logp - log_q) - p + q)
        return sigma * value + kl, sq * (sigma * grad + logp - log_q)

    res = scipy.optimize.minimize(
        fun,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(0.0, np.inf),
        options={"maxiter": max_iter, "gtol": tol * float(np.max(sq)), "ftol": 0.0, "maxcor": 20},
    )
    return sq * res.x, {
        "n_iter": int(res.nit),
        "status": str(res.message),
        "success": bool(res.success),
    }


def dual_newton_prox(energy, log_q, sigma, tol=1e-9, max_iter=100, lam0=None):
    r"""KL prox by damped Newton on the ``n``-dimensional dual (see the module docstring).

    Parameters
    ----------
    energy : QuadraticEnergy
    log_q : ndarray, shape (N,)
        Finite.
    sigma : float
    tol : float
        Stop when the largest first-order residual
        :math:`2\sigma c |A^\top \nabla D|_\infty` is below ``tol``, or once a
        Newton step (taken) changes no log-mass by more than ``tol`` (the error left
        is then of order ``tol^2``: the residual itself can sit above ``tol`` at its
        rounding floor, the cancellation in ``A p`` between many masses of both
        signs, about ``1e-8`` on a 200 x 200 grid). Three iterations without halving
        the residual also stop it (``success`` false).
    max_iter : int
    lam0 : ndarray, shape (n,), optional
        Starting multiplier (default 0: ``p = q e^{-sigma beta}``).

    Returns
    -------
    p, log_p : ndarray, shape (N,)
    lam : ndarray, shape (n,)
    info : dict
        ``n_iter``, ``residual``, ``success``.
    """
    import scipy.linalg  # imported on first use: keeps start-up light

    A, y, c = energy.A, energy.y, energy.c
    base = log_q - sigma * energy.beta
    if energy.is_linear:  # no quadratic term: the Gibbs reweighting, exactly
        return (
            np.exp(base),
            base,
            np.zeros(A.shape[0]),
            {"n_iter": 0, "residual": 0.0, "success": True},
        )
    rho = 1.0 / (2.0 * sigma * c)  # weight of the dual's quadratic term
    lam = np.zeros(A.shape[0]) if lam0 is None else np.array(lam0, dtype=np.float64)

    def evaluate(lam):
        log_p = base - A.T @ lam
        with np.errstate(over="ignore", invalid="ignore"):
            p = np.exp(log_p)
            value = np.sum(p) + lam @ y + 0.5 * rho * (lam @ lam)
            grad = y - A @ p + rho * lam
            residual = float(np.max(np.abs(A.T @ grad)) / rho)
        return value, p, log_p, grad, residual

    def newton_step(p, grad):
        H = (A * p) @ A.T
        H[np.diag_indices_from(H)] += rho
        try:
            return -scipy.linalg.cho_solve(scipy.linalg.cho_factor(H), grad)
        except np.linalg.LinAlgError:
            return -np.linalg.lstsq(H, grad, rcond=None)[0]

    def log_mass_change(step):
        return float(np.max(np.abs(A.T @ step)))

    lam, p, log_p, residual, n_iter, success = damped_dual_newton(
        evaluate, newton_step, log_mass_change, lam, tol, max_iter
    )
    return p, log_p, lam, {"n_iter": n_iter, "residual": residual, "success": success}


class ScipyProx(KLProx):
    """KL prox of the energy with scipy: Newton on the n-dimensional dual, or L-BFGS-B on p >= 0.

    See :mod:`plugins.jko._prox_scipy`.
    """

    name = "scipy"
    params = KLProx.params + (
        Param(
            "formulation",
            str,
            "dual",
            "dual: Newton on the n-dimensional Fenchel dual (fast, exact); primal: "
            "L-BFGS-B on p >= 0 preconditioned by sqrt(q)",
            choices=("dual", "primal"),
        ),
    )

    def _solve(self, energy, log_q, sigma, warm):
        if self.formulation == "dual":
            lam0 = warm if warm is not None and len(warm) == energy.A.shape[0] else None
            p, log_p, lam, info = dual_newton_prox(
                energy, log_q, sigma, self.tol, self.max_iter, lam0
            )
            return ProxResult(
                p=p,
                log_p=log_p,
                n_iter=info["n_iter"],
                converged=info["success"],
                kkt=kkt_residual(energy, log_q, sigma, p, log_p),
                warm=lam,
                info={"formulation": "dual", "residual": info["residual"]},
            )
        p0 = warm if warm is not None and len(warm) == len(log_q) else None
        p, info = lbfgsb_prox(energy, log_q, sigma, self.tol, self.max_iter, p0)
        p, log_p = self._finish(energy, log_q, sigma, p)
        kkt = kkt_residual(energy, log_q, sigma, p, log_p)
        return ProxResult(
            p=p,
            log_p=log_p,
            n_iter=info["n_iter"],
            converged=info["success"] or kkt <= self.tol,
            kkt=kkt,
            warm=p,
            info={"formulation": "primal", "status": info["status"]},
        )
