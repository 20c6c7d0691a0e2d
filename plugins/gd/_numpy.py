"""``gd_numpy``: gradient descent in pure numpy (closed-form gradient)."""

import numpy as np

from core import model

from ._base import CachedGradientDescent
from ._numpy_optim import make_numpy_optimizer

__all__ = ["GDNumpy"]


class GDNumpy(CachedGradientDescent):
    """Gradient descent in numpy: SGD, momentum or AdamW on the closed-form gradient.

    ``optimizer`` is one of ``sgd``, ``momentum`` and ``adamw`` only (its own
    closed-form updates, options in the flat keys ``momentum``, ``nesterov``,
    ``betas``, ``eps``, ``weight_decay``); the optimizer plugins of ``torch.optim``
    and others are ``gd``'s.
    The gradient is :func:`core.model.loss_and_grad`; the optimizers reproduce
    ``torch.optim`` (see :mod:`plugins.gd._numpy_optim`), so in float64 a run matches
    the torch plugin ``gd`` to about 1e-12 relative. Seeds trained together
    (:mod:`plugins.gd._ensemble`) are bit-equal to training them one by one.
    """

    name = "gd_numpy"

    @classmethod
    def _ops(cls):
        from ._batched_numpy import OPS

        return OPS

    def _build(self, problem):
        dtype = np.dtype(self.dtype)
        self.X = np.asarray(problem.X, dtype=dtype)
        self.Y = np.asarray(problem.Y, dtype=dtype)
        self.params_ = {
            "W": np.array(problem.W0, dtype=dtype),
            "a": np.array(problem.a0, dtype=dtype),
        }
        self.optimizer_ = self._new_optimizer()

    def _new_optimizer(self, params=None):
        return make_numpy_optimizer(self.config)

    def _evaluate(self, indices, need_grad):
        X, Y = (self.X, self.Y) if indices is None else (self.X[indices], self.Y[indices])
        W, a = self.params_["W"], self.params_["a"]
        problem = self.problem
        if not need_grad:
            return model.loss(X, Y, W, a, problem.scaling, problem.loss), None
        value, grad_W, grad_a = model.loss_and_grad(X, Y, W, a, problem.scaling, problem.loss)
        grads = {"W": grad_W, "a": grad_a}
        return value, {k: grads[k] for k in self._trained()}

    def _update(self, grads, lr):
        self.optimizer_.lr = lr
        self.optimizer_.step(self.params_, grads)

    def _grad_norm(self, grads):
        return float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))

    def state(self):
        """``{"W": (d, m), "a": (m,) or (m, k)}``, copies."""
        return {k: v.copy() for k, v in self.params_.items()}

    def _load(self, state):
        self.params_ = {k: np.array(v, dtype=self.dtype) for k, v in state["params"].items()}
        self.optimizer_.load_state_dict(state["optimizer"])
