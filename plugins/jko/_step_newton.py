r"""The entropic JKO step solved by Newton's method on its ``n``-dimensional dual.

The step (see :mod:`plugins.jko._jko`) is, divided by :math:`\gamma`,

.. math::

    \min_{\pi \ge 0,\ \pi^\top \mathbf 1 = q}\;
    \sigma F(\pi \mathbf 1) + \mathrm{KL}(\pi \mid K), \qquad
    F(p) = c \|A p - y\|^2 + \beta^\top p .

With a multiplier :math:`\lambda \in \mathbb R^n` for :math:`z = A \pi \mathbf 1`
and :math:`v` for the column marginal, the Lagrangian is minimised by
:math:`\pi = \mathrm{diag}(a) K \mathrm{diag}(b)` with
:math:`a = e^{-\sigma\beta - A^\top \lambda}`; maximising over :math:`v` in closed
form gives :math:`b = q / (K^\top a)` (the column marginal is then exactly ``q``).
What is left is the smooth convex problem in ``n`` variables (``n`` data points)

.. math::

    \min_\lambda\; \Phi(\lambda) = \lambda^\top y + \frac{\rho}{2}\|\lambda\|^2
    + \sum_j q_j \log (K^\top a(\lambda))_j, \qquad \rho = \frac{1}{2\sigma c},

with gradient and Hessian

.. math::

    \nabla \Phi = y + \rho\lambda - A p, \qquad p = a \odot K b = \pi\mathbf 1,

    \nabla^2 \Phi = \rho I + \sum_j q_j \,\mathrm{Cov}_{i \sim \pi(\cdot | j)}(A_{:i})
    = \rho I + A\,\mathrm{diag}(p) A^\top - M^\top \mathrm{diag}(q) M,

where :math:`M_{jk} = (K^\top(a \odot A_{k:}))_j / (K^\top a)_j` is the mean of
``A[k]`` under the column ``j`` of the coupling: ``2n`` kernel products, applied
as one stack (one matrix product per grid axis for all of them). The Hessian is
positive definite (a conditional covariance plus :math:`\rho I`), so damped Newton
with an Armijo line search converges globally and quadratically near the solution:
2 to 6 iterations from the previous step's :math:`\lambda`, 6 to 12 from 0.

At the solution the row marginal ``p`` is the KL prox of ``Kb`` (Peyré's fixed point):
the prox's first-order residual :math:`\sigma\nabla F(p) + \log(p / Kb)` equals
:math:`-A^\top r` with :math:`r = \nabla\Phi / \rho`. The iteration stops when the
Newton step changes no log-mass by more than ``tol`` (``max |A^T delta|``, the step
itself being taken, so the error left is of order ``tol^2``), or when the gradient
is at rounding level.

Everything runs in the log domain (:math:`\log a, \log b` and ``log_apply``), as the
scaling iterations do; the signed entries of ``A`` are split into their positive and
negative parts for the products defining ``M``.
"""

import numpy as np

from ._kernel import SAFE_SUM, flush_subnormal

__all__ = ["newton_jko_step", "StepDual"]


