"""What ``gd`` and ``gd_numpy`` share: one gradient evaluation per step, cached.

The run loop calls ``step()`` then ``loss()`` at every step. :meth:`loss` evaluates the
loss *and* the gradient at the current parameters and caches both; :meth:`step`
updates from the cached gradient (evaluating it if absent) and drops the cache. So a
step costs exactly one forward and one backward pass, and :meth:`scalars` reads the
gradient norm of the current point from the same cache.
"""

from core.components import Algorithm

from ._params import COMMON_PARAMS

__all__ = ["CachedGradientDescent"]


class CachedGradientDescent(Algorithm):
    """Base of full-batch gradient descent; a backend supplies the four hooks below.

    Hooks
    -----
    _build(problem)
        Create parameters, data and optimizer.
    _evaluate() -> (float, dict)
        Loss and gradients ``{"W": ..., "a": ...}`` (trained parameters only) at the
        current point.
    _update(grads)
        One optimizer update from those gradients.
    _grad_norm(grads) -> float
        Frobenius norm over all trained parameters.

    Attributes
    ----------
    n_steps : int
        Optimizer updates done (restored by ``load_state_dict``).
    n_evaluations : int
        Gradient evaluations done by this object (not restored; for tests and benches).
    """

    params = COMMON_PARAMS

    def setup(self, problem):
        self.problem = problem
        self.n_steps = 0
        self.n_evaluations = 0
        self._cache = None
        self._build(problem)

    def _current(self):
        if self._cache is None:
            self._cache = self._evaluate()
            self.n_evaluations += 1
        return self._cache

    def loss(self):
        return self._current()[0]

    def step(self):
        _, grads = self._current()
        self._update(grads)
        self.n_steps += 1
        self._cache = None

    def scalars(self):
        return {"grad_norm": self._grad_norm(self._current()[1])}

    def _trained(self):
        """Names of the trained parameters, in optimizer order."""
        return ("W", "a") if self.train == "both" else ("W",)

    def _build(self, problem):
        raise NotImplementedError

    def _evaluate(self):
        raise NotImplementedError

    def _update(self, grads):
        raise NotImplementedError

    def _grad_norm(self, grads):
        raise NotImplementedError
