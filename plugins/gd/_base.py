"""What ``gd`` and ``gd_numpy`` share: one gradient evaluation per step, cached;
minibatches, the step-size schedule, and training seeds together.

The run loop calls ``step()`` then ``loss()`` at every step. :meth:`loss` evaluates the
loss *and* the gradient at the current parameters and caches both; :meth:`step`
updates from the cached gradient (evaluating it if absent) and drops the cache. So a
full-batch step costs exactly one forward and one backward pass, and :meth:`scalars`
reads the gradient norm of the current point from the same cache.

With ``batch_size`` below ``n`` a step uses the gradient of the loss on the next
minibatch of :class:`plugins.gd._minibatch.EpochShuffle` (the run's loss convention on
the batch: a mean for ``mse``/``half_mse``, a sum over the batch for ``half_sum``);
:meth:`loss` is still the full training loss (a forward pass only; :meth:`scalars`
evaluates the full gradient when asked). The learning rate of every update is
:func:`plugins.gd._schedule.learning_rate` of the step count.

Seeds trained together (:meth:`step_together`) form a :class:`plugins.gd._ensemble.Ensemble`.
"""

from core.components import Algorithm

from ._ensemble import step_together
from ._minibatch import EpochShuffle
from ._params import COMMON_PARAMS, DYNAMICS_PARAMS, check_dynamics
from ._schedule import learning_rate

__all__ = ["CachedGradientDescent"]


class CachedGradientDescent(Algorithm):
    """Base of gradient descent; a backend supplies the hooks below.

    Hooks
    -----
    _build(problem)
        Create ``params_`` (``{"W": (d, m), "a": (m,) or (m, k)}``), ``X``, ``Y`` and
        ``optimizer_``.
    _evaluate(indices, need_grad) -> (float, dict or None)
        Loss and gradients ``{"W": ..., "a": ...}`` (trained parameters only) at the
        current point, on the points ``indices`` (None: all of them); no gradient
        when ``need_grad`` is false.
    _update(grads, lr)
        One optimizer update from those gradients with learning rate ``lr``.
    _update_with_closure(indices, lr)
        One update of an optimizer with ``needs_closure`` (it evaluates the loss and
        gradient on the points ``indices`` itself, through a closure); only
        backends whose optimizers may need one implement it.
    _grad_norm(grads) -> float
        Frobenius norm over all trained parameters.
    _ops() (classmethod)
        The array operations of :mod:`plugins.gd._ensemble` for this backend.

    Attributes
    ----------
    n_steps : int
        Optimizer updates done (restored by ``load_state_dict``).
    n_evaluations : int
        Gradient evaluations done by this object (not restored; for tests and benches).
    shuffle_ : EpochShuffle or None
        The minibatch order (None for full batches).
    """

    params = COMMON_PARAMS + DYNAMICS_PARAMS
    batchable = True

    @classmethod
    def check(cls, params):
        check_dynamics(params)

    @classmethod
    def step_together(cls, algorithms):
        """Advance set-up members with equal shapes by one step as one batched program.

        See :func:`plugins.gd._ensemble.step_together`.
        """
        step_together(algorithms)

    def setup(self, problem):
        self.problem = problem
        self.n_steps = 0
        self.n_evaluations = 0
        self._cache = None
        self._ensemble = None
        self.shuffle_ = None
        if self.batch_size is not None and self.batch_size < problem.n:
            seed_word = int(problem.rng.integers(2**63))
            self.shuffle_ = EpochShuffle(problem.n, self.batch_size, seed_word)
        self._build(problem)

    # -- the cache ----------------------------------------------------------------------
    def _current(self, need_grad=True):
        if self._cache is None or (need_grad and self._cache[1] is None):
            self._cache = self._evaluate(None, need_grad)
            self.n_evaluations += 1
        return self._cache

    def loss(self):
        return self._current(need_grad=self.shuffle_ is None)[0]

    def current_lr(self):
        """Learning rate of the next update (the schedule at ``n_steps``)."""
        rate = learning_rate(
            self.n_steps, self.lr, self.lr_schedule, self.lr_milestones, self.lr_gamma
        )
        factor = self._lr_factor()
        return rate if factor is None else rate * factor

    def _lr_factor(self):
        """A factor of the learning rate besides ``lr_schedule`` (None: none)."""
        return None

    def step(self):
        if getattr(self.optimizer_, "needs_closure", False):
            indices = None if self.shuffle_ is None else self.shuffle_.next_batch()
            self._update_with_closure(indices, self.current_lr())
            self.n_steps += 1
            self._cache = None
            return
        if self.shuffle_ is None:
            grads = self._current()[1]
        else:
            grads = self._evaluate(self.shuffle_.next_batch(), True)[1]
            self.n_evaluations += 1
        self._update(grads, self.current_lr())
        self.n_steps += 1
        self._cache = None

    def scalars(self):
        norm = None if self._ensemble is None else self._ensemble.grad_norm(self)
        if norm is None:
            norm = self._grad_norm(self._current()[1])
        out = {"grad_norm": norm}
        if self.lr_schedule != "constant" or self._lr_factor() is not None:
            out["lr"] = self.current_lr()
        return out

    def _trained(self):
        """Names of the trained parameters, in optimizer order."""
        return ("W", "a") if self.train == "both" else ("W",)

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self):
        """Step count, parameters, optimizer buffers and (minibatches) the shuffle state."""
        state = {
            "n_steps": self.n_steps,
            "params": self.state(),
            "optimizer": self._optimizer_state(),
        }
        if self.shuffle_ is not None:
            state["shuffle"] = self.shuffle_.state_dict()
        return state

    def load_state_dict(self, state):
        self._ensemble = None  # the members' tensors are their own again
        self._load(state)
        if self.shuffle_ is not None and "shuffle" in state:
            self.shuffle_.load_state_dict(state["shuffle"])
        self.n_steps = int(state["n_steps"])
        self._cache = None

    def _optimizer_state(self):
        return self.optimizer_.state_dict()

    # -- backend hooks ------------------------------------------------------------------
    @classmethod
    def _ops(cls):
        raise NotImplementedError

    def _build(self, problem):
        raise NotImplementedError

    def _evaluate(self, indices, need_grad):
        raise NotImplementedError

    def _update(self, grads, lr):
        raise NotImplementedError

    def _update_with_closure(self, indices, lr):
        raise NotImplementedError

    def _grad_norm(self, grads):
        raise NotImplementedError

    def _load(self, state):
        raise NotImplementedError