class StepDual:
    r"""The dual :math:`\Phi(\lambda)` of one entropic JKO step, with its derivatives.

    Parameters
    ----------
    log_q : ndarray, shape (N,)
        Log of the previous masses (``-inf`` for zero mass).
    kernel : BlockKernel
        The Gibbs kernel (symmetric); its ``log_apply`` takes stacks ``(k, N)``.
    energy : QuadraticEnergy
        ``A`` of shape ``(n, N)``, ``y`` ``(n,)``, ``c > 0``, ``beta`` ``(N,)``.
    sigma : float
        :math:`\tau / \gamma`.
    """

    def __init__(self, log_q, kernel, energy, sigma):
        self.log_q = np.asarray(log_q, dtype=np.float64)
        self.q = np.exp(self.log_q)
        self.support = np.isfinite(self.log_q)
        self.kernel = kernel
        self.energy = energy
        self.sigma = float(sigma)
        self.linear = energy.is_linear  # no quadratic term: a = exp(-sigma beta), no lambda
        self.rho = 0.0 if self.linear else 1.0 / (2.0 * self.sigma * energy.c)
        self.base = -self.sigma * energy.beta
        A = energy.A
        self._has_neg = bool(np.any(A < 0))
        self._has_pos = bool(np.any(A > 0))

    def evaluate(self, lam, need_p=True):
        """``Phi``, and if ``need_p`` the log-scalings and the row marginal.

        Returns
        -------
        dict
            ``value``, ``log_a``, ``log_KTa`` and (``need_p``) ``log_b``, ``log_Kb``,
            ``log_p``, ``p``, ``grad`` (shape ``(n,)``).
        """
        E = self.energy
        log_a = self.base if self.linear else self.base - E.A.T @ lam
        log_KTa = self.kernel.log_apply(log_a)
        s = self.support
        value = float(lam @ E.y + 0.5 * self.rho * (lam @ lam) + self.q[s] @ log_KTa[s])
        out = {"value": value, "log_a": log_a, "log_KTa": log_KTa, "lam": lam}
        if not need_p:
            return out
        with np.errstate(invalid="ignore"):
            log_b = np.where(s, self.log_q - log_KTa, -np.inf)
        log_Kb = self.kernel.log_apply(log_b)
        log_p = log_a + log_Kb
        p = np.exp(log_p)
        grad = np.zeros_like(lam) if self.linear else E.y + self.rho * lam - E.A @ p
        out.update(log_b=log_b, log_Kb=log_Kb, log_p=log_p, p=p, grad=grad)
        return out

    def hessian(self, point):
        r""":math:`\rho I + A\,\mathrm{diag}(p) A^\top - M^\top \mathrm{diag}(q) M`, ``(n, n)``.

        ``M`` (the conditional means of ``A``) comes from plain kernel products of
        ``a`` scaled to a largest entry of 1 on every block of the kernel, which is
        exact to rounding in absolute terms wherever ``K^T a`` stays above
        ``SAFE_SUM`` on that scale; otherwise from log-domain products of the
        positive and negative parts of ``A``.
        """
        A = self.energy.A
        log_a, log_KTa = point["log_a"], point["log_KTa"]
        s = self.support
        shift = np.empty_like(log_a)
        for idx, _ in self.kernel.blocks:
            top = np.max(log_a[idx])
            shift[idx] = top if np.isfinite(top) else 0.0
        if np.all(log_KTa[s] - shift[s] > np.log(SAFE_SUM)):
            a = flush_subnormal(np.exp(log_a - shift))
            num = self.kernel.apply(A * a)  # (n, N)
            M = num[:, s] * np.exp(shift[s] - log_KTa[s])
        else:
            M = self._means_log(log_a, log_KTa)
        p, q = point["p"], self.q[s]
        H = (A * p) @ A.T - (M * q) @ M.T
        H[np.diag_indices_from(H)] += self.rho
        return 0.5 * (H + H.T)

    def _means_log(self, log_a, log_KTa):
        """``M`` by log-domain products of the positive and negative parts of ``A``."""
        n = self.energy.A.shape[0]
        A = self.energy.A
        parts = []
        with np.errstate(divide="ignore"):
            if self._has_pos:
                parts.append(np.log(np.maximum(A, 0.0)) + log_a)
            if self._has_neg:
                parts.append(np.log(np.maximum(-A, 0.0)) + log_a)
        L = self.kernel.log_apply(np.concatenate(parts))  # (n or 2n, N)
        s = self.support
        with np.errstate(invalid="ignore", over="ignore"):
            W = np.exp(L[:, s] - log_KTa[s])
        M = W[:n] if self._has_pos else 0.0
        if self._has_neg:
            M = M - W[-n:]
        return np.nan_to_num(M, nan=0.0)


