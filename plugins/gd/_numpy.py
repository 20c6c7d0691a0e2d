"""``gd_numpy``: gradient descent in pure numpy (closed-form gradient or the NTK fast path)."""

import numpy as np

from core import model
from core.params import Param

from ._base import CachedGradientDescent
from ._numpy_optim import make_numpy_optimizer
from ._params import TORCH_PARAMS

__all__ = ["GDNumpy", "NUMPY_GRADIENT_PARAMS"]

NUMPY_GRADIENT_PARAMS = (
    Param(
        "gradient",
        str,
        "closed_form",
        "closed_form: core.model.loss_and_grad; gram: the NTK fast path (full batch, sgd or "
        "momentum; see plugins.gd._gram)",
        choices=("closed_form", "gram"),
    ),
    *(p for p in TORCH_PARAMS if p.name == "gram_refresh"),
)
"""How ``gd_numpy`` computes its gradient (``gd``'s ``gradient`` without autograd)."""


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

    ``gradient="gram"`` is ``gd``'s NTK fast path (:mod:`plugins.gd._gram`, the same
    :class:`~plugins.gd._gram.GramPath` on numpy kernels): full batch, ``sgd`` or
    ``momentum``, either layer set, weight decay allowed; ``adamw`` and ``batch_size``
    are refused by the config check.
    """

    name = "gd_numpy"
    params = CachedGradientDescent.params + NUMPY_GRADIENT_PARAMS

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
        self.optimizer_kwargs_ = {k: self.config[k] for k in ("momentum", "nesterov")}
        self.optimizer_kwargs_["weight_decay"] = self.config["weight_decay"]
        self._gram = None
        if self.gradient == "gram":
            from ._gram import GramPath

            self._gram = GramPath(self)

    def _new_optimizer(self, params=None):
        return make_numpy_optimizer(self.config)

    def _evaluate(self, indices, need_grad):
        if self._gram is not None:
            return self._gram.evaluate(need_grad)
        X, Y = (self.X, self.Y) if indices is None else (self.X[indices], self.Y[indices])
        W, a = self.params_["W"], self.params_["a"]
        problem = self.problem
        if not need_grad:
            return model.loss(X, Y, W, a, problem.scaling, problem.loss), None
        value, grad_W, grad_a = model.loss_and_grad(X, Y, W, a, problem.scaling, problem.loss)
        grads = {"W": grad_W, "a": grad_a}
        return value, {k: grads[k] for k in self._trained()}

    def _update(self, grads, lr):
        if self._gram is not None:
            self._gram.update(grads, lr)
            return
        self.optimizer_.lr = lr
        self.optimizer_.step(self.params_, grads)

    def _grad_norm(self, grads):
        if self._gram is not None:
            return self._gram.grad_norm(grads)
        return float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))

    def state(self):
        """``{"W": (d, m), "a": (m,) or (m, k)}``, copies."""
        if self._gram is not None:
            self._gram.refresh()
        return {k: v.copy() for k, v in self.params_.items()}

    def _load(self, state):
        self.params_ = {k: np.array(v, dtype=self.dtype) for k, v in state["params"].items()}
        self.optimizer_.load_state_dict(state["optimizer"])
        if self._gram is not None:
            self._gram.reset()

    def _optimizer_state(self):
        """The optimizer's buffers (the gram path materialises W's)."""
        if self._gram is not None:
            return self._gram.optimizer_state()
        return self.optimizer_.state_dict()
