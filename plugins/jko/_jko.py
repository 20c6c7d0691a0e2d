r"""The entropic JKO flow of the network's masses on fixed positions (Peyré 2015).

One JKO step with time step :math:`\tau` and entropic regularisation :math:`\gamma`
from the masses ``q`` is the unique minimiser over couplings :math:`\pi \ge 0`

.. math::

    \pi^\star = \operatorname*{argmin}_{\pi^\top \mathbf{1} = q}\;
    \tau F(\pi \mathbf{1}) + \gamma \, \mathrm{KL}(\pi \mid K), \qquad
    K = e^{-C/\gamma}, \quad C_{ij} = \|w_i - w_j\|^2,

and the new masses are :math:`p = \pi^\star \mathbf{1}`. Since
:math:`\gamma\,\mathrm{KL}(\pi \mid K) = \langle C, \pi \rangle + \gamma \sum \pi(\log\pi - 1)
+ \text{const}`, this is :math:`\tau F(p) + W_2^2(p, q)` plus an entropy: the
entropic version of the JKO step :math:`\operatorname{argmin}_p F(p) + W_2^2(p, q)/(2\tau_J)`
with :math:`\tau = 2\tau_J` (the cost has no 1/2). The entropy also blurs: as
:math:`\tau \to 0` the step tends to :math:`K \mathrm{diag}(q / K^\top \mathbf 1)\mathbf 1`,
which is ``q`` only when :math:`\gamma \ll h^2` (``h`` the grid spacing). Divided by
:math:`\gamma` the problem is :math:`\sigma F(\pi\mathbf{1}) + \mathrm{KL}(\pi \mid K)` with

.. math:: \sigma = \tau / \gamma,

and its solution is :math:`\pi = \mathrm{diag}(a) K \mathrm{diag}(b)`.

``solver="newton"`` (the default) finds the scalings by Newton's method on the
step's dual in ``n`` variables (one per data point), :math:`a = e^{-\sigma\beta -
A^\top\lambda}`, :math:`b = q / K^\top a`, converged to ``inner_tol`` in 2 to 5
iterations, warm-started from the previous step's :math:`\lambda` and Hessian
(:mod:`plugins.jko._step_newton`). ``solver="sinkhorn"`` uses Peyré's alternating
KL projections, started at :math:`b = \mathbf{1}` (or the previous step's ``b``,
``warm_start``):

.. math::

    p \leftarrow \mathrm{prox}^{\mathrm{KL}}_{\sigma F}(K b), \qquad
    a \leftarrow p / (K b), \qquad
    b \leftarrow q / (K^\top a).

The iteration stops when both relative marginal errors, in the Euclidean norm of
the reference code,

.. math::

    \frac{\|b \odot K^\top a - q\|}{\|q\|} \quad\text{(before the b update)},\qquad
    \frac{\|a \odot K b - p\|}{\|q\|} \quad\text{(after it)},

are below ``tol``, or after ``max_inner`` iterations; the step returns the last
prox point ``p`` (or the coupling's row marginal, ``masses="coupling"``). In the
log domain the scalings are kept as :math:`\log a, \log b` and every kernel
product is :math:`\log(K e^{u})`, a shifted matrix product whose underflowed
entries are recomputed by log-sum-exp (:func:`plugins.jko._kernel.log_matmul`),
so that :math:`\gamma` far below :math:`h^2` neither underflows nor gives NaN.

Conventions of Gradient-Work (``vmerckle/Gradient-Work``, ``JKO/``): its prox
solvers minimise :math:`F(p) + (\tau_{GW}/\gamma)\,\mathrm{KL}(p \mid Kb)`, i.e.
:math:`\sigma = \gamma / \tau_{GW}`, so its :math:`(\tau_{GW}, \gamma)` is relulab's
:math:`\tau = \gamma^2 / \tau_{GW}`; its kernel is floored at ``1e-6`` and couples both
signs (``couple_signs=True`` here; relulab uses the exact kernel).

References
----------
G. Peyré, "Entropic approximation of Wasserstein gradient flows", SIAM J. Imaging
Sci. 8(4), 2015, Algorithm 1 and Sec. 3.3 (log-domain stabilisation).
R. Jordan, D. Kinderlehrer, F. Otto, "The variational formulation of the
Fokker-Planck equation", SIAM J. Math. Anal. 29(1), 1998.
"""

