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

and its solution is :math:`\pi = \mathrm{diag}(a) K \mathrm{diag}(b)` with scalings
found by Peyré's alternating KL projections, started at :math:`a = b = \mathbf{1}`:

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
):
    r"""One entropic JKO step: Peyré's iterations from ``a = b = 1``.

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
    log_Kb = op(log_b)
    rows = {
        k: [] for k in ("violation", "err_col", "err_row", "F", "mass", "prox_iters", "prox_kkt")
    }
    warm, violation, log_a = None, np.inf, np.zeros_like(log_q)
    p, log_p = q, log_q
    for _ in range(max_inner):
        result = prox.solve(energy, log_Kb, sigma, warm=warm)
        warm, p, log_p = result.warm, result.p, result.log_p
        log_a = _log_ratio(log_p, log_Kb)
        log_KTa = op(log_a)
        err_col = _rel_err(log_b + log_KTa, q, q_norm)
        log_b = _log_ratio(log_q, log_KTa)
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


class JKO(Algorithm):
    r"""Entropic JKO flow of the masses on a fixed grid (Peyré's KL-proximal Sinkhorn).

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
            "KL prox solver (a prox plugin: scipy, cvxpy, torch)",
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
            "inner_tol",
            float,
            1e-6,
            "tolerance on the relative marginal errors",
            low=0,
            resume_safe=True,
        ),
        Param(
            "max_inner",
            int,
            10,
            "most Sinkhorn-like iterations per step (Gradient-Work's interiter)",
            low=1,
            resume_safe=True,
        ),
        Param(
            "masses",
            str,
            "prox",
            "new masses: the last prox point (Gradient-Work), or "
            "the row marginal of the feasible coupling (mass per sign conserved exactly; "
            "needs converged inner iterations)",
            choices=("prox", "coupling"),
        ),
        Param("log_domain", bool, True, "stabilised log-domain scalings and kernel products"),
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
        self.kernel_ = make_kernel(self.measure.W, self.gamma, groups, self.kernel)
        self.prox_ = build_prox(self.proxf, self.prox_options, registry=problem.registry)
        self.sigma = self.tau / self.gamma
        with np.errstate(divide="ignore"):
            self.log_p = np.log(self.measure.p)
        self.n_steps = 0
        self._last = {"inner_iters": 0, "violation": float("nan")}
        self._records = None

    @property
    def p(self):
        """Current masses, shape ``(N,)``."""
        return np.exp(self.log_p)

    def step(self):
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
        )
        self.log_p = log_p
        self.n_steps += 1
        self._records = info["records"]
        self._last = {"inner_iters": info["n_inner"], "violation": info["violation"]}

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
        if self._records is None:
            return None
        return {
            "violation": self._records["violation"],
            "F": self._records["F"],
            "mass": self._records["mass"],
            "prox_iters": self._records["prox_iters"],
        }

    def state_dict(self):
        return {"log_p": self.log_p.copy(), "n_steps": self.n_steps, "last": dict(self._last)}

    def load_state_dict(self, state):
        self.log_p = np.array(state["log_p"], dtype=np.float64)
        self.n_steps = int(state["n_steps"])
        self._last = dict(state["last"])
        self._records = None
