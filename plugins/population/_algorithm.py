r"""Algorithm plugin ``population_gd``: gradient descent on the Gaussian population loss.

Minimises :math:`F(W) = \tfrac12 E[(\sum_i \mathrm{relu}(w_i \cdot x) - \sum_j
\mathrm{relu}(v_j \cdot x))^2]`, :math:`x \sim N(0, I_d)`, in closed form
(:mod:`plugins.population._objective`), from the run's initial first layer ``W0``
(d, n) against the data's teacher ``V`` (``Problem.extras["V"]``, data
``gaussian_teacher``), as Safran & Shamir (ICML 2018) do: ``W <- W - lr grad F(W)``
with ``lr = 5 / k`` (k teacher neurons) until :math:`\|\nabla F(W)\|_F \le` ``tol``
(1e-12, their README's value).

Newton polish (default on, ``newton_below = 1e-3``): once a run's gradient norm is
at most ``newton_below`` it tries Newton steps with the closed-form Hessian, taken
only where the Hessian is positive definite with smallest eigenvalue above
``newton_margin`` (a Cholesky factorisation) and only when they lower the gradient
norm or lower ``F`` by Armijo's sufficient decrease (in a curved valley a Newton step
can raise the gradient norm while going down); a refused try leaves the point to
gradient descent, and the next try waits until the gradient norm has fallen tenfold
(:mod:`plugins.population._descent`). The gradient-descent path up to the polish,
hence the basin, is the authors'; the end point is the critical point gradient
descent converges to (gradient descent stops within about ``tol / lambda_min`` of
it, 1e-9 at worst at k = 20; the census classes are the same, tested and
benchmarked), reached in fewer steps: at k = 20, mean 1670 instead of 6560, the
slowest 4 580 instead of 113 000.
``newton_below = None`` is the authors' procedure to the letter (plain gradient
descent to ``tol``), at about 2 times the compute of the polished default at
k = 10 and 4-6 times at k = 20 (``bench/bench_census.py``).

One run step is up to ``iterations`` steps (a Newton step counts as one); the run's
loss is :math:`F` (float64), its scalars ``grad_norm``, ``iterations`` (steps so far)
and ``newton_steps`` (the Newton steps among them), and ``done`` turns True once
the gradient norm is at most ``tol``: the ``solved`` stopper then ends the run,
``max_steps`` caps it at ``steps * iterations`` steps. The checkpoint holds ``W``,
the counts and the gradient norm of the next Newton try, so a resumed run
continues exactly. The network is ``W`` with a second layer of ones (``state()``),
so the neuron figures and the run indicators see the student; ``a0`` of the init is
not used. The student width is ``model.width`` (``n = k`` in the paper; ``n > k`` is
mild over-parameterisation, whose minima are flat: the polish is refused there).
Requires ``model.scaling = "standard"`` and ``model.loss = "half_mse"`` (the sample
loss of ``postprocess.py`` then estimates :math:`F`).

Batchable: runs equal but for their seed advance as one stack
(:func:`plugins.population._descent.descend`); inside a step each member leaves
the stack as soon as its gradient norm reaches ``tol``, so a slow member does not
hold the others, and a member gets the same iterates as when run alone (to
rounding).
"""

import numpy as np

from core.components import Algorithm
from core.errors import ConfigError
from core.params import Param

from ._descent import NewtonPolish, descend
from ._objective import _Teacher, population_loss, stack_gradient

__all__ = ["PopulationGD"]