import numpy as np

from core.components import Algorithm
from core.measure import measure_from_problem
from core.params import Param

from ._energy import energy_from_problem
from ._kernel import make_kernel
from ._step_newton import newton_jko_step

__all__ = ["JKO", "entropic_jko_step", "build_prox"]


def build_prox(name, options=None, owner="algorithm (jko)", registry=None):
    """Instantiate a prox plugin by name with validated options.

    Parameters
    ----------
    name : str
        A prox plugin name (built-in: ``scipy``, ``cvxpy``, ``torch``).
    options : dict, optional
        Parameters of the prox (validated against its declarations, defaults filled).
    owner : str
        Used in error messages.
    registry : core.registry.Registry, optional
        Where to look the name up (default: the process-wide registry); an
        unavailable prox raises with its install hint.

    Returns
    -------
    KLProx
    """
    if registry is None:
        from core.registry import get_registry

        registry = get_registry()
    return registry.build("prox", name, options, owner=f"{owner}.prox_options ({name})")


def _kernel_op(kernel, log_domain):
    """``u -> log(K exp(u))``: log-sum-exp, or the plain product between exp and log."""
    if log_domain:
        return kernel.log_apply

    def plain(u):
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            return np.log(kernel.apply(np.exp(u)))

    return plain


def _log_ratio(log_num, log_den):
    """``log(num / den)`` with ``0 / 0 = 0`` (``-inf`` where the numerator is 0)."""
    with np.errstate(invalid="ignore"):
        return np.where(log_num == -np.inf, -np.inf, log_num - log_den)


def _relax(old, new, omega):
    """Over-relaxed update ``(1 - omega) old + omega new`` where both are finite, else ``new``."""
    if omega == 1.0:
        return new
    with np.errstate(invalid="ignore"):
        out = (1.0 - omega) * old + omega * new
    return np.where(np.isfinite(old) & np.isfinite(new), out, new)


def _rel_err(log_x, target, norm):
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.linalg.norm(np.exp(log_x) - target) / norm)