def newton_jko_step(log_q, kernel, energy, sigma, tol=1e-10, max_iter=50, lam0=None, hessian0=None):
    r"""One entropic JKO step by damped (quasi-)Newton on the ``n``-dimensional dual.

    The Hessian (``n`` stacked kernel products, most of an iteration's cost) is
    reused while it still contracts: an iteration with a stale Hessian is a chord
    step, accepted when it shrinks the log-mass change at least tenfold over the
    previous iteration and needs no backtracking; otherwise the Hessian is
    recomputed at the current point and the iteration redone. ``hessian0`` (the
    previous step's last Hessian) lets a warm-started step take chord steps from
    its first iteration: consecutive steps are close, so a step then costs a few
    pairs of kernel products of single vectors.

    Parameters
    ----------
    log_q : ndarray, shape (N,)
        Log of the current masses.
    kernel : BlockKernel
    energy : QuadraticEnergy
        A linear energy (``c = 0``) is solved in closed form (``a = e^{-sigma beta}``).
    sigma : float
        :math:`\tau / \gamma`.
    tol : float
        Stop once an iteration (full step) changes no log-mass by more than ``tol``
        (``max |A^T delta|`` over masses above ``1e-12`` of the largest).
    max_iter : int
        Most iterations.
    lam0 : ndarray, shape (n,), optional
        Starting multiplier (the previous step's: consecutive steps are close).
    hessian0 : ndarray, shape (n, n), optional
        A Hessian to start with (the previous step's).

    Returns
    -------
    point : dict
        ``p``, ``log_p`` (row marginal, shape ``(N,)``), ``log_a``, ``log_b``,
        ``log_Kb``, ``lam`` (shape ``(n,)``), ``grad``, ``value``.
    info : dict
        ``n_iter``, ``n_hessian`` (Hessians computed), ``hessian`` (the last one),
        ``change`` (last ``max |A^T delta|``), ``success``, and per iteration
        ``records``: ``change``, ``grad_norm``, ``t`` (step length), ``fresh``
        (1 if the Hessian was computed at that iterate), ``F``, ``mass``.
    """
    import scipy.linalg  # imported on first use: keeps start-up light

    dual = StepDual(log_q, kernel, energy, sigma)
    A = energy.A
    n = A.shape[0]
    lam = np.zeros(n) if lam0 is None else np.array(lam0, dtype=np.float64)
    point = dual.evaluate(lam)
    if not np.isfinite(point["value"]):  # a bad warm start: from 0
        point = dual.evaluate(np.zeros(n))
    eps = np.finfo(float).eps
    rows = {k: [] for k in ("change", "grad_norm", "t", "fresh", "F", "mass")}
    n_iter, n_hessian, change, success = 0, 0, np.inf, False
    if dual.linear:  # the Gibbs reweighting a = exp(-sigma beta): solved in closed form
        n_iter, change, success, max_iter = 0, 0.0, True, 0
    H, fresh = None, False
    if hessian0 is not None and np.shape(hessian0) == (n, n) and np.all(np.isfinite(hessian0)):
        H = np.array(hessian0, dtype=np.float64)
    best, stalled, previous = np.inf, 0, np.inf
    while n_iter < max_iter and stalled < 3:
        if H is None:
            H, fresh = dual.hessian(point), True
            n_hessian += 1
        grad = point["grad"]
        try:
            delta = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(H), grad)
        except np.linalg.LinAlgError:
            delta = -np.linalg.lstsq(H, grad, rcond=None)[0]
        heavy = point["p"] > 1e-12 * np.max(point["p"])
        change = float(np.max(np.abs(A.T[heavy] @ delta), initial=0.0))
        if not fresh and change > 0.1 * previous:  # the stale Hessian no longer contracts
            H = None
            continue
        slope = float(grad @ delta)
        value = point["value"]
        t, accepted = 1.0, None
        while t > 1e-12:
            trial = dual.evaluate(point["lam"] + t * delta)
            tv = trial["value"]
            if np.isfinite(tv) and (
                tv <= value + 1e-4 * t * slope
                # near the optimum the decrease is below rounding: use the gradient
                or (
                    tv <= value + 8 * eps * abs(value)
                    and np.linalg.norm(trial["grad"]) < np.linalg.norm(grad)
                )
            ):
                accepted = trial
                break
            if not fresh:  # a stale Hessian that needs backtracking: recompute it
                break
            t *= 0.5
        if accepted is None and not fresh:
            H = None
            continue
        if accepted is None:  # no decrease left at machine precision
            success = change <= max(tol, 1e3 * eps)
            break
        point = accepted
        n_iter += 1
        rows["change"].append(change * t)
        rows["grad_norm"].append(float(np.linalg.norm(point["grad"])))
        rows["t"].append(t)
        rows["fresh"].append(float(fresh))
        rows["F"].append(energy.value(point["p"]))
        rows["mass"].append(float(np.sum(point["p"])))
        fresh = False
        previous = change * t
        if change * t <= tol and t == 1.0:
            success = True
            break
        # at the rounding floor of A p the steps stop shrinking: three without halving end it
        stalled = 0 if change * t < 0.5 * best else stalled + 1
        best = min(best, change * t)
    records = {k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}
    info = {
        "n_iter": n_iter,
        "n_hessian": n_hessian,
        "hessian": H,
        "change": change,
        "success": success,
        "records": records,
    }
    return point, info