class PopulationGD(Algorithm):
    """Gradient descent on the closed-form Gaussian population loss against a ReLU teacher."""

    name = "population_gd"
    batchable = True
    params = (
        Param(
            "lr",
            float,
            None,
            "step size (None: 5 / k, k the teacher's width)",
            low=0,
            low_open=True,
            nullable=True,
        ),
        Param("tol", float, 1e-12, "stop once ||grad F||_F <= tol", low=0),
        Param("iterations", int, 100, "gradient steps per run step (at most)", low=1),
        Param(
            "newton_below",
            float,
            1e-3,
            "Newton polish: try Newton steps once ||grad F||_F <= this (None: plain "
            "gradient descent to tol)",
            low=0,
            low_open=True,
            nullable=True,
        ),
        Param(
            "newton_margin",
            float,
            1e-6,
            "Newton polish: refused unless the smallest Hessian eigenvalue exceeds this",
            low=0,
        ),
    )

    def setup(self, problem):
        if "V" not in problem.extras:
            raise ConfigError(
                "algorithm population_gd needs a teacher: data with extra 'V' "
                f"(data 'gaussian_teacher'); this data has extras {sorted(problem.extras)}"
            )
        if problem.scaling != "standard":
            raise ConfigError(
                "algorithm population_gd trains f(x) = sum_i relu(w_i . x): model.scaling must "
                f"be 'standard'; got {problem.scaling!r}"
            )
        if problem.loss != "half_mse":
            raise ConfigError(
                "algorithm population_gd minimises F = 1/2 E[(f - g)^2]: model.loss must be "
                f"'half_mse'; got {problem.loss!r}"
            )
        if problem.bias:
            raise ConfigError("algorithm population_gd takes data without a bias column")
        self.V = np.asarray(problem.extras["V"], dtype=np.float64)
        self.W = np.array(problem.W0, dtype=np.float64)
        if self.W.shape[0] != self.V.shape[0]:
            raise ConfigError(
                f"algorithm population_gd: W0 has {self.W.shape[0]} rows but the teacher "
                f"V has d = {self.V.shape[0]}"
            )
        self.step_size = self.lr if self.lr is not None else 5.0 / self.V.shape[1]
        self.polish = (
            None
            if self.newton_below is None
            else NewtonPolish(below=self.newton_below, margin=self.newton_margin)
        )
        self.n_iterations = 0
        self.n_newton = 0
        self.next_try = self._first_try()
        self._grad_norm = self._loss = None  # measured by start_together, else on demand

    def _first_try(self):
        return np.inf if self.polish is None else self.polish.below

    @classmethod
    def start_together(cls, algorithms):
        """Measure every member's starting loss and gradient norm, one stack per shape."""
        groups = {}
        for algorithm in algorithms:
            if algorithm._loss is None:
                groups.setdefault((algorithm.W.shape, algorithm.V.shape), []).append(algorithm)
        for members in groups.values():
            _measure(members)

    @property
    def grad_norm(self):
        """Frobenius norm of the gradient at ``W`` (as :func:`descend` computes it)."""
        if self._grad_norm is None:
            _measure([self])
        return self._grad_norm

    @property
    def done(self):
        """Whether the gradient norm is at most ``tol``."""
        return self.grad_norm <= self.tol

    @classmethod
    def step_together(cls, algorithms):
        """Up to ``iterations`` gradient steps for every member, as one stack per shape."""
        groups = {}
        for algorithm in algorithms:
            if not algorithm.done:
                key = (
                    algorithm.W.shape,
                    algorithm.V.shape,
                    algorithm.tol,
                    algorithm.iterations,
                    algorithm.polish,
                )
                groups.setdefault(key, []).append(algorithm)
        for (_, _, tol, iterations, polish), members in groups.items():
            W, steps, grad_norm, newton, next_try = descend(
                np.stack([a.W for a in members]),
                np.stack([a.V for a in members]),
                np.array([a.step_size for a in members]),
                tol,
                iterations,
                polish=polish,
                next_try=np.array([a.next_try for a in members]),
                full_output=True,
            )
            losses = population_loss(W, np.stack([a.V for a in members]))
            for algorithm, W_end, taken, g, loss, n, nxt in zip(
                members, W, steps, grad_norm, losses, newton, next_try
            ):
                algorithm.W = W_end
                algorithm.n_iterations += int(taken)
                algorithm.n_newton += int(n)
                algorithm.next_try = float(nxt)
                algorithm._grad_norm, algorithm._loss = float(g), float(loss)

    def step(self):
        type(self).step_together([self])

    def loss(self):
        if self._loss is None:
            _measure([self])
        return self._loss

    def state(self):
        return {"W": self.W.copy(), "a": np.ones(self.W.shape[1])}

    def scalars(self):
        return {
            "grad_norm": self.grad_norm,
            "iterations": self.n_iterations,
            "newton_steps": self.n_newton,
        }

    def state_dict(self):
        return {
            "W": self.W.copy(),
            "iterations": self.n_iterations,
            "newton_steps": self.n_newton,
            "next_try": np.array(self.next_try),
        }

    def load_state_dict(self, state):
        self.W = np.array(state["W"], dtype=np.float64)
        self.n_iterations = int(state["iterations"])
        # checkpoints from before the polish: no Newton step taken, the first try ahead
        self.n_newton = int(state.get("newton_steps", 0))
        self.next_try = float(state["next_try"]) if "next_try" in state else self._first_try()
        self._grad_norm = self._loss = None


def _measure(algorithms):
    """Set the loss and gradient norm of ``algorithms`` (equal shapes) at their ``W``.

    One stack: a point's gradient is computed as :func:`descend` computes it on its
    iterates, so its norm, bit for bit, is the one ``descend`` checks against ``tol``.
    """
    W = np.stack([a.W for a in algorithms])
    V = np.stack([a.V for a in algorithms])
    G = stack_gradient(W, _Teacher(V))
    grad_norms = np.sqrt(np.einsum("bdm,bdm->b", G, G))
    losses = population_loss(W, V)
    for algorithm, g, loss in zip(algorithms, grad_norms, losses):
        algorithm._grad_norm, algorithm._loss = float(g), float(loss)