def entropic_jko_step(
    log_q,
    kernel,
    prox,
    energy,
    sigma,
    tol=1e-6,
    max_inner=10,
    log_domain=True,
    masses="prox",
    log=False,
    log_b0=None,
    relaxation=1.0,
):
    r"""One entropic JKO step by Peyré's iterations, from ``b = 1`` or a warm start.

    Parameters
    ----------
    log_q : ndarray, shape (N,)
        Log of the current masses (``-inf`` for zero mass).
    kernel : BlockKernel
        Gibbs kernel (symmetric), see :func:`plugins.jko._kernel.make_kernel`.
    prox : KLProx
        Solver of :math:`\mathrm{prox}^{\mathrm{KL}}_{\sigma F}`.
    energy : QuadraticEnergy
    sigma : float
        :math:`\tau / \gamma`.
    tol : float
        Relative marginal-error tolerance.
    max_inner : int
        Most iterations.
    log_domain : bool
        Log-sum-exp kernel products (stable) or plain products.
    masses : {"prox", "coupling"}
        New masses: the last prox point ``p`` (Gradient-Work), whose mass is off by
        about the marginal violation; or the row marginal :math:`a \odot K b` of the
        coupling after the last ``b`` update, which satisfies
        :math:`\pi^\top \mathbf{1} = q` exactly and so conserves the mass of every
        block of the kernel to rounding. Both agree at convergence; after few inner
        iterations that coupling, though feasible, can be far from the step's
        minimiser (it raises the loss on ``configs/jko_sinkhorn.py`` with 10), so
        use ``"coupling"`` with converged inner iterations.
    log : bool
        Also return the per-iteration records and diagnostics.
    log_b0 : ndarray, shape (N,), optional
        Starting ``log b`` (the previous step's: a warm start); default ``b = 1``.
    relaxation : float
        :math:`\omega` in ``[1, 2)``: both scaling updates over-relaxed in the log
        domain, :math:`\log a \leftarrow (1-\omega)\log a + \omega \log(p / Kb)` and
        the same for ``b`` (same fixed point). On the flagship's first step
        :math:`\omega = 1.8` reaches a marginal violation of 1e-13 in 930 iterations
        against 8200 for :math:`\omega = 1`. The column marginal is then ``q`` only
        at convergence, so ``masses="coupling"`` conserves mass only to about the
        violation.

    Returns
    -------
    p : ndarray, shape (N,)
        New masses (see ``masses``).
    log_p : ndarray, shape (N,)
    log_dict : dict, only if ``log``
        ``records`` (dict of 1-D arrays per iteration: ``violation``, ``err_col``,
        ``err_row``, ``F``, ``mass``, ``prox_iters``, ``prox_kkt``), ``n_inner``,
        ``violation``, ``log_a``, ``log_b``.
    """
    op = _kernel_op(kernel, log_domain)
    q = np.exp(log_q)
    q_norm = float(np.linalg.norm(q)) or 1.0
    log_b = np.zeros_like(log_q)
    if log_b0 is not None and log_b0.shape == log_q.shape:
        log_b = np.where(np.isfinite(log_q), log_b0, -np.inf)
        if not np.all(np.isfinite(log_b[np.isfinite(log_q)])):
            log_b = np.zeros_like(log_q)
    log_Kb = op(log_b)
    rows = {
        k: [] for k in ("violation", "err_col", "err_row", "F", "mass", "prox_iters", "prox_kkt")
    }
    warm, violation, log_a = None, np.inf, np.zeros_like(log_q)
    p, log_p = q, log_q
    for it in range(max_inner):
        result = prox.solve(energy, log_Kb, sigma, warm=warm)
        warm, p, log_p = result.warm, result.p, result.log_p
        log_a = _relax(log_a, _log_ratio(log_p, log_Kb), relaxation if it else 1.0)
        log_KTa = op(log_a)
        err_col = _rel_err(log_b + log_KTa, q, q_norm)
        log_b = _relax(log_b, _log_ratio(log_q, log_KTa), relaxation)
        log_Kb = op(log_b)
        err_row = _rel_err(log_a + log_Kb, p, q_norm)
        violation = max(err_col, err_row)
        for key, value in (
            ("violation", violation),
            ("err_col", err_col),
            ("err_row", err_row),
            ("F", energy.value(p)),
            ("mass", float(np.sum(p))),
            ("prox_iters", result.n_iter),
            ("prox_kkt", result.kkt),
        ):
            rows[key].append(value)
        if violation < tol:
            break
    if masses == "coupling" and rows["F"]:
        log_p = log_a + log_Kb
        p = np.exp(log_p)
    if not log:
        return p, log_p
    records = {
        k: np.asarray(v, dtype=np.int64 if k == "prox_iters" else np.float64)
        for k, v in rows.items()
    }
    return (
        p,
        log_p,
        {
            "records": records,
            "n_inner": len(rows["F"]),
            "violation": violation,
            "log_a": log_a,
            "log_b": log_b,
        },
    )


def marginal_violation(energy, point, sigma, q_norm):
    r"""Peyré's row error of a solution of the step's dual, without a prox solve.

    At the step's solution the row marginal ``p = a * K b`` *is* the KL prox of
    ``K b``; away from it their distance, relative to ``||q||``, is the marginal
    violation of the scaling iterations' stopping rule. The prox's dual variable is
    the step's ``lambda``, with the same gradient ``g`` there, so one Newton step of
    the prox's dual, :math:`\delta = -(A\,\mathrm{diag}(p) A^\top + \rho I)^{-1} g`,
    gives the prox point :math:`p \odot e^{-A^\top \delta}` to second order in
    ``g`` (below ``1e-20`` once the step has converged).

    Parameters
    ----------
    energy : QuadraticEnergy
    point : dict
        From :func:`plugins.jko._step_newton.newton_jko_step` (``p``, ``grad``).
    sigma : float
    q_norm : float
        ``||q||``.

    Returns
    -------
    float
    """
    if energy.is_linear:
        return 0.0
    A, p = energy.A, point["p"]
    H = (A * p) @ A.T
    H[np.diag_indices_from(H)] += 1.0 / (2.0 * sigma * energy.c)
    delta = -np.linalg.solve(H, point["grad"])
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.linalg.norm(p * np.expm1(-(A.T @ delta))) / q_norm)


