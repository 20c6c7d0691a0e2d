"""``gd_numpy``: full-batch gradient descent in pure numpy (closed-form gradient)."""

import numpy as np

from core import model

from ._base import CachedGradientDescent
from ._numpy_optim import make_numpy_optimizer

__all__ = ["GDNumpy"]


class GDNumpy(CachedGradientDescent):
    """Full-batch gradient descent in numpy: SGD, momentum or AdamW on the closed-form gradient.

    The gradient is :func:`core.model.loss_and_grad`; the optimizers reproduce
    ``torch.optim`` (see :mod:`plugins.gd._numpy_optim`), so in float64 a run matches
    the torch plugin ``gd`` to about 1e-12 relative.
    """

    name = "gd_numpy"

    def _build(self, problem):
        dtype = np.dtype(self.dtype)
        self.X = np.asarray(problem.X, dtype=dtype)
        self.Y = np.asarray(problem.Y, dtype=dtype)
        self.params_ = {
            "W": np.array(problem.W0, dtype=dtype),
            "a": np.array(problem.a0, dtype=dtype),
        }
        self.optimizer_ = make_numpy_optimizer(self.config)

    def _evaluate(self):
        value, grad_W, grad_a = model.loss_and_grad(
            self.X,
            self.Y,
            self.params_["W"],
            self.params_["a"],
            self.problem.scaling,
            self.problem.loss,
        )
        grads = {"W": grad_W, "a": grad_a}
        return value, {k: grads[k] for k in self._trained()}

    def _update(self, grads):
        self.optimizer_.step(self.params_, grads)

    def _grad_norm(self, grads):
        return float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))

    def state(self):
        """``{"W": (d, m), "a": (m,) or (m, k)}``, copies."""
        return {k: v.copy() for k, v in self.params_.items()}

    def state_dict(self):
        return {
            "n_steps": self.n_steps,
            "params": self.state(),
            "optimizer": self.optimizer_.state_dict(),
        }

    def load_state_dict(self, state):
        for k, v in state["params"].items():
            self.params_[k][...] = v
        self.optimizer_.load_state_dict(state["optimizer"])
        self.n_steps = int(state["n_steps"])
        self._cache = None