class JKO(Algorithm):
    r"""Entropic JKO flow of the masses on a fixed grid (Peyré's step: dual Newton or Sinkhorn).

    The network is a signed measure on the positions ``problem.W0`` (columns) with
    signs ``sign(a0)`` and masses ``|a0|``; each step moves mass by one entropic
    JKO step of the energy ``F`` (the loss, plus ``weight_decay`` times
    :math:`\sum_j p_j \|w_j\|^2`). See :mod:`plugins.jko._jko`.

    ``state()`` gives ``W`` (positions, constant), ``a = s * p`` and ``p``;
    ``scalars()`` the total mass, the mass per sign, the inner iterations, the final
    marginal violation and ``F``; ``records()`` one row per inner iteration.
    """

    name = "jko"
    params = (
        Param(
            "tau",
            float,
            0.3,
            "JKO time step tau (Peyre's; Gradient-Work's tau_GW "
            "converts as tau = gamma^2 / tau_GW)",
            low=0,
            low_open=True,
            resume_safe=True,
        ),
        Param(
            "gamma",
            float,
            0.01,
            "entropic regularisation, in units of squared "
            "position distance (kernel exp(-|w-w'|^2/gamma))",
            low=0,
            low_open=True,
        ),
        Param(
            "proxf",
            str,
            "scipy",
            "KL prox solver (a prox plugin: scipy, cvxpy, torch), called by "
            "solver=sinkhorn at every iteration and by newton for masses=prox",
            plugin_kind="prox",
        ),
        Param(
            "prox_options",
            dict,
            {},
            "parameters of the prox plugin (see --help-plugin)",
            options_of="proxf",
        ),
        Param(
            "solver",
            str,
            "newton",
            "how a step is solved: newton (Newton on the step's n-dimensional dual, "
            "converged to inner_tol in a few iterations) or sinkhorn (Peyre's "
            "scaling iterations, each calling the prox plugin)",
            choices=("newton", "sinkhorn"),
        ),
        Param(
            "inner_tol",
            float,
            1e-9,
            "newton: largest log-mass change of the last Newton step; sinkhorn: "
            "tolerance on the relative marginal errors",
            low=0,
            resume_safe=True,
        ),
        Param(
            "max_inner",
            int,
            50,
            "most inner iterations per step (Newton steps, or scaling iterations: "
            "Gradient-Work's interiter is 10)",
            low=1,
            resume_safe=True,
        ),
        Param(
            "warm_start",
            bool,
            True,
            "start each step from the previous step's dual variables (newton: "
            "lambda; sinkhorn: the scaling b) instead of from zero (b = 1)",
            resume_safe=True,
        ),
        Param(
            "relaxation",
            float,
            1.0,
            "sinkhorn: over-relaxation omega of the log-scaling updates (1: Peyre's "
            "iterations; 1.8 converges about 9 times faster on the flagship)",
            low=1.0,
            high=2.0,
            high_open=True,
            resume_safe=True,
        ),
        Param(
            "masses",
            str,
            "coupling",
            "new masses: the row marginal of the step's coupling (mass per sign "
            "conserved exactly), or the last prox point (Gradient-Work; its mass is "
            "off by about the marginal violation)",
            choices=("prox", "coupling"),
        ),
        Param(
            "log_domain",
            bool,
            True,
            "sinkhorn: stabilised log-domain scalings and kernel products (newton "
            "always works in the log domain)",
        ),
        Param(
            "kernel",
            str,
            "auto",
            "kernel products: separable on a regular grid, dense, or auto",
            choices=("auto", "separable", "dense"),
        ),
        Param(
            "couple_signs",
            bool,
            False,
            "one kernel over both signs (Gradient-Work); "
            "default: no transport between positive and negative mass",
        ),
        Param(
            "kernel_floor",
            float,
            0.0,
            "raise the kernel's entries to at least this (Gradient-Work: 1e-6; "
            "makes the kernel dense); 0: the exact kernel",
            low=0,
            high=1,
        ),
        Param("weight_decay", float, 0.0, "lambda in F + lambda sum_j p_j |w_j|^2", low=0),
    )

    def setup(self, problem):
        self.problem = problem
        self.measure = measure_from_problem(problem, owner="algorithm (jko)")
        self.energy = energy_from_problem(problem, self.measure, self.weight_decay)
        s = self.measure.s
        groups = (
            [np.arange(len(s))]
            if self.couple_signs
            else [np.flatnonzero(s > 0), np.flatnonzero(s < 0)]
        )
        self.kernel_ = make_kernel(
            self.measure.W, self.gamma, groups, self.kernel, floor=self.kernel_floor
        )
        self.prox_ = build_prox(self.proxf, self.prox_options, registry=problem.registry)
        self.sigma = self.tau / self.gamma
        with np.errstate(divide="ignore"):
            self.log_p = np.log(self.measure.p)
        self.n_steps = 0
        self._last = {"inner_iters": 0, "violation": float("nan")}
        self._records = None
        self._lam = None  # newton: the last step's multiplier, shape (n,)
        self._hessian = None  # newton: the last Hessian of the step's dual, (n, n)
        self._log_b = None  # sinkhorn: the last step's log b, shape (N,)

    @property
    def p(self):
        """Current masses, shape ``(N,)``."""
        return np.exp(self.log_p)

    def step(self):
        if self.solver == "newton":
            self._step_newton()
        else:
            self._step_sinkhorn()
        self.n_steps += 1

    def _step_sinkhorn(self):
        p, log_p, info = entropic_jko_step(
            self.log_p,
            self.kernel_,
            self.prox_,
            self.energy,
            self.sigma,
            tol=self.inner_tol,
            max_inner=self.max_inner,
            log_domain=self.log_domain,
            masses=self.masses,
            log=True,
            log_b0=self._log_b if self.warm_start else None,
            relaxation=self.relaxation,
        )
        self.log_p = log_p
        self._log_b = info["log_b"]
        records = info["records"]
        self._records = {k: records[k] for k in ("violation", "F", "mass", "prox_iters")}
        self._last = {"inner_iters": info["n_inner"], "violation": info["violation"]}

    def _step_newton(self):
        point, info = newton_jko_step(
            self.log_p,
            self.kernel_,
            self.energy,
            self.sigma,
            tol=self.inner_tol,
            max_iter=self.max_inner,
            lam0=self._lam if self.warm_start else None,
            hessian0=self._hessian if self.warm_start else None,
        )
        q_norm = float(np.linalg.norm(np.exp(self.log_p))) or 1.0
        if self.masses == "coupling":
            violation = marginal_violation(self.energy, point, self.sigma, q_norm)
            self.log_p = point["log_p"]
        else:  # the prox point of K b, as the scaling iterations return it
            result = self.prox_.solve(self.energy, point["log_Kb"], self.sigma, warm=point["lam"])
            violation = float(np.linalg.norm(result.p - point["p"]) / q_norm)
            self.log_p = result.log_p
        self._lam = point["lam"]
        self._hessian = info["hessian"]
        self._records = info["records"]
        self._last = {"inner_iters": info["n_iter"], "violation": violation}

    def loss(self):
        return self.energy.loss(self.p)

    def state(self):
        p = self.p
        return {"W": self.measure.W, "a": self.measure.s * p, "p": p}

    def scalars(self):
        p, s = self.p, self.measure.s
        out = {
            "mass": float(np.sum(p)),
            "mass_pos": float(np.sum(p[s > 0])),
            "mass_neg": float(np.sum(p[s < 0])),
            "inner_iters": int(self._last["inner_iters"]),
            "violation": float(self._last["violation"]),
            "energy": self.energy.value(p),
        }
        if self.weight_decay:
            out["weight_decay_term"] = float(self.energy.beta @ p)
        return out

    def records(self):
        return self._records

    def state_dict(self):
        empty = np.zeros(0)
        return {
            "log_p": self.log_p.copy(),
            "n_steps": self.n_steps,
            "last": dict(self._last),
            "lam": empty if self._lam is None else self._lam.copy(),
            "hessian": empty if self._hessian is None else self._hessian.copy(),
            "log_b": empty if self._log_b is None else self._log_b.copy(),
        }

    def load_state_dict(self, state):
        self.log_p = np.array(state["log_p"], dtype=np.float64)
        self.n_steps = int(state["n_steps"])
        self._last = dict(state["last"])
        self._records = None
        lam = np.asarray(state.get("lam", np.zeros(0)), dtype=np.float64)
        log_b = np.asarray(state.get("log_b", np.zeros(0)), dtype=np.float64)
        self._lam = lam if lam.size else None
        hessian = np.asarray(state.get("hessian", np.zeros(0)), dtype=np.float64)
        self._hessian = hessian if hessian.size else None
        self._log_b = log_b if log_b.size else None
